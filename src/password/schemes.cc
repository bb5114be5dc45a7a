#include "src/password/schemes.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <stdexcept>

#include "src/password/scheme_impl.h"
#include "src/util/encoding.h"

namespace mailauth::password {

using detail::Encoding;

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// A {SCHEME} prefix split into name, encoding suffix and data.
struct Prefixed {
  std::string name;  // upper case, without the suffix
  Encoding encoding = Encoding::Guess;
  bool bad_suffix = false;
  std::string_view data;
};

std::optional<Prefixed> split_prefix(std::string_view stored) {
  if (stored.size() < 3 || stored.front() != '{') return std::nullopt;
  const auto close = stored.find('}');
  if (close == std::string_view::npos || close == 1 || close > 40) return std::nullopt;
  Prefixed p;
  std::string name = upper(stored.substr(1, close - 1));
  p.data = stored.substr(close + 1);
  if (const auto dot = name.rfind('.'); dot != std::string::npos) {
    const std::string suffix = name.substr(dot + 1);
    if (suffix == "HEX") p.encoding = Encoding::Hex;
    else if (suffix == "B64" || suffix == "BASE64") p.encoding = Encoding::Base64;
    else p.bad_suffix = true;
    name.resize(dot);
  }
  p.name = std::move(name);
  return p;
}

// How a Dovecot scheme name is verified.
enum class Family {
  Plain, PlainTrunc, Crypt, Argon2, Md5Auto, Digest, SaltedDigest, CramMd5, Pbkdf2, Scram
};

struct SchemeDef {
  const char* name;
  Family family;
  const char* algorithm;  // digest / SCRAM algorithm, where it applies
};

constexpr std::array kSchemes = {
    SchemeDef{"PLAIN", Family::Plain, ""},
    SchemeDef{"CLEAR", Family::Plain, ""},
    SchemeDef{"CLEARTEXT", Family::Plain, ""},
    SchemeDef{"PLAIN-TRUNC", Family::PlainTrunc, ""},
    SchemeDef{"CRYPT", Family::Crypt, ""},
    SchemeDef{"DES-CRYPT", Family::Crypt, ""},
    SchemeDef{"MD5-CRYPT", Family::Crypt, ""},
    SchemeDef{"SHA256-CRYPT", Family::Crypt, ""},
    SchemeDef{"SHA512-CRYPT", Family::Crypt, ""},
    SchemeDef{"BLF-CRYPT", Family::Crypt, ""},
    SchemeDef{"ARGON2I", Family::Argon2, ""},
    SchemeDef{"ARGON2ID", Family::Argon2, ""},
    SchemeDef{"MD5", Family::Md5Auto, "MD5"},
    SchemeDef{"PLAIN-MD5", Family::Digest, "MD5"},
    SchemeDef{"LDAP-MD5", Family::Digest, "MD5"},
    SchemeDef{"SHA", Family::Digest, "SHA1"},
    SchemeDef{"SHA1", Family::Digest, "SHA1"},
    SchemeDef{"SHA256", Family::Digest, "SHA256"},
    SchemeDef{"SHA512", Family::Digest, "SHA512"},
    SchemeDef{"SMD5", Family::SaltedDigest, "MD5"},
    SchemeDef{"SSHA", Family::SaltedDigest, "SHA1"},
    SchemeDef{"SSHA256", Family::SaltedDigest, "SHA256"},
    SchemeDef{"SSHA512", Family::SaltedDigest, "SHA512"},
    SchemeDef{"CRAM-MD5", Family::CramMd5, ""},
    SchemeDef{"HMAC-MD5", Family::CramMd5, ""},
    SchemeDef{"PBKDF2", Family::Pbkdf2, ""},
    SchemeDef{"SCRAM-SHA-1", Family::Scram, "SHA1"},
    SchemeDef{"SCRAM-SHA-256", Family::Scram, "SHA256"},
};

const SchemeDef* find_scheme(std::string_view name) {
  for (const auto& s : kSchemes)
    if (name == s.name) return &s;
  return nullptr;
}

std::optional<std::string> decode_plain(std::string_view data, Encoding enc) {
  switch (enc) {
    case Encoding::Guess: return std::string(data);
    case Encoding::Hex: return hex_decode(data);
    case Encoding::Base64: return base64_decode(data);
  }
  return std::nullopt;
}

Verdict verify_plain(std::string_view data, Encoding enc, std::string_view password) {
  auto plain = decode_plain(data, enc);
  if (!plain) return Verdict::Invalid;
  const bool ok = constant_time_equal(*plain, password);
  wipe(plain->data(), plain->size());
  return ok ? Verdict::Match : Verdict::Mismatch;
}

// {PLAIN-TRUNC}<len>-<password>: a stored password of exactly <len> bytes
// matches an attempt of at least <len> bytes on its first <len> bytes.
Verdict verify_plain_trunc(std::string_view data, Encoding enc, std::string_view password) {
  auto plain = decode_plain(data, enc);
  if (!plain) return Verdict::Invalid;
  std::string_view v = *plain;
  Verdict verdict = Verdict::Mismatch;
  const auto dash = v.find('-');
  std::size_t len = 0;
  if (dash != std::string_view::npos && dash > 0 &&
      std::from_chars(v.data(), v.data() + dash, len).ptr == v.data() + dash) {
    std::string_view pw = v.substr(dash + 1);
    if (pw.size() == len && password.size() >= len)
      verdict = constant_time_equal(pw, password.substr(0, len)) ? Verdict::Match
                                                                   : Verdict::Mismatch;
    else
      verdict = constant_time_equal(pw, password) ? Verdict::Match : Verdict::Mismatch;
  } else {
    verdict = constant_time_equal(v, password) ? Verdict::Match : Verdict::Mismatch;
  }
  wipe(plain->data(), plain->size());
  return verdict;
}

Verdict verify_crypt_or_argon2(std::string_view data, std::string_view password) {
  if (data.rfind("$argon2", 0) == 0) return detail::verify_argon2(data, password);
  return detail::verify_crypt(data, password);
}

Verdict verify_prefixed(const Prefixed& p, std::string_view password) {
  const SchemeDef* def = find_scheme(p.name);
  if (def == nullptr || p.bad_suffix) return Verdict::Invalid;
  switch (def->family) {
    case Family::Plain: return verify_plain(p.data, p.encoding, password);
    case Family::PlainTrunc: return verify_plain_trunc(p.data, p.encoding, password);
    case Family::Crypt:
    case Family::Argon2: return verify_crypt_or_argon2(p.data, password);
    case Family::Md5Auto:
      if (p.data.rfind("$1$", 0) == 0) return detail::verify_crypt(p.data, password);
      return detail::verify_digest("MD5", p.data, p.encoding, password);
    case Family::Digest:
      return detail::verify_digest(def->algorithm, p.data, p.encoding, password);
    case Family::SaltedDigest:
      return detail::verify_salted_digest(def->algorithm, p.data, p.encoding, password);
    case Family::CramMd5: return detail::verify_cram_md5(p.data, p.encoding, password);
    case Family::Pbkdf2: return detail::verify_pbkdf2(p.data, password);
    case Family::Scram: return detail::verify_scram(def->algorithm, p.data, password);
  }
  return Verdict::Invalid;
}

}  // namespace

