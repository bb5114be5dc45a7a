// The event loop: one thread owns every socket of the daemon.
//
// EventLoop is the interface the servers and the authenticator program
// against; EpollLoop is the daemon's implementation, and the deterministic
// simulator (tests/sim) has another that owns time and readiness itself.
//
// File descriptors get a callback with the epoll event mask; timers are
// one-shot callbacks (failure delays, request deadlines, deferred frees);
// post() lets any thread (the worker pool) hand a callback to the loop
// thread.  All callbacks run on the loop thread, one at a time, so the code
// they call needs no locks.  Only post() and stop() may be called from other
// threads.
//
// Removing a descriptor or cancelling a timer from inside any callback is
// safe: an event for a descriptor removed (or reused) earlier in the same
// round is not delivered, and a cancelled timer never fires.
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "src/util/fd.h"

namespace mailauth {

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  using FdCallback = std::function<void(uint32_t events)>;
  using TimerId = std::uint64_t;

  EventLoop() = default;
  virtual ~EventLoop() = default;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watch `fd` for `events` (EPOLLIN, EPOLLOUT, …).  The loop does not own fd.
  virtual void add(int fd, uint32_t events, FdCallback callback) = 0;
  virtual void modify(int fd, uint32_t events) = 0;
  // Stop watching; safe from inside any callback, including fd's own.
  virtual void remove(int fd) = 0;

  // A one-shot timer; a zero delay runs after the current round of events.
  // Precise to the microsecond where the kernel allows (answer-time
  // equalisation depends on it); never early.
  virtual TimerId add_timer(Clock::duration delay, std::function<void()> callback) = 0;
  virtual void cancel_timer(TimerId id) = 0;  // unknown or fired ids are ignored

  // Any thread: run `fn` on the loop thread soon.
  virtual void post(std::function<void()> fn) = 0;

  // The loop's idea of now: what timers are measured against.
  virtual Clock::time_point now() const = 0;

  virtual std::size_t timer_count() const = 0;
};

// The daemon's loop: epoll, an eventfd for post()/stop(), a time-ordered map
// of timers.
class EpollLoop final : public EventLoop {
 public:
  EpollLoop();
  ~EpollLoop() override;

  void add(int fd, uint32_t events, FdCallback callback) override;
  void modify(int fd, uint32_t events) override;
  void remove(int fd) override;
  TimerId add_timer(Clock::duration delay, std::function<void()> callback) override;
  void cancel_timer(TimerId id) override;
  void post(std::function<void()> fn) override;
  Clock::time_point now() const override { return Clock::now(); }
  std::size_t timer_count() const override { return timers_.size(); }

  // Run until stop().  Returns on the loop thread.
  void run();
  // Any thread.
  void stop();

 private:
  struct Watch {
    std::uint32_t generation;
    std::shared_ptr<FdCallback> callback;
  };
  void run_timers();
  void run_posted();
  // Until the next timer: nullopt for none.
  std::optional<Clock::duration> next_timeout() const;

  UniqueFd epoll_;
  UniqueFd wakeup_;  // eventfd for post()/stop()
  std::unordered_map<int, Watch> watches_;
  std::uint32_t next_generation_ = 1;

  std::map<std::pair<Clock::time_point, TimerId>, std::function<void()>> timers_;
  std::unordered_map<TimerId, Clock::time_point> timer_index_;
  TimerId next_timer_ = 1;

  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;
  bool stopping_ = false;  // guarded by posted_mutex_
  bool precise_ = true;    // epoll_pwait2 (nanosecond timeouts) is available
};

}  // namespace mailauth
