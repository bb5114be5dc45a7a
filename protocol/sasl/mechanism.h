// SASL mechanisms, server side, as pure state machines: client bytes in,
// a Step out.  The server (src/daemon/dovecot_server) carries out the step:
// sends a challenge, has a password checked by the backend chain, or fetches
// the user's stored credential and hands it back.
//
//   PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login): the password comes
//     in the clear and is checked like any other login -> VerifyPassword.
//   CRAM-MD5 (RFC 2195), SCRAM-SHA-1/-256 (RFC 5802, 7677): the server needs
//     the stored credential (plaintext, {CRAM-MD5} or {SCRAM-*}) ->
//     NeedCredential, then credential() continues.
//
// Not thread-safe; one instance per request.  credential() may be called on
// a worker thread (SCRAM derives keys with PBKDF2 there) while nothing else
// touches the instance.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/util/secret.h"

namespace mailauth::sasl {

struct Step {
  enum class Kind {
    Challenge,       // send `challenge` (raw bytes) and wait for the client's answer
    VerifyPassword,  // check `password` for `user` with the backend chain
    NeedCredential,  // look up `user`'s stored credential, then call credential()
    Success,         // authenticated as `user`; `final_data` (SCRAM v=) may go with OK
    Failure,         // `reason` is for the log only
  };
  Kind kind = Kind::Failure;
  std::string challenge;
  std::string user;
  Secret password;
  std::string final_data;
  std::string reason;

  static Step challenge_of(std::string data) {
    Step s;
    s.kind = Kind::Challenge;
    s.challenge = std::move(data);
    return s;
  }
  static Step failure(std::string why, std::string user = {}) {
    Step s;
    s.kind = Kind::Failure;
    s.reason = std::move(why);
    s.user = std::move(user);
    return s;
  }
};

// What credential() receives: the stored value and how to read it, or
// nothing for an unknown user (the mechanism then goes on with decoy values
// so the exchange looks the same, and fails at the end).
struct StoredCredential {
  std::string_view stored;
  std::string_view default_scheme = "CRYPT";
};

class Mechanism {
 public:
  virtual ~Mechanism() = default;
  // `initial` is the initial response, if the client sent one (possibly empty).
  virtual Step start(const std::optional<std::string_view>& initial) = 0;
  virtual Step step(std::string_view response) = 0;
  // After NeedCredential.  nullopt: the user is unknown.
  virtual Step credential(const std::optional<StoredCredential>& cred);
  // The plaintext forms this mechanism can use: true if it needs a stored
  // credential (CRAM-MD5, SCRAM) rather than the password (PLAIN, LOGIN).
  virtual bool needs_credential() const { return false; }
};

struct MechanismOptions {
  bool final_resp_ok = false;    // SCRAM: the client takes v= inside OK
  std::string hostname = "localhost";  // CRAM-MD5 challenge
};

// Upper-case names: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256.
std::unique_ptr<Mechanism> create(std::string_view name, const MechanismOptions& options);

// A mechanism name as it may appear in a log line: the name itself when it
// is one that SASL registers (ours, or another a client may ask for), else
// "unknown".  A client can put anything where the name goes — base64 of its
// credentials included — so an unregistered name is never logged.
std::string loggable_name(std::string_view name);
const std::vector<std::string>& supported();

}  // namespace mailauth::sasl