void init() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium could not be initialised");
}

Verdict verify(std::string_view stored, std::string_view password,
               std::string_view default_scheme) {
  if (stored.empty()) return Verdict::Invalid;
  if (auto p = split_prefix(stored)) return verify_prefixed(*p, password);
  const std::string def = upper(default_scheme);
  if (def == "CRYPT") return verify_crypt_or_argon2(stored, password);
  Prefixed p;
  p.name = def;
  p.data = stored;
  return verify_prefixed(p, password);
}

bool is_cheap(std::string_view stored, std::string_view default_scheme) {
  if (stored.empty()) return false;
  std::optional<Prefixed> p = split_prefix(stored);
  if (!p) {
    const std::string def = upper(default_scheme);
    if (def == "CRYPT") return false;
    Prefixed bare;
    bare.name = def;
    bare.data = stored;
    p = bare;
  }
  const SchemeDef* def = find_scheme(p->name);
  if (def == nullptr || p->bad_suffix) return false;
  switch (def->family) {
    case Family::Plain:
    case Family::PlainTrunc:
    case Family::Digest:
    case Family::SaltedDigest:
    case Family::CramMd5: return true;
    case Family::Md5Auto: return p->data.rfind("$1$", 0) != 0;  // not MD5-crypt
    case Family::Crypt:
    case Family::Argon2:
    case Family::Pbkdf2:
    case Family::Scram: return false;
  }
  return false;
}

std::string scheme_of(std::string_view stored, std::string_view default_scheme) {
  if (auto p = split_prefix(stored)) return find_scheme(p->name) ? p->name : "UNKNOWN";
  if (upper(default_scheme) != "CRYPT") return upper(default_scheme);
  if (stored.rfind("$argon2id$", 0) == 0) return "ARGON2ID";
  if (stored.rfind("$argon2i$", 0) == 0) return "ARGON2I";
  if (stored.rfind("$y$", 0) == 0) return "YESCRYPT";
  if (stored.rfind("$gy$", 0) == 0) return "GOST-YESCRYPT";
  if (stored.rfind("$7$", 0) == 0) return "SCRYPT";
  if (stored.rfind("$2", 0) == 0) return "BCRYPT";
  if (stored.rfind("$6$", 0) == 0) return "SHA512-CRYPT";
  if (stored.rfind("$5$", 0) == 0) return "SHA256-CRYPT";
  if (stored.rfind("$1$", 0) == 0) return "MD5-CRYPT";
  if (stored.rfind("$sha1$", 0) == 0) return "SHA1-CRYPT";
  if (stored.rfind("$md5", 0) == 0) return "SUN-MD5-CRYPT";
  if (stored.rfind("_", 0) == 0) return "BSDI-DES-CRYPT";
  if (stored.size() >= 13 && stored.front() != '$' && stored.front() != '!' &&
      stored.front() != '*')
    return "DES-CRYPT";
  return "UNKNOWN";
}

