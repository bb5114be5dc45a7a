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

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "src/net/server.h"
#include "src/runtime/event_loop.h"

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
  void stop_accepting() { server_.stop_accepting(); }

 private:
  class Session;
  std::string execute(const std::string& line);

  Handlers handlers_;
  net::Server server_;  // last: destroyed first
};

}  // namespace mailauth
