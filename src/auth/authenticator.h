// The authenticator: from an AuthRequest to an AuthResult.
//
//   AuthRequest ─► worker pool ─► BackendChain (first backend that knows the
//   user decides; TempFail ends the chain) ─► password::verify ─► AuthResult
//   ─► continuation on the event loop ─► one log line per attempt.
//
// Every "no" takes what a real check takes, so that neither an unknown
// user nor a repeated wrong password can be told by its answer time: a
// "no" that ran no real check — a negative cache hit, an unknown user — is
// held back (a loop timer) to the answer time of a recent real check of a
// known user, drawn at random from the last 64, so both follow one
// distribution.  Unknown users cost no worker time that way, so a flood of
// random user names cannot buy hash work.  Until the first real check has
// been timed, an unknown user's password is checked against a decoy
// credential instead (the last stored credential seen, or an Argon2id hash
// made at start-up).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "src/auth/cache.h"
#include "src/auth/policy.h"
#include "src/auth/request.h"
#include "src/runtime/event_loop.h"
#include "src/runtime/executor.h"
#include "src/runtime/metrics.h"

namespace mailauth::auth {

// The ordered backends of one configuration.  Immutable once built; a reload
// builds a new chain and swaps it in, while requests in flight finish on the
// old one.
class BackendChain {
 public:
  explicit BackendChain(std::vector<std::unique_ptr<backend::Backend>> backends);
  // With the decoy credential to use until a real one has been seen (the
  // default is an Argon2id hash made here, which takes tens of ms).
  BackendChain(std::vector<std::unique_ptr<backend::Backend>> backends, Secret decoy,
               std::string decoy_scheme);

  // Worker thread.  Never throws.  With a cache, answers it already knows
  // skip the hash check (or the PAM call), and new answers are stored.
  // Each backend is asked for its canonical_user() of request.user, and the
  // answer, the cache entry and AuthResult::user are under that name.
  // `decoy`: check an unknown user's password against the decoy credential
  // (costs a real hash); without it the answer is marked not costed and the
  // authenticator holds it back on a timer instead.
  AuthResult check_password(const AuthRequest& request, CredentialCache* cache = nullptr,
                            bool decoy = true) const;

  // Event loop thread: check_password()'s answer when it needs no blocking
  // work, else nullopt (then run check_password() on a worker).  It answers
  // when every backend it must ask answers from memory
  // (Backend::lookup_now()) and the answer is a cache hit, a check of a
  // cheap scheme (password::is_cheap: plaintext, digests), a refusal, or a
  // "no" marked not costed (an unknown user, a negative cache hit) that the
  // authenticator holds back on a timer — an unknown user only with
  // `uncosted_ok`, else the worker checks a decoy.  A disabled account with
  // a real hash goes to the worker, checked like any wrong password.  Never a crypt or
  // Argon2 hash, a PAM call or a rehash on the loop.  Never throws.
  std::optional<AuthResult> check_password_now(const AuthRequest& request,
                                               CredentialCache* cache, bool uncosted_ok) const;

  // For mechanisms that need the stored credential (CRAM-MD5, SCRAM): the
  // first lookup backend that knows the user answers.  Verify-only backends
  // (PAM) cannot provide one and are skipped; if no lookup backend knows the
  // user and a verify-only one was skipped, the reason says so.
  struct CredentialLookup {
    Outcome outcome = Outcome::Fail;  // Ok: found and enabled; Fail: unknown/disabled; TempFail
    bool unknown = false;             // no backend knows the user
    backend::Credential credential;
    std::string backend = "-";
    std::string user;  // the backend's canonical name for the user, when one decided
    std::string reason;
  };
  CredentialLookup lookup_credential(const AuthRequest& request) const;

  const std::vector<std::unique_ptr<backend::Backend>>& backends() const { return backends_; }

  // The name the brute-force policy counts a request for `user` under,
  // known before any backend is asked: every backend's canonical_user()
  // applied in turn, so that the spellings any backend folds together share
  // one counter (and the admission penalty sees the failures recorded for
  // them).  With one backend, the name it logs and answers under.
  std::string policy_user(std::string_view user) const;

 private:
  void decoy_verify(std::string_view password) const;
  void rehash(backend::Backend& b, const AuthRequest& request, const backend::Credential& cred,
              AuthResult* result) const;
  void remember_decoy(const backend::Credential& c) const;
  void warn_unusable(const std::string& backend, const std::string& user,
                     const std::string& scheme) const;

