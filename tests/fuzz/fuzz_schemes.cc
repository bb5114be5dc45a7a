// libFuzzer target: password::verify on arbitrary stored values.  Whatever
// the stored value, a random password must not crash the verifier, and an
// empty stored value never matches.
#include <cstddef>
#include <cstdint>
#include <string>

#include "src/password/schemes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mailauth::password;
  static bool init = (mailauth::password::init(), true);
  (void)init;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto split = in.find('\n');
  std::string_view stored = in.substr(0, split);
  std::string_view pw = split == std::string_view::npos ? std::string_view() : in.substr(split + 1);
  // Slow schemes with attacker-chosen cost would only measure the hash.
  if (stored.find("$argon2") != std::string_view::npos || stored.find("$2") != std::string_view::npos ||
      stored.find("$7$") != std::string_view::npos || stored.find("$y$") != std::string_view::npos ||
      stored.find("$gy$") != std::string_view::npos || stored.find("rounds=") != std::string_view::npos ||
      stored.find("$md5") != std::string_view::npos || stored.find("$sha1") != std::string_view::npos ||
      stored.find("SCRAM") != std::string_view::npos || stored.find("scram") != std::string_view::npos ||
      stored.find("PBKDF2") != std::string_view::npos || stored.find("pbkdf2") != std::string_view::npos ||
      stored.size() > 512)
    return 0;
  (void)verify(stored, pw, "CRYPT");
  (void)verify(stored, pw, "PLAIN");
  (void)scheme_of(stored);
  (void)plaintext_of(stored);
  (void)cram_md5_response(stored, "CRYPT", pw);
  if (verify("", pw) == Verdict::Match) __builtin_trap();
  return 0;
}
