// Executor: where blocking work (hash checks, SQL, PAM) runs, off the loop.
//
// The contract every implementation keeps (WorkerPool in the daemon, a
// seeded scheduler in tests/sim):
//   - submit() returns false when the work cannot be taken (queue full,
//     shutting down); then neither `job` nor `if_thrown` ever runs.
//   - Otherwise `job` runs once, on some thread, and exactly one of its
//     returned continuation or `if_thrown` (when `job` threw anything) later
//     runs on the loop thread.  So a caller that counted the request in can
//     always count it out again.
#pragma once

#include <cstddef>
#include <functional>

namespace mailauth {

class Executor {
 public:
  using Continuation = std::function<void()>;
  using Job = std::function<Continuation()>;

  virtual ~Executor() = default;
  // Loop thread.
  virtual bool submit(Job job, Continuation if_thrown) = 0;
};

}  // namespace mailauth
