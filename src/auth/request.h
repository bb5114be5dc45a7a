// One authentication attempt as the protocols hand it to the authenticator,
// and its outcome.
#pragma once

#include <string>

#include "src/util/secret.h"

namespace mailauth::auth {

struct AuthRequest {
  std::string protocol;     // "mux" or "dovecot", for the log line
  std::string mechanism;    // "PLAIN", "LOGIN", … ; empty for mux
  std::string user;         // the name the backends look up (after realm joining)
  std::string realm;        // as the client sent it
  std::string service;      // "smtp", "imap", …
  std::string client_addr;  // remote IP when known
  Secret password;
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
  std::string reason;   // for the log only, never sent to the client
  bool unknown_user = false;  // no backend knew the user
  bool cached = false;        // answered from the credential cache
  std::string password_tag;   // keyed hash of the password tried (brute-force policy)
};

const char* outcome_name(Outcome o);

}  // namespace mailauth::auth
