// A blocking client for Dovecot's authentication client protocol
// (mailauth-test --dovecot), with the client side of PLAIN, LOGIN, CRAM-MD5
// and SCRAM-SHA-1/-256.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "src/util/fd.h"

namespace mailauth::cli {

struct DovecotAnswer {
  enum Kind { Ok, No, TempFail, NoReply, Error } kind = Error;
  std::string user;   // user= of OK/FAIL
  std::string error;  // for TempFail / NoReply / Error
};

class DovecotClient {
 public:
  explicit DovecotClient(std::chrono::milliseconds timeout) : timeout_(timeout) {}
  // Connect and do the handshake.  False with `error` set on failure.
  bool connect(const std::string& socket_path, std::string* error);
  bool connected() const { return static_cast<bool>(fd_); }
  const std::vector<std::string>& mechanisms() const { return mechanisms_; }

  DovecotAnswer authenticate(std::string_view mechanism, std::string_view user,
                             std::string_view password, std::string_view service,
                             std::string_view rip);

 private:
  bool send_line(const std::string& line);
  // One line without the LF; false on EOF/timeout (with `error`).
  bool read_line(std::string* line, std::string* error);

  std::chrono::milliseconds timeout_;
  UniqueFd fd_;
  std::string in_;
  std::vector<std::string> mechanisms_;
  unsigned next_id_ = 1;
};

}  // namespace mailauth::cli
