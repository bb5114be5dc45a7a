// The password scheme registry: the one place that understands stored
// credentials.  Backends hand over what they store; mechanisms and the
// authenticator ask here whether a password matches.  Nothing else parses
// hashes.
//
// Stored forms (interface.md, "Password hashes it verifies"):
//   - crypt(3) strings libxcrypt knows ($y$, $gy$, $7$, $2b$/$2y$/$2a$, $6$,
//     $5$, $1$, $sha1$, $md5, _ext-DES, traditional DES),
//   - Argon2 PHC strings ($argon2id$…, $argon2i$…),
//   - Dovecot {SCHEME} strings, with the optional .HEX/.B64 encoding suffix,
//   - a bare plaintext value, when the backend says its default scheme is PLAIN.
//
// All functions are thread-safe and may block for as long as the hash costs:
// call them on a worker thread, never on the event loop.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/util/secret.h"

namespace mailauth::password {

enum class Verdict {
  Match,     // the password is right
  Mismatch,  // the password is wrong
  Invalid,   // the stored value is malformed or of an unknown scheme: never a match
};

// Verify a password against a stored credential.  `default_scheme` says how to
// read a value without a {SCHEME} prefix: "CRYPT" (crypt(3) and Argon2
// strings) or "PLAIN" (the value is the password).  Comparisons are constant
// time; intermediate buffers are wiped.
Verdict verify(std::string_view stored, std::string_view password,
               std::string_view default_scheme = "CRYPT");

// True when verifying against `stored` costs about a microsecond: plaintext
// forms and single (salted) digests ({PLAIN}, {SSHA512}, {CRAM-MD5}, …).
// Only such a verify() may run on the event loop.  Any crypt(3), Argon2,
// PBKDF2 or SCRAM value, and anything malformed or unknown, is not cheap.
bool is_cheap(std::string_view stored, std::string_view default_scheme = "CRYPT");

// The scheme a stored value uses, upper case, for log lines ("ARGON2ID",
// "SHA512-CRYPT", "PLAIN", …) or "UNKNOWN".  Never returns any part of the hash.
std::string scheme_of(std::string_view stored, std::string_view default_scheme = "CRYPT");

// How many bytes of a password the stored value's scheme reads: 8 for
// traditional DES crypt, 72 for bcrypt, 0 when it reads all of them.  A
// longer password that verified was only verified up to there, so it must
// not be stored under another scheme (rehash-on-login).
std::size_t password_bytes_read(std::string_view stored, std::string_view default_scheme = "CRYPT");

// Hash a password for storage.  Scheme names (case-insensitive) are those of
// hash_schemes(); throws std::invalid_argument for any other.  Salts come from
// libsodium's CSPRNG.  The result has no {SCHEME} prefix for crypt(3) and
// Argon2 schemes (what pam_pwdfile and shadow read) and the Dovecot prefix
// for the others ({SCRAM-SHA-256}…, {SSHA512}…, {PLAIN}…).
std::string hash(std::string_view scheme, std::string_view password);
const std::vector<std::string>& hash_schemes();
// Prefix with the Dovecot scheme name where the result has none, for stores
// shared with Dovecot or PostfixAdmin: "$y$…" -> "{CRYPT}$y$…",
// "$argon2id$…" -> "{ARGON2ID}$argon2id$…".
std::string with_dovecot_prefix(std::string_view hashed);

// The plaintext, if the stored value holds it ({PLAIN}, {CLEAR}, their .B64
// and .HEX forms, or a bare value with default scheme PLAIN).
std::optional<Secret> plaintext_of(std::string_view stored,
                                   std::string_view default_scheme = "CRYPT");

// A random password of `length` characters from [A-Za-z0-9] (about 5.95 bits
// each), for mailauth-user --random and decoys.
std::string random_password(std::size_t length = 20);

// CRAM-MD5 (RFC 2195): the lower-case hex HMAC-MD5 of `challenge` keyed with
// the user's password, computed from a plaintext credential or from
// Dovecot's {CRAM-MD5}/{HMAC-MD5} stored context.  nullopt when the stored
// form cannot serve CRAM-MD5 (any real hash).
std::optional<std::string> cram_md5_response(std::string_view stored,
                                             std::string_view default_scheme,
                                             std::string_view challenge);

// libsodium must be initialised once before hash() is used.  Idempotent.
void init();

}  // namespace mailauth::password
