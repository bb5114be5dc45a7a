// SCRAM (RFC 5802, RFC 7677) key material, shared by the {SCRAM-SHA-*}
// password schemes and the SCRAM SASL mechanisms.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "src/util/secret.h"

namespace mailauth::password {

// What a SCRAM server needs to check a proof: Dovecot's stored form
// "<iterations>,<b64 salt>,<b64 StoredKey>,<b64 ServerKey>".
struct ScramKeys {
  unsigned iterations = 0;
  std::string salt;
  Secret stored_key;
  Secret server_key;
};

// Algorithm names: "SHA1" or "SHA256".  Throw std::invalid_argument otherwise.
std::size_t scram_digest_size(std::string_view algorithm);
std::string scram_hmac(std::string_view algorithm, std::string_view key, std::string_view message);
std::string scram_hash(std::string_view algorithm, std::string_view data);

// Parse a stored verifier (the part after "{SCRAM-SHA-*}"); nullopt if
// malformed or if the iteration count is outside 4096 … 10 000 000.
std::optional<ScramKeys> scram_parse(std::string_view algorithm, std::string_view data);
// Derive the keys from a plaintext password.
ScramKeys scram_derive(std::string_view algorithm, std::string_view password,
                       std::string_view salt, unsigned iterations);
std::string scram_format(const ScramKeys& keys);
// ClientKey = HMAC(PBKDF2(password, salt, i), "Client Key"): what a client
// needs to build its proof.
std::string scram_client_key(std::string_view algorithm, std::string_view password,
                             std::string_view salt, unsigned iterations);

// The SCRAM keys a stored credential provides for `algorithm`: a matching
// {SCRAM-SHA-*} verifier as stored, or keys derived from a plaintext
// credential with the caller's `salt` and `iterations` (slow: call it on a
// worker; *derived says which).  nullopt when the stored form cannot serve
// that SCRAM variant (another hash, a malformed or other-variant verifier).
std::optional<ScramKeys> scram_keys_for(std::string_view algorithm, std::string_view stored,
                                        std::string_view default_scheme, std::string_view salt,
                                        unsigned iterations, bool* derived = nullptr);

// New verifiers get this many iterations and a 16-byte salt.
inline constexpr unsigned kScramIterations = 10000;

}  // namespace mailauth::password
