#include "src/daemon/dovecot_server.h"

#include <sodium.h>
#include <unistd.h>

#include <cstring>
#include <unordered_map>

#include "protocol/sasl/mechanism.h"
#include "src/util/encoding.h"
#include "src/util/log.h"

namespace mailauth {

namespace {
std::vector<dovecot::Mechanism> advertise(const std::vector<std::string>& names) {
  std::vector<dovecot::Mechanism> out;
  for (const auto& n : names) out.push_back({n, dovecot::mechanism_flags(n)});
  return out;
}
}  // namespace

class DovecotServer::Session final : public net::Session {
 public:
  explicit Session(DovecotServer& server) : server_(server) {}

  void on_open(net::Connection& c) override {
    unsigned char cookie[16];
    randombytes_buf(cookie, sizeof cookie);
    // Dovecot 2.3 sends the whole handshake at once; every client reads it
    // after sending its own VERSION and CPID.
    c.send(dovecot::ServerConnection::handshake(
        server_.advertised_, static_cast<std::uint32_t>(::getpid()), c.id(),
        hex_encode(std::string_view(reinterpret_cast<char*>(cookie), sizeof cookie))));
    arm_idle_timer(c);
  }

  void on_input(net::Connection& c, std::string_view bytes) override {
    // One line at a time: the codec's ids in flight must never run ahead of
    // this session's (a finish() of an id parsed before a later AUTH with
    // the same id would otherwise free the later one's id in the codec).
    codec_.append(bytes);
    while (!c.closed()) {
      std::optional<dovecot::Event> e = codec_.next();
      if (!e) break;
      handle(c, *e);
    }
    arm_idle_timer(c);
  }

  void on_eof(net::Connection& c) override {
    // Requests in flight are dropped, as Dovecot does.
    log::debug("dovecot: " + c.peer() + " disconnected");
    c.close();
  }

  void on_close(net::Connection&) override {
    for (auto& [id, r] : requests_) {
      r->kill();
      cancel_timer(*r);
    }
    requests_.clear();
  }

  std::size_t busy() const {
    std::size_t n = 0;
    for (const auto& [id, r] : requests_) n += r->working ? 1 : 0;
    return n;
  }

 private:
  struct Request : auth::Liveness {
    std::uint32_t id = 0;
    std::string mechanism;
    std::shared_ptr<sasl::Mechanism> mech;  // shared with a worker job in flight
    dovecot::AuthParams params;
    std::chrono::steady_clock::time_point start;
    std::string user;            // once known, as the client sent it
    // The name the deciding backend knows the user by (AuthResult::user),
    // once one has: what the OK/FAIL line's user= and the log line say.
    std::string canonical;
    std::string backend = "-";   // the backend that supplied the credential
    std::string decoy_reason;    // why the lookup found no usable account (SCRAM fails later)
    bool working = false;        // a worker job or a delay timer is pending
    bool delaying = false;       // its FAIL is being held back (failure delay)
    EventLoop::TimerId timer = 0;  // failure delay, or expiry while waiting for CONT
    // Valid while the request lives: closing the connection kills it first.
    Session* session = nullptr;
    net::Connection* conn = nullptr;
  };
  using Ref = std::shared_ptr<Request>;

  EventLoop& loop() { return server_.loop_; }

  // Idle: no input for idle_timeout and nothing in flight.  A connection
  // with requests in flight is looked at again later (each request has its
  // own deadline).  Idle connections hold descriptors that new clients need.
  void arm_idle_timer(net::Connection& c) {
    const auto timeout = server_.config_.idle_timeout;
    c.set_timer(timeout, [this, &c, timeout] {
      if (!requests_.empty()) return arm_idle_timer(c);
      log::debug("dovecot: " + c.peer() + ": idle for " + std::to_string(timeout.count() / 1000) +
                 " s; closing");
      c.close();
    });
  }

  void cancel_timer(Request& r) {
    if (r.timer != 0) loop().cancel_timer(r.timer);
    r.timer = 0;
  }

