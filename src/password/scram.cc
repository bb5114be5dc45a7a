#include "src/password/scram.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cctype>
#include <charconv>
#include <stdexcept>

#include "src/password/scheme_impl.h"
#include "src/password/schemes.h"
#include "src/util/encoding.h"

namespace mailauth::password {

namespace {
const EVP_MD* md_for(std::string_view algorithm) {
  if (algorithm == "SHA1") return EVP_sha1();
  if (algorithm == "SHA256") return EVP_sha256();
  throw std::invalid_argument("unknown SCRAM algorithm");
}
constexpr unsigned kMinIterations = 4096;
constexpr unsigned kMaxIterations = 10'000'000;
}  // namespace

std::size_t scram_digest_size(std::string_view algorithm) {
  return static_cast<std::size_t>(EVP_MD_get_size(md_for(algorithm)));
}

std::string scram_hmac(std::string_view algorithm, std::string_view key, std::string_view message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(md_for(algorithm), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), out,
           &len) == nullptr)
    throw std::runtime_error("HMAC failed");
  std::string r(reinterpret_cast<char*>(out), len);
  wipe(out, sizeof out);
  return r;
}

std::string scram_hash(std::string_view algorithm, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md_for(algorithm), nullptr) != 1)
    throw std::runtime_error("digest failed");
  std::string r(reinterpret_cast<char*>(out), len);
  wipe(out, sizeof out);
  return r;
}

std::optional<ScramKeys> scram_parse(std::string_view algorithm, std::string_view data) {
  std::string_view parts[4];
  for (int i = 0; i < 4; ++i) {
    const auto comma = data.find(',');
    if (i < 3 && comma == std::string_view::npos) return std::nullopt;
    if (i == 3 && comma != std::string_view::npos) return std::nullopt;
    parts[i] = data.substr(0, comma);
    data = i < 3 ? data.substr(comma + 1) : std::string_view{};
  }
  ScramKeys keys;
  if (std::from_chars(parts[0].data(), parts[0].data() + parts[0].size(), keys.iterations).ptr !=
          parts[0].data() + parts[0].size() ||
      keys.iterations < kMinIterations || keys.iterations > kMaxIterations)
    return std::nullopt;
  auto salt = base64_decode(parts[1]);
  auto stored = base64_decode(parts[2]);
  auto server = base64_decode(parts[3]);
  const std::size_t n = scram_digest_size(algorithm);
  if (!salt || salt->empty() || !stored || stored->size() != n || !server || server->size() != n)
    return std::nullopt;
  keys.salt = std::move(*salt);
  keys.stored_key = Secret(*stored);
  keys.server_key = Secret(*server);
  wipe(stored->data(), stored->size());
  wipe(server->data(), server->size());
  return keys;
}

namespace {
std::string salted_password(std::string_view algorithm, std::string_view password,
                            std::string_view salt, unsigned iterations) {
  const std::size_t n = scram_digest_size(algorithm);
  std::string salted(n, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), static_cast<int>(iterations),
                        md_for(algorithm), static_cast<int>(n),
                        reinterpret_cast<unsigned char*>(salted.data())) != 1)
    throw std::runtime_error("PBKDF2 failed");
  return salted;
}
}  // namespace

std::string scram_client_key(std::string_view algorithm, std::string_view password,
                             std::string_view salt, unsigned iterations) {
  std::string salted = salted_password(algorithm, password, salt, iterations);
  std::string key = scram_hmac(algorithm, salted, "Client Key");
  wipe(salted.data(), salted.size());
  return key;
}

ScramKeys scram_derive(std::string_view algorithm, std::string_view password,
                       std::string_view salt, unsigned iterations) {
  std::string salted = salted_password(algorithm, password, salt, iterations);
  std::string client_key = scram_hmac(algorithm, salted, "Client Key");
  std::string server_key = scram_hmac(algorithm, salted, "Server Key");
  std::string stored_key = scram_hash(algorithm, client_key);
  ScramKeys keys;
  keys.iterations = iterations;
  keys.salt = std::string(salt);
  keys.stored_key = Secret(stored_key);
  keys.server_key = Secret(server_key);
  for (std::string* s : {&salted, &client_key, &server_key, &stored_key}) wipe(s->data(), s->size());
  return keys;
}

std::string scram_format(const ScramKeys& keys) {
  return std::to_string(keys.iterations) + "," + base64_encode(keys.salt) + "," +
         base64_encode(keys.stored_key.view()) + "," + base64_encode(keys.server_key.view());
}

std::optional<ScramKeys> scram_keys_for(std::string_view algorithm, std::string_view stored,
                                        std::string_view default_scheme, std::string_view salt,
                                        unsigned iterations, bool* derived) {
  if (derived != nullptr) *derived = false;
  const std::string prefix =
      algorithm == "SHA1" ? "{SCRAM-SHA-1}" : algorithm == "SHA256" ? "{SCRAM-SHA-256}" : "";
  if (prefix.empty()) return std::nullopt;
  if (stored.size() > prefix.size()) {
    std::string head(stored.substr(0, prefix.size()));
    for (char& c : head) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (head == prefix) return scram_parse(algorithm, stored.substr(prefix.size()));
  }
  auto plain = plaintext_of(stored, default_scheme);
  if (!plain) return std::nullopt;
  if (derived != nullptr) *derived = true;
  return scram_derive(algorithm, plain->view(), salt, iterations);
}

namespace detail {

Verdict verify_scram(std::string_view algorithm, std::string_view data, std::string_view password) {
  auto stored = scram_parse(algorithm, data);
  if (!stored) return Verdict::Invalid;
  ScramKeys derived = scram_derive(algorithm, password, stored->salt, stored->iterations);
  // Both keys must agree: StoredKey proves the client side, ServerKey the server side.
  const bool a = constant_time_equal(stored->stored_key.view(), derived.stored_key.view());
  const bool b = constant_time_equal(stored->server_key.view(), derived.server_key.view());
  return (a & b) ? Verdict::Match : Verdict::Mismatch;
}

std::string hash_scram(std::string_view algorithm, std::string_view password) {
  return scram_format(scram_derive(algorithm, password, random_bytes(16), kScramIterations));
}

}  // namespace detail
}  // namespace mailauth::password
