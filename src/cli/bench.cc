#include "src/cli/bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <sys/resource.h>

namespace mailauth::cli {

bool load_bench_users(const std::string& path,
                      std::vector<std::pair<std::string, std::string>>* users,
                      std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read " + path;
    return false;
  }
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      *error = path + ":" + std::to_string(n) + ": expected user:password";
      return false;
    }
    users->emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  if (users->empty()) {
    *error = path + ": no users";
    return false;
  }
  return true;
}

namespace {
// This process's CPU time (all threads, user + system), in seconds.
double process_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}
}  // namespace

int run_bench(const BenchOptions& opt, const BenchClientFactory& factory) {
  using Clock = std::chrono::steady_clock;
  std::atomic<long long> started{0};
  long long counts[4] = {0, 0, 0, 0};
  std::mutex lat_mutex;
  std::vector<double> latencies;
  // The client's own cost per request (CPU time of every thread, from before
  // the first connection to after the last answer), so a benchmark can show
  // that the load generator is not what limits the rate.
  const double cpu0 = process_cpu_seconds();
  const long long limit = opt.count > 0 ? opt.count : (opt.duration > 0 ? 0 : 1000);
  const auto t0 = Clock::now();
  const auto deadline =
      opt.duration > 0 ? t0 + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(opt.duration))
                       : Clock::time_point::max();

  std::vector<std::thread> threads;
  for (int t = 0; t < opt.concurrency; ++t) {
    threads.emplace_back([&, t] {
      BenchClient client = factory();
      std::mt19937_64 rng(static_cast<unsigned long>(t) * 7919u + 17u);
      std::uniform_int_distribution<std::size_t> pick(0, opt.users.size() - 1);
      std::uniform_real_distribution<double> coin(0.0, 1.0);
      std::vector<double> mine;
      // Counted per thread and added up at the end: one shared atomic per
      // answer would bounce a cache line between C threads on every request.
      long long my_counts[4] = {0, 0, 0, 0};
      std::string pw;
      for (;;) {
        if (limit > 0 && started.fetch_add(1) >= limit) break;
        if (Clock::now() >= deadline) break;
        const auto& [user, password] = opt.users[pick(rng)];
        const bool wrong = opt.wrong > 0 && coin(rng) < opt.wrong;
        pw.assign(password);
        if (wrong) pw += "-wrong";
        const auto s = Clock::now();
        const BenchOutcome o = client(user, pw);
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
        my_counts[static_cast<int>(o)]++;
      }
      std::lock_guard lock(lat_mutex);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
      for (int i = 0; i < 4; ++i) counts[i] += my_counts[i];
    });
  }
  for (auto& th : threads) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cpu = process_cpu_seconds() - cpu0;

  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    if (latencies.empty()) return 0.0;
    const auto i = static_cast<std::size_t>(p * static_cast<double>(latencies.size() - 1) + 0.5);
    return latencies[std::min(i, latencies.size() - 1)];
  };
  const long long total = static_cast<long long>(latencies.size());
  const double rate = secs > 0 ? static_cast<double>(total) / secs : 0;
  const long long ok = counts[0], no = counts[1], temp = counts[2], err = counts[3];
  const double cpu_us = total > 0 ? cpu * 1e6 / static_cast<double>(total) : 0;
  if (opt.json) {
    std::printf(
        "{\"requests\": %lld, \"seconds\": %.3f, \"concurrency\": %d, \"auth_per_s\": %.1f, "
        "\"ok\": %lld, \"no\": %lld, \"tempfail\": %lld, \"errors\": %lld, \"p50_ms\": %.3f, "
        "\"p90_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, \"client_cpu_s\": %.3f, "
        "\"client_cpu_us_per_req\": %.2f}\n",
        total, secs, opt.concurrency, rate, ok, no, temp, err, pct(0.50), pct(0.90), pct(0.99),
        latencies.empty() ? 0.0 : latencies.back(), cpu, cpu_us);
  } else {
    std::printf("requests:    %lld in %.2f s, concurrency %d\n", total, secs, opt.concurrency);
    std::printf("throughput:  %.1f auth/s\n", rate);
    std::printf("answers:     ok %lld, no %lld, tempfail %lld, errors %lld\n", ok, no, temp, err);
    std::printf("latency ms:  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", pct(0.50), pct(0.90),
                pct(0.99), latencies.empty() ? 0.0 : latencies.back());
    std::printf("client CPU:  %.3f s, %.2f us per request\n", cpu, cpu_us);
  }
  return (ok + no) > 0 ? 0 : 3;
}

}  // namespace mailauth::cli
