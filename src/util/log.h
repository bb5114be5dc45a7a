// Logging to syslog (facility LOG_AUTH, like saslauthd) or to stderr.
//
// Thread-safe.  Values that come from clients go through kv(), which quotes
// and escapes them, so one log record is always one line and a hostile user
// name cannot forge fields.  Passwords are never passed here: the Secret type
// has no way to be formatted.
#pragma once

#include <string>
#include <string_view>

namespace mailauth::log {

enum class Level { Error = 0, Warning = 1, Info = 2, Debug = 3 };
enum class Target { Stderr, Syslog };

void init(Target target, Level level, std::string_view ident);
void set_level(Level level);
Level level();
bool enabled(Level level);

// Parse "error", "warning", "info", "debug".
bool parse_level(std::string_view text, Level* out);

void write(Level level, std::string_view message);

inline void error(std::string_view m) { write(Level::Error, m); }
inline void warning(std::string_view m) { write(Level::Warning, m); }
inline void info(std::string_view m) { write(Level::Info, m); }
inline void debug(std::string_view m) {
  if (enabled(Level::Debug)) write(Level::Debug, m);
}

// " key=value" with the value made safe for one log line: printable ASCII
// stays as it is; a value with spaces, quotes or '=' is double-quoted; control
// and non-ASCII bytes become \xHH.  An empty value is written as key=.
std::string kv(std::string_view key, std::string_view value);
std::string kv(std::string_view key, long long value);

// Make an untrusted string safe for a log line (same escaping as kv, no quotes).
std::string sanitize(std::string_view value, std::size_t max_len = 256);

}  // namespace mailauth::log
