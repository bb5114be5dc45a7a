#include "protocol/sasl/mechanism.h"

#include "protocol/sasl/cram_md5.h"
#include "protocol/sasl/login.h"
#include "protocol/sasl/plain.h"
#include "protocol/sasl/scram.h"

namespace mailauth::sasl {

Step Mechanism::credential(const std::optional<StoredCredential>&) {
  return Step::failure("mechanism does not use stored credentials");
}

std::unique_ptr<Mechanism> create(std::string_view name, const MechanismOptions& options) {
  if (name == "PLAIN") return std::make_unique<Plain>();
  if (name == "LOGIN") return std::make_unique<Login>();
  if (name == "CRAM-MD5") return std::make_unique<CramMd5>(options.hostname);
  if (name == "SCRAM-SHA-1") return std::make_unique<Scram>("SHA1", options.final_resp_ok);
  if (name == "SCRAM-SHA-256") return std::make_unique<Scram>("SHA256", options.final_resp_ok);
  return nullptr;
}

const std::vector<std::string>& supported() {
  static const std::vector<std::string> names = {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1",
                                                 "SCRAM-SHA-256"};
  return names;
}

std::string loggable_name(std::string_view name) {
  static const std::vector<std::string_view> registered = {
      "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS",
      "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512", "DIGEST-MD5", "GSSAPI", "GS2-KRB5", "NTLM",
      "EXTERNAL", "ANONYMOUS", "OTP", "XOAUTH2", "OAUTHBEARER", "APOP", "RPA", "SKEY"};
  for (auto r : registered)
    if (r == name) return std::string(name);
  return "unknown";
}

}  // namespace mailauth::sasl
