// crypt(3) through libxcrypt and Argon2 through libargon2.
#include <argon2.h>
#include <crypt.h>
#include <sodium.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "src/password/scheme_impl.h"

namespace mailauth::password::detail {

namespace {
// Argon2id parameters for new hashes: OWASP's recommended minimum (m=19 MiB,
// t=2, p=1), 16-byte salt, 32-byte tag.  About a fifth of the cost of
// Dovecot's m=64 MiB, t=3, so a mail server that checks a password on every
// SMTP/IMAP login keeps its throughput; stored hashes with any cost verify.
constexpr uint32_t kArgonMemoryKiB = 19456;
constexpr uint32_t kArgonPasses = 2;
constexpr uint32_t kArgonLanes = 1;
// Stored strings asking for more memory than this are refused as malformed
// rather than allowed to exhaust the daemon.
constexpr unsigned long kArgonMaxMemoryKiB = 1024UL * 1024UL;

// A NUL-terminated copy of the password, wiped on destruction.
class CString {
 public:
  explicit CString(std::string_view s) : buf_(s.size() + 1) {
    if (!s.empty()) std::memcpy(buf_.data.get(), s.data(), s.size());
    buf_.data[s.size()] = '\0';
  }
  const char* c_str() const { return buf_.data.get(); }

 private:
  struct Buf {
    explicit Buf(std::size_t n) : data(std::make_unique<char[]>(n)), size(n) {}
    ~Buf() { sodium_memzero(data.get(), size); }
    std::unique_ptr<char[]> data;
    std::size_t size;
  } buf_;
};

struct CryptData {
  CryptData() { std::memset(&data, 0, sizeof data); }
  ~CryptData() { sodium_memzero(&data, sizeof data); }
  crypt_data data;
};
}  // namespace

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  randombytes_buf(out.data(), n);
  return out;
}

Verdict verify_crypt(std::string_view stored, std::string_view password) {
  // crypt(3) takes C strings: a password with a NUL cannot be what was hashed.
  if (stored.empty() || stored.find('\0') != std::string_view::npos) return Verdict::Invalid;
  if (stored.front() == '!' || stored.front() == '*') return Verdict::Invalid;  // locked marker
  if (password.find('\0') != std::string_view::npos) return Verdict::Mismatch;
  const std::string setting(stored);
  CString phrase(password);
  auto data = std::make_unique<CryptData>();
  const char* out = crypt_rn(phrase.c_str(), setting.c_str(), &data->data, sizeof data->data);
  if (out == nullptr || out[0] == '*') return Verdict::Invalid;
  const std::size_t n = std::strlen(out);
  if (n != stored.size()) return Verdict::Mismatch;
  return sodium_memcmp(out, stored.data(), n) == 0 ? Verdict::Match : Verdict::Mismatch;
}

Verdict verify_argon2(std::string_view stored, std::string_view password) {
  argon2_type type;
  if (stored.rfind("$argon2id$", 0) == 0) type = Argon2_id;
  else if (stored.rfind("$argon2i$", 0) == 0) type = Argon2_i;
  else if (stored.rfind("$argon2d$", 0) == 0) type = Argon2_d;
  else return Verdict::Invalid;
  // Refuse absurd memory costs before libargon2 allocates them.
  if (const auto m = stored.find("m="); m != std::string_view::npos) {
    unsigned long kib = std::strtoul(std::string(stored.substr(m + 2, 12)).c_str(), nullptr, 10);
    if (kib > kArgonMaxMemoryKiB) return Verdict::Invalid;
  }
  const std::string encoded(stored);
  const int rc = argon2_verify(encoded.c_str(), password.data(), password.size(), type);
  if (rc == ARGON2_OK) return Verdict::Match;
  if (rc == ARGON2_VERIFY_MISMATCH) return Verdict::Mismatch;
  return Verdict::Invalid;
}

std::string hash_crypt(std::string_view prefix, unsigned long cost, std::string_view password) {
  if (password.find('\0') != std::string_view::npos)
    throw std::invalid_argument("a crypt(3) password cannot contain a NUL byte");
  const std::string rnd = random_bytes(16);
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  const std::string pfx(prefix);
  if (crypt_gensalt_rn(pfx.c_str(), cost, rnd.data(), static_cast<int>(rnd.size()), setting,
                       sizeof setting) == nullptr)
    throw std::runtime_error("crypt_gensalt failed for " + pfx);
  CString phrase(password);
  auto data = std::make_unique<CryptData>();
  const char* out = crypt_rn(phrase.c_str(), setting, &data->data, sizeof data->data);
  if (out == nullptr || out[0] == '*') throw std::runtime_error("crypt failed for " + pfx);
  return out;
}

std::string hash_argon2id(std::string_view password) {
  const std::string salt = random_bytes(16);
  constexpr std::size_t kTagLen = 32;
  const std::size_t len =
      argon2_encodedlen(kArgonPasses, kArgonMemoryKiB, kArgonLanes, 16, kTagLen, Argon2_id);
  std::string encoded(len, '\0');
  const int rc = argon2id_hash_encoded(kArgonPasses, kArgonMemoryKiB, kArgonLanes, password.data(),
                                       password.size(), salt.data(), salt.size(), kTagLen,
                                       encoded.data(), encoded.size());
  if (rc != ARGON2_OK) throw std::runtime_error(std::string("argon2: ") + argon2_error_message(rc));
  encoded.resize(std::strlen(encoded.c_str()));
  return encoded;
}

}  // namespace mailauth::password::detail
