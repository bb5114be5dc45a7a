#include "src/auth/cache.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace mailauth::auth {

CredentialCache::CredentialCache(Options options, Clock clock)
    : options_(options), clock_(std::move(clock)) {
  randombytes_buf(secret_, sizeof secret_);
}

std::size_t CredentialCache::DigestHash::operator()(const Digest& d) const {
  std::size_t h;
  std::memcpy(&h, d.data(), sizeof h);
  return h;
}

CredentialCache::Digest CredentialCache::mac(std::initializer_list<std::string_view> parts) const {
  crypto_generichash_state st;
  crypto_generichash_init(&st, secret_, sizeof secret_, 32);
  for (std::string_view p : parts) {
    // Length-prefix every part so ("ab","c") and ("a","bc") differ.
    const std::uint64_t n = p.size();
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(&n), sizeof n);
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(p.data()), p.size());
  }
  Digest out;
  crypto_generichash_final(&st, out.data(), out.size());
  sodium_memzero(&st, sizeof st);
  return out;
}

CredentialCache::Shard& CredentialCache::shard_for(const Digest& key) {
  return shards_[key[31] % kShards];
}

void CredentialCache::put(const Digest& key, const Digest& pw, bool positive, TimePoint expires,
                          std::string_view user) {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mutex);
  if (auto it = s.index.find(key); it != s.index.end()) {
    s.lru.erase(it->second);
    s.index.erase(it);
  }
  s.lru.push_front(Entry{key, pw, positive, expires, std::string(user)});
  s.index.emplace(key, s.lru.begin());
  const std::size_t per_shard = options_.capacity / kShards + 1;
  while (s.lru.size() > per_shard) {
    s.index.erase(s.lru.back().key);
    s.lru.pop_back();
  }
}

CredentialCache::Hit CredentialCache::lookup(const Scope& scope, std::string_view password) {
  const Digest key = mac({"entry", scope.backend, scope.user, scope.service, scope.stored});
  const Digest pw = mac({"password", scope.backend, scope.user, scope.service, scope.stored, password});
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mutex);
  auto it = s.index.find(key);
  if (it == s.index.end()) return Hit::Miss;
  Entry& e = *it->second;
  if (clock_() >= e.expires) {
    s.lru.erase(it->second);
    s.index.erase(it);
    return Hit::Miss;
  }
  // Same user and credential but another password: not an answer for this one.
  if (sodium_memcmp(e.password_mac.data(), pw.data(), pw.size()) != 0) return Hit::Miss;
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  return e.positive ? Hit::Positive : Hit::Negative;
}

void CredentialCache::store(const Scope& scope, std::string_view password, bool positive) {
  if (scope.verify_only && !positive) return;  // see the header: a new password works at once
  const auto ttl = !positive           ? options_.negative_ttl
                   : scope.verify_only ? std::min(options_.ttl, options_.verify_only_ttl)
                                       : options_.ttl;
  if (ttl.count() <= 0) return;
  const TimePoint now = clock_();
  put(mac({"entry", scope.backend, scope.user, scope.service, scope.stored}),
      mac({"password", scope.backend, scope.user, scope.service, scope.stored, password}), positive,
      now + ttl, scope.user);
  // The stale window of a verify-only success is capped like its entry:
  // nothing may keep an old PAM password working past verify_only_ttl.
  const auto stale_ttl = scope.verify_only ? std::min(options_.stale_ttl, options_.verify_only_ttl)
                                           : options_.stale_ttl;
  if (positive && stale_ttl.count() > 0)
    put(mac({"stale", scope.user, scope.service}),
        mac({"stale-password", scope.user, scope.service, password}), true, now + stale_ttl,
        scope.user);
}

bool CredentialCache::stale_positive(std::string_view user, std::string_view service,
                                     std::string_view password) {
  if (options_.stale_ttl.count() <= 0) return false;
  const Digest key = mac({"stale", user, service});
  const Digest pw = mac({"stale-password", user, service, password});
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mutex);
  auto it = s.index.find(key);
  if (it == s.index.end()) return false;
  const Entry& e = *it->second;
  return clock_() < e.expires && sodium_memcmp(e.password_mac.data(), pw.data(), pw.size()) == 0;
}

std::size_t CredentialCache::flush(std::optional<std::string_view> user) {
  std::size_t n = 0;
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    for (auto it = s.lru.begin(); it != s.lru.end();) {
      if (!user || it->user == *user) {
        s.index.erase(it->key);
        it = s.lru.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
  }
  return n;
}

std::size_t CredentialCache::size() const {
  std::size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(const_cast<std::mutex&>(s.mutex));
    n += s.lru.size();
  }
  return n;
}

}  // namespace mailauth::auth
