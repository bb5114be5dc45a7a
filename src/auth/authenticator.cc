#include "src/auth/authenticator.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <exception>
#include <map>

#include "src/runtime/metrics.h"
#include "src/password/schemes.h"
#include "src/util/log.h"

namespace mailauth::auth {

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::Ok: return "ok";
    case Outcome::Fail: return "fail";
    case Outcome::TempFail: return "tempfail";
  }
  return "fail";
}

BackendChain::BackendChain(std::vector<std::unique_ptr<backend::Backend>> backends)
    // The decoy until a real credential has been seen: a hash of a random
    // password with the scheme mailauth-user writes by default.
    : BackendChain(std::move(backends),
                   Secret(password::hash("argon2id", password::random_password())), "CRYPT") {}

BackendChain::BackendChain(std::vector<std::unique_ptr<backend::Backend>> backends, Secret decoy,
                           std::string decoy_scheme)
    : backends_(std::move(backends)), decoy_(std::move(decoy)),
      decoy_scheme_(std::move(decoy_scheme)) {
  for (const auto& b : backends_) has_lookup_ |= b->kind() == backend::Backend::Kind::Lookup;
}

void BackendChain::remember_decoy(const backend::Credential& c) const {
  std::lock_guard lock(mutex_);
  decoy_ = c.stored.clone();
  decoy_scheme_ = c.default_scheme;
}

void BackendChain::decoy_verify(std::string_view password) const {
  Secret decoy;
  std::string scheme;
  {
    std::lock_guard lock(mutex_);
    decoy = decoy_.clone();
    scheme = decoy_scheme_;
  }
  // The verdict is thrown away: only the time it takes matters.
  (void)password::verify(decoy.view(), password, scheme);
}

void BackendChain::warn_unusable(const std::string& backend, const std::string& user,
                                 const std::string& scheme) const {
  {
    std::lock_guard lock(mutex_);
    if (warned_.size() > 10000 || !warned_.insert(backend + "\n" + user).second) return;
  }
  log::error("config problem: backend " + backend + " holds a stored credential for user " +
             log::sanitize(user) + " that cannot be verified (scheme " + scheme +
             "); this user cannot log in until it is replaced");
}

namespace {
// While a backend is down, a recent success may be served from the cache
// (stale_ttl, off by default).
// `user`: the backend's canonical name for request.user.
AuthResult temp_failure(const AuthRequest& request, const std::string& user, CredentialCache* cache,
                        const std::string& backend, const std::string& reason) {
  AuthResult r{Outcome::TempFail, backend, reason};
  r.user = user;
  if (cache != nullptr && cache->stale_positive(user, request.service, request.password.view())) {
    r.outcome = Outcome::Ok;
    r.reason = "backend unavailable (" + reason + "); accepted from the cache within stale_ttl";
    r.cached = true;
    r.stale = true;
  }
  return r;
}

AuthResult cached_answer(CredentialCache::Hit hit, const std::string& backend,
                         const std::string& user) {
  AuthResult r{hit == CredentialCache::Hit::Positive ? Outcome::Ok : Outcome::Fail, backend,
               hit == CredentialCache::Hit::Positive ? "" : "wrong password (cached)"};
  r.user = user;
  r.cached = true;
  r.costed = false;
  return r;
}

AuthResult decided(Outcome outcome, const std::string& backend, std::string reason,
                   const std::string& user) {
  AuthResult r{outcome, backend, std::move(reason)};
  r.user = user;
  return r;
}
}  // namespace

