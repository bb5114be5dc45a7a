#include "src/daemon/mux_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "src/util/log.h"

namespace mailauth {

namespace {
constexpr std::size_t kDrainLimit = 64 * 1024;
constexpr std::chrono::milliseconds kDrainTimeout{2000};
// What a failed login gets.  libsasl2 and testsaslauthd only look at "NO";
// the text is the same for every reason so it reveals nothing.
constexpr std::string_view kFailReply = "NO authentication failed";
}  // namespace

MuxServer::MuxServer(EventLoop& loop, auth::Authenticator& authenticator,
                     config::MuxConfig config, std::unique_ptr<UnixListener> listener)
    : loop_(loop), auth_(authenticator), config_(std::move(config)),
      listener_(std::move(listener)) {
  loop_.add(listener_->fd(), EPOLLIN, [this](uint32_t) { on_accept(); });
  log::info("mux: listening on " + listener_->path());
}

MuxServer::~MuxServer() {
  stop_accepting();
  while (!conns_.empty()) close(conns_.begin()->first);
}

void MuxServer::stop_accepting() {
  if (!accepting_) return;
  accepting_ = false;
  loop_.remove(listener_->fd());
  listener_->remove_file();
}

void MuxServer::set_options(const config::MuxConfig& next) {
  config_.join_realm = next.join_realm;
  config_.request_timeout = next.request_timeout;
  config_.max_field = next.max_field;
  config_.failure_delay = next.failure_delay;
}

MuxServer::Conn* MuxServer::find(std::uint64_t id) {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second.get();
}

void MuxServer::watch(Conn& c, uint32_t events) {
  const std::uint64_t id = c.id;
  loop_.remove(c.fd.get());
  if (events != 0) loop_.add(c.fd.get(), events, [this, id](uint32_t ev) { on_event(id, ev); });
}

void MuxServer::on_accept() {
  listener_->accept_all("mux", [this](UniqueFd fd) {
    if (conns_.size() >= kMaxConnections) {
      log::warning("mux: " + std::to_string(kMaxConnections) +
                   " connections open; refusing a new one (" + peer_description(fd.get()) + ")");
      return;
    }
    auto c = std::make_unique<Conn>();
    c->id = next_id_++;
    c->peer = peer_description(fd.get());
    c->fd = std::move(fd);
    c->decoder = std::make_unique<mux::Decoder>(config_.max_field);
    const std::uint64_t id = c->id;
    c->timer = loop_.add_timer(config_.request_timeout, [this, id] {
      Conn* conn = find(id);
      if (conn == nullptr) return;
      conn->timer = 0;
      log::warning("mux: " + conn->peer + ": no complete request within " +
                   std::to_string(config_.request_timeout.count()) + " ms; closing");
      close(id);
    });
    Conn& ref = *c;
    conns_.emplace(id, std::move(c));
    watch(ref, EPOLLIN | EPOLLRDHUP);
    read_request(ref);  // the request is often already there
  });
}

void MuxServer::on_event(std::uint64_t id, uint32_t events) {
  Conn* c = find(id);
  if (c == nullptr) return;
  switch (c->state) {
    case State::Reading: read_request(*c); break;
    case State::Writing:
      if (events & (EPOLLERR | EPOLLHUP)) close(id);
      else flush(*c);
      break;
    case State::Draining: drain(*c); break;
    case State::Authenticating: break;
  }
}

void MuxServer::read_request(Conn& c) {
  char buf[4096];
  mux::Decoder::Status st = c.decoder->status();
  while (st == mux::Decoder::Status::NeedMore) {
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      st = c.decoder->feed(std::string_view(buf, static_cast<std::size_t>(n)));
      wipe(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) {
      st = c.decoder->finish();
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // wait for more
    log::warning("mux: " + c.peer + ": read error: " + std::strerror(errno) + "; closing");
    close(c.id);
    return;
  }
  if (c.timer != 0) {
    loop_.cancel_timer(c.timer);
    c.timer = 0;
  }
  if (st == mux::Decoder::Status::Failed) {
    switch (c.decoder->error()) {
      case mux::Error::FieldTooLong:
        log::warning("mux: " + c.peer + ": field " + std::to_string(c.decoder->error_field()) +
                     " is longer than " + std::to_string(config_.max_field) +
                     " bytes; request refused");
        send_reply(c, "NO ");
        return;
      case mux::Error::Truncated:
        log::warning("mux: " + c.peer + ": connection closed in the middle of field " +
                     std::to_string(c.decoder->error_field()) + "; closing");
        break;
      case mux::Error::Empty:
        log::debug("mux: " + c.peer + ": connection closed without a request");
        break;
      case mux::Error::None: break;
    }
    close(c.id);
    return;
  }
  start_auth(c);
}

void MuxServer::start_auth(Conn& c) {
  mux::Request& req = c.decoder->request();
  auth::AuthRequest a;
  a.protocol = "mux";
  a.user = mux::effective_user(req, config_.join_realm);
  a.realm = req.realm;
  a.service = req.service;
  // Field 5 is "ADDR;PORT" (libsasl2's SASL_IPREMOTEPORT); keep the address.
  a.client_addr = req.client_addr.substr(0, req.client_addr.rfind(';'));
  if (auto reply = mux::check_request(req)) {
    // Refused before any backend: still one attempt line (fail2ban sees it).
    auth_.record(a, auth::AuthResult{auth::Outcome::Fail, "-", reply->substr(3)},
                 std::chrono::steady_clock::now());
    send_reply(c, *reply);
    return;
  }
  a.password = std::move(req.password);
  c.decoder.reset();  // wipes what is left of the request bytes
  c.state = State::Authenticating;
  watch(c, 0);
  const std::uint64_t id = c.id;
  auth_.authenticate(std::move(a), [this, id](const auth::AuthResult& result) {
    Conn* conn = find(id);
    if (conn == nullptr) return;
    switch (result.outcome) {
      case auth::Outcome::Ok: send_reply(*conn, "OK"); break;
      case auth::Outcome::Fail:
        if (config_.failure_delay.count() > 0) {
          // Hold the NO back on a timer; no worker waits.
          conn->timer = loop_.add_timer(config_.failure_delay, [this, id] {
            if (Conn* c2 = find(id)) {
              c2->timer = 0;
              send_reply(*c2, kFailReply);
            }
          });
        } else {
          send_reply(*conn, kFailReply);
        }
        break;
      case auth::Outcome::TempFail:
        // No reply: the client sees a failed read, which Postfix turns into
        // a temporary 454 instead of a permanent 535.
        close(id);
        break;
    }
  });
}

void MuxServer::send_reply(Conn& c, std::string_view text) {
  c.out = mux::encode_reply(text);
  c.out_pos = 0;
  c.state = State::Writing;
  c.decoder.reset();
  watch(c, EPOLLOUT);
  flush(c);
}

void MuxServer::flush(Conn& c) {
  while (c.out_pos < c.out.size()) {
    const ssize_t n =
        ::send(c.fd.get(), c.out.data() + c.out_pos, c.out.size() - c.out_pos, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_pos += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    log::debug("mux: " + c.peer + ": client went away before the reply was sent");
    close(c.id);
    return;
  }
  // Reply sent: shut down our side, then drain the client's leftovers so it
  // does not see ECONNRESET (protocols.md A.2).
  ::shutdown(c.fd.get(), SHUT_WR);
  c.state = State::Draining;
  const std::uint64_t id = c.id;
  c.timer = loop_.add_timer(kDrainTimeout, [this, id] {
    if (Conn* conn = find(id)) {
      conn->timer = 0;
      close(id);
    }
  });
  watch(c, EPOLLIN | EPOLLRDHUP);
  drain(c);
}

void MuxServer::drain(Conn& c) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      wipe(buf, static_cast<std::size_t>(n));
      c.drained += static_cast<std::size_t>(n);
      if (c.drained > kDrainLimit) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    break;  // EOF or error
  }
  close(c.id);
}

void MuxServer::close(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (c.timer != 0) loop_.cancel_timer(c.timer);
  loop_.remove(c.fd.get());
  conns_.erase(it);
}

}  // namespace mailauth
