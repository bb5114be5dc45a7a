// The deterministic simulator of the daemon core.
//
// One seeded scheduler owns time, readiness and worker completions.  It runs
// the real MuxServer, DovecotServer, Authenticator, credential cache and
// brute-force policy — over real socketpairs, on a simulated event loop
// (SimLoop) and executor (SimExecutor) — against simulated clients, valid
// and hostile: pipelining, CANCEL, id reuse, resets at any byte, slow
// readers, garbage lines; with backend answers, temporary failures,
// exceptions and stalls, timers, password changes and reloads (with and
// without [cache] and [policy]) interleaved in any order.
//
// After every step it checks what the daemon promises:
//   - a reply goes only to a request that asked, with that request's user;
//   - no OK unless that request's password was right for that user at some
//     moment while it was in flight;
//   - every request gets at most one final answer, and every request the
//     client still waits for is answered before the world goes quiet;
//   - when all clients have gone: no connection, no request in flight, no
//     policy slot, no timer, no queued job is left.
// Every decision comes from one Rng, so a run replays exactly from its seed
// (or, for the fuzz targets, from the fuzzer's bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "src/runtime/event_loop.h"
#include "src/runtime/executor.h"

namespace mailauth::sim {

// Where every decision comes from.
class Rng {
 public:
  virtual ~Rng() = default;
  virtual std::uint64_t next() = 0;
  // True once a byte-driven source has nothing left (then next() is 0).
  virtual bool exhausted() const { return false; }
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
  bool chance(unsigned percent) { return below(100) < percent; }
};

// SplitMix64.
class SeededRng final : public Rng {
 public:
  explicit SeededRng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() override;

 private:
  std::uint64_t state_;
};

// Decisions read from a byte string (libFuzzer's input); once it is used
// up, from a generator seeded by its length, so a world always settles.
class ByteRng final : public Rng {
 public:
  ByteRng(const std::uint8_t* data, std::size_t size) : data_(data), size_(size), rest_(size) {}
  std::uint64_t next() override;
  bool exhausted() const override { return pos_ >= size_; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  SeededRng rest_;
};

// An EventLoop whose time moves only when the scheduler says, and whose
// events are delivered one at a time, in an order the Rng picks.
class SimLoop final : public EventLoop {
 public:
  SimLoop();
  ~SimLoop() override;

  void add(int fd, uint32_t events, FdCallback callback) override;
  void modify(int fd, uint32_t events) override;
  void remove(int fd) override;
  TimerId add_timer(Clock::duration delay, std::function<void()> callback) override;
  void cancel_timer(TimerId id) override;
  void post(std::function<void()> fn) override { posted_.push_back(std::move(fn)); }
  Clock::time_point now() const override { return now_; }
  std::size_t timer_count() const override { return timers_.size(); }

  // Scheduler side.
  // Watched descriptors that are ready now, with the events to deliver.
  std::vector<std::pair<int, uint32_t>> ready() const;
  void dispatch(int fd, uint32_t events);
  bool has_posted() const { return !posted_.empty(); }
  void run_posted(Rng& rng);       // one posted callback, chosen by rng
  bool timer_due() const;
  void run_due_timer();            // the earliest due timer
  bool advance_to_next_timer();    // moves time; false when no timer is set
  void advance(std::chrono::milliseconds d) { now_ += d; }
  std::size_t watched() const { return watches_.size(); }

 private:
  struct Watch {
    uint32_t events;
    std::uint64_t generation;
    std::shared_ptr<FdCallback> callback;
  };
  Clock::time_point now_;
  std::map<int, Watch> watches_;
  std::uint64_t next_generation_ = 1;
  std::map<std::pair<Clock::time_point, TimerId>, std::function<void()>> timers_;
  std::map<TimerId, Clock::time_point> timer_index_;
  TimerId next_timer_ = 1;
  std::vector<std::function<void()>> posted_;
};

// An Executor whose jobs run when the scheduler picks them, in any order;
// their continuations go back through the loop's posted queue.
class SimExecutor final : public Executor {
 public:
  SimExecutor(SimLoop& loop, std::size_t capacity) : loop_(loop), capacity_(capacity) {}
  bool submit(Job job, Continuation if_thrown) override;
  bool has_jobs() const { return !jobs_.empty(); }
  std::size_t queued() const { return jobs_.size(); }
  void run_one(Rng& rng);

 private:
  SimLoop& loop_;
  std::size_t capacity_;
  std::vector<std::pair<Job, Continuation>> jobs_;
};

// libsodium's randomness (cache keys, handshake cookies, CRAM-MD5
// challenges) from a seeded generator instead of the kernel, so that a world
// replays exactly: cache shards, and so evictions, depend on keyed hashes.
// Call once, before password::init() (sodium_init); run_world() reseeds it.
void use_deterministic_randomness();
void reseed_randomness(std::uint64_t seed);

struct Options {
  bool mux = true;
  bool dovecot = true;
  int sessions = 24;        // client connections over the world's life
  int max_concurrent = 6;   // client connections open at once
  std::size_t max_steps = 400000;
  bool trace = false;       // print every step (to replay a failure by eye)
};

struct Report {
  bool ok = true;
  std::string failure;      // the broken invariant and its context
  std::size_t sessions = 0;
  std::size_t requests = 0;
  std::size_t ok_answers = 0;
  std::size_t steps = 0;
};

// One world: build the daemon core, play `options.sessions` clients against
// it, check the invariants, tear everything down.
Report run_world(Rng& rng, const Options& options);

}  // namespace mailauth::sim