AuthResult BackendChain::check_password(const AuthRequest& request, CredentialCache* cache,
                                        bool decoy) const {
  try {
    backend::Query q{request.user, request.realm, request.service, request.client_addr};
    const std::string_view pw = request.password.view();
    for (const auto& b : backends_) {
      // The one spelling this backend's store knows the user by: asked for,
      // cached and answered under (AuthResult::user).  Empty: nobody here.
      const std::string user = b->canonical_user(request.user);
      if (user.empty()) continue;
      q.user = user;
      // Before the cache too: an answer cached under an older configuration
      // must not serve a request the backend now refuses.
      if (std::string why = b->refusal(q); !why.empty()) return {Outcome::Fail, b->name(), why};
      if (b->kind() == backend::Backend::Kind::VerifyOnly) {
        // Nothing stored to fingerprint: only recent successes are cached
        // (verify_only_ttl), and a failure is always PAM's answer of now.
        const CredentialCache::Scope scope{b->name(), user, request.service, "", true};
        if (cache != nullptr) {
          const auto hit = cache->lookup(scope, pw);
          if (hit != CredentialCache::Hit::Miss) return cached_answer(hit, b->name(), user);
        }
        backend::VerifyResult v = b->verify(q, pw);
        switch (v.verdict) {
          case backend::Verdict::Ok:
            if (cache != nullptr) cache->store(scope, pw, true);
            return decided(Outcome::Ok, b->name(), v.reason, user);
          case backend::Verdict::Fail: {
            if (cache != nullptr) cache->store(scope, pw, false);
            AuthResult no = decided(Outcome::Fail, b->name(),
                                    v.reason.empty() ? "wrong password" : v.reason, user);
            no.costed = v.costed;
            return no;
          }
          case backend::Verdict::TempFail:
            return temp_failure(request, user, cache, b->name(), v.reason);
          case backend::Verdict::Unknown: continue;
        }
        continue;
      }
      backend::LookupResult r = b->lookup(q);
      if (r.status == backend::Status::TempFail)
        return temp_failure(request, user, cache, b->name(), r.reason);
      if (r.status == backend::Status::Unknown) continue;
      const auto& cred = r.credential;
      // The stored credential is part of the cache key: a changed hash misses.
      const CredentialCache::Scope scope{b->name(), user, request.service, cred.stored.view()};
      // A cheap scheme ({PLAIN}, digests) costs less than a cache lookup, so
      // it is never cached: the cache on is never slower than off.
      CredentialCache* const credential_cache =
          password::is_cheap(cred.stored.view(), cred.default_scheme) ? nullptr : cache;
      if (credential_cache != nullptr && !cred.disabled) {
        const auto hit = credential_cache->lookup(scope, pw);
        if (hit != CredentialCache::Hit::Miss) return cached_answer(hit, b->name(), user);
      }
      // A disabled account is still checked, so that it costs what any other
      // attempt costs; the verdict is then ignored.
      const password::Verdict verdict =
          password::verify(cred.stored.view(), request.password.view(), cred.default_scheme);
      if (cred.disabled) {
        if (verdict != password::Verdict::Invalid) remember_decoy(cred);
        else decoy_verify(request.password.view());
        return decided(Outcome::Fail, b->name(),
                       cred.disabled_reason.empty() ? "account disabled" : cred.disabled_reason,
                       user);
      }
      if (verdict == password::Verdict::Invalid) {
        warn_unusable(b->name(), user,
                      password::scheme_of(cred.stored.view(), cred.default_scheme));
        return decided(Outcome::Fail, b->name(), "unusable stored credential", user);
      }
      remember_decoy(cred);
      if (credential_cache != nullptr)
        credential_cache->store(scope, pw, verdict == password::Verdict::Match);
      if (verdict == password::Verdict::Match) {
        AuthResult ok = decided(Outcome::Ok, b->name(), "", user);
        rehash(*b, request, cred, &ok);
        return ok;
      }
      return decided(Outcome::Fail, b->name(), "wrong password", user);
    }
    AuthResult unknown{Outcome::Fail, "-", "unknown user", true};
    if (has_lookup_ && decoy) decoy_verify(request.password.view());
    else unknown.costed = false;  // held back to a real check's time instead
    return unknown;
  } catch (const std::exception& e) {
    return {Outcome::TempFail, "-", std::string("internal error: ") + e.what()};
  }
}

