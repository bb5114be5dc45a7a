// CRAM-MD5 (RFC 2195): challenge "<digits.time@host>", response
// "user hex(HMAC-MD5(password, challenge))".  Needs a plaintext or
// {CRAM-MD5} stored credential.
#pragma once

#include "protocol/sasl/mechanism.h"

namespace mailauth::sasl {

class CramMd5 final : public Mechanism {
 public:
  explicit CramMd5(std::string hostname) : hostname_(std::move(hostname)) {}
  // For tests: a fixed challenge.
  CramMd5(std::string hostname, std::string challenge)
      : hostname_(std::move(hostname)), challenge_(std::move(challenge)) {}

  Step start(const std::optional<std::string_view>& initial) override;
  Step step(std::string_view response) override;
  Step credential(const std::optional<StoredCredential>& cred) override;
  bool needs_credential() const override { return true; }

 private:
  std::string hostname_;
  std::string challenge_;
  std::string user_;
  std::string digest_;
  bool answered_ = false;
};

// Client side: "user hex(HMAC-MD5(password, challenge))".
std::string cram_md5_client_response(std::string_view user, std::string_view password,
                                     std::string_view challenge);

}  // namespace mailauth::sasl
