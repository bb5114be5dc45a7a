// Server: a listening socket, its table of connections, and the protocol
// sessions they carry.  mux, Dovecot and control servers are protocol
// adapters over it (a Session per connection); a new listener kind or
// protocol adds an adapter, never another accept/flush/close.
//
//   accept ─► Connection (fd, buffers, deadline) ─► Session (the protocol)
//   close  ─► Session::on_close ─► socket released ─► freed after the event
//
// At the descriptor limit (EMFILE/ENFILE) the server stops accepting for a
// short back-off and keeps serving open connections; refusals are logged
// once per interval with a count, never once per attempt.
//
// Loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "src/net/connection.h"
#include "src/net/listener.h"
#include "src/runtime/event_loop.h"

namespace mailauth::net {

class Server {
 public:
  struct Options {
    std::string name = "server";      // "mux", "dovecot", "control": log prefix
    std::size_t max_connections = 4096;
    std::size_t max_output = 1 << 20;  // bytes queued for a peer that does not read
  };
  using SessionFactory = std::function<std::unique_ptr<Session>(Connection&)>;

  // `listener` may be null: connections then come only through adopt().
  Server(EventLoop& loop, std::unique_ptr<UnixListener> listener, Options options,
         SessionFactory factory);
  ~Server();  // closes every connection (sessions see on_close)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Stop accepting and remove the socket file; open connections go on.
  void stop_accepting();
  // Take a connected socket as accept would (the simulator and tests use
  // this directly).  Returns null when it was refused or closed at once.
  Connection* adopt(UniqueFd fd);
  // Close every connection now (shutdown).
  void close_all();

  std::size_t connections() const { return conns_.size(); }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [id, c] : conns_) f(*c);
  }
  const Options& options() const { return options_; }
  void set_max_connections(std::size_t n) { options_.max_connections = n; }
  EventLoop& loop() { return loop_; }
  const std::string& path() const;

 private:
  friend class Connection;
  void on_accept();
  void pause_accepting(int error);
  void retire(Connection& c);
  void sweep();
  void note_refusal(const std::string& what);

  EventLoop& loop_;
  std::unique_ptr<UnixListener> listener_;
  Options options_;
  SessionFactory factory_;
  bool accepting_ = false;   // the listener is watched
  bool stopped_ = false;     // stop_accepting() was called
  EventLoop::TimerId resume_timer_ = 0;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> conns_;
  std::vector<std::unique_ptr<Connection>> graveyard_;
  EventLoop::TimerId sweep_timer_ = 0;
  std::uint64_t next_id_ = 1;
  // Refusals (connection limit, descriptor limit) since the last log line.
  std::size_t refused_ = 0;
  std::string refused_what_;
  EventLoop::Clock::time_point refused_logged_{};
};

}  // namespace mailauth::net