  void handle(net::Connection& c, dovecot::Event& e) {
    using Kind = dovecot::Event::Kind;
    switch (e.kind) {
      case Kind::Fatal:
        log::warning("dovecot: " + c.peer() + ": protocol violation: " + log::sanitize(e.error) +
                     "; closing the connection");
        return c.close();
      case Kind::Auth: return start_request(c, e);
      case Kind::Cont: return continue_request(c, e);
      case Kind::Cancel: {
        // The codec forgot the id already; the request dies here, and a
        // completion for it is dropped on arrival.
        auto it = requests_.find(e.id);
        if (it == requests_.end()) return;
        Ref r = std::move(it->second);
        requests_.erase(it);
        r->kill();
        cancel_timer(*r);
        return;
      }
    }
  }

  auth::AuthRequest auth_request(const Ref& r) const {
    auth::AuthRequest a;
    a.protocol = "dovecot";
    a.mechanism = sasl::loggable_name(r->mechanism);
    a.user = r->user;
    a.service = r->params.service;
    a.client_addr = r->params.rip;
    a.life = r;
    return a;
  }

  void log(const Ref& r, auth::Outcome outcome, const std::string& backend,
           const std::string& reason) {
    auth::AuthResult result{outcome, backend, reason};
    result.user = r->canonical;
    server_.auth_.record(auth_request(r), result, r->start);
  }

  // user= of the request's answer.  Postfix takes the OK line's for the
  // SASL login name (sasl_username, smtpd_sender_login_maps), so it is the
  // account's one name, not the client's spelling of it.
  static const std::string& answer_user(const Ref& r) {
    return r->canonical.empty() ? r->user : r->canonical;
  }

  void start_request(net::Connection& c, dovecot::Event& e) {
    if (requests_.size() >= kMaxRequestsPerConnection) {
      log::warning("dovecot: " + c.peer() + ": more than " +
                   std::to_string(kMaxRequestsPerConnection) +
                   " requests in flight; closing the connection");
      return c.close();
    }
    auto r = std::make_shared<Request>();
    r->id = e.id;
    r->mechanism = e.mechanism;
    r->params = std::move(e.params);
    r->start = loop().now();
    r->session = this;
    r->conn = &c;
    // The codec refuses an id that is in flight; this session holds the
    // same set, so no live request is ever replaced (it would live on,
    // unkilled, past its connection).  Checked, not assumed.
    if (requests_.count(r->id) != 0) {
      log::error("dovecot: " + c.peer() + ": request id " + std::to_string(r->id) +
                 " reused while in flight, past the codec; closing the connection");
      return c.close();
    }
    requests_[r->id] = r;
    bool offered = false;
    for (const auto& m : server_.config_.mechanisms) offered |= (m == r->mechanism);
    if (!offered) {
      log::info("dovecot: " + c.peer() + ": request " + std::to_string(r->id) +
                " for mechanism " + sasl::loggable_name(r->mechanism) + " (" +
                std::to_string(r->mechanism.size()) + " bytes), which is not offered");
      log(r, auth::Outcome::Fail, "-", "mechanism not offered");
      return reply_and_finish(r, dovecot::fail_line(r->id, {"", "", "Unsupported authentication mechanism", false}));
    }
    if (e.bad_base64) {
      log(r, auth::Outcome::Fail, "-", "invalid base64 in the initial response");
      return reply_and_finish(r, dovecot::fail_line(r->id, {"", "invalid_base64",
                                                           "Invalid base64 data in initial response", false}));
    }
    sasl::MechanismOptions opt;
    opt.final_resp_ok = r->params.final_resp_ok;
    opt.hostname = server_.hostname_;
    r->mech = std::shared_ptr<sasl::Mechanism>(sasl::create(r->mechanism, opt));
    std::optional<std::string_view> initial;
    if (e.has_data) initial = e.data.view();
    apply(r, r->mech->start(initial));
  }

