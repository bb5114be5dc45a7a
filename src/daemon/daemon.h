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
  // Started with saslauthd's argv instead of a configuration file.
  std::optional<config::SaslauthdArgs> saslauthd;
};

// Runs the daemon; returns the process exit status.
int run_daemon(const DaemonOptions& options);

// Drop root privileges to `user` (and `group`, default: the user's primary
// group), keeping the user's supplementary groups.  No-op when not root.
// Throws std::runtime_error with a clear message.
void drop_privileges(const std::string& user, const std::string& group);

}  // namespace mailauth
