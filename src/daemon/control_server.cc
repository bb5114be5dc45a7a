#include "src/daemon/control_server.h"

#include "src/util/log.h"

namespace mailauth {

namespace {
constexpr std::size_t kMaxCommand = 1024;
constexpr std::chrono::milliseconds kTimeout{5000};
constexpr std::size_t kMaxConnections = 64;
}  // namespace

// One command per connection: read a line (EOF ends it too), answer, close.
class ControlServer::Session final : public net::Session {
 public:
  explicit Session(ControlServer& server) : server_(server) {}

  void on_open(net::Connection& c) override { c.set_timer(kTimeout, [&c] { c.close(); }); }

  void on_input(net::Connection& c, std::string_view bytes) override {
    in_.append(bytes);
    if (in_.size() > kMaxCommand) return c.close();
    const auto nl = in_.find('\n');
    if (nl != std::string::npos) answer(c, in_.substr(0, nl));
  }

  void on_eof(net::Connection& c) override {
    if (in_.empty()) return c.close();
    answer(c, in_);  // EOF ends the line
  }

 private:
  void answer(net::Connection& c, std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    c.set_reading(false);
    c.send(server_.execute(line));
    c.linger_close(kMaxCommand, kTimeout);
  }

  ControlServer& server_;
  std::string in_;
};

ControlServer::ControlServer(EventLoop& loop, std::unique_ptr<UnixListener> listener,
                             Handlers handlers)
    : handlers_(std::move(handlers)),
      server_(loop, std::move(listener), net::Server::Options{"control", kMaxConnections, 1 << 20},
              [this](net::Connection&) { return std::make_unique<Session>(*this); }) {
  log::info("control: listening on " + server_.path());
}

ControlServer::~ControlServer() { server_.close_all(); }

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

}  // namespace mailauth
