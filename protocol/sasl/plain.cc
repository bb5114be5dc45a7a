#include "protocol/sasl/plain.h"

namespace mailauth::sasl {

Step Plain::start(const std::optional<std::string_view>& initial) {
  started_ = true;
  if (!initial) return Step::challenge_of("");  // empty challenge, as Dovecot sends
  return step(*initial);
}

Step Plain::step(std::string_view message) {
  const auto nul1 = message.find('\0');
  const auto nul2 = nul1 == std::string_view::npos ? nul1 : message.find('\0', nul1 + 1);
  if (nul2 == std::string_view::npos || message.find('\0', nul2 + 1) != std::string_view::npos)
    return Step::failure("malformed PLAIN message (needs exactly two NULs)");
  const std::string_view authzid = message.substr(0, nul1);
  const std::string_view authcid = message.substr(nul1 + 1, nul2 - nul1 - 1);
  const std::string_view password = message.substr(nul2 + 1);
  if (authcid.empty()) return Step::failure("empty user name in PLAIN message");
  // authzid == authcid is what doveadm sends; anything else asks to act as
  // another user, which needs master users (not supported).
  if (!authzid.empty() && authzid != authcid)
    return Step::failure("authorization id differs from the user name", std::string(authcid));
  if (password.empty()) return Step::failure("empty password", std::string(authcid));
  Step s;
  s.kind = Step::Kind::VerifyPassword;
  s.user = std::string(authcid);
  s.password = Secret(password);
  return s;
}

}  // namespace mailauth::sasl
