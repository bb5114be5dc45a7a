// MuxServer: serves the saslauthd mux protocol on one listening socket, as a
// protocol adapter over net::Server.
//
// Per connection (protocols.md A.2): read one request (protocol/mux codec),
// authenticate it on the worker pool, write "OK" or "NO …", shut down the
// write side, drain what the client still sends (bounded: 64 KiB, 2 s), close.
// A temporary failure closes without a reply, which libsasl2 reports as
// SASL_FAIL and Postfix as "454 Temporary authentication failure" rather
// than a permanent 535.  A malformed or incomplete request closes that
// connection only, with a log line naming the peer.
//
// The request in flight is an auth::Liveness that the connection kills when
// it closes; its answer is delivered only while it lives.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "protocol/mux/codec.h"
#include "src/auth/authenticator.h"
#include "src/config/config.h"
#include "src/net/server.h"
#include "src/runtime/event_loop.h"

namespace mailauth {

class MuxServer {
 public:
  // `listener` may be null (the simulator adopts connections itself).  The
  // daemon runs one server per event loop on the same shared listener.
  MuxServer(EventLoop& loop, auth::Authenticator& authenticator, config::MuxConfig config,
            std::shared_ptr<net::SharedListener> listener);
  ~MuxServer();
  MuxServer(const MuxServer&) = delete;
  MuxServer& operator=(const MuxServer&) = delete;

  // Stop accepting and remove the socket file; open connections finish.
  void stop_accepting() { server_.stop_accepting(); }
  // On this server's loop.
  std::size_t connections() const { return server_.connections(); }
  // New requests use these settings (reload); the socket stays as it is.
  void set_options(const config::MuxConfig& next);
  const config::MuxConfig& config() const { return config_; }
  net::Server& server() { return server_; }

 private:
  class Session;

  EventLoop& loop_;
  auth::Authenticator& auth_;
  config::MuxConfig config_;
  net::Server server_;  // last: destroyed first, while the rest still stands
};

}  // namespace mailauth
