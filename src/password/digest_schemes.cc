// Digest-based Dovecot schemes: {SHA*}, {SSHA*}, {SMD5}, {PLAIN-MD5},
// {LDAP-MD5}, {CRAM-MD5}/{HMAC-MD5}, {PBKDF2}.
#define OPENSSL_SUPPRESS_DEPRECATED 1  // MD5_CTX: CRAM-MD5 needs the raw chaining state
#include <openssl/evp.h>
#include <openssl/md5.h>

#include <charconv>
#include <cstring>
#include <stdexcept>
#include <string>

#include "src/password/scheme_impl.h"
#include "src/util/encoding.h"

namespace mailauth::password::detail {

namespace {

const EVP_MD* md_for(std::string_view algorithm) {
  if (algorithm == "MD5") return EVP_md5();
  if (algorithm == "SHA1") return EVP_sha1();
  if (algorithm == "SHA256") return EVP_sha256();
  if (algorithm == "SHA512") return EVP_sha512();
  return nullptr;
}

std::string digest(const EVP_MD* md, std::string_view a, std::string_view b = {}) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) throw std::bad_alloc();
  const bool ok = EVP_DigestInit_ex(ctx, md, nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, a.data(), a.size()) == 1 &&
                  EVP_DigestUpdate(ctx, b.data(), b.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, out, &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) throw std::runtime_error("digest failed");
  std::string result(reinterpret_cast<char*>(out), len);
  wipe(out, sizeof out);
  return result;
}

// Decode a fixed-length digest the way Dovecot does: an explicit suffix wins;
// otherwise 2×length characters means hex, anything else base64, and a hex
// decoding failure falls back to base64.
std::optional<std::string> decode_fixed(std::string_view data, Encoding enc, std::size_t len) {
  std::optional<std::string> out;
  if (enc == Encoding::Hex) out = hex_decode(data);
  else if (enc == Encoding::Base64) out = base64_decode(data);
  else {
    if (data.size() == 2 * len) out = hex_decode(data);
    if (!out) out = base64_decode(data);
  }
  if (out && out->size() != len) out.reset();
  return out;
}

Verdict compare(const std::string& expected, const std::string& actual) {
  return constant_time_equal(expected, actual) ? Verdict::Match : Verdict::Mismatch;
}

}  // namespace

Verdict verify_digest(std::string_view algorithm, std::string_view data, Encoding enc,
                      std::string_view password) {
  const EVP_MD* md = md_for(algorithm);
  if (md == nullptr) return Verdict::Invalid;
  const auto len = static_cast<std::size_t>(EVP_MD_get_size(md));
  auto expected = decode_fixed(data, enc, len);
  if (!expected) return Verdict::Invalid;
  return compare(*expected, digest(md, password));
}

Verdict verify_salted_digest(std::string_view algorithm, std::string_view data, Encoding enc,
                             std::string_view password) {
  const EVP_MD* md = md_for(algorithm);
  if (md == nullptr) return Verdict::Invalid;
  const auto len = static_cast<std::size_t>(EVP_MD_get_size(md));
  auto raw = enc == Encoding::Hex ? hex_decode(data) : base64_decode(data);
  if (!raw || raw->size() <= len) return Verdict::Invalid;
  const std::string_view salt = std::string_view(*raw).substr(len);
  return compare(raw->substr(0, len), digest(md, password, salt));
}

std::string hash_salted_digest(std::string_view algorithm, std::string_view password) {
  const EVP_MD* md = md_for(algorithm);
  if (md == nullptr) throw std::invalid_argument("unknown digest");
  const std::string salt = random_bytes(8);
  return base64_encode(digest(md, password, salt) + salt);
}

