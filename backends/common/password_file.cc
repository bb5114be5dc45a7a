#include "backends/common/password_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include "src/util/log.h"

namespace mailauth::backend {

namespace {

// The whole file into *out: 0, or the errno of what failed.
int read_whole_file(const std::string& path, std::string* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return errno;
  char buf[4096];
  int err = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out->append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    break;
  }
  wipe(buf, sizeof buf);
  ::close(fd);
  return err;
}

// The passwords read in this process, by path; the latest read wins.
struct Remembered {
  std::mutex mutex;
  std::map<std::string, Secret, std::less<>> by_path;
};

Remembered& remembered() {
  static Remembered r;
  return r;
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

}  // namespace

Secret read_password_file(const config::Section& s, const std::string& path,
                          const std::string& who, std::string_view empty_hint) {
  if (path.empty()) s.fail("password_file", "must not be empty");
  std::string text;
  if (const int err = read_whole_file(path, &text); err != 0) {
    wipe(text.data(), text.size());
    const bool denied = err == EACCES || err == EPERM;
    std::optional<Secret> kept;
    if (denied) {
      auto& r = remembered();
      std::lock_guard lock(r.mutex);
      if (const auto it = r.by_path.find(path); it != r.by_path.end()) kept = it->second.clone();
    }
    if (!kept)
      s.fail("password_file",
             "cannot read " + path + ": " + std::strerror(err) +
                 (denied ? " (mailauthd reads it as root at start-up and keeps it; a file it "
                           "has not read before must be readable by the daemon's user or group, "
                           "e.g. root:mailauth 0640)"
                         : ""));
    log::warning(who + ": password_file " + path + " cannot be read now (" +
                 std::strerror(err) +
                 "); keeping the password read from it before (a new password in it takes "
                 "effect at restart, or make it readable by the daemon's user or group)");
    return std::move(*kept);
  }
  std::string pw = trim(text);
  wipe(text.data(), text.size());
  if (pw.empty()) s.fail("password_file", path + " is empty" + std::string(empty_hint));
  Secret secret(pw);
  wipe(pw.data(), pw.size());
  auto& r = remembered();
  std::lock_guard lock(r.mutex);
  r.by_path[path] = secret.clone();
  return secret;
}

}  // namespace mailauth::backend
