// The daemon skeleton: configuration, privileged set-up (sockets, secrets),
// privilege drop, then the event loop with its worker pool until a signal
// says stop.  SIGHUP reloads the configuration; SIGTERM/SIGINT shut down
// cleanly.
#pragma once

#include <optional>
#include <string>

#include "src/config/config.h"

namespace mailauth {

struct DaemonOptions {
  std::string config_path = "/etc/mailauth/mailauthd.conf";
  bool foreground = false;
  bool debug = false;
  bool check_config = false;
  // With check_config: a backend that cannot be reached now is a failure
  // too (exit kExitUnreachable) instead of a warning.
  bool strict = false;
  // Started with saslauthd's argv instead of a configuration file.
  std::optional<config::SaslauthdArgs> saslauthd;
};

// --check-config's exit status when the configuration is valid but a backend
// cannot be reached now and --strict was given (without --strict: 0, and a
// warning).  Configuration errors are 1.
inline constexpr int kExitUnreachable = 3;

// Runs the daemon; returns the process exit status.
int run_daemon(const DaemonOptions& options);

// Drop root privileges to `user` (and `group`, default: the user's primary
// group), keeping the user's supplementary groups.  No-op when not root.
// Throws std::runtime_error with a clear message.
void drop_privileges(const std::string& user, const std::string& group);

}  // namespace mailauth
