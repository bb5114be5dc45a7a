// mailauth-test --bench: a closed-loop load generator.  C threads each run
// one client that authenticates, waits for the answer and starts again, until
// --count requests are done or --duration seconds have passed.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailauth::cli {

enum class BenchOutcome { Ok, No, TempFail, Error };

struct BenchOptions {
  std::vector<std::pair<std::string, std::string>> users;  // user, password
  long long count = 0;       // 0: no limit by count
  double duration = 0;       // seconds; 0: no limit by time
  int concurrency = 1;
  double wrong = 0;          // fraction of requests sent with a wrong password
  bool json = false;
};

// One client per thread: called once per thread, returns the function that
// performs one authentication.
using BenchClient = std::function<BenchOutcome(std::string_view user, std::string_view password)>;
using BenchClientFactory = std::function<BenchClient()>;

// Load `user:password` lines.  Returns false with `error` set on failure.
bool load_bench_users(const std::string& path,
                      std::vector<std::pair<std::string, std::string>>* users, std::string* error);

// Runs the benchmark and prints the report; returns the exit status (0, or 3
// when no request got an answer).
int run_bench(const BenchOptions& options, const BenchClientFactory& factory);

}  // namespace mailauth::cli
