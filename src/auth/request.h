// One authentication attempt as the protocols hand it to the authenticator,
// and its outcome.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "src/util/secret.h"

namespace mailauth::auth {

// Whether the client still wants the answer to a request.  The protocol side
// owns its requests and kill()s one when the client cancels it, its deadline
// passes or its connection goes away; work queued for a dead request is
// skipped, and a completion that finds its request dead is dropped (and
// counted), never delivered to whatever now uses the same wire id.  Ids
// name live requests on the wire; a Liveness is never reused.
class Liveness {
 public:
  void kill() { dead_.store(true, std::memory_order_relaxed); }
  // Any thread.
  bool dead() const { return dead_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> dead_{false};
};

struct AuthRequest {
  std::string protocol;     // "mux" or "dovecot", for the log line
  std::string mechanism;    // "PLAIN", "LOGIN", … ; empty for mux
  std::string user;         // the name the backends look up (after realm joining)
  std::string realm;        // as the client sent it
  std::string service;      // "smtp", "imap", …
  std::string client_addr;  // remote IP when known
  Secret password;
  // The request this attempt answers; null for callers that always want the
  // answer (tests, the command-line tools).
  std::shared_ptr<const Liveness> life;
  bool dead() const { return life != nullptr && life->dead(); }
};

enum class Outcome {
  Ok,        // credentials are right
  Fail,      // wrong password, unknown or disabled user, unusable stored hash
  TempFail,  // a backend could not answer, or the daemon is overloaded
};

struct AuthResult {
  AuthResult() = default;
  AuthResult(Outcome o, std::string b, std::string r, bool unknown = false)
      : outcome(o), backend(std::move(b)), reason(std::move(r)), unknown_user(unknown) {}

  Outcome outcome = Outcome::Fail;
  std::string backend;  // which backend decided ("-" when none did)
  // The name that backend knows the user by (Backend::canonical_user()):
  // what the attempt is logged, cached and answered (Dovecot user=) under.
  // Empty when no backend decided.
  std::string user;
  std::string reason;   // for the log only, never sent to the client
  bool unknown_user = false;  // no backend knew the user
  bool cached = false;        // answered from the credential cache
  bool stale = false;         // ... from its stale window, while the backend was down
  // A password check of a real credential's cost ran for this answer (the
  // stored hash, the decoy for an unknown user, or PAM).  A "no" without
  // one (a negative cache hit, an unknown user where no lookup backend can
  // supply a decoy) is held back to the time a real check takes.
  bool costed = true;
  std::string password_tag;   // keyed hash of the password tried (brute-force policy)
};

const char* outcome_name(Outcome o);

}  // namespace mailauth::auth
