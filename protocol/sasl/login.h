// LOGIN (draft-murchison-sasl-login): challenges "Username:" and "Password:".
#pragma once

#include "protocol/sasl/mechanism.h"

namespace mailauth::sasl {

class Login final : public Mechanism {
 public:
  Step start(const std::optional<std::string_view>& initial) override;
  Step step(std::string_view response) override;

 private:
  enum class State { Username, Password, Done } state_ = State::Username;
  std::string user_;
};

}  // namespace mailauth::sasl
