// The control socket ([daemon] control_socket): a small line protocol for
// administrators and mailauth-user.  One command per connection:
//
//   stats          counters, latency histogram, cache hit rate, queue depth,
//                  in Prometheus' text format
//   flush          forget every cached credential      -> "OK flushed N"
//   flush USER     forget USER's cached credentials    -> "OK flushed N"
//   reload         like SIGHUP                         -> "OK reloaded" / "ERROR reason"
//
// The socket is created before privileges are dropped, mode 0600 by
// default: only root (or control_group with control_mode 0660) may use it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "src/daemon/event_loop.h"
#include "src/daemon/listener.h"

namespace mailauth {

class ControlServer {
 public:
  struct Handlers {
    std::function<std::string()> stats;
    std::function<std::size_t(std::optional<std::string> user)> flush;
    std::function<std::string()> reload;  // empty on success, else the error
  };

  ControlServer(EventLoop& loop, std::unique_ptr<UnixListener> listener, Handlers handlers);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  void stop_accepting();

 private:
  struct Conn {
    UniqueFd fd;
    std::string in, out;
    std::size_t out_pos = 0;
    EventLoop::TimerId timer = 0;
    bool answered = false;
  };
  void on_accept();
  void on_event(std::uint64_t id);
  std::string execute(const std::string& line);
  void close(std::uint64_t id);

  EventLoop& loop_;
  std::unique_ptr<UnixListener> listener_;
  Handlers handlers_;
  bool accepting_ = true;
  std::unordered_map<std::uint64_t, std::unique_ptr<Conn>> conns_;
  std::uint64_t next_id_ = 1;
};

}  // namespace mailauth
