// A blocking client for the saslauthd mux protocol (mailauth-test).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace mailauth::cli {

struct MuxAnswer {
  enum Kind { Ok, No, NoReply, Error } kind = Error;
  std::string text;   // the reply text ("OK", "NO …")
  std::string error;  // for NoReply / Error
};

MuxAnswer mux_authenticate(const std::string& socket_path, std::string_view login,
                           std::string_view password, std::string_view service,
                           std::string_view realm, std::chrono::milliseconds timeout);

}  // namespace mailauth::cli