  void continue_request(net::Connection& c, dovecot::Event& e) {
    if (e.unknown_id) {
      c.send(dovecot::fail_line(e.id, {"", "", "Authentication request timed out", false}));
      return;
    }
    auto it = requests_.find(e.id);
    if (it == requests_.end()) {
      codec_.finish(e.id);
      c.send(dovecot::fail_line(e.id, {"", "", "Authentication request timed out", false}));
      return;
    }
    Ref r = it->second;
    if (r->delaying) {
      // The verdict is in and its FAIL is being held back: a CONT must not
      // cut the delay short (nor earn another answer).  Ignored.
      log::debug("dovecot: " + c.peer() + ": CONT for request " + std::to_string(r->id) +
                 " during its failure delay; ignored");
      return;
    }
    if (r->working) {
      // The server has not asked for anything: the client is out of step.
      return reply_and_finish(r, dovecot::fail_line(r->id, {r->user, "", "Unexpected continuation", false}));
    }
    cancel_timer(*r);  // the client answered in time
    if (e.bad_base64) {
      log(r, auth::Outcome::Fail, "-", "invalid base64 in a continued response");
      return reply_and_finish(r, dovecot::fail_line(r->id, {r->user, "invalid_base64",
                                                           "Invalid base64 data in continued response", false}));
    }
    apply(r, r->mech->step(e.data.view()));
  }

  void apply(const Ref& r, sasl::Step step) {
    using K = sasl::Step::Kind;
    if (!step.user.empty()) r->user = step.user;
    switch (step.kind) {
      case K::Challenge: {
        r->conn->send(dovecot::cont_line(r->id, step.challenge));
        if (r->dead()) return;
        // Postfix never sends CANCEL: a client that gives up ("*") leaves the
        // request pending on a connection that lives as long as smtpd.  Expire
        // it, as Dovecot does; a late CONT gets "Authentication request timed out".
        cancel_timer(*r);
        r->timer = loop().add_timer(server_.config_.request_timeout, [r] {
          r->timer = 0;
          if (r->dead()) return;
          log::debug("dovecot: " + r->conn->peer() + ": request " + std::to_string(r->id) +
                     " abandoned by the client; dropped");
          r->session->finish(r);
        });
        return;
      }
      case K::VerifyPassword: return verify_password(r, std::move(step));
      case K::NeedCredential: return fetch_credential(r, step.user);
      case K::Success:
        log(r, auth::Outcome::Ok, r->backend, "");
        return succeed(r, step.final_data);
      case K::Failure: {
        // An unknown or disabled user's SCRAM exchange runs on with decoy
        // values and fails at the proof; the log says why.
        const std::string why = r->decoy_reason.empty() ? step.reason : r->decoy_reason;
        log(r, auth::Outcome::Fail, r->backend, why);
        return fail(r);
      }
    }
  }

  void verify_password(const Ref& r, sasl::Step step) {
    auth::AuthRequest a = auth_request(r);
    a.password = std::move(step.password);
    r->working = true;
    server_.auth_.authenticate(std::move(a), [r](const auth::AuthResult& result) {
      if (r->dead()) return;  // cancelled, finished or disconnected meanwhile
      r->working = false;
      r->canonical = result.user;
      Session& s = *r->session;
      switch (result.outcome) {
        case auth::Outcome::Ok: return s.succeed(r, "");
        case auth::Outcome::Fail: return s.fail(r);
        case auth::Outcome::TempFail: return s.temp_fail(r);
      }
    }, r->params.no_penalty);
  }

  void fetch_credential(const Ref& r, std::string user) {
    r->working = true;
    auth::AuthRequest request = auth_request(r);
    request.user = std::move(user);
    // The worker job shares the mechanism and the step it produces; the
    // request itself is only touched back on the loop, if it still lives.
    std::shared_ptr<sasl::Mechanism> mech = r->mech;
    auto step = std::make_shared<sasl::Step>();
    server_.auth_.lookup_credential(
        std::move(request), r->params.no_penalty,
        [mech, step](auth::BackendChain::CredentialLookup& found) {
          // Worker thread: SCRAM may derive keys from a plaintext credential here.
          if (found.outcome == auth::Outcome::Ok) {
            *step = mech->credential(sasl::StoredCredential{found.credential.stored.view(),
                                                            found.credential.default_scheme});
          } else if (found.outcome == auth::Outcome::Fail) {
            // Unknown or disabled: a decoy exchange that fails at the end, so
            // that SCRAM's challenge does not tell the account exists.
            *step = mech->credential(std::nullopt);
          }
        },
        [r, step](auth::BackendChain::CredentialLookup& found) {
          if (r->dead()) return;
          r->working = false;
          r->backend = found.backend;
          r->canonical = found.user;
          Session& s = *r->session;
          if (found.outcome == auth::Outcome::TempFail) {
            s.log(r, auth::Outcome::TempFail, found.backend, found.reason);
            return s.temp_fail(r);
          }
          if (found.outcome == auth::Outcome::Fail) r->decoy_reason = found.reason;
          s.apply(r, std::move(*step));
        });
  }