std::optional<AuthResult> BackendChain::check_password_now(const AuthRequest& request,
                                                           CredentialCache* cache,
                                                           bool uncosted_ok) const {
  // The same walk as check_password(), giving up (nullopt) at the first step
  // that would block or cost a real hash; see the header.
  try {
    backend::Query q{request.user, request.realm, request.service, request.client_addr};
    const std::string_view pw = request.password.view();
    for (const auto& b : backends_) {
      const std::string user = b->canonical_user(request.user);
      if (user.empty()) continue;
      q.user = user;
      if (std::string why = b->refusal(q); !why.empty())
        return AuthResult{Outcome::Fail, b->name(), why};
      if (b->kind() == backend::Backend::Kind::VerifyOnly) {
        // Only a cached success can be answered without calling PAM.
        const CredentialCache::Scope scope{b->name(), user, request.service, "", true};
        if (cache != nullptr && cache->lookup(scope, pw) == CredentialCache::Hit::Positive)
          return cached_answer(CredentialCache::Hit::Positive, b->name(), user);
        return std::nullopt;
      }
      std::optional<backend::LookupResult> r = b->lookup_now(q);
      if (!r) return std::nullopt;
      if (r->status == backend::Status::TempFail)
        return temp_failure(request, user, cache, b->name(), r->reason);
      if (r->status == backend::Status::Unknown) continue;
      const auto& cred = r->credential;
      const CredentialCache::Scope scope{b->name(), user, request.service, cred.stored.view()};
      // A cheap scheme costs less than a cache lookup: it is not cached.
      const bool cheap = password::is_cheap(cred.stored.view(), cred.default_scheme);
      if (cache != nullptr && !cred.disabled && !cheap) {
        const auto hit = cache->lookup(scope, pw);
        if (hit != CredentialCache::Hit::Miss) return cached_answer(hit, b->name(), user);
      }
      if (cred.disabled) {
        AuthResult no = decided(Outcome::Fail, b->name(),
                                cred.disabled_reason.empty() ? "account disabled"
                                                             : cred.disabled_reason,
                                user);
        // A real hash goes to a worker and is checked there like any wrong
        // password: the same path makes the same time, which padding only
        // approximates.
        if (!cheap) return std::nullopt;
        (void)password::verify(cred.stored.view(), pw, cred.default_scheme);  // same cost
        return no;
      }
      // A hash on the loop would stall every other client; a rehash writes.
      if (!cheap) return std::nullopt;
      if (!b->rehash_scheme().empty() && b->accounts() != nullptr) return std::nullopt;
      const password::Verdict verdict = password::verify(cred.stored.view(), pw, cred.default_scheme);
      if (verdict == password::Verdict::Invalid) return std::nullopt;  // the worker reports it
      if (verdict == password::Verdict::Match) return decided(Outcome::Ok, b->name(), "", user);
      return decided(Outcome::Fail, b->name(), "wrong password", user);
    }
    if (!uncosted_ok) return std::nullopt;  // the worker checks the decoy
    AuthResult unknown{Outcome::Fail, "-", "unknown user", true};
    unknown.costed = false;
    return unknown;
  } catch (const std::exception&) {
    return std::nullopt;  // the worker's check_password() reports it
  }
}

