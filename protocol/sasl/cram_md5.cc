#include "protocol/sasl/cram_md5.h"

#include <sodium.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <ctime>

#include "src/password/schemes.h"
#include "src/util/encoding.h"

namespace mailauth::sasl {

Step CramMd5::start(const std::optional<std::string_view>&) {
  // Any initial response is ignored (RFC 2195: the server speaks first).
  if (challenge_.empty()) {
    std::string digits;
    for (int i = 0; i < 16; ++i) digits += static_cast<char>('0' + randombytes_uniform(10));
    challenge_ = "<" + digits + "." + std::to_string(std::time(nullptr)) + "@" + hostname_ + ">";
  }
  return Step::challenge_of(challenge_);
}

Step CramMd5::step(std::string_view response) {
  if (answered_) return Step::failure("unexpected CRAM-MD5 data", user_);
  answered_ = true;
  if (response.find('\0') != std::string_view::npos) return Step::failure("NUL in CRAM-MD5 response");
  const auto space = response.rfind(' ');  // user names may contain spaces
  if (space == std::string_view::npos || space == 0 || response.size() - space - 1 != 32)
    return Step::failure("malformed CRAM-MD5 response");
  user_ = std::string(response.substr(0, space));
  digest_ = std::string(response.substr(space + 1));
  for (char& c : digest_)
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  Step s;
  s.kind = Step::Kind::NeedCredential;
  s.user = user_;
  return s;
}

Step CramMd5::credential(const std::optional<StoredCredential>& cred) {
  if (!cred) return Step::failure("unknown user", user_);
  auto expected = password::cram_md5_response(cred->stored, cred->default_scheme, challenge_);
  if (!expected)
    return Step::failure("stored credential cannot serve CRAM-MD5 (needs plaintext or {CRAM-MD5})",
                         user_);
  const bool ok = constant_time_equal(*expected, digest_);
  wipe(expected->data(), expected->size());
  if (!ok) return Step::failure("wrong password", user_);
  Step s;
  s.kind = Step::Kind::Success;
  s.user = user_;
  return s;
}

std::string cram_md5_client_response(std::string_view user, std::string_view password,
                                     std::string_view challenge) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_md5(), password.data(), static_cast<int>(password.size()),
       reinterpret_cast<const unsigned char*>(challenge.data()), challenge.size(), out, &len);
  return std::string(user) + " " +
         hex_encode(std::string_view(reinterpret_cast<char*>(out), len));
}

}  // namespace mailauth::sasl
