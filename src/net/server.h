// Server: a listening socket, its table of connections, and the protocol
// sessions they carry.  mux, Dovecot and control servers are protocol
// adapters over it (a Session per connection); a new listener kind or
// protocol adds an adapter, never another accept/flush/close.
//
//   accept ─► Connection (fd, buffers, deadline) ─► Session (the protocol)
//   close  ─► Session::on_close ─► socket released ─► freed after the event
//
// At the descriptor limit (EMFILE/ENFILE) the server stops accepting for a
// short back-off and keeps serving open connections; refusals are logged
// once per interval with a count, never once per attempt.
//
// Loop thread only, but for SharedListener: one listening socket may be
// served by a Server on each of several loops (one per core), which then
// share its connection count, limit and connection ids.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "src/net/connection.h"
#include "src/net/listener.h"
#include "src/runtime/event_loop.h"

namespace mailauth::net {

// A listening socket and what every Server accepting on it shares, whatever
// loop thread it runs on: the number of connections open (so that
// max_connections bounds the daemon, not each loop) and the connection ids
// (unique in the process: Dovecot's CUID is one).  Thread-safe.
struct SharedListener {
  explicit SharedListener(std::unique_ptr<UnixListener> l, std::size_t max = 4096)
      : listener(std::move(l)), max_connections(max) {}
  std::unique_ptr<UnixListener> listener;  // may be null: connections come through adopt()
  std::atomic<std::size_t> open{0};
  std::atomic<std::size_t> max_connections;
  std::atomic<std::uint64_t> next_id{1};
  std::atomic<bool> announced{false};
};

class Server {
 public:
  struct Options {
    std::string name = "server";      // "mux", "dovecot", "control": log prefix
    std::size_t max_connections = 4096;
    std::size_t max_output = 1 << 20;  // bytes queued for a peer that does not read
  };
  using SessionFactory = std::function<std::unique_ptr<Session>(Connection&)>;

  // `listener` may be null: connections then come only through adopt().
  // Its own SharedListener, with options.max_connections.
  Server(EventLoop& loop, std::unique_ptr<UnixListener> listener, Options options,
         SessionFactory factory);
  // One of the servers of `shared` (each on its own loop); options'
  // max_connections is ignored (the shared one counts).  The listening
  // socket is watched with EPOLLEXCLUSIVE, so a new connection wakes one
  // loop, not all of them.
  Server(EventLoop& loop, std::shared_ptr<SharedListener> shared, Options options,
         SessionFactory factory);
  ~Server();  // closes every connection (sessions see on_close)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Stop accepting and remove the socket file; open connections go on.
  void stop_accepting();
  // Take a connected socket as accept would (the simulator and tests use
  // this directly).  Returns null when it was refused or closed at once.
  Connection* adopt(UniqueFd fd);
  // Close every connection now (shutdown).
  void close_all();

  // On this loop; total_connections(): on every server of the listener.
  std::size_t connections() const { return conns_.size(); }
  std::size_t total_connections() const { return shared_->open.load(std::memory_order_relaxed); }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [id, c] : conns_) f(*c);
  }
  const Options& options() const { return options_; }
  // For every server of the listener.  Any thread.
  void set_max_connections(std::size_t n) { shared_->max_connections.store(n); }
  EventLoop& loop() { return loop_; }
  const std::string& path() const;
  // True for the first caller among the servers of the listener: the one
  // that logs "listening on".
  bool first_on_listener() { return !shared_->announced.exchange(true); }

 private:
  friend class Connection;
  void on_accept();
  void watch_listener();
  void pause_accepting(int error);
  void retire(Connection& c);
  void sweep();
  void note_refusal(const std::string& what);

  EventLoop& loop_;
  std::shared_ptr<SharedListener> shared_;
  UnixListener* listener_;  // shared_->listener.get()
  Options options_;
  SessionFactory factory_;
  bool accepting_ = false;   // the listener is watched
  bool stopped_ = false;     // stop_accepting() was called
  EventLoop::TimerId resume_timer_ = 0;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> conns_;
  std::vector<std::unique_ptr<Connection>> graveyard_;
  EventLoop::TimerId sweep_timer_ = 0;
  // Refusals (connection limit, descriptor limit) since the last log line.
  std::size_t refused_ = 0;
  std::string refused_what_;
  EventLoop::Clock::time_point refused_logged_{};
};

}  // namespace mailauth::net
