// make_services(): the cache and brute-force policy a configuration asks for.
#include "src/auth/authenticator.h"

namespace mailauth::auth {

Services make_services(const config::Config& cfg, const Services& current, Clock clock) {
  Services next;
  next.metrics = current.metrics;
  if (cfg.cache) {
    CredentialCache::Options o;
    o.capacity = cfg.cache->size;
    o.ttl = cfg.cache->ttl;
    o.negative_ttl = cfg.cache->negative_ttl;
    o.stale_ttl = cfg.cache->stale_ttl;
    o.verify_only_ttl = cfg.cache->verify_only_ttl;
    const CredentialCache* cur = current.cache.get();
    if (cur != nullptr && cur->options().capacity == o.capacity && cur->options().ttl == o.ttl &&
        cur->options().negative_ttl == o.negative_ttl && cur->options().stale_ttl == o.stale_ttl &&
        cur->options().verify_only_ttl == o.verify_only_ttl)
      next.cache = current.cache;
    else
      next.cache = std::make_shared<CredentialCache>(o, clock);
  }
  if (cfg.policy.enabled) {
    Policy::Options p;
    for (const auto& n : cfg.policy.trusted_networks)
      if (auto net = Network::parse(n)) p.trusted.push_back(*net);
    p.ipv4_prefix = cfg.policy.ipv4_prefix;
    p.ipv6_prefix = cfg.policy.ipv6_prefix;
    p.base_penalty = cfg.policy.penalty;
    p.max_penalty = cfg.policy.max_penalty;
    p.max_user_penalty = cfg.policy.max_user_penalty;
    p.window = cfg.policy.window;
    p.max_in_flight = cfg.policy.max_in_flight;
    if (current.policy != nullptr) {
      next.policy = current.policy;
      next.policy->set_options(std::move(p));
    } else {
      next.policy = std::make_shared<Policy>(std::move(p), clock);
    }
  }
  return next;
}

}  // namespace mailauth::auth
