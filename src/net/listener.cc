#include "src/net/listener.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "src/util/log.h"

namespace mailauth {

namespace {
[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("socket " + path + ": " + what + ": " + std::strerror(errno));
}

void make_parents(const std::string& path) {
  for (std::size_t pos = 1; (pos = path.find('/', pos)) != std::string::npos; ++pos) {
    const std::string dir = path.substr(0, pos);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) fail(path, "cannot create " + dir);
  }
}

bool parse_number(const std::string& s, unsigned long* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}
}  // namespace

uid_t lookup_uid(const std::string& name) {
  unsigned long n = 0;
  if (parse_number(name, &n)) return static_cast<uid_t>(n);
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* result = nullptr;
  if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &result) != 0 || result == nullptr)
    throw std::runtime_error("user '" + name + "' does not exist");
  return pw.pw_uid;
}

gid_t lookup_gid(const std::string& name) {
  unsigned long n = 0;
  if (parse_number(name, &n)) return static_cast<gid_t>(n);
  std::vector<char> buf(16384);
  group gr{};
  group* result = nullptr;
  if (getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &result) != 0 || result == nullptr)
    throw std::runtime_error("group '" + name + "' does not exist");
  return gr.gr_gid;
}

UnixListener::UnixListener(const config::SocketConfig& config) : path_(config.path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof addr.sun_path)
    throw std::runtime_error("socket " + path_ + ": path is empty or too long");
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);

  const uid_t owner = config.owner.empty() ? static_cast<uid_t>(-1) : lookup_uid(config.owner);
  const gid_t group = config.group.empty() ? static_cast<gid_t>(-1) : lookup_gid(config.group);

  make_parents(path_);
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw std::runtime_error("socket " + path_ + ": exists and is not a socket; not replacing it");
    // A socket file left behind.  If something still answers on it, another
    // daemon is running: refuse rather than steal its socket.
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
      throw std::runtime_error("socket " + path_ +
                               ": another process is listening on it (is mailauthd or "
                               "saslauthd already running?)");
    ::unlink(path_.c_str());
  }

  fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd_) fail(path_, "socket()");
  // Bind with a restrictive umask so the socket is never briefly wider open
  // than the configured mode.
  const mode_t old_umask = ::umask(0177);
  const int rc = ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old_umask);
  if (rc != 0) fail(path_, "bind");
  if (::lstat(path_.c_str(), &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  if ((owner != static_cast<uid_t>(-1) || group != static_cast<gid_t>(-1)) &&
      ::lchown(path_.c_str(), owner, group) != 0)
    fail(path_, "cannot set owner " + config.owner + " / group " + config.group);
  if (::chmod(path_.c_str(), config.mode) != 0) fail(path_, "chmod");
  if (::listen(fd_.get(), 128) != 0) fail(path_, "listen");
}

std::unique_ptr<UnixListener> UnixListener::adopt(int fd, std::string path) {
  std::unique_ptr<UnixListener> l(new UnixListener());
  l->fd_.reset(fd);
  l->path_ = std::move(path);  // for log lines; ino_ stays 0, so the file is never removed
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return l;
}

UnixListener::~UnixListener() { remove_file(); }

int UnixListener::accept_all(const std::function<void(UniqueFd fd)>& take) {
  for (;;) {
    const int fd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      take(UniqueFd(fd));
      continue;
    }
    if (errno == ECONNABORTED || errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return errno;
  }
}

void UnixListener::remove_file() {
  if (path_.empty() || ino_ == 0) return;
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    ::unlink(path_.c_str());
  ino_ = 0;
}

std::string peer_description(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return "peer=unknown";
  return "peer_uid=" + std::to_string(cred.uid) + " peer_pid=" + std::to_string(cred.pid);
}

}  // namespace mailauth
