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
// The server-first message must not tell whether the user exists or what is
// stored for it (issue 11, finding 3).  Every user whose keys the server
// makes itself gets the same treatment:
//   - unknown or disabled user, or a stored hash that cannot serve SCRAM
//     (Argon2, crypt, …): decoy keys, a challenge like any other, and FAIL
//     at the proof, with the real reason for the log;
//   - plaintext credential: keys derived from the password;
// both with the salt ScramShared::salt_for() gives the user name (a keyed
// MAC: stable per user, unrelated across users) and the iteration count and
// salt size of the last real {SCRAM-*} verifier seen (before any:
// kScramIterations, what mailauth-user writes, and 16 bytes, what both
// mailauth-user and doveadm write).
// A stored verifier is used as stored: its own salt and iterations.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "protocol/sasl/mechanism.h"
#include "src/password/scram.h"

namespace mailauth::sasl {

// What the SCRAM exchanges of a process share.  Thread-safe: credential()
// runs on workers.
class ScramShared {
 public:
  ScramShared();                               // a fresh random key
  explicit ScramShared(std::string_view key);  // a given key (tests)
  ~ScramShared();
  ScramShared(const ScramShared&) = delete;
  ScramShared& operator=(const ScramShared&) = delete;

  // The process's instance: its key is made at the first use and lives as
  // long as the process (README, "Security notes": why that is enough).
  static const std::shared_ptr<ScramShared>& process();

  struct Shape {
    unsigned iterations = password::kScramIterations;
    std::size_t salt_size = 16;
  };
  // The iterations and salt size to use for `algorithm` ("SHA1", "SHA256").
  Shape shape(std::string_view algorithm) const;
  // The salt for `user`, `size` bytes (at most 64).
  std::string salt_for(std::string_view algorithm, std::string_view user, std::size_t size) const;
  // A real credential served `algorithm`: a verifier (its shape is the
  // deployment's from now on) or plaintext (keys derived with PBKDF2).
  void saw_verifier(std::string_view algorithm, const password::ScramKeys& keys);
  void saw_plaintext(std::string_view algorithm);
  // Whether decoy keys should cost a PBKDF2 run: the last real credential
  // seen was plaintext (or none has been seen yet).
  bool decoy_derives(std::string_view algorithm) const;

 private:
  struct PerAlgorithm {
    std::atomic<std::uint64_t> shape{0};  // iterations << 8 | salt size; 0: none seen
    std::atomic<bool> plaintext{true};
  };
  PerAlgorithm& of(std::string_view algorithm);
  const PerAlgorithm& of(std::string_view algorithm) const;

  std::string key_;
  std::array<PerAlgorithm, 2> algorithms_;
};

class Scram final : public Mechanism {
 public:
  // `shared`: null for ScramShared::process().
  Scram(std::string algorithm, bool final_resp_ok, std::shared_ptr<ScramShared> shared = nullptr)
      : algorithm_(std::move(algorithm)),
        final_resp_ok_(final_resp_ok),
        shared_(shared ? std::move(shared) : ScramShared::process()) {}
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
  std::shared_ptr<ScramShared> shared_;
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
  std::string decoy_reason_;  // why the exchange cannot succeed, for the log
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
