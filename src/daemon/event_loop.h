// EventLoop: one thread, epoll, owns every socket of the daemon.
//
// File descriptors get a callback with the epoll event mask; timers are
// one-shot callbacks (failure delays, request deadlines); post() lets any
// thread (the worker pool) hand a callback to the loop thread through an
// eventfd.  All callbacks run on the loop thread, one at a time, so the code
// they call needs no locks.  Only post() and stop() may be called from other
// threads.
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "src/util/fd.h"

namespace mailauth {

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  using FdCallback = std::function<void(uint32_t events)>;
  using TimerId = std::uint64_t;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watch `fd` for `events` (EPOLLIN, EPOLLOUT, …).  The loop does not own fd.
  void add(int fd, uint32_t events, FdCallback callback);
  void modify(int fd, uint32_t events);
  // Stop watching; safe from inside any callback, including fd's own.
  void remove(int fd);

  TimerId add_timer(std::chrono::milliseconds delay, std::function<void()> callback);
  void cancel_timer(TimerId id);  // unknown or fired ids are ignored

  // Any thread: run `fn` on the loop thread soon.
  void post(std::function<void()> fn);

  // Run until stop().  Returns on the loop thread.
  void run();
  // Any thread.
  void stop();

  std::size_t timer_count() const { return timers_.size(); }

 private:
  struct Watch {
    std::uint32_t generation;
    std::shared_ptr<FdCallback> callback;
  };
  void run_timers();
  void run_posted();
  int next_timeout_ms() const;

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
};

}  // namespace mailauth
