// mailauth-sim: run simulated worlds (tests/sim/sim.h) from seeds.
//
//   mailauth-sim [--seed N] [--sessions N] [--worlds N] [--seconds S] [--trace]
//                [--check-replay N] [--mux-only|--dovecot-only]
//
// World i runs from seed N+i; worlds run until at least --sessions client
// sessions have been played (or --seconds have passed, if given).  The first
// broken invariant stops the run and prints the seed that replays it:
//   mailauth-sim --seed <that seed> --worlds 1 --trace
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "src/password/schemes.h"
#include "src/util/log.h"
#include "tests/sim/sim.h"

int main(int argc, char** argv) {
  using namespace mailauth;
  std::uint64_t seed = 1;
  std::uint64_t sessions = 1000;
  std::uint64_t worlds = 0;  // 0: as many as the sessions need
  double seconds = 0;
  std::uint64_t replay = 0;  // run the first N worlds twice and compare
  sim::Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "mailauth-sim: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::strtoull(argv[++i], nullptr, 10);
    };
    if (a == "--seed") seed = value();
    else if (a == "--sessions") sessions = value();
    else if (a == "--worlds") worlds = value();
    else if (a == "--seconds") seconds = static_cast<double>(value());
    else if (a == "--trace") opt.trace = true;
    else if (a == "--check-replay") replay = value();
    else if (a == "--mux-only") opt.dovecot = false;
    else if (a == "--dovecot-only") opt.mux = false;
    else {
      std::fprintf(stderr, "usage: mailauth-sim [--seed N] [--sessions N] [--worlds N] [--seconds S] "
                           "[--trace] [--check-replay N] [--mux-only|--dovecot-only]\n");
      return 2;
    }
  }
  sim::use_deterministic_randomness();
  password::init();
  log::init(log::Target::Stderr, opt.trace ? log::Level::Debug : log::Level::Error, "mailauth-sim");
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t played = 0, requests = 0, oks = 0, steps = 0, n = 0;
  for (;; ++n) {
    if (worlds != 0 ? n >= worlds : (seconds > 0 ? false : played >= sessions)) break;
    if (seconds > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >= seconds)
      break;
    sim::SeededRng rng(seed + n);
    const sim::Report r = sim::run_world(rng, opt);
    if (n < replay && r.ok) {
      sim::SeededRng again(seed + n);
      const sim::Report r2 = sim::run_world(again, opt);
      if (r2.steps != r.steps || r2.requests != r.requests || r2.ok_answers != r.ok_answers ||
          !r2.ok) {
        std::printf("mailauth-sim: world seed %llu did not replay the same way\n0 passed, 1 failed\n",
                    static_cast<unsigned long long>(seed + n));
        return 1;
      }
    }
    played += r.sessions;
    requests += r.requests;
    oks += r.ok_answers;
    steps += r.steps;
    if (!r.ok) {
      std::printf("mailauth-sim: FAILED in world seed %llu: %s\n"
                  "replay: mailauth-sim --seed %llu --worlds 1 --trace\n",
                  static_cast<unsigned long long>(seed + n), r.failure.c_str(),
                  static_cast<unsigned long long>(seed + n));
      std::printf("0 passed, 1 failed\n");
      return 1;
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("mailauth-sim: %llu worlds (seeds %llu..%llu), %llu sessions, %llu requests, %llu OK "
              "answers, %llu steps, %.1f s: every invariant held\n",
              static_cast<unsigned long long>(n), static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed + n - 1), static_cast<unsigned long long>(played),
              static_cast<unsigned long long>(requests), static_cast<unsigned long long>(oks),
              static_cast<unsigned long long>(steps), secs);
  return 0;
}
