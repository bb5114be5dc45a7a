// MuxServer: serves the saslauthd mux protocol on one listening socket.
//
// Per connection (protocols.md A.2): read one request (protocol/mux codec),
// authenticate it on the worker pool, write "OK" or "NO …", shut down the
// write side, drain what the client still sends (bounded: 64 KiB, 2 s), close.
// A temporary failure closes without a reply, which libsasl2 reports as
// SASL_FAIL and Postfix as "454 Temporary authentication failure" rather
// than a permanent 535.  A malformed or incomplete request closes that
// connection only, with a log line naming the peer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "protocol/mux/codec.h"
#include "src/auth/authenticator.h"
#include "src/config/config.h"
#include "src/daemon/event_loop.h"
#include "src/daemon/listener.h"

namespace mailauth {

class MuxServer {
 public:
  MuxServer(EventLoop& loop, auth::Authenticator& authenticator, config::MuxConfig config,
            std::unique_ptr<UnixListener> listener);
  ~MuxServer();
  MuxServer(const MuxServer&) = delete;
  MuxServer& operator=(const MuxServer&) = delete;

  // Stop accepting and remove the socket file; open connections finish.
  void stop_accepting();
  std::size_t connections() const { return conns_.size(); }
  // New requests use these settings (reload); the socket stays as it is.
  void set_options(const config::MuxConfig& next);
  const config::MuxConfig& config() const { return config_; }

 private:
  enum class State { Reading, Authenticating, Writing, Draining };
  struct Conn {
    std::uint64_t id = 0;
    UniqueFd fd;
    std::string peer;
    State state = State::Reading;
    std::unique_ptr<mux::Decoder> decoder;
    EventLoop::TimerId timer = 0;
    std::string out;
    std::size_t out_pos = 0;
    std::size_t drained = 0;
  };

  void on_accept();
  void on_event(std::uint64_t id, uint32_t events);
  void read_request(Conn& c);
  void start_auth(Conn& c);
  void send_reply(Conn& c, std::string_view text);
  void flush(Conn& c);
  void drain(Conn& c);
  void close(std::uint64_t id);
  Conn* find(std::uint64_t id);
  void watch(Conn& c, uint32_t events);

  EventLoop& loop_;
  auth::Authenticator& auth_;
  config::MuxConfig config_;
  std::unique_ptr<UnixListener> listener_;
  bool accepting_ = true;
  std::unordered_map<std::uint64_t, std::unique_ptr<Conn>> conns_;
  std::uint64_t next_id_ = 1;
  static constexpr std::size_t kMaxConnections = 4096;
};

}  // namespace mailauth
