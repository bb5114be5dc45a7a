// Counters and a latency histogram for `stats` on the control socket, in
// Prometheus' text exposition format.  Updated on the event loop threads
// (every attempt ends on the loop that took it; the daemon runs one loop per
// core, all recording here), so every member is guarded by one mutex; the
// cache counters are atomics because cache lookups happen on workers.  Shared (std::shared_ptr) by whoever records
// into it, so that a worker job in flight keeps it alive.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace mailauth {

class Metrics {
 public:
  Metrics();

  // One finished attempt.
  void record(const std::string& result, const std::string& proto, const std::string& mech,
              const std::string& backend, double seconds);
  void reload(bool ok) {
    std::lock_guard lock(mutex_);
    (ok ? reloads_ok_ : reloads_failed_)++;
  }
  void penalty(double seconds) {
    std::lock_guard lock(mutex_);
    ++penalized_;
    penalty_seconds_ += seconds;
  }
  void refused_in_flight() {
    std::lock_guard lock(mutex_);
    ++refused_in_flight_;
  }
  // A completion (worker result, timer) that arrived for a request already
  // cancelled, timed out or disconnected: dropped, never delivered.
  void abandoned() {
    std::lock_guard lock(mutex_);
    ++abandoned_;
  }
  unsigned long long abandoned_count() const {
    std::lock_guard lock(mutex_);
    return abandoned_;
  }
  // An attempt answered without a worker round trip (cache hit, cheap
  // scheme, held-back "no": BackendChain::check_password_now).
  void answered_on_loop() {
    std::lock_guard lock(mutex_);
    ++on_loop_;
  }

  std::atomic<unsigned long long> cache_hits{0};
  std::atomic<unsigned long long> cache_misses{0};
  // Successes served from the stale_ttl window while a backend could not
  // answer (Authenticator::record, AuthResult::stale); not counted in hits.
  std::atomic<unsigned long long> cache_stale_served{0};

  // Point-in-time values the daemon fills in when asked.
  struct Gauges {
    std::size_t queue_depth = 0;
    std::size_t workers_busy = 0;
    int workers = 0;
    std::size_t in_flight = 0;
    std::size_t mux_connections = 0;
    std::size_t dovecot_connections = 0;
    std::size_t cache_entries = 0;
  };
  std::string prometheus(const Gauges& g) const;

 private:
  static constexpr std::array<double, 12> kBuckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,   1.0,  2.5,   5.0,  10.0};
  mutable std::mutex mutex_;  // guards everything below
  std::map<std::tuple<std::string, std::string, std::string, std::string>, unsigned long long>
      attempts_;
  std::map<std::string, std::array<unsigned long long, kBuckets.size() + 1>> buckets_;  // per proto
  std::map<std::string, double> sum_;
  std::map<std::string, unsigned long long> count_;
  unsigned long long reloads_ok_ = 0, reloads_failed_ = 0, penalized_ = 0, refused_in_flight_ = 0,
                     abandoned_ = 0, on_loop_ = 0;
  double penalty_seconds_ = 0;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace mailauth
