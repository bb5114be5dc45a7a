#include "src/net/connection.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "src/net/server.h"
#include "src/util/log.h"
#include "src/util/secret.h"

namespace mailauth::net {

void Session::on_eof(Connection& c) { c.close(); }

Connection::Connection(Server& server, std::uint64_t id, UniqueFd fd, std::string peer)
    : server_(server), loop_(server.loop()), id_(id), fd_(std::move(fd)), peer_(std::move(peer)) {}

Connection::~Connection() {
  // The server closes a connection before freeing it; this only covers a
  // connection destroyed while still open (server destruction).
  if (!closed_) {
    cancel_timer();
    if (registered_) loop_.remove(fd_.get());
  }
  wipe(out_.data(), out_.size());
}

void Connection::update_watch() {
  if (closed_) return;
  std::uint32_t want = 0;
  if ((reading_ || draining_) && !eof_) want |= EPOLLIN | EPOLLRDHUP;
  if (want_write_) want |= EPOLLOUT;
  if (want == watched_) return;
  // Registered once, removed at close: "not interested now" is a MOD to no
  // events (EPOLLHUP/EPOLLERR still come: on_event() closes then), not a
  // DEL and a later ADD, which cost an allocation in the kernel each time.
  if (!registered_) {
    loop_.add(fd_.get(), want, [this](uint32_t ev) { on_event(ev); });
    registered_ = true;
  } else {
    loop_.modify(fd_.get(), want);
  }
  watched_ = want;
}

void Connection::on_event(uint32_t events) {
  if (closed_) return;
  if (events & EPOLLOUT) flush();
  if (closed_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    if ((reading_ || draining_) && !eof_) readable();
    else if (events & (EPOLLHUP | EPOLLERR)) close();  // nothing to read or write any more
  }
}

void Connection::readable() {
  char buf[8192];
  while (!closed_ && (reading_ || draining_) && !eof_) {
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n > 0) {
      const auto len = static_cast<std::size_t>(n);
      if (draining_) {
        drained_ += len;
        wipe(buf, len);
        if (drained_ > drain_limit_) close();
        continue;
      }
      session_->on_input(*this, std::string_view(buf, len));
      wipe(buf, len);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) {
      log::debug(server_.options().name + ": " + peer_ + ": read error: " + std::strerror(errno) +
                 "; closing");
      close();
      return;
    }
    // EOF.
    eof_ = true;
    if (draining_) {
      close();
      return;
    }
    update_watch();
    session_->on_eof(*this);
    return;
  }
}

void Connection::send(std::string_view data) {
  if (closed_ || draining_) return;
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  }
  out_.append(data);
  if (pending_output() > server_.options().max_output) {
    log::warning(server_.options().name + ": " + peer_ + ": client does not read its replies; closing");
    close();
    return;
  }
  flush();
}

void Connection::flush() {
  while (out_pos_ < out_.size()) {
    const ssize_t n =
        ::send(fd_.get(), out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL);
    if (n > 0) {
      out_pos_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      want_write_ = true;
      update_watch();
      return;
    }
    log::debug(server_.options().name + ": " + peer_ + ": client went away before the reply was sent");
    close();
    return;
  }
  wipe(out_.data(), out_.size());
  out_.clear();
  out_pos_ = 0;
  want_write_ = false;
  if (linger_ && !draining_) start_drain();
  else update_watch();
}

void Connection::set_reading(bool on) {
  if (closed_ || reading_ == on) return;
  reading_ = on;
  update_watch();
  // Input that arrived while not reading is waiting in the socket; a level-
  // triggered watch reports it on the next round.
}

void Connection::linger_close(std::size_t limit, std::chrono::milliseconds timeout) {
  if (closed_ || linger_) return;
  linger_ = true;
  reading_ = false;
  drain_limit_ = limit;
  set_timer(timeout, [this] { close(); });
  if (pending_output() == 0) start_drain();
  else update_watch();
}

void Connection::start_drain() {
  ::shutdown(fd_.get(), SHUT_WR);
  draining_ = true;
  // Usually the client has sent everything and closed already: read first,
  // and watch only if it has not.
  readable();
  update_watch();
}

void Connection::close() {
  if (closed_) return;
  cancel_timer();
  if (registered_) loop_.remove(fd_.get());
  registered_ = false;
  watched_ = 0;
  closed_ = true;
  if (session_) session_->on_close(*this);
  fd_.reset();
  server_.retire(*this);
}

void Connection::set_timer(std::chrono::milliseconds delay, std::function<void()> fn) {
  if (closed_) return;
  cancel_timer();
  timer_ = loop_.add_timer(delay, [this, fn = std::move(fn)] {
    timer_ = 0;
    if (!closed_) fn();
  });
}

void Connection::cancel_timer() {
  if (timer_ != 0) loop_.cancel_timer(timer_);
  timer_ = 0;
}

}  // namespace mailauth::net
