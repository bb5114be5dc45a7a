#include "src/auth/authenticator.h"

#include <algorithm>
#include <exception>

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
    : backends_(std::move(backends)) {
  for (const auto& b : backends_) has_lookup_ |= b->kind() == backend::Backend::Kind::Lookup;
  // The decoy until a real credential has been seen: a hash of a random
  // password with the scheme mailauth-user writes by default.
  decoy_ = Secret(password::hash("argon2id", password::random_password()));
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

AuthResult BackendChain::check_password(const AuthRequest& request) const {
  try {
    backend::Query q{request.user, request.realm, request.service, request.client_addr};
    for (const auto& b : backends_) {
      if (b->kind() == backend::Backend::Kind::VerifyOnly) {
        backend::VerifyResult v = b->verify(q, request.password.view());
        switch (v.verdict) {
          case backend::Verdict::Ok: return {Outcome::Ok, b->name(), v.reason};
          case backend::Verdict::Fail:
            return {Outcome::Fail, b->name(), v.reason.empty() ? "wrong password" : v.reason};
          case backend::Verdict::TempFail: return {Outcome::TempFail, b->name(), v.reason};
          case backend::Verdict::Unknown: continue;
        }
        continue;
      }
      backend::LookupResult r = b->lookup(q);
      if (r.status == backend::Status::TempFail) return {Outcome::TempFail, b->name(), r.reason};
      if (r.status == backend::Status::Unknown) continue;
      const auto& cred = r.credential;
      // A disabled account is still checked, so that it costs what any other
      // attempt costs; the verdict is then ignored.
      const password::Verdict verdict =
          password::verify(cred.stored.view(), request.password.view(), cred.default_scheme);
      if (cred.disabled) {
        if (verdict != password::Verdict::Invalid) remember_decoy(cred);
        else decoy_verify(request.password.view());
        return {Outcome::Fail, b->name(),
                cred.disabled_reason.empty() ? "account disabled" : cred.disabled_reason};
      }
      if (verdict == password::Verdict::Invalid) {
        warn_unusable(b->name(), request.user,
                      password::scheme_of(cred.stored.view(), cred.default_scheme));
        return {Outcome::Fail, b->name(), "unusable stored credential"};
      }
      remember_decoy(cred);
      if (verdict == password::Verdict::Match) return {Outcome::Ok, b->name(), ""};
      return {Outcome::Fail, b->name(), "wrong password"};
    }
    if (has_lookup_) decoy_verify(request.password.view());
    return {Outcome::Fail, "-", "unknown user", true};
  } catch (const std::exception& e) {
    return {Outcome::TempFail, "-", std::string("internal error: ") + e.what()};
  }
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
      backend::LookupResult r = b->lookup(q);
      if (r.status == backend::Status::Unknown) continue;
      out.backend = b->name();
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

std::shared_ptr<const BackendChain> build_chain(const config::Config& config) {
  std::vector<std::unique_ptr<backend::Backend>> backends;
  for (const auto& spec : config.backends) backends.push_back(backend::create(spec));
  return std::make_shared<BackendChain>(std::move(backends));
}

Authenticator::Authenticator(EventLoop& loop, WorkerPool& pool,
                             std::shared_ptr<const BackendChain> chain)
    : loop_(loop), pool_(pool), chain_(std::move(chain)) {}

void log_attempt(const AuthRequest& r, const AuthResult& result,
                 std::chrono::steady_clock::time_point start) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  std::string line = "auth:";
  line += log::kv("result", outcome_name(result.outcome));
  line += log::kv("proto", r.protocol);
  if (!r.mechanism.empty()) line += log::kv("mech", r.mechanism);
  line += log::kv("user", r.user);
  line += log::kv("service", r.service);
  line += log::kv("realm", r.realm);
  line += log::kv("rip", r.client_addr);
  line += log::kv("backend", result.backend);
  line += log::kv("reason", result.reason);
  line += log::kv("ms", static_cast<long long>(ms));
  if (result.outcome == Outcome::TempFail) log::warning(line);
  else log::info(line);
}

void Authenticator::authenticate(AuthRequest request, Done done) {
  const auto start = std::chrono::steady_clock::now();
  log::debug("auth: request" + log::kv("proto", request.protocol) + log::kv("user", request.user) +
             log::kv("service", request.service) + log::kv("realm", request.realm) +
             log::kv("rip", request.client_addr) +
             log::kv("password_bytes", static_cast<long long>(request.password.size())));
  auto shared = std::make_shared<AuthRequest>(std::move(request));
  auto chain = chain_;
  ++in_flight_;
  const bool queued = pool_.submit([this, shared, chain, done, start]() -> WorkerPool::Continuation {
    AuthResult result = chain->check_password(*shared);
    shared->password.clear();
    return [this, shared, result = std::move(result), done, start] {
      const double ms = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - start).count();
      if (!result.unknown_user && result.outcome != Outcome::TempFail) {
        known_ms_ = known_ms_ == 0 ? ms : known_ms_ * 0.9 + ms * 0.1;
      } else if (result.unknown_user && known_ms_ > ms) {
        // Hold the answer back so that it takes as long as a known user's.
        const auto pad = std::chrono::milliseconds(static_cast<long>(std::min(known_ms_ - ms, 2000.0)));
        if (pad.count() > 0) {
          loop_.add_timer(pad, [this, shared, result, done, start] {
            --in_flight_;
            log_attempt(*shared, result, start);
            done(result);
          });
          return;
        }
      }
      --in_flight_;
      log_attempt(*shared, result, start);
      done(result);
    };
  });
  if (!queued) {
    --in_flight_;
    AuthResult result{Outcome::TempFail, "-", "worker queue full"};
    log_attempt(*shared, result, start);
    done(result);
  }
}

}  // namespace mailauth::auth