// Rehash-on-login: the password is known to be right, so the stored hash
// can be upgraded to the backend's `rehash` scheme.  Compare-and-swap: only
// if the stored value is still the one just verified.  The row is the one
// of result->user, the backend's canonical name for the user.
void BackendChain::rehash(backend::Backend& b, const AuthRequest& request,
                          const backend::Credential& cred, AuthResult* result) const {
  const std::string& target = b.rehash_scheme();
  backend::AccountStore* store = b.accounts();
  if (target.empty() || store == nullptr || cred.default_scheme != "CRYPT") return;
  // A scheme that reads only part of the password (DES: 8 bytes, bcrypt:
  // 72) verified only that part; hashing the whole typed string under the
  // target would store something the user never set, and lock them out.
  const std::size_t read = password::password_bytes_read(cred.stored.view(), cred.default_scheme);
  if (read != 0 && request.password.size() > read) {
    result->reason = "not rehashed: " + password::scheme_of(cred.stored.view()) + " reads only " +
                     std::to_string(read) + " bytes of the password";
    return;
  }
  // What a fresh hash of the target scheme says about scheme and cost, without
  // its salt ("$argon2id$v=19$m=19456,t=2,p=1", "$y$j9T", "$2b$10", "$6$",
  // "$5$rounds=10000$"): made once.
  static std::mutex prefix_mutex;
  static std::map<std::string, std::string> prefixes;
  auto params_of = [](std::string_view h) {
    if (h.rfind("$5$", 0) == 0 || h.rfind("$6$", 0) == 0) {
      // SHA-crypt: "$6$[rounds=N$]salt$hash"; the salt is not a parameter.
      if (h.substr(3).rfind("rounds=", 0) == 0) return std::string(h.substr(0, h.find('$', 3) + 1));
      return std::string(h.substr(0, 3));
    }
    std::size_t pos = 0;
    int dollars = 0;
    const int keep = h.rfind("$argon2", 0) == 0 ? 4 : 3;
    for (; pos < h.size(); ++pos)
      if (h[pos] == '$' && ++dollars == keep) break;
    return std::string(h.substr(0, pos));
  };
  std::string want_prefix;
  {
    std::lock_guard lock(prefix_mutex);
    auto it = prefixes.find(target);
    if (it == prefixes.end()) it = prefixes.emplace(target, params_of(password::hash(target, "x"))).first;
    want_prefix = it->second;
  }
  const std::string stored(cred.stored.view());
  // Compare without a {SCHEME} prefix, which a shared store may add.
  std::string_view bare = stored;
  if (!bare.empty() && bare.front() == '{' && bare.find('}') != std::string_view::npos)
    bare.remove_prefix(bare.find('}') + 1);
  if (want_prefix.rfind('{', 0) == 0 || params_of(bare) == want_prefix) return;
  const std::string have = password::scheme_of(stored);
  std::string fresh = password::hash(target, request.password.view());
  if (store->wants_scheme_prefix()) fresh = password::with_dovecot_prefix(fresh);
  auto r = store->replace_password(result->user, stored, fresh);
  wipe(fresh.data(), fresh.size());
  if (r.status == backend::AccountStore::Status::Done)
    result->reason = "rehashed " + have + " to " + target;
  else
    log::warning("rehash of " + log::sanitize(result->user) + " in " + b.name() + " skipped: " +
                 r.message);
}

BackendChain::CredentialLookup BackendChain::lookup_credential(const AuthRequest& request) const {
  CredentialLookup out;
  try {
    backend::Query q{request.user, request.realm, request.service, request.client_addr};
    std::string skipped;
    for (const auto& b : backends_) {
      if (b->kind() == backend::Backend::Kind::VerifyOnly) {
        if (skipped.empty()) skipped = b->name();
        continue;
      }
      const std::string user = b->canonical_user(request.user);
      if (user.empty()) continue;
      q.user = user;
      backend::LookupResult r = b->lookup(q);
      if (r.status == backend::Status::Unknown) continue;
      out.backend = b->name();
      out.user = user;
      if (r.status == backend::Status::TempFail) {
        out.outcome = Outcome::TempFail;
        out.reason = r.reason;
        return out;
      }
      if (r.credential.disabled) {
        out.outcome = Outcome::Fail;
        out.reason = r.credential.disabled_reason.empty() ? "account disabled"
                                                           : r.credential.disabled_reason;
        return out;
      }
      out.outcome = Outcome::Ok;
      out.credential = std::move(r.credential);
      return out;
    }
    out.outcome = Outcome::Fail;
    out.unknown = true;
    out.reason = skipped.empty() ? "unknown user"
                                 : "unknown user (backend " + skipped +
                                       " can only verify passwords: use PLAIN or LOGIN)";
  } catch (const std::exception& e) {
    out.outcome = Outcome::TempFail;
    out.reason = std::string("internal error: ") + e.what();
  }
  return out;
}

std::string BackendChain::policy_user(std::string_view user) const {
  std::string name(user);
  for (const auto& b : backends_) {
    if (name.empty()) break;
    name = b->canonical_user(name);
  }
  return name;
}

std::shared_ptr<const BackendChain> build_chain(const config::Config& config) {
  std::vector<std::unique_ptr<backend::Backend>> backends;
  for (const auto& spec : config.backends) backends.push_back(backend::create(spec));
  return std::make_shared<BackendChain>(std::move(backends));
}