std::size_t password_bytes_read(std::string_view stored, std::string_view default_scheme) {
  std::string scheme = scheme_of(stored, default_scheme);
  if (auto p = split_prefix(stored); p && (p->name == "CRYPT" || p->name == "DES-CRYPT" ||
                                           p->name == "BLF-CRYPT")) {
    scheme = p->name == "CRYPT" ? scheme_of(p->data, "CRYPT") : p->name;
  }
  if (scheme == "DES-CRYPT") return 8;
  if (scheme == "BCRYPT" || scheme == "BLF-CRYPT") return 72;
  return 0;
}

std::optional<Secret> plaintext_of(std::string_view stored, std::string_view default_scheme) {
  std::optional<Prefixed> p = split_prefix(stored);
  if (!p) {
    if (upper(default_scheme) != "PLAIN") return std::nullopt;
    return Secret(stored);
  }
  const SchemeDef* def = find_scheme(p->name);
  if (def == nullptr || def->family != Family::Plain || p->bad_suffix) return std::nullopt;
  auto plain = decode_plain(p->data, p->encoding);
  if (!plain) return std::nullopt;
  Secret out(*plain);
  wipe(plain->data(), plain->size());
  return out;
}

std::string random_password(std::size_t length) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string out(length, '\0');
  for (char& c : out) c = kAlphabet[randombytes_uniform(sizeof kAlphabet - 1)];
  return out;
}

std::optional<std::string> cram_md5_response(std::string_view stored,
                                             std::string_view default_scheme,
                                             std::string_view challenge) {
  if (auto p = split_prefix(stored)) {
    const SchemeDef* def = find_scheme(p->name);
    if (def != nullptr && def->family == Family::CramMd5 && !p->bad_suffix) {
      auto context = detail::decode_cram_md5(p->data, p->encoding);
      if (!context) return std::nullopt;
      auto out = detail::cram_md5_from_context(*context, challenge);
      wipe(context->data(), context->size());
      return out;
    }
  }
  auto plain = plaintext_of(stored, default_scheme);
  if (!plain) return std::nullopt;
  std::string context = detail::cram_md5_context(plain->view());
  auto out = detail::cram_md5_from_context(context, challenge);
  wipe(context.data(), context.size());
  return out;
}

// ---- hashing ---------------------------------------------------------------

namespace {
struct HashDef {
  const char* name;
  std::string (*fn)(std::string_view password);
};

const HashDef kHashers[] = {
    {"argon2id", [](std::string_view pw) { return detail::hash_argon2id(pw); }},
    {"yescrypt", [](std::string_view pw) { return detail::hash_crypt("$y$", 0, pw); }},
    {"bcrypt", [](std::string_view pw) { return detail::hash_crypt("$2b$", 10, pw); }},
    {"sha512-crypt", [](std::string_view pw) { return detail::hash_crypt("$6$", 0, pw); }},
    {"sha256-crypt", [](std::string_view pw) { return detail::hash_crypt("$5$", 0, pw); }},
    {"scram-sha-256",
     [](std::string_view pw) { return "{SCRAM-SHA-256}" + detail::hash_scram("SHA256", pw); }},
    {"scram-sha-1",
     [](std::string_view pw) { return "{SCRAM-SHA-1}" + detail::hash_scram("SHA1", pw); }},
    {"ssha512",
     [](std::string_view pw) { return "{SSHA512}" + detail::hash_salted_digest("SHA512", pw); }},
    {"cram-md5",
     [](std::string_view pw) { return "{CRAM-MD5}" + hex_encode(detail::cram_md5_context(pw)); }},
    {"plain", [](std::string_view pw) { return "{PLAIN}" + std::string(pw); }},
};
}  // namespace

std::string hash(std::string_view scheme, std::string_view password) {
  std::string name(scheme);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& h : kHashers)
    if (name == h.name) return h.fn(password);
  throw std::invalid_argument("unknown password scheme '" + std::string(scheme) + "'");
}

const std::vector<std::string>& hash_schemes() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& h : kHashers) v.emplace_back(h.name);
    return v;
  }();
  return names;
}

std::string with_dovecot_prefix(std::string_view hashed) {
  if (!hashed.empty() && hashed.front() == '{') return std::string(hashed);
  if (hashed.rfind("$argon2id$", 0) == 0) return "{ARGON2ID}" + std::string(hashed);
  if (hashed.rfind("$argon2i$", 0) == 0) return "{ARGON2I}" + std::string(hashed);
  return "{CRYPT}" + std::string(hashed);
}

}  // namespace mailauth::password
