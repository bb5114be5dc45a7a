// PLAIN (RFC 4616): "[authzid] NUL authcid NUL password".
#pragma once

#include "protocol/sasl/mechanism.h"

namespace mailauth::sasl {

class Plain final : public Mechanism {
 public:
  Step start(const std::optional<std::string_view>& initial) override;
  Step step(std::string_view response) override;

 private:
  bool started_ = false;
};

}  // namespace mailauth::sasl
