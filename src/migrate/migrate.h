// mailauth-migrate's translation: from what a machine's saslauthd (with its
// PAM stacks and Postfix's SASL settings) or Dovecot auth configuration says
// to a complete mailauthd.conf, with a report of everything carried over and
// everything that could not be.  Pure: it reads files only through
// `Sources`, which the program backs with the file system (under --root) and
// the fuzz target with a map.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "src/migrate/report.h"

namespace mailauth::migrate {

struct Sources {
  // The text of an absolute path on the machine being migrated, or nullopt.
  std::function<std::optional<std::string>(const std::string& path)> read;
  // The names (not paths) of the entries of a directory, sorted; empty when
  // there is none.
  std::function<std::vector<std::string>(const std::string& dir)> list;
};

struct Options {
  std::string from = "auto";      // "saslauthd", "dovecot" or "auto"
  std::string instance;           // saslauthd instance: "saslauthd" (the plain file) or NAME
                                  // of /etc/default/saslauthd-NAME; empty: choose
  std::string service = "smtp";   // the PAM service Postfix's logins use
  std::string secret_dir = "/etc/mailauth";  // where database passwords are put
  // `doveconf -n` output to use instead of /etc/dovecot/dovecot.conf.
  std::optional<std::string> doveconf;
  std::string doveconf_name = "doveconf -n";
};

struct SecretFile {
  std::string path;     // as named in the configuration (password_file)
  std::string content;  // the password and a newline
};

struct Result {
  // Empty when nothing usable was found (then `error` says why).
  std::string config;
  std::string source;  // "saslauthd" or "dovecot": what was migrated
  std::vector<SecretFile> secrets;
  Report report;
  std::string error;
};

Result migrate(const Sources& sources, const Options& options);

// A TOML basic string for any bytes (control characters and invalid UTF-8
// escaped or replaced), quotes included.
std::string toml_quote(std::string_view s);

}  // namespace mailauth::migrate
