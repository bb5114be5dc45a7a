#include "protocol/sasl/login.h"

namespace mailauth::sasl {

Step Login::start(const std::optional<std::string_view>& initial) {
  // SMTP clients may send the user name as the initial response.
  if (initial && !initial->empty()) return step(*initial);
  state_ = State::Username;
  return Step::challenge_of("Username:");
}

Step Login::step(std::string_view response) {
  if (response.find('\0') != std::string_view::npos)
    return Step::failure("NUL in LOGIN data", user_);
  switch (state_) {
    case State::Username:
      if (response.empty()) return Step::failure("empty user name");
      user_ = std::string(response);
      state_ = State::Password;
      return Step::challenge_of("Password:");
    case State::Password: {
      state_ = State::Done;
      if (response.empty()) return Step::failure("empty password", user_);
      Step s;
      s.kind = Step::Kind::VerifyPassword;
      s.user = user_;
      s.password = Secret(response);
      return s;
    }
    case State::Done: break;
  }
  return Step::failure("unexpected LOGIN data", user_);
}

}  // namespace mailauth::sasl
