#include "src/daemon/dovecot_server.h"

#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

DovecotServer::DovecotServer(EventLoop& loop, auth::Authenticator& authenticator,
                             config::DovecotConfig config, std::unique_ptr<UnixListener> listener)
    : loop_(loop), auth_(authenticator), config_(std::move(config)),
      listener_(std::move(listener)), advertised_(advertise(config_.mechanisms)) {
  char host[256] = "localhost";
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  hostname_ = host;
  loop_.add(listener_->fd(), EPOLLIN, [this](uint32_t) { on_accept(); });
  std::string mechs;
  for (const auto& m : config_.mechanisms) mechs += (mechs.empty() ? "" : ",") + m;
  log::info("dovecot: listening on " + listener_->path() + log::kv("mechanisms", mechs));
}

DovecotServer::~DovecotServer() {
  stop_accepting();
  while (!conns_.empty()) close(conns_.begin()->first);
}

void DovecotServer::stop_accepting() {
  if (!accepting_) return;
  accepting_ = false;
  loop_.remove(listener_->fd());
  listener_->remove_file();
}

void DovecotServer::set_options(const config::DovecotConfig& config) {
  config_.mechanisms = config.mechanisms;
  config_.failure_delay = config.failure_delay;
  config_.temp_failure_disconnect = config.temp_failure_disconnect;
  config_.request_timeout = config.request_timeout;
  advertised_ = advertise(config_.mechanisms);
}

std::size_t DovecotServer::busy() const {
  std::size_t n = 0;
  for (const auto& [id, c] : conns_)
    for (const auto& [rid, r] : c->requests) n += r->working ? 1 : 0;
  return n;
}

DovecotServer::Conn* DovecotServer::find(std::uint64_t id) {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second.get();
}

void DovecotServer::on_accept() {
  listener_->accept_all("dovecot", [this](UniqueFd fd) {
    if (conns_.size() >= kMaxConnections) {
      log::warning("dovecot: too many connections; refusing one (" + peer_description(fd.get()) + ")");
      return;
    }
    auto c = std::make_unique<Conn>();
    c->id = next_id_++;
    c->peer = peer_description(fd.get());
    const int raw = fd.get();
    c->fd = std::move(fd);
    const std::uint64_t id = c->id;
    unsigned char cookie[16];
    randombytes_buf(cookie, sizeof cookie);
    Conn& ref = *c;
    conns_.emplace(id, std::move(c));
    loop_.add(raw, EPOLLIN | EPOLLRDHUP, [this, id](uint32_t ev) { on_event(id, ev); });
    log::debug("dovecot: connection from " + ref.peer);
    // Dovecot 2.3 sends the whole handshake at once; every client reads it
    // after sending its own VERSION and CPID.
    send(ref, dovecot::ServerConnection::handshake(
                  advertised_, static_cast<std::uint32_t>(::getpid()), id,
                  hex_encode(std::string_view(reinterpret_cast<char*>(cookie), sizeof cookie))));
  });
}

