// A networked backend's `password_file` (the secret of its service account:
// mysql's database password, ldap's bind password), read the one way every
// backend reads it.
#pragma once

#include <string>
#include <string_view>

#include "src/config/config.h"
#include "src/util/secret.h"

namespace mailauth::backend {

// The password in `path` (key `password_file` of `s`), surrounding white
// space trimmed.  Throws config::ConfigError for an empty path, an empty
// file or one that cannot be read.
//
// mailauthd reads it as root at start-up; a reload (SIGHUP) runs after the
// privilege drop, when a root-only file (0600 root) cannot be read any more.
// Every successful read is remembered by path for the life of the process,
// and a later read that fails with EACCES/EPERM returns the remembered
// password instead, with a warning naming `who` ("mysql main") in the log.
// `empty_hint` is added to the message for an empty file.
Secret read_password_file(const config::Section& s, const std::string& path,
                          const std::string& who, std::string_view empty_hint = {});

}  // namespace mailauth::backend