std::string password_tag(std::string_view password) {
  static const auto key = [] {
    std::array<unsigned char, crypto_generichash_KEYBYTES> k{};
    randombytes_buf(k.data(), k.size());
    return k;
  }();
  unsigned char out[16];
  crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(password.data()),
                     password.size(), key.data(), key.size());
  return std::string(reinterpret_cast<char*>(out), sizeof out);
}

Authenticator::Authenticator(EventLoop& loop, Executor& executor,
                             std::shared_ptr<const BackendChain> chain, Services services)
    : loop_(loop), executor_(executor), chain_(std::move(chain)), services_(std::move(services)) {}

void log_attempt(const AuthRequest& r, const AuthResult& result, long long ms) {
  // Built only if it will be written (log_level = "warning" keeps only
  // temporary failures): formatting is most of the loop's own work on a
  // cache hit.
  if (!log::enabled(result.outcome == Outcome::TempFail ? log::Level::Warning : log::Level::Info))
    return;
  std::string line = "auth:";
  line += log::kv("result", outcome_name(result.outcome));
  line += log::kv("proto", r.protocol);
  if (!r.mechanism.empty()) line += log::kv("mech", r.mechanism);
  line += log::kv("user", result.user.empty() ? r.user : result.user);
  line += log::kv("service", r.service);
  line += log::kv("realm", r.realm);
  line += log::kv("rip", r.client_addr);
  line += log::kv("backend", result.backend);
  line += log::kv("reason", result.reason);
  if (result.cached) line += log::kv("cached", "yes");
  line += log::kv("ms", ms);
  if (result.outcome == Outcome::TempFail) log::warning(line);
  else log::info(line);
}

void Authenticator::record(const AuthRequest& r, const AuthResult& result,
                           std::chrono::steady_clock::time_point start, const Services& services,
                           const BackendChain* chain) {
  const auto elapsed = loop_.now() - start;
  log_attempt(r, result,
              std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count());
  if (services.metrics != nullptr) {
    services.metrics->record(outcome_name(result.outcome), r.protocol, r.mechanism, result.backend,
                             std::chrono::duration<double>(elapsed).count());
    // A stale answer is counted apart: hits (and the hit ratio) are about
    // fresh entries.
    if (result.stale) ++services.metrics->cache_stale_served;
    else if (result.cached) ++services.metrics->cache_hits;
    else if (services.cache != nullptr && result.outcome != Outcome::TempFail) ++services.metrics->cache_misses;
  }
  if (services.policy != nullptr) {
    // The name admit() used: the counters of all spellings are one.
    const std::string user = chain != nullptr ? chain->policy_user(r.user) : r.user;
    if (result.outcome == Outcome::Fail)
      services.policy->failed(r.client_addr, user, result.password_tag);
    else if (result.outcome == Outcome::Ok)
      services.policy->succeeded(r.client_addr, user);
  }
}

// One admitted request, from admission to its answer.  Owned jointly by the
// loop-side continuations and the worker job; holds the chain and services
// it started with.
struct Authenticator::Attempt {
  AuthRequest request;
  Services services;
  std::shared_ptr<const BackendChain> chain;
  std::chrono::steady_clock::time_point start;
  std::string address_key;  // the policy slot to release, once admitted
  bool admitted = false;
  bool lookup = false;      // lookup_credential() rather than authenticate()
  Done done;
  CredentialWork work;
  CredentialDone lookup_done;
};

namespace {
AuthResult abandoned_result() {
  return {Outcome::TempFail, "-", "abandoned by the client before the check"};
}
}  // namespace

