// DovecotServer: serves Dovecot's authentication client protocol (what
// Postfix's smtpd_sasl_type = dovecot and `doveadm auth test` speak) on one
// listening socket, as a protocol adapter over net::Server.
//
// Per connection: the handshake goes out on accept; then any number of AUTH
// requests, interleaved, each running one SASL mechanism (protocol/sasl).
// Password checks and credential lookups run on the worker pool; the failure
// delay is a timer on the loop, never a sleeping worker.  A protocol
// violation closes that connection with a log line naming the peer.
//
// Request lifetime: each AUTH creates a new Request object (an
// auth::Liveness).  Every completion — worker result, failure-delay timer,
// CONT expiry — holds that object, not the wire id, and does nothing once
// it is dead: CANCEL, the request's end, a protocol error or the
// connection's close kill it.  So a client that reuses an id can never
// receive the answer meant for the id's previous request.
//
// Temporary failures: Postfix turns every FAIL into a permanent 535, so by
// default (temp_failure = "disconnect") a temporary failure closes the
// connection and Postfix answers 454; with "fail" it answers
// FAIL <id> user=… code=temp_fail temp, for clients that understand it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol/dovecot/connection.h"
#include "src/auth/authenticator.h"
#include "src/config/config.h"
#include "src/net/server.h"
#include "src/runtime/event_loop.h"

namespace mailauth {

class DovecotServer {
 public:
  // `listener` may be null (the simulator adopts connections itself).  The
  // daemon runs one server per event loop on the same shared listener.
  DovecotServer(EventLoop& loop, auth::Authenticator& authenticator, config::DovecotConfig config,
                std::shared_ptr<net::SharedListener> listener);
  ~DovecotServer();
  DovecotServer(const DovecotServer&) = delete;
  DovecotServer& operator=(const DovecotServer&) = delete;

  void stop_accepting() { server_.stop_accepting(); }
  // Requests waiting for a worker or a failure-delay timer.
  std::size_t busy() const;
  // On this server's loop.
  std::size_t connections() const { return server_.connections(); }
  // Reload: new requests use these settings; the socket stays.
  void set_options(const config::DovecotConfig& config);
  const config::DovecotConfig& config() const { return config_; }
  net::Server& server() { return server_; }

 private:
  class Session;

  EventLoop& loop_;
  auth::Authenticator& auth_;
  config::DovecotConfig config_;
  std::vector<dovecot::Mechanism> advertised_;
  std::string hostname_;
  net::Server server_;  // last: destroyed first, while the rest still stands
  static constexpr std::size_t kMaxRequestsPerConnection = 256;
};

}  // namespace mailauth
