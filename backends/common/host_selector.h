// HostSelector: failover among the servers of one networked backend (the
// hosts of mysql, the URIs of ldap), shared so both fail over alike.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <vector>

namespace mailauth::backend {

// Failover bookkeeping for the servers of one backend, in configured order.
//
// A host that fails to connect is "down" for a backoff period (5 s, doubling
// up to 60 s) during which it is skipped in favour of the hosts after it, so
// a dead primary does not cost every request a connect timeout.  When every
// host is down, each is still probed at most once per `probe_interval` (by
// one thread; the others fail fast), so a database that comes back is used
// again within about a second, with no restart.  Time is passed in, so the
// policy is unit-tested without sleeping.
class HostSelector {
 public:
  using Clock = std::chrono::steady_clock;

  struct Policy {
    Clock::duration first_backoff = std::chrono::seconds(5);
    Clock::duration max_backoff = std::chrono::seconds(60);
    Clock::duration probe_interval = std::chrono::seconds(1);
  };

  explicit HostSelector(std::size_t hosts, Policy policy);
  explicit HostSelector(std::size_t hosts) : HostSelector(hosts, Policy{}) {}

  // The hosts to try now, in order: those up or due for a retry (a due host
  // is claimed, so concurrent callers do not all wait on it); if there are
  // none, the down hosts not probed within probe_interval (claimed too).
  // Empty: every host is down and was just probed; fail fast.
  std::vector<std::size_t> plan(Clock::time_point now);
  // A host before `current` that is up or due for a retry (claimed), if any:
  // the caller moves a connection back to a preferred host.
  std::optional<std::size_t> claim_better(std::size_t current, Clock::time_point now);
  // Report the outcome of a connection attempt.  True when the host's state
  // changed (up → down, down → up): log it then, and only then.
  bool failed(std::size_t host, Clock::time_point now);
  bool succeeded(std::size_t host);
  bool is_down(std::size_t host) const;
  // When a down host will be tried again in preference to later hosts.
  Clock::time_point retry_at(std::size_t host) const;

 private:
  struct Host {
    bool down = false;
    Clock::duration backoff{};
    Clock::time_point retry_at{};
    Clock::time_point last_probe{};
  };
  mutable std::mutex mutex_;
  const Policy policy_;
  std::vector<Host> hosts_;
};

}  // namespace mailauth::backend