// Dovecot stores CRAM-MD5 secrets as the MD5 chaining state after the outer
// (opad) and the inner (ipad) key block: 2 × (A, B, C, D) as little-endian
// 32-bit words.  Anyone holding it can answer CRAM-MD5 challenges, so it is
// password-equivalent for that mechanism.
std::string cram_md5_context(std::string_view password) {
  unsigned char key[64] = {0};
  if (password.size() > 64) {
    MD5(reinterpret_cast<const unsigned char*>(password.data()), password.size(), key);
  } else {
    if (!password.empty()) std::memcpy(key, password.data(), password.size());
  }
  unsigned char ipad[64], opad[64];
  for (int i = 0; i < 64; ++i) {
    ipad[i] = key[i] ^ 0x36;
    opad[i] = key[i] ^ 0x5c;
  }
  std::string out;
  for (const unsigned char* pad : {opad, ipad}) {
    MD5_CTX ctx;
    MD5_Init(&ctx);
    MD5_Update(&ctx, pad, 64);
    for (MD5_LONG word : {ctx.A, ctx.B, ctx.C, ctx.D})
      for (int shift = 0; shift < 32; shift += 8) out += static_cast<char>((word >> shift) & 0xff);
    wipe(&ctx, sizeof ctx);
  }
  wipe(key, sizeof key);
  wipe(ipad, sizeof ipad);
  wipe(opad, sizeof opad);
  return out;
}

namespace {
// Resume MD5 from a chaining state saved after one 64-byte block.
void md5_resume(MD5_CTX* ctx, std::string_view state) {
  MD5_Init(ctx);
  MD5_LONG words[4];
  for (int w = 0; w < 4; ++w) {
    words[w] = 0;
    for (int b = 3; b >= 0; --b)
      words[w] = (words[w] << 8) | static_cast<unsigned char>(state[static_cast<std::size_t>(w * 4 + b)]);
  }
  ctx->A = words[0];
  ctx->B = words[1];
  ctx->C = words[2];
  ctx->D = words[3];
  ctx->Nl = 512;  // one block (in bits) already processed
  ctx->Nh = 0;
  ctx->num = 0;
}
}  // namespace

std::optional<std::string> cram_md5_from_context(std::string_view context,
                                                 std::string_view challenge) {
  if (context.size() != 32) return std::nullopt;
  unsigned char inner[16], outer[16];
  MD5_CTX ctx;
  md5_resume(&ctx, context.substr(16));
  MD5_Update(&ctx, challenge.data(), challenge.size());
  MD5_Final(inner, &ctx);
  md5_resume(&ctx, context.substr(0, 16));
  MD5_Update(&ctx, inner, sizeof inner);
  MD5_Final(outer, &ctx);
  wipe(&ctx, sizeof ctx);
  std::string out = hex_encode(std::string_view(reinterpret_cast<char*>(outer), sizeof outer));
  wipe(inner, sizeof inner);
  wipe(outer, sizeof outer);
  return out;
}

std::optional<std::string> decode_cram_md5(std::string_view data, Encoding enc) {
  return decode_fixed(data, enc == Encoding::Guess ? Encoding::Hex : enc, 32);
}

Verdict verify_cram_md5(std::string_view data, Encoding enc, std::string_view password) {
  auto expected = decode_fixed(data, enc == Encoding::Guess ? Encoding::Hex : enc, 32);
  if (!expected) return Verdict::Invalid;
  std::string actual = cram_md5_context(password);
  const Verdict v = compare(*expected, actual);
  wipe(actual.data(), actual.size());
  return v;
}

// {PBKDF2}$1$<salt>$<rounds>$<40 hex>: PBKDF2-HMAC-SHA1 over the salt's ASCII bytes.
Verdict verify_pbkdf2(std::string_view data, std::string_view password) {
  if (data.rfind("$1$", 0) != 0) return Verdict::Invalid;
  data.remove_prefix(3);
  const auto d1 = data.find('$');
  if (d1 == std::string_view::npos) return Verdict::Invalid;
  const std::string_view salt = data.substr(0, d1);
  const std::string_view rest = data.substr(d1 + 1);
  const auto d2 = rest.find('$');
  if (d2 == std::string_view::npos) return Verdict::Invalid;
  unsigned rounds = 0;
  if (std::from_chars(rest.data(), rest.data() + d2, rounds).ptr != rest.data() + d2 ||
      rounds == 0 || rounds > 10'000'000)
    return Verdict::Invalid;
  auto expected = hex_decode(rest.substr(d2 + 1));
  if (!expected || expected->size() != 20) return Verdict::Invalid;
  unsigned char out[20];
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), static_cast<int>(rounds), EVP_sha1(),
                        sizeof out, out) != 1)
    return Verdict::Invalid;
  std::string actual(reinterpret_cast<char*>(out), sizeof out);
  wipe(out, sizeof out);
  return compare(*expected, actual);
}

}  // namespace mailauth::password::detail
