// The credential cache: remembers recent answers so a busy server does not
// recompute a slow hash on every login.  In memory only, bounded (sharded
// LRU), with separate TTLs for successes and failures.
//
// It never holds a password: an entry stores BLAKE2b(key = a per-process
// random key, message = entry key ‖ password).  An entry answers only the
// password it was stored for; another password presented is a miss.
//
// It never serves an old password after a change of a stored credential:
// the entry key includes a fingerprint of the credential the backend
// returned, so a changed hash (pwdfile rewrite, SQL UPDATE) misses the cache.
// Verify-only backends (PAM) have no stored credential, so a change is
// invisible here.  For them (Scope::verify_only) only successes are kept,
// for at most verify_only_ttl (default 30 s, whatever `ttl` says), one entry
// per user and service: the next success with another password replaces it,
// and failures are never cached (a new password works at once).  So an old
// PAM password keeps working for at most verify_only_ttl after a change, or
// until flushed (mailauth-user and `flush USER` on the control socket).
//
// Optional stale window (stale_ttl, off by default): while a backend cannot
// answer, a success younger than stale_ttl for the same user, service and
// password is accepted again.  It trades "an outage locks everyone out" for
// "a password changed during the outage works until stale_ttl"; leave it off
// unless outages worry you more.
//
// Thread-safe; called from workers.
#pragma once

#include <array>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "src/auth/clock.h"

namespace mailauth::auth {

class CredentialCache {
 public:
  struct Options {
    std::size_t capacity = 10000;
    std::chrono::milliseconds ttl{60'000};
    std::chrono::milliseconds negative_ttl{10'000};
    std::chrono::milliseconds stale_ttl{0};
    std::chrono::milliseconds verify_only_ttl{30'000};  // caps ttl for verify-only scopes
  };
  enum class Hit { Miss, Positive, Negative };

  CredentialCache(Options options, Clock clock);

  // `scope` identifies what the answer depends on: backend name, user (the
  // backend's canonical name), service, and the stored credential (its
  // bytes; hashed here).  The realm is not part of it: a lookup backend's
  // answer depends on the realm only through the credential it returns (a
  // mysql query with %r), which is in the key; pam and pwdfile do not read
  // the realm; with join_realm it is part of the user name.
  struct Scope {
    std::string_view backend;
    std::string_view user;
    std::string_view service;
    std::string_view stored;   // empty for verify-only backends
    bool verify_only = false;  // no stored credential: successes only, verify_only_ttl
  };
  Hit lookup(const Scope& scope, std::string_view password);
  void store(const Scope& scope, std::string_view password, bool positive);
  // A recent success for this user and service with this password, whatever
  // the stored credential, younger than stale_ttl.  Only for outages.
  bool stale_positive(std::string_view user, std::string_view service, std::string_view password);

  // Forget one user's entries (all backends, services), or everything.
  std::size_t flush(std::optional<std::string_view> user);
  std::size_t size() const;
  const Options& options() const { return options_; }

 private:
  using Digest = std::array<unsigned char, 32>;
  struct Entry {
    Digest key;
    Digest password_mac;
    bool positive;
    TimePoint expires;
    std::string user;
  };
  struct DigestHash {
    std::size_t operator()(const Digest& d) const;
  };
  struct Shard {
    std::mutex mutex;
    std::list<Entry> lru;  // front = most recent
    std::unordered_map<Digest, std::list<Entry>::iterator, DigestHash> index;
  };

  Digest mac(std::initializer_list<std::string_view> parts) const;
  Shard& shard_for(const Digest& key);
  void put(const Digest& key, const Digest& pw, bool positive, TimePoint expires,
           std::string_view user);

  Options options_;
  Clock clock_;
  unsigned char secret_[32];
  static constexpr std::size_t kShards = 16;
  std::array<Shard, kShards> shards_;
};

}  // namespace mailauth::auth