void Authenticator::admit(const std::shared_ptr<Attempt>& a, bool no_penalty,
                          std::function<void()> go) {
  Policy* policy = a->services.policy.get();
  if (policy == nullptr) return go();
  Policy::Admission adm = policy->admit(a->request.client_addr,
                                       a->chain != nullptr ? a->chain->policy_user(a->request.user)
                                                           : a->request.user,
                                       no_penalty);
  if (adm.refused) {
    if (a->services.metrics != nullptr) a->services.metrics->refused_in_flight();
    // Held back (a timer, no slot, no worker): answered at once, a refusal
    // let a flooding client spin through connect-refuse-reconnect as fast
    // as the loop could serve it (bench-attack.sh: 7,800 refusals/s and a
    // legitimate client's p99 up 17 ms).
    loop_.add_timer(policy->options().max_penalty, [this, a] {
      finish(a, AuthResult{Outcome::TempFail, "-", "too many requests in flight from this address"});
    });
    return;
  }
  a->address_key = std::move(adm.address_key);
  a->admitted = true;
  if (adm.delay.count() <= 0) return go();
  if (a->services.metrics != nullptr)
    a->services.metrics->penalty(std::chrono::duration<double>(adm.delay).count());
  log::debug("auth: penalty" + log::kv("rip", a->request.client_addr) +
             log::kv("user", a->request.user) +
             log::kv("ms", static_cast<long long>(adm.delay.count())));
  loop_.add_timer(adm.delay, std::move(go));
}

void Authenticator::authenticate(AuthRequest request, Done done, bool no_penalty) {
  log::debug("auth: request" + log::kv("proto", request.protocol) + log::kv("user", request.user) +
             log::kv("service", request.service) + log::kv("realm", request.realm) +
             log::kv("rip", request.client_addr) +
             log::kv("password_bytes", static_cast<long long>(request.password.size())));
  auto a = std::make_shared<Attempt>();
  a->request = std::move(request);
  a->services = services_;
  a->chain = chain_;
  a->start = loop_.now();
  a->done = std::move(done);
  ++in_flight_;
  admit(a, no_penalty, [this, a] { run_check(a); });
}

void Authenticator::run_check(const std::shared_ptr<Attempt>& a) {
  if (a->request.dead()) return finish(a, abandoned_result());
  // Unknown users are answered on a timer once real checks have been timed.
  const bool decoy = recent_count_ == 0;
  // What needs no blocking work — a cache hit, a cheap scheme from memory, a
  // "no" that answer() holds back anyway — is answered here, without a
  // worker round trip.  After this event (a zero timer, no thread, no
  // syscall): `done` never runs inside authenticate().
  if (std::optional<AuthResult> now =
          a->chain->check_password_now(a->request, a->services.cache.get(), !decoy)) {
    if (now->outcome == Outcome::Fail) now->password_tag = password_tag(a->request.password.view());
    a->request.password.clear();
    if (a->services.metrics != nullptr) a->services.metrics->answered_on_loop();
    loop_.add_timer(EventLoop::Clock::duration::zero(),
                    [this, a, result = std::move(*now)]() mutable { answer(a, std::move(result)); });
    return;
  }
  const bool queued = executor_.submit(
      [this, a, decoy]() -> Executor::Continuation {
        // Worker thread.
        AuthResult result;
        if (a->request.dead()) {
          result = abandoned_result();
        } else {
          result = a->chain->check_password(a->request, a->services.cache.get(), decoy);
          if (result.outcome == Outcome::Fail)
            result.password_tag = password_tag(a->request.password.view());
        }
        a->request.password.clear();
        return [this, a, result = std::move(result)]() mutable { answer(a, std::move(result)); };
      },
      [this, a] { answer(a, AuthResult{Outcome::TempFail, "-", "internal error in the check"}); });
  if (!queued) finish(a, AuthResult{Outcome::TempFail, "-", "worker queue full"});
}