void DovecotServer::on_event(std::uint64_t id, uint32_t events) {
  Conn* c = find(id);
  if (c == nullptr) return;
  if (events & EPOLLOUT) {
    flush(*c);
    if ((c = find(id)) == nullptr) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read(*c);
}

void DovecotServer::read(Conn& c) {
  const std::uint64_t id = c.id;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      auto events = c.codec.feed(std::string_view(buf, static_cast<std::size_t>(n)));
      wipe(buf, static_cast<std::size_t>(n));
      for (auto& e : events) {
        handle(c, e);
        if (find(id) == nullptr) return;  // closed while handling
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // EOF or error: requests in flight are dropped, as Dovecot does.
    log::debug("dovecot: " + c.peer + " disconnected");
    close(id);
    return;
  }
}

void DovecotServer::handle(Conn& c, dovecot::Event& e) {
  using Kind = dovecot::Event::Kind;
  switch (e.kind) {
    case Kind::Fatal:
      log::warning("dovecot: " + c.peer + ": protocol violation: " + log::sanitize(e.error) +
                   "; closing the connection");
      close(c.id);
      return;
    case Kind::Auth: start_request(c, e); return;
    case Kind::Cont: continue_request(c, e); return;
    case Kind::Cancel: {
      auto it = c.requests.find(e.id);
      if (it != c.requests.end()) {
        if (it->second->timer) loop_.cancel_timer(it->second->timer);
        c.requests.erase(it);  // a worker result for it is dropped on arrival
      }
      return;
    }
  }
}

auth::AuthRequest DovecotServer::auth_request(const Request& r) const {
  auth::AuthRequest a;
  a.protocol = "dovecot";
  a.mechanism = r.mechanism;
  a.user = r.user;
  a.service = r.params.service;
  a.client_addr = r.params.rip;
  return a;
}

void DovecotServer::log(const Request& r, auth::Outcome outcome, const std::string& backend,
                        const std::string& reason) const {
  auth_.record(auth_request(r), auth::AuthResult{outcome, backend, reason}, r.start);
}

void DovecotServer::start_request(Conn& c, dovecot::Event& e) {
  auto r = std::make_unique<Request>();
  r->id = e.id;
  r->mechanism = e.mechanism;
  r->params = std::move(e.params);
  r->start = std::chrono::steady_clock::now();
  Request& req = *r;
  if (c.requests.size() >= kMaxRequestsPerConnection) {
    log::warning("dovecot: " + c.peer + ": more than " + std::to_string(kMaxRequestsPerConnection) +
                 " requests in flight; closing the connection");
    close(c.id);
    return;
  }
  c.requests.emplace(req.id, std::move(r));
  bool offered = false;
  for (const auto& m : config_.mechanisms) offered |= (m == req.mechanism);
  if (!offered) {
    log::info("dovecot: " + c.peer + ": request " + std::to_string(req.id) +
              " for mechanism " + log::sanitize(req.mechanism, 32) + ", which is not offered");
    log(req, auth::Outcome::Fail, "-", "mechanism not offered");
    send(c, dovecot::fail_line(req.id, {"", "", "Unsupported authentication mechanism", false}));
    finish(c, req.id);
    return;
  }
  if (e.bad_base64) {
    log(req, auth::Outcome::Fail, "-", "invalid base64 in the initial response");
    send(c, dovecot::fail_line(req.id, {"", "invalid_base64",
                                        "Invalid base64 data in initial response", false}));
    finish(c, req.id);
    return;
  }
  sasl::MechanismOptions opt;
  opt.final_resp_ok = req.params.final_resp_ok;
  opt.hostname = hostname_;
  req.mech = std::shared_ptr<sasl::Mechanism>(sasl::create(req.mechanism, opt));
  std::optional<std::string_view> initial;
  if (e.has_data) initial = e.data.view();
  apply(c, req, req.mech->start(initial));
}

void DovecotServer::continue_request(Conn& c, dovecot::Event& e) {
  if (e.unknown_id) {
    send(c, dovecot::fail_line(e.id, {"", "", "Authentication request timed out", false}));
    return;
  }
  auto it = c.requests.find(e.id);
  if (it == c.requests.end()) {
    send(c, dovecot::fail_line(e.id, {"", "", "Authentication request timed out", false}));
    c.codec.finish(e.id);
    return;
  }
  Request& r = *it->second;
  if (r.timer && !r.working) {
    loop_.cancel_timer(r.timer);  // the client answered in time
    r.timer = 0;
  }
  if (r.working) {
    // The server has not asked for anything: the client is out of step.
    if (r.timer) loop_.cancel_timer(r.timer);
    send(c, dovecot::fail_line(r.id, {r.user, "", "Unexpected continuation", false}));
    finish(c, r.id);
    return;
  }
  if (e.bad_base64) {
    log(r, auth::Outcome::Fail, "-", "invalid base64 in a continued response");
    send(c, dovecot::fail_line(r.id, {r.user, "invalid_base64",
                                      "Invalid base64 data in continued response", false}));
    finish(c, r.id);
    return;
  }
  apply(c, r, r.mech->step(e.data.view()));
}

void DovecotServer::apply(Conn& c, Request& r, sasl::Step step) {
  using K = sasl::Step::Kind;
  if (!step.user.empty()) r.user = step.user;
  switch (step.kind) {
    case K::Challenge: {
      send(c, dovecot::cont_line(r.id, step.challenge));
      // Postfix never sends CANCEL: a client that gives up ("*") leaves the
      // request pending on a connection that lives as long as smtpd.  Expire
      // it, as Dovecot does; a late CONT gets "Authentication request timed out".
      if (r.timer) loop_.cancel_timer(r.timer);
      const std::uint64_t cid = c.id;
      const std::uint32_t rid = r.id;
      r.timer = loop_.add_timer(config_.request_timeout, [this, cid, rid] {
        Conn* conn = find(cid);
        if (conn == nullptr) return;
        auto it = conn->requests.find(rid);
        if (it == conn->requests.end()) return;
        it->second->timer = 0;
        log::debug("dovecot: " + conn->peer + ": request " + std::to_string(rid) +
                   " abandoned by the client; dropped");
        finish(*conn, rid);
      });
      return;
    }
    case K::VerifyPassword: verify_password(c, r, std::move(step)); return;
    case K::NeedCredential: fetch_credential(c, r, step.user); return;
    case K::Success:
      log(r, auth::Outcome::Ok, r.backend, "");
      succeed(c, r, r.user, step.final_data);
      return;
    case K::Failure: {
      // An unknown user's SCRAM exchange runs on with decoy values and fails
      // at the proof; the log says why the user was unknown.
      const std::string& why = r.unknown_reason.empty() ? step.reason : r.unknown_reason;
      log(r, auth::Outcome::Fail, r.backend, why);
      fail(c, r, why, true);
      return;
    }
  }
}

void DovecotServer::verify_password(Conn& c, Request& r, sasl::Step step) {
  auth::AuthRequest a = auth_request(r);
  a.password = std::move(step.password);
  r.working = true;
  const std::uint64_t cid = c.id;
  const std::uint32_t rid = r.id;
  const bool no_penalty = r.params.no_penalty;
  auth_.authenticate(std::move(a), [this, cid, rid](const auth::AuthResult& result) {
    Conn* conn = find(cid);
    if (conn == nullptr) return;
    auto it = conn->requests.find(rid);
    if (it == conn->requests.end()) return;  // cancelled
    Request& req = *it->second;
    req.working = false;
    switch (result.outcome) {
      case auth::Outcome::Ok: succeed(*conn, req, req.user, ""); break;
      case auth::Outcome::Fail: fail(*conn, req, result.reason, true); break;
      case auth::Outcome::TempFail: temp_fail(*conn, req); break;
    }
  }, no_penalty);
}

void DovecotServer::fetch_credential(Conn& c, Request& r, std::string user) {
  r.working = true;
  const std::uint64_t cid = c.id;
  const std::uint32_t rid = r.id;
  auth::AuthRequest request = auth_request(r);
  request.user = std::move(user);
  // The worker job shares the mechanism: if the client goes away meanwhile,
  // the request is erased but the mechanism lives until the job is done.
  std::shared_ptr<sasl::Mechanism> mech = r.mech;
  auto step = std::make_shared<sasl::Step>();
  auth_.lookup_credential(
      std::move(request), r.params.no_penalty,
      [mech, step](auth::BackendChain::CredentialLookup& found) {
        // Worker thread: SCRAM may derive keys from a plaintext credential here.
        if (found.outcome == auth::Outcome::Ok) {
          *step = mech->credential(sasl::StoredCredential{found.credential.stored.view(),
                                                          found.credential.default_scheme});
        } else if (found.outcome == auth::Outcome::Fail && found.unknown) {
          *step = mech->credential(std::nullopt);  // decoy exchange, fails at the end
        }
      },
      [this, cid, rid, step](auth::BackendChain::CredentialLookup& found) {
        Conn* conn = find(cid);
        if (conn == nullptr) return;
        auto it = conn->requests.find(rid);
        if (it == conn->requests.end()) return;
        Request& req = *it->second;
        req.working = false;
        req.backend = found.backend;
        if (found.outcome == auth::Outcome::TempFail) {
          log(req, auth::Outcome::TempFail, found.backend, found.reason);
          temp_fail(*conn, req);
          return;
        }
        if (found.outcome == auth::Outcome::Fail && !found.unknown) {
          log(req, auth::Outcome::Fail, found.backend, found.reason);
          fail(*conn, req, found.reason, true);
          return;
        }
        if (found.unknown) req.unknown_reason = found.reason;
        apply(*conn, req, std::move(*step));
      });
}

void DovecotServer::succeed(Conn& c, Request& r, const std::string& user,
                            const std::string& final_data) {
  std::vector<std::pair<std::string, std::string>> extra;
  if (!final_data.empty()) extra.emplace_back("resp", base64_encode(final_data));
  send(c, dovecot::ok_line(r.id, user, extra));
  finish(c, r.id);
}

void DovecotServer::fail(Conn& c, Request& r, const std::string& reason, bool delay) {
  (void)reason;  // logged already; the client only learns "failed"
  const std::uint64_t cid = c.id;
  const std::uint32_t rid = r.id;
  const std::string line = dovecot::fail_line(r.id, {r.user, "", "", false});
  if (!delay || config_.failure_delay.count() == 0) {
    send(c, line);
    finish(c, rid);
    return;
  }
  // The failure delay is a timer: the worker is already free for others.
  r.working = true;
  r.timer = loop_.add_timer(config_.failure_delay, [this, cid, rid, line] {
    Conn* conn = find(cid);
    if (conn == nullptr) return;
    auto it = conn->requests.find(rid);
    if (it == conn->requests.end()) return;
    it->second->timer = 0;
    send(*conn, line);
    finish(*conn, rid);
  });
}

void DovecotServer::temp_fail(Conn& c, Request& r) {
  if (config_.temp_failure_disconnect) {
    // Postfix reports a lost connection as "454 Temporary authentication
    // failure"; a FAIL would be a permanent 535.
    log::info("dovecot: " + c.peer + ": temporary failure; closing the connection");
    close(c.id);
    return;
  }
  send(c, dovecot::fail_line(r.id, {r.user, "temp_fail", "", true}));
  finish(c, r.id);
}

void DovecotServer::finish(Conn& c, std::uint32_t id) {
  auto it = c.requests.find(id);
  if (it != c.requests.end()) {
    if (it->second->timer) loop_.cancel_timer(it->second->timer);
    c.requests.erase(it);
  }
  c.codec.finish(id);
}

void DovecotServer::send(Conn& c, const std::string& data) {
  c.out += data;
  if (c.out.size() > kMaxOutput) {
    log::warning("dovecot: " + c.peer + ": client does not read its replies; closing");
    close(c.id);
    return;
  }
  flush(c);
}

void DovecotServer::flush(Conn& c) {
  while (!c.out.empty()) {
    const ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c.want_write) {
        c.want_write = true;
        loop_.modify(c.fd.get(), EPOLLIN | EPOLLRDHUP | EPOLLOUT);
      }
      return;
    }
    close(c.id);
    return;
  }
  if (c.want_write) {
    c.want_write = false;
    loop_.modify(c.fd.get(), EPOLLIN | EPOLLRDHUP);
  }
}

void DovecotServer::close(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  for (auto& [rid, r] : c.requests)
    if (r->timer) loop_.cancel_timer(r->timer);
  loop_.remove(c.fd.get());
  conns_.erase(it);
}

}  // namespace mailauth
