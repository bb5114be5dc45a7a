#include "src/daemon/control_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "src/util/log.h"

namespace mailauth {

namespace {
constexpr std::size_t kMaxCommand = 1024;
constexpr std::chrono::milliseconds kTimeout{5000};
constexpr std::size_t kMaxConnections = 64;
}  // namespace

ControlServer::ControlServer(EventLoop& loop, std::unique_ptr<UnixListener> listener,
                             Handlers handlers)
    : loop_(loop), listener_(std::move(listener)), handlers_(std::move(handlers)) {
  loop_.add(listener_->fd(), EPOLLIN, [this](uint32_t) { on_accept(); });
  log::info("control: listening on " + listener_->path());
}

ControlServer::~ControlServer() {
  stop_accepting();
  while (!conns_.empty()) close(conns_.begin()->first);
}

void ControlServer::stop_accepting() {
  if (!accepting_) return;
  accepting_ = false;
  loop_.remove(listener_->fd());
  listener_->remove_file();
}

void ControlServer::on_accept() {
  listener_->accept_all("control", [this](UniqueFd fd) {
    if (conns_.size() >= kMaxConnections) return;
    const std::uint64_t id = next_id_++;
    auto c = std::make_unique<Conn>();
    const int raw = fd.get();
    c->fd = std::move(fd);
    c->timer = loop_.add_timer(kTimeout, [this, id] {
      if (auto it = conns_.find(id); it != conns_.end()) {
        it->second->timer = 0;
        close(id);
      }
    });
    conns_.emplace(id, std::move(c));
    loop_.add(raw, EPOLLIN | EPOLLRDHUP, [this, id](uint32_t) { on_event(id); });
  });
}

void ControlServer::on_event(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (!c.answered) {
    char buf[512];
    for (;;) {
      const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
      if (n > 0) {
        c.in.append(buf, static_cast<std::size_t>(n));
        if (c.in.size() > kMaxCommand) return close(id);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      if (c.in.find('\n') == std::string::npos && !c.in.empty()) c.in += '\n';  // EOF ends the line
      if (c.in.empty()) return close(id);
      break;
    }
    const auto nl = c.in.find('\n');
    if (nl == std::string::npos) return;
    std::string line = c.in.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    c.out = execute(line);
    c.answered = true;
    loop_.modify(c.fd.get(), EPOLLOUT);
  }
  while (c.out_pos < c.out.size()) {
    const ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_pos, c.out.size() - c.out_pos,
                             MSG_NOSIGNAL);
    if (n > 0) {
      c.out_pos += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  close(id);
}

std::string ControlServer::execute(const std::string& line) {
  const auto space = line.find(' ');
  const std::string cmd = line.substr(0, space);
  const std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
  if (cmd == "stats" && arg.empty()) return handlers_.stats();
  if (cmd == "flush") {
    const std::size_t n = handlers_.flush(arg.empty() ? std::nullopt : std::optional(arg));
    log::info("control: flush" + (arg.empty() ? std::string(" (all)") : log::kv("user", arg)) +
              log::kv("entries", static_cast<long long>(n)));
    return "OK flushed " + std::to_string(n) + "\n";
  }
  if (cmd == "reload" && arg.empty()) {
    const std::string error = handlers_.reload();
    return error.empty() ? "OK reloaded\n" : "ERROR " + error + "\n";
  }
  return "ERROR unknown command; use stats, flush [USER] or reload\n";
}

void ControlServer::close(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  if (it->second->timer) loop_.cancel_timer(it->second->timer);
  loop_.remove(it->second->fd.get());
  conns_.erase(it);
}

}  // namespace mailauth
