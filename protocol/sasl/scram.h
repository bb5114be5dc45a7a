// SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, without
// channel binding (the -PLUS variants are not offered).
//
//   C: n,,n=user,r=cnonce                 start()  -> NeedCredential
//   (stored credential)                   credential() -> Challenge server-first
//   S: r=cnonce+snonce,s=salt,i=iter
//   C: c=biws,r=…,p=proof                 step()   -> Success (final-resp-ok)
//   S: v=signature                                   or Challenge v=…
//   C: (empty)                            step()   -> Success
//
// An unknown user gets a decoy salt that is stable per user name, so the
// exchange does not reveal which accounts exist; it fails at the proof.
#pragma once

#include "protocol/sasl/mechanism.h"
#include "src/password/scram.h"

namespace mailauth::sasl {

class Scram final : public Mechanism {
 public:
  Scram(std::string algorithm, bool final_resp_ok)
      : algorithm_(std::move(algorithm)), final_resp_ok_(final_resp_ok) {}
  // For tests (RFC vectors): a fixed server nonce.
  void set_server_nonce(std::string nonce) { server_nonce_ = std::move(nonce); }

  Step start(const std::optional<std::string_view>& initial) override;
  Step step(std::string_view response) override;
  Step credential(const std::optional<StoredCredential>& cred) override;
  bool needs_credential() const override { return true; }

 private:
  Step client_first(std::string_view message);
  Step client_final(std::string_view message);

  enum class State { ClientFirst, WaitCredential, ClientFinal, FinalAck, Done };
  std::string algorithm_;
  bool final_resp_ok_;
  State state_ = State::ClientFirst;
  std::string gs2_header_;
  std::string client_first_bare_;
  std::string client_nonce_;
  std::string server_nonce_;
  std::string server_first_;
  std::string user_;
  std::string server_signature_;
  password::ScramKeys keys_;
  bool decoy_ = false;
};

// Client side, for mailauth-test and tests.
class ScramClient {
 public:
  ScramClient(std::string algorithm, std::string user, std::string password,
              std::string client_nonce = {});
  std::string client_first() const;  // "n,,n=…,r=…"
  // From server-first; empty optional on a malformed message.
  std::optional<std::string> client_final(std::string_view server_first);
  bool verify_server_final(std::string_view server_final) const;

 private:
  std::string algorithm_, user_, password_, nonce_, first_bare_, server_signature_;
};

}  // namespace mailauth::sasl
