#include "src/runtime/event_loop.h"

#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace mailauth {

namespace {
[[noreturn]] void fail(const char* what) {
  throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}
constexpr std::uint64_t kWakeupTag = ~std::uint64_t{0};
}  // namespace

EpollLoop::EpollLoop() {
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) fail("epoll_create1");
  wakeup_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wakeup_) fail("eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeupTag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wakeup_.get(), &ev) != 0) fail("epoll_ctl");
}

EpollLoop::~EpollLoop() = default;

void EpollLoop::add(int fd, uint32_t events, FdCallback callback) {
  const std::uint32_t gen = next_generation_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = (static_cast<std::uint64_t>(gen) << 32) | static_cast<std::uint32_t>(fd);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) fail("epoll_ctl(ADD)");
  watches_[fd] = Watch{gen, std::make_shared<FdCallback>(std::move(callback))};
}

void EpollLoop::modify(int fd, uint32_t events) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = (static_cast<std::uint64_t>(it->second.generation) << 32) |
                static_cast<std::uint32_t>(fd);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) fail("epoll_ctl(MOD)");
}

void EpollLoop::remove(int fd) {
  if (watches_.erase(fd) > 0) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EpollLoop::add_timer(Clock::duration delay,
                                        std::function<void()> callback) {
  const TimerId id = next_timer_++;
  const auto when = Clock::now() + delay;
  timers_.emplace(std::make_pair(when, id), std::move(callback));
  timer_index_.emplace(id, when);
  return id;
}

void EpollLoop::cancel_timer(TimerId id) {
  auto it = timer_index_.find(id);
  if (it == timer_index_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  timer_index_.erase(it);
}

void EpollLoop::post(std::function<void()> fn) {
  bool first;
  {
    std::lock_guard lock(posted_mutex_);
    first = posted_.empty();
    posted_.push_back(std::move(fn));
  }
  // One wake-up per batch: if the queue was not empty, a wake-up for it is
  // already pending (run_posted() reads the eventfd before it takes the
  // queue, so a post after that read finds the queue empty and writes).
  if (!first) return;
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wakeup_.get(), &one, sizeof one);
}

void EpollLoop::stop() {
  {
    std::lock_guard lock(posted_mutex_);
    stopping_ = true;
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wakeup_.get(), &one, sizeof one);
}

std::optional<EventLoop::Clock::duration> EpollLoop::next_timeout() const {
  if (timers_.empty()) return std::nullopt;
  const auto delta = timers_.begin()->first.first - Clock::now();
  return delta <= Clock::duration::zero() ? Clock::duration::zero() : delta;
}

void EpollLoop::run_timers() {
  // Two passes: a zero-delay timer added by a timer of the first pass (an
  // answer that closes a connection adds the sweep that frees it) runs in
  // the second, instead of costing another epoll round with a zero timeout.
  // Not more: a timer that keeps re-adding itself must not starve I/O.
  for (int pass = 0; pass < 2; ++pass) {
    const auto now = Clock::now();
    while (!timers_.empty() && timers_.begin()->first.first <= now) {
      auto node = timers_.extract(timers_.begin());
      timer_index_.erase(node.key().second);
      node.mapped()();
    }
  }
}

void EpollLoop::run_posted() {
  std::uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(wakeup_.get(), &count, sizeof count);
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(posted_mutex_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void EpollLoop::run() {
  // Timers here time answers (failure delays, the padding that makes every
  // "no" take a real check's time): no 50 us default slack on this thread.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  {
    std::lock_guard lock(posted_mutex_);
    stopping_ = false;
  }
  epoll_event events[64];
  for (;;) {
    {
      std::lock_guard lock(posted_mutex_);
      if (stopping_) return;
    }
    const auto timeout = next_timeout();
    int n;
    if (precise_) {
      timespec ts{};
      if (timeout) {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*timeout).count();
        ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      }
      n = epoll_pwait2(epoll_.get(), events, 64, timeout ? &ts : nullptr, nullptr);
      if (n < 0 && errno == ENOSYS) {  // kernels before 5.11: millisecond timeouts
        precise_ = false;
        continue;
      }
    } else {
      // Rounded up so a timer never fires early.
      n = epoll_wait(epoll_.get(), events, 64,
                     timeout ? static_cast<int>(
                                   std::chrono::ceil<std::chrono::milliseconds>(*timeout).count())
                             : -1);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const std::uint64_t tag = events[i].data.u64;
      if (tag == kWakeupTag) {
        run_posted();
        continue;
      }
      const int fd = static_cast<int>(tag & 0xffffffffu);
      const auto gen = static_cast<std::uint32_t>(tag >> 32);
      auto it = watches_.find(fd);
      // Skip events for a descriptor removed (or reused) earlier in this batch.
      if (it == watches_.end() || it->second.generation != gen) continue;
      auto callback = it->second.callback;  // keep alive while it runs
      (*callback)(events[i].events);
    }
    run_timers();
  }
}

}  // namespace mailauth