  std::vector<std::unique_ptr<backend::Backend>> backends_;
  bool has_lookup_ = false;
  mutable std::mutex mutex_;
  mutable Secret decoy_;
  mutable std::string decoy_scheme_ = "CRYPT";
  mutable std::set<std::string> warned_;  // backend/user pairs already reported
};

// The one log line per attempt:
//   auth: result=… proto=… mech=… user=… service=… realm=… rip=… backend=… reason=… ms=…
// user= is result.user when a backend decided (its canonical name), else
// request.user.
void log_attempt(const AuthRequest& request, const AuthResult& result, long long ms);

// Build the chain a configuration describes.  Throws config::ConfigError.
std::shared_ptr<const BackendChain> build_chain(const config::Config& config);

// What the authenticator works with besides the chain; all optional.  Shared:
// every request in flight holds the services it started with, so a reload
// may replace or drop any of them at any moment (a worker never touches a
// cache the reload destroyed; a policy slot is released into the policy
// that granted it).
struct Services {
  std::shared_ptr<Metrics> metrics;
  std::shared_ptr<CredentialCache> cache;
  std::shared_ptr<Policy> policy;
};

// The services a configuration asks for.  The cache of `current` is kept if
// its settings did not change (its keys already track credential changes);
// the policy of `current` is kept with the new options (counters survive a
// reload).  `metrics` is passed through.
Services make_services(const config::Config& config, const Services& current, Clock clock);

// A keyed hash of a password, to recognise a repeated wrong password without
// keeping it.  Worker or loop thread.
std::string password_tag(std::string_view password);

// Loop thread only (but for what the worker jobs it submits do, and
// in_flight()).  The daemon runs one per event loop; they share the chain and
// the services (metrics, cache, policy), which are thread-safe.
class Authenticator {
 public:
  using Done = std::function<void(const AuthResult&)>;

  Authenticator(EventLoop& loop, Executor& executor, std::shared_ptr<const BackendChain> chain,
                Services services = {});

  // Checks a password: the brute-force policy first (refusal or a penalty
  // delay), then the chain on a worker.  `done` runs later on the loop
  // thread, at most once, after the attempt has been recorded: exactly once
  // unless the request died meanwhile (request.life), whose answer is
  // dropped and counted (mailauth_auth_abandoned_total).
  // `no_penalty`: the client asked to skip penalties (Dovecot's no-penalty).
  void authenticate(AuthRequest request, Done done, bool no_penalty = false);

  // For mechanisms that need the stored credential: the policy, then
  // lookup_credential() and `work` on a worker (where a mechanism may derive
  // keys), then `done` on the loop, exactly once unless the request died
  // meanwhile (then never, as for authenticate()).  The caller records the
  // attempt's outcome with record() when the exchange ends.
  using CredentialWork = std::function<void(BackendChain::CredentialLookup&)>;
  using CredentialDone = std::function<void(BackendChain::CredentialLookup&)>;
  void lookup_credential(AuthRequest request, bool no_penalty, CredentialWork work,
                         CredentialDone done);

  // The one log line of an attempt, its metrics, and its feedback to the
  // brute-force policy.  `start` is on the loop's clock.
  // The log line names result.user (the canonical name) when a backend
  // decided, else request.user; the policy counts under the chain's
  // policy_user(request.user).
  void record(const AuthRequest& request, const AuthResult& result,
              std::chrono::steady_clock::time_point start) {
    record(request, result, start, services_, chain_.get());
  }

  // New requests use the new chain / services; requests in flight finish
  // with what they started with.
  void set_chain(std::shared_ptr<const BackendChain> chain) { chain_ = std::move(chain); }
  void set_services(Services services) { services_ = std::move(services); }
  const std::shared_ptr<const BackendChain>& chain() const { return chain_; }
  const Services& services() const { return services_; }
  EventLoop& loop() { return loop_; }
  // Password checks and credential lookups admitted and not yet answered.
  // Any thread (the control socket's stats add up every loop's).
  std::size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

 private:
  struct Attempt;
  void record(const AuthRequest& request, const AuthResult& result,
              std::chrono::steady_clock::time_point start, const Services& services,
              const BackendChain* chain);
  void admit(const std::shared_ptr<Attempt>& attempt, bool no_penalty,
             std::function<void()> go);
  void run_check(const std::shared_ptr<Attempt>& attempt);
  void run_lookup(const std::shared_ptr<Attempt>& attempt);
  void answer(const std::shared_ptr<Attempt>& attempt, AuthResult result);
  void finish(const std::shared_ptr<Attempt>& attempt, const AuthResult& result);
  bool dropped(const std::shared_ptr<Attempt>& attempt);
  void finish_lookup(const std::shared_ptr<Attempt>& attempt,
                     BackendChain::CredentialLookup& found);

  EventLoop& loop_;
  Executor& executor_;
  std::shared_ptr<const BackendChain> chain_;
  Services services_;
  std::atomic<std::size_t> in_flight_{0};
  // Answer times of recent real checks of known users' credentials: what a
  // "no" that cost nothing is held back to (one of them, drawn at random).
  std::array<EventLoop::Clock::duration, 64> recent_{};
  std::size_t recent_next_ = 0;
  std::size_t recent_count_ = 0;
  // How late the padding timers fired, on average (subtracted from the next).
  EventLoop::Clock::duration pad_lateness_{};
};

}  // namespace mailauth::auth
