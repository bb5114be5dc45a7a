// A client for mailauthd's control socket (mailauth-test --control, and
// mailauth-user to flush a user's cache entries).
#pragma once

#include <chrono>
#include <string>

namespace mailauth::cli {

// Sends one command line, reads the reply until the daemon closes.  False
// (with `error`) if the socket cannot be reached.
bool control_request(const std::string& socket_path, const std::string& command,
                     std::chrono::milliseconds timeout, std::string* reply, std::string* error);

}  // namespace mailauth::cli
