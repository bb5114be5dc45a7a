// The time source for TTLs, penalties and delays, behind a seam so tests
// can move time forward without sleeping.
#pragma once

#include <chrono>
#include <functional>

namespace mailauth::auth {

using TimePoint = std::chrono::steady_clock::time_point;
using Clock = std::function<TimePoint()>;

inline Clock system_clock() {
  return [] { return std::chrono::steady_clock::now(); };
}

// A clock for tests: starts at an arbitrary point, moves only when told.
class ManualClock {
 public:
  TimePoint now() const { return now_; }
  void advance(std::chrono::milliseconds d) { now_ += d; }
  Clock clock() {
    return [this] { return now_; };
  }

 private:
  TimePoint now_ = TimePoint(std::chrono::hours(1000));
};

}  // namespace mailauth::auth
