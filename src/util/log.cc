#include "src/util/log.h"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

namespace mailauth::log {

namespace {
std::mutex g_mutex;
Target g_target = Target::Stderr;
std::atomic<int> g_level{static_cast<int>(Level::Info)};
std::string g_ident = "mailauth";

int syslog_priority(Level l) {
  switch (l) {
    case Level::Error: return LOG_ERR;
    case Level::Warning: return LOG_WARNING;
    case Level::Info: return LOG_INFO;
    case Level::Debug: return LOG_DEBUG;
  }
  return LOG_INFO;
}

const char* level_name(Level l) {
  switch (l) {
    case Level::Error: return "error";
    case Level::Warning: return "warning";
    case Level::Info: return "info";
    case Level::Debug: return "debug";
  }
  return "info";
}

void append_escaped(std::string& out, std::string_view value, std::size_t max_len) {
  static const char kHex[] = "0123456789abcdef";
  std::size_t n = 0;
  for (unsigned char c : value) {
    if (n++ >= max_len) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out += static_cast<char>(c);
    } else if (c == '\\' || c == '"') {
      out += '\\';
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
}
}  // namespace

void init(Target target, Level lvl, std::string_view ident) {
  std::lock_guard lock(g_mutex);
  if (g_target == Target::Syslog) closelog();
  g_target = target;
  g_level = static_cast<int>(lvl);
  g_ident = std::string(ident);
  if (target == Target::Syslog) openlog(g_ident.c_str(), LOG_PID | LOG_NDELAY, LOG_AUTH);
}

void set_level(Level lvl) { g_level = static_cast<int>(lvl); }
Level level() { return static_cast<Level>(g_level.load()); }
bool enabled(Level lvl) { return static_cast<int>(lvl) <= g_level.load(); }

bool parse_level(std::string_view text, Level* out) {
  if (text == "error") *out = Level::Error;
  else if (text == "warning" || text == "warn") *out = Level::Warning;
  else if (text == "info") *out = Level::Info;
  else if (text == "debug") *out = Level::Debug;
  else return false;
  return true;
}

void write(Level lvl, std::string_view message) {
  if (!enabled(lvl)) return;
  std::lock_guard lock(g_mutex);
  if (g_target == Target::Syslog) {
    syslog(syslog_priority(lvl), "%.*s", static_cast<int>(message.size()), message.data());
    return;
  }
  char stamp[32];
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::fprintf(stderr, "%s %s[%d]: %s: %.*s\n", stamp, g_ident.c_str(), static_cast<int>(getpid()),
               level_name(lvl), static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
}

std::string sanitize(std::string_view value, std::size_t max_len) {
  std::string out;
  append_escaped(out, value, max_len);
  return out;
}

std::string kv(std::string_view key, std::string_view value) {
  std::string out = " ";
  out += key;
  out += '=';
  bool quote = false;
  for (unsigned char c : value)
    if (c == ' ' || c == '=' || c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) quote = true;
  if (quote) out += '"';
  append_escaped(out, value, 256);
  if (quote) out += '"';
  return out;
}

std::string kv(std::string_view key, long long value) {
  return " " + std::string(key) + "=" + std::to_string(value);
}

}  // namespace mailauth::log
