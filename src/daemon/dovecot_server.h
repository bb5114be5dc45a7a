// DovecotServer: serves Dovecot's authentication client protocol (what
// Postfix's smtpd_sasl_type = dovecot and `doveadm auth test` speak) on one
// listening socket.
//
// Per connection: the handshake goes out on accept; then any number of AUTH
// requests, interleaved, each running one SASL mechanism (protocol/sasl).
// Password checks and credential lookups run on the worker pool; the failure
// delay is a timer on the loop, never a sleeping worker.  A protocol
// violation closes that connection with a log line naming the peer.
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
#include <unordered_map>

#include "protocol/dovecot/connection.h"
#include "protocol/sasl/mechanism.h"
#include "src/auth/authenticator.h"
#include "src/config/config.h"
#include "src/daemon/event_loop.h"
#include "src/daemon/listener.h"

namespace mailauth {

class DovecotServer {
 public:
  DovecotServer(EventLoop& loop, auth::Authenticator& authenticator, config::DovecotConfig config,
                std::unique_ptr<UnixListener> listener);
  ~DovecotServer();
  DovecotServer(const DovecotServer&) = delete;
  DovecotServer& operator=(const DovecotServer&) = delete;

  void stop_accepting();
  // Requests waiting for a worker or a failure-delay timer.
  std::size_t busy() const;
  std::size_t connections() const { return conns_.size(); }
  // Reload: new requests use these settings; the socket stays.
  void set_options(const config::DovecotConfig& config);
  const config::DovecotConfig& config() const { return config_; }

 private:
  struct Request {
    std::uint32_t id = 0;
    std::string mechanism;
    std::shared_ptr<sasl::Mechanism> mech;  // shared with a worker job in flight
    dovecot::AuthParams params;
    std::chrono::steady_clock::time_point start;
    std::string user;         // once known
    std::string backend = "-";  // the backend that supplied the credential
    std::string unknown_reason;  // why the credential lookup found nobody (SCRAM fails later)
    bool working = false;     // a worker job or a delay timer is pending
    EventLoop::TimerId timer = 0;  // failure delay, or expiry while waiting for CONT
  };
  struct Conn {
    std::uint64_t id = 0;
    UniqueFd fd;
    std::string peer;
    dovecot::ServerConnection codec;
    std::string out;
    bool want_write = false;
    std::unordered_map<std::uint32_t, std::unique_ptr<Request>> requests;
  };

  void on_accept();
  void on_event(std::uint64_t id, uint32_t events);
  void read(Conn& c);
  void handle(Conn& c, dovecot::Event& e);
  void start_request(Conn& c, dovecot::Event& e);
  void continue_request(Conn& c, dovecot::Event& e);
  void apply(Conn& c, Request& r, sasl::Step step);
  void verify_password(Conn& c, Request& r, sasl::Step step);
  void fetch_credential(Conn& c, Request& r, std::string user);
  void succeed(Conn& c, Request& r, const std::string& user, const std::string& final_data);
  void fail(Conn& c, Request& r, const std::string& reason, bool delay);
  void temp_fail(Conn& c, Request& r);
  void finish(Conn& c, std::uint32_t id);
  auth::AuthRequest auth_request(const Request& r) const;
  void log(const Request& r, auth::Outcome outcome, const std::string& backend,
           const std::string& reason) const;
  void send(Conn& c, const std::string& data);
  void flush(Conn& c);
  void close(std::uint64_t id);
  Conn* find(std::uint64_t id);

  EventLoop& loop_;
  auth::Authenticator& auth_;
  config::DovecotConfig config_;
  std::unique_ptr<UnixListener> listener_;
  std::vector<dovecot::Mechanism> advertised_;
  std::string hostname_;
  bool accepting_ = true;
  std::unordered_map<std::uint64_t, std::unique_ptr<Conn>> conns_;
  std::uint64_t next_id_ = 1;
  static constexpr std::size_t kMaxConnections = 4096;
  static constexpr std::size_t kMaxRequestsPerConnection = 256;
  static constexpr std::size_t kMaxOutput = 1 << 20;
};

}  // namespace mailauth
