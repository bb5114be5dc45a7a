#include "backends/common/host_selector.h"

#include <algorithm>

namespace mailauth::backend {

HostSelector::HostSelector(std::size_t hosts, Policy policy) : policy_(policy), hosts_(hosts) {}

std::vector<std::size_t> HostSelector::plan(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    Host& h = hosts_[i];
    if (!h.down) {
      out.push_back(i);
    } else if (now >= h.retry_at) {
      // Claimed: others skip it until this attempt reports back.
      h.retry_at = now + policy_.probe_interval;
      h.last_probe = now;
      out.push_back(i);
    }
  }
  if (!out.empty()) return out;
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    Host& h = hosts_[i];
    if (h.last_probe == Clock::time_point{} || now >= h.last_probe + policy_.probe_interval) {
      h.last_probe = now;
      out.push_back(i);
    }
  }
  return out;
}

std::optional<std::size_t> HostSelector::claim_better(std::size_t current, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < current && i < hosts_.size(); ++i) {
    Host& h = hosts_[i];
    if (!h.down) return i;
    if (now >= h.retry_at) {
      h.retry_at = now + policy_.probe_interval;
      h.last_probe = now;
      return i;
    }
  }
  return std::nullopt;
}

bool HostSelector::failed(std::size_t host, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  Host& h = hosts_.at(host);
  h.last_probe = now;
  if (!h.down) {
    h.down = true;
    h.backoff = policy_.first_backoff;
    h.retry_at = now + h.backoff;
    return true;
  }
  h.backoff = std::min(h.backoff * 2, policy_.max_backoff);
  h.retry_at = now + h.backoff;
  return false;
}

bool HostSelector::succeeded(std::size_t host) {
  std::lock_guard lock(mutex_);
  Host& h = hosts_.at(host);
  if (!h.down) return false;
  h.down = false;
  h.backoff = {};
  return true;
}

bool HostSelector::is_down(std::size_t host) const {
  std::lock_guard lock(mutex_);
  return hosts_.at(host).down;
}

HostSelector::Clock::time_point HostSelector::retry_at(std::size_t host) const {
  std::lock_guard lock(mutex_);
  return hosts_.at(host).retry_at;
}

}  // namespace mailauth::backend
