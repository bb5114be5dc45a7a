// SimLoop and SimExecutor: the scheduler's hands on time, readiness and work.
#include <poll.h>
#include <sodium.h>

#include <algorithm>
#include <stdexcept>

#include "tests/sim/sim.h"

namespace mailauth::sim {

namespace {
std::uint64_t g_random_state = 1;
std::uint64_t next_random() {
  std::uint64_t z = (g_random_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
const char* random_name() { return "mailauth-sim"; }
uint32_t random_u32() { return static_cast<uint32_t>(next_random()); }
void random_buf(void* buf, size_t size) {
  auto* p = static_cast<unsigned char*>(buf);
  for (size_t i = 0; i < size; ++i) p[i] = static_cast<unsigned char>(next_random());
}
randombytes_implementation g_impl = {random_name, random_u32, nullptr, nullptr, random_buf, nullptr};
}  // namespace

void use_deterministic_randomness() {
  if (randombytes_set_implementation(&g_impl) != 0) throw std::runtime_error("randombytes_set_implementation");
}

void reseed_randomness(std::uint64_t seed) { g_random_state = seed; }

std::uint64_t SeededRng::next() {
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t ByteRng::next() {
  if (pos_ >= size_) return rest_.next();
  std::uint64_t v = 0;
  for (int i = 0; i < 2 && pos_ < size_; ++i) v = (v << 8) | data_[pos_++];
  return v;
}

SimLoop::SimLoop() : now_(Clock::time_point(std::chrono::hours(1000))) {}
SimLoop::~SimLoop() = default;

void SimLoop::add(int fd, uint32_t events, FdCallback callback) {
  if (watches_.count(fd)) throw std::logic_error("SimLoop::add: fd already watched");
  watches_[fd] = Watch{events, next_generation_++, std::make_shared<FdCallback>(std::move(callback))};
}

void SimLoop::modify(int fd, uint32_t events) {
  auto it = watches_.find(fd);
  if (it != watches_.end()) it->second.events = events;
}

void SimLoop::remove(int fd) { watches_.erase(fd); }

EventLoop::TimerId SimLoop::add_timer(Clock::duration delay,
                                      std::function<void()> callback) {
  const TimerId id = next_timer_++;
  const auto when = now_ + delay;
  timers_.emplace(std::make_pair(when, id), std::move(callback));
  timer_index_.emplace(id, when);
  return id;
}

void SimLoop::cancel_timer(TimerId id) {
  auto it = timer_index_.find(id);
  if (it == timer_index_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  timer_index_.erase(it);
}

std::vector<std::pair<int, uint32_t>> SimLoop::ready() const {
  std::vector<pollfd> fds;
  std::vector<uint32_t> want;
  for (const auto& [fd, w] : watches_) {
    short ev = 0;
    if (w.events & EPOLLIN) ev |= POLLIN;
    if (w.events & EPOLLOUT) ev |= POLLOUT;
    if (w.events & EPOLLRDHUP) ev |= POLLRDHUP;
    fds.push_back(pollfd{fd, ev, 0});
    want.push_back(w.events);
  }
  std::vector<std::pair<int, uint32_t>> out;
  if (fds.empty() || ::poll(fds.data(), fds.size(), 0) <= 0) return out;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    uint32_t ev = 0;
    const short r = fds[i].revents;
    if ((r & POLLIN) && (want[i] & EPOLLIN)) ev |= EPOLLIN;
    if ((r & POLLOUT) && (want[i] & EPOLLOUT)) ev |= EPOLLOUT;
    if ((r & POLLRDHUP) && (want[i] & EPOLLRDHUP)) ev |= EPOLLRDHUP;
    if (r & POLLHUP) ev |= EPOLLHUP;
    if (r & POLLERR) ev |= EPOLLERR;
    if (ev != 0) out.emplace_back(fds[i].fd, ev);
  }
  // In the order the descriptors were watched, not by number: descriptor
  // numbers differ between builds (sanitizers open their own), and a seed
  // must replay the same world in every build.
  std::sort(out.begin(), out.end(), [this](const auto& a, const auto& b) {
    return watches_.at(a.first).generation < watches_.at(b.first).generation;
  });
  return out;
}

void SimLoop::dispatch(int fd, uint32_t events) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  auto callback = it->second.callback;  // alive while it runs, as in EpollLoop
  (*callback)(events);
}

void SimLoop::run_posted(Rng& rng) {
  if (posted_.empty()) return;
  const std::size_t i = rng.below(posted_.size());
  auto fn = std::move(posted_[i]);
  posted_.erase(posted_.begin() + static_cast<std::ptrdiff_t>(i));
  fn();
}

bool SimLoop::timer_due() const { return !timers_.empty() && timers_.begin()->first.first <= now_; }

void SimLoop::run_due_timer() {
  if (!timer_due()) return;
  auto node = timers_.extract(timers_.begin());
  timer_index_.erase(node.key().second);
  node.mapped()();
}

bool SimLoop::advance_to_next_timer() {
  if (timers_.empty()) return false;
  if (timers_.begin()->first.first > now_) now_ = timers_.begin()->first.first;
  return true;
}

bool SimExecutor::submit(Job job, Continuation if_thrown) {
  if (jobs_.size() >= capacity_) return false;
  jobs_.emplace_back(std::move(job), std::move(if_thrown));
  return true;
}

void SimExecutor::run_one(Rng& rng) {
  if (jobs_.empty()) return;
  const std::size_t i = rng.below(jobs_.size());
  auto [job, if_thrown] = std::move(jobs_[i]);
  jobs_.erase(jobs_.begin() + static_cast<std::ptrdiff_t>(i));
  Continuation done;
  try {
    done = job();
  } catch (...) {  // as WorkerPool: whatever a job throws, it still answers
    done = std::move(if_thrown);
  }
  if (done) loop_.post(std::move(done));
}

}  // namespace mailauth::sim
