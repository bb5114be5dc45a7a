// Internal to src/password: the verifier and hasher families behind the
// registry in schemes.cc.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "src/password/schemes.h"

namespace mailauth::password::detail {

// crypt(3) through libxcrypt's crypt_rn (thread-safe); Argon2 PHC strings
// through libargon2.
Verdict verify_crypt(std::string_view stored, std::string_view password);
Verdict verify_argon2(std::string_view stored, std::string_view password);
std::string hash_crypt(std::string_view prefix, unsigned long cost, std::string_view password);
std::string hash_argon2id(std::string_view password);

// Encoding of digest bytes in a {SCHEME} value.
enum class Encoding { Guess, Hex, Base64 };

// Unsalted digests: SHA, SHA256, SHA512, PLAIN-MD5/LDAP-MD5 ("MD5" name).
Verdict verify_digest(std::string_view algorithm, std::string_view data, Encoding enc,
                      std::string_view password);
// Salted digests: digest(password ‖ salt) ‖ salt.
Verdict verify_salted_digest(std::string_view algorithm, std::string_view data, Encoding enc,
                             std::string_view password);
std::string hash_salted_digest(std::string_view algorithm, std::string_view password);
// Dovecot's CRAM-MD5/HMAC-MD5 stored context.
Verdict verify_cram_md5(std::string_view data, Encoding enc, std::string_view password);
std::string cram_md5_context(std::string_view password);  // 32 raw bytes
std::optional<std::string> decode_cram_md5(std::string_view data, Encoding enc);
// Hex HMAC-MD5 of `challenge` from a 32-byte stored context.
std::optional<std::string> cram_md5_from_context(std::string_view context,
                                                 std::string_view challenge);
// Dovecot's PBKDF2: $1$<salt>$<rounds>$<40 hex>.
Verdict verify_pbkdf2(std::string_view data, std::string_view password);

// SCRAM verifiers: "<iter>,<b64 salt>,<b64 StoredKey>,<b64 ServerKey>".
Verdict verify_scram(std::string_view algorithm, std::string_view data, std::string_view password);
std::string hash_scram(std::string_view algorithm, std::string_view password);

// Random bytes from libsodium.
std::string random_bytes(std::size_t n);

}  // namespace mailauth::password::detail
