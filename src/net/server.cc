#include "src/net/server.h"

#include <cerrno>
#include <cstring>

#include "src/util/log.h"

namespace mailauth::net {

namespace {
constexpr std::chrono::milliseconds kAcceptBackoff{250};
constexpr std::chrono::seconds kRefusalLogInterval{10};
}  // namespace

Server::Server(EventLoop& loop, std::unique_ptr<UnixListener> listener, Options options,
               SessionFactory factory)
    : Server(loop, std::make_shared<SharedListener>(std::move(listener), options.max_connections),
             std::move(options), std::move(factory)) {}

Server::Server(EventLoop& loop, std::shared_ptr<SharedListener> shared, Options options,
               SessionFactory factory)
    : loop_(loop),
      shared_(shared ? std::move(shared)
                     : std::make_shared<SharedListener>(nullptr, options.max_connections)),
      listener_(shared_->listener.get()),
      options_(std::move(options)), factory_(std::move(factory)) {
  if (listener_) watch_listener();
}

void Server::watch_listener() {
  loop_.add(listener_->fd(), EPOLLIN | EPOLLEXCLUSIVE, [this](uint32_t) { on_accept(); });
  accepting_ = true;
}

Server::~Server() {
  stop_accepting();
  close_all();
  if (sweep_timer_ != 0) loop_.cancel_timer(sweep_timer_);
}

const std::string& Server::path() const {
  static const std::string none;
  return listener_ ? listener_->path() : none;
}

void Server::stop_accepting() {
  stopped_ = true;
  if (resume_timer_ != 0) loop_.cancel_timer(resume_timer_);
  resume_timer_ = 0;
  if (accepting_) loop_.remove(listener_->fd());
  accepting_ = false;
  if (listener_) listener_->remove_file();
}

void Server::close_all() {
  while (!conns_.empty()) conns_.begin()->second->close();
  graveyard_.clear();
}

void Server::note_refusal(const std::string& what) {
  ++refused_;
  refused_what_ = what;
  const auto now = loop_.now();
  if (refused_logged_ != EventLoop::Clock::time_point{} && now - refused_logged_ < kRefusalLogInterval)
    return;
  log::warning(options_.name + ": refused " + std::to_string(refused_) +
               " connection(s) since the last report: " + refused_what_);
  refused_ = 0;
  refused_logged_ = now;
}

void Server::on_accept() {
  const int error = listener_->accept_all([this](UniqueFd fd) { adopt(std::move(fd)); });
  if (error != 0) pause_accepting(error);
}

void Server::pause_accepting(int error) {
  // Out of descriptors (or kernel memory): the pending connection stays in
  // the backlog and the listener stays readable, so accepting again at once
  // would spin.  Serve the open connections, try again after a back-off.
  note_refusal(std::string("accept: ") + std::strerror(error) + "; pausing accept for " +
               std::to_string(kAcceptBackoff.count()) + " ms");
  if (!accepting_) return;
  loop_.remove(listener_->fd());
  accepting_ = false;
  resume_timer_ = loop_.add_timer(kAcceptBackoff, [this] {
    resume_timer_ = 0;
    if (stopped_) return;
    watch_listener();
  });
}

Connection* Server::adopt(UniqueFd fd) {
  const std::size_t max = shared_->max_connections.load(std::memory_order_relaxed);
  if (shared_->open.fetch_add(1, std::memory_order_relaxed) >= max) {
    shared_->open.fetch_sub(1, std::memory_order_relaxed);
    note_refusal(std::to_string(max) + " connections open (" + peer_description(fd.get()) + ")");
    return nullptr;
  }
  const std::uint64_t id = shared_->next_id.fetch_add(1, std::memory_order_relaxed);
  std::string peer = peer_description(fd.get());
  auto owned = std::make_unique<Connection>(*this, id, std::move(fd), std::move(peer));
  Connection& c = *owned;
  conns_.emplace(id, std::move(owned));
  c.session_ = factory_(c);
  log::debug(options_.name + ": connection from " + c.peer());
  c.update_watch();
  c.session_->on_open(c);
  if (!c.closed()) c.readable();  // the request is often there already
  return c.closed() ? nullptr : &c;
}

void Server::retire(Connection& c) {
  auto it = conns_.find(c.id());
  if (it == conns_.end()) return;
  graveyard_.push_back(std::move(it->second));
  conns_.erase(it);
  shared_->open.fetch_sub(1, std::memory_order_relaxed);
  // Freed after the event that closed it has been handled.
  if (sweep_timer_ == 0)
    sweep_timer_ = loop_.add_timer(std::chrono::milliseconds(0), [this] {
      sweep_timer_ = 0;
      sweep();
    });
}

void Server::sweep() {
  std::vector<std::unique_ptr<Connection>> dead;
  dead.swap(graveyard_);
  dead.clear();
}

}  // namespace mailauth::net