void Authenticator::answer(const std::shared_ptr<Attempt>& a, AuthResult result) {
  const auto elapsed = loop_.now() - a->start;
  if (!result.unknown_user && result.outcome != Outcome::TempFail && result.costed) {
    // A real check of a known user's credential: one sample of what a
    // check costs here, now.
    recent_[recent_next_++ % recent_.size()] = elapsed;
    recent_count_ = std::min(recent_count_ + 1, recent_.size());
  } else if (result.outcome == Outcome::Fail && !result.costed && recent_count_ > 0 &&
             !a->request.dead()) {
    // A "no" that cost nothing would tell an account (or a repeated wrong
    // password) from the rest: hold it back to the time of a real check,
    // drawn from the recent ones, so both follow one distribution.  A
    // timer: no worker waits.
    // A timer fires a little late (the wake-up; a VM's idle vCPU), which a
    // real check's sample does not include: schedule that much earlier, by
    // the recent average lateness, so the two match where the client sees
    // them.
    const auto target = recent_[randombytes_uniform(static_cast<uint32_t>(recent_count_))];
    const auto pad = std::min<EventLoop::Clock::duration>(target - elapsed - pad_lateness_,
                                                          std::chrono::seconds(2));
    if (pad.count() > 0) {
      const auto due = loop_.now() + pad;
      loop_.add_timer(pad, [this, a, due, result = std::move(result)] {
        const auto late = loop_.now() - due;
        // Exponential average over about 16 pads, of lateness clamped to
        // [0, 1 ms]: one stall (a paused VM, a blocked write) must not push
        // it above every real check's time, where no pad would be set any
        // more and the average could never come down -- unknown users would
        // then be answered at once.
        const auto clamped = std::clamp<EventLoop::Clock::duration>(
            late, EventLoop::Clock::duration::zero(), std::chrono::milliseconds(1));
        pad_lateness_ += (clamped - pad_lateness_) / 16;
        finish(a, result);
      });
      return;
    }
  }
  finish(a, result);
}

void Authenticator::finish(const std::shared_ptr<Attempt>& a, const AuthResult& result) {
  if (a->lookup) {
    BackendChain::CredentialLookup l;
    l.outcome = result.outcome;
    l.reason = result.reason;
    l.backend = result.backend;
    return finish_lookup(a, l);
  }
  --in_flight_;
  if (a->admitted) a->services.policy->release(a->address_key);
  a->admitted = false;
  record(a->request, result, a->start, a->services, a->chain.get());
  if (dropped(a)) return;
  a->done(result);
}

bool Authenticator::dropped(const std::shared_ptr<Attempt>& a) {
  if (!a->request.dead()) return false;
  // The client cancelled, timed out or left: the answer goes nowhere, least
  // of all to a new request that reuses the wire id.
  if (a->services.metrics != nullptr) a->services.metrics->abandoned();
  return true;
}

void Authenticator::lookup_credential(AuthRequest request, bool no_penalty, CredentialWork work,
                                      CredentialDone done) {
  auto a = std::make_shared<Attempt>();
  a->request = std::move(request);
  a->services = services_;
  a->chain = chain_;
  a->start = loop_.now();
  a->lookup = true;
  a->work = std::move(work);
  a->lookup_done = std::move(done);
  ++in_flight_;
  admit(a, no_penalty, [this, a] { run_lookup(a); });
}

void Authenticator::run_lookup(const std::shared_ptr<Attempt>& a) {
  if (a->request.dead()) return finish(a, abandoned_result());
  const bool queued = executor_.submit(
      [this, a]() -> Executor::Continuation {
        // Worker thread: the mechanism may derive keys in `work`.
        auto found = std::make_shared<BackendChain::CredentialLookup>();
        if (a->request.dead()) {
          found->outcome = Outcome::TempFail;
          found->reason = abandoned_result().reason;
        } else {
          *found = a->chain->lookup_credential(a->request);
          a->work(*found);
        }
        found->credential.stored.clear();
        return [this, a, found] { finish_lookup(a, *found); };
      },
      [this, a] {
        BackendChain::CredentialLookup l;
        l.outcome = Outcome::TempFail;
        l.reason = "internal error in the lookup";
        finish_lookup(a, l);
      });
  if (!queued) finish(a, AuthResult{Outcome::TempFail, "-", "worker queue full"});
}

void Authenticator::finish_lookup(const std::shared_ptr<Attempt>& a,
                                  BackendChain::CredentialLookup& found) {
  --in_flight_;
  if (a->admitted) a->services.policy->release(a->address_key);
  a->admitted = false;
  if (dropped(a)) return;
  a->lookup_done(found);
}

}  // namespace mailauth::auth