  void succeed(const Ref& r, const std::string& final_data) {
    std::vector<std::pair<std::string, std::string>> extra;
    if (!final_data.empty()) extra.emplace_back("resp", base64_encode(final_data));
    reply_and_finish(r, dovecot::ok_line(r->id, answer_user(r), extra));
  }

  // The client only learns "failed"; the reason is in the attempt's log line.
  void fail(const Ref& r) {
    std::string line = dovecot::fail_line(r->id, {answer_user(r), "", "", false});
    if (server_.config_.failure_delay.count() == 0) return reply_and_finish(r, line);
    // The failure delay is a timer: the worker is already free for others.
    r->working = true;
    r->delaying = true;
    cancel_timer(*r);
    r->timer = loop().add_timer(server_.config_.failure_delay, [r, line = std::move(line)] {
      r->timer = 0;
      if (r->dead()) return;
      r->session->reply_and_finish(r, line);
    });
  }

  void temp_fail(const Ref& r) {
    if (server_.config_.temp_failure_disconnect) {
      // Postfix reports a lost connection as "454 Temporary authentication
      // failure"; a FAIL would be a permanent 535.
      log::info("dovecot: " + r->conn->peer() + ": temporary failure; closing the connection");
      return r->conn->close();
    }
    reply_and_finish(r, dovecot::fail_line(r->id, {answer_user(r), "temp_fail", "", true}));
  }

  // The request's final answer: nothing more is sent for it, and its id is
  // free for the client to use again.
  void reply_and_finish(const Ref& r, const std::string& line) {
    net::Connection& c = *r->conn;
    finish(r);
    c.send(line);
  }

  void finish(const Ref& r) {
    r->kill();
    cancel_timer(*r);
    auto it = requests_.find(r->id);
    if (it != requests_.end() && it->second == r) {
      requests_.erase(it);
      codec_.finish(r->id);
    }
  }

  DovecotServer& server_;
  dovecot::ServerConnection codec_;
  std::unordered_map<std::uint32_t, Ref> requests_;
};

DovecotServer::DovecotServer(EventLoop& loop, auth::Authenticator& authenticator,
                             config::DovecotConfig config, std::shared_ptr<net::SharedListener> listener)
    : loop_(loop), auth_(authenticator), config_(std::move(config)),
      advertised_(advertise(config_.mechanisms)),
      server_(loop, std::move(listener), net::Server::Options{"dovecot", 4096, 1 << 20},
              [this](net::Connection&) { return std::make_unique<Session>(*this); }) {
  char host[256] = "localhost";
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  hostname_ = host;
  std::string mechs;
  for (const auto& m : config_.mechanisms) mechs += (mechs.empty() ? "" : ",") + m;
  if (!server_.path().empty() && server_.first_on_listener())
    log::info("dovecot: listening on " + server_.path() + log::kv("mechanisms", mechs));
}

DovecotServer::~DovecotServer() { server_.close_all(); }

void DovecotServer::set_options(const config::DovecotConfig& config) {
  config_.mechanisms = config.mechanisms;
  config_.failure_delay = config.failure_delay;
  config_.temp_failure_disconnect = config.temp_failure_disconnect;
  config_.request_timeout = config.request_timeout;
  config_.idle_timeout = config.idle_timeout;
  advertised_ = advertise(config_.mechanisms);
}

std::size_t DovecotServer::busy() const {
  std::size_t n = 0;
  server_.for_each([&n](net::Connection& c) { n += static_cast<Session&>(c.session()).busy(); });
  return n;
}

}  // namespace mailauth
