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

// Creates the missing directories on the way to the socket: its own
// directory with `dir_mode`, owner `owner` and group `group` (-1: unchanged),
// the ones above it 0755.  A directory that exists is left alone.  What was
// just created is opened without following a symlink and changed through
// that descriptor.
void make_parents(const std::string& path, mode_t dir_mode, uid_t owner, gid_t group) {
  const std::size_t last = path.rfind('/');
  for (std::size_t pos = 1; (pos = path.find('/', pos)) != std::string::npos; ++pos) {
    const std::string dir = path.substr(0, pos);
    const bool own = pos == last;
    if (::mkdir(dir.c_str(), own ? 0700 : 0755) != 0) {
      if (errno != EEXIST) fail(path, "cannot create " + dir);
      continue;
    }
    if (!own) continue;
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0) fail(path, "cannot open " + dir);
    if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) {
      errno = EEXIST;
      fail(path, dir + " was replaced while it was being created");
    }
    if ((owner != static_cast<uid_t>(-1) || group != static_cast<gid_t>(-1)) &&
        ::fchown(fd.get(), owner, group) != 0)
      fail(path, "cannot set the owner/group of " + dir);
    if (::fchmod(fd.get(), dir_mode) != 0) fail(path, "cannot chmod " + dir);
  }
}

// chmod the file open as `fd` (O_PATH): through /proc/self/fd, which never
// follows a symlink at the original path.  Without /proc (a chroot), by path
// once lstat() shows it is still that very file, not a symlink: fchmodat
// with AT_SYMLINK_NOFOLLOW where the kernel has it (fchmodat2, Linux 6.6),
// else chmod.
int chmod_opened(int fd, const std::string& path, const struct stat& opened, mode_t mode) {
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  if (::chmod(proc.c_str(), mode) == 0) return 0;
  if (errno != ENOENT) return -1;
  struct stat now {};
  if (::lstat(path.c_str(), &now) != 0) return -1;
  if (now.st_dev != opened.st_dev || now.st_ino != opened.st_ino) {
    errno = ESTALE;
    return -1;
  }
  if (::fchmodat(AT_FDCWD, path.c_str(), mode, AT_SYMLINK_NOFOLLOW) == 0) return 0;
  if (errno != ENOTSUP && errno != EOPNOTSUPP && errno != ENOSYS && errno != ENOENT) return -1;
  return ::chmod(path.c_str(), mode);
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

UnixListener::UnixListener(const config::SocketConfig& config, uid_t dir_owner)
    : path_(config.path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof addr.sun_path)
    throw std::runtime_error("socket " + path_ + ": path is empty or too long");
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);

  const uid_t owner = config.owner.empty() ? static_cast<uid_t>(-1) : lookup_uid(config.owner);
  const gid_t group = config.group.empty() ? static_cast<gid_t>(-1) : lookup_gid(config.group);

  make_parents(path_, config.dir_mode, dir_owner, group);
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
  // The file bind() made, opened without following a symlink; owner, group
  // and mode are set through this descriptor (see chmod_opened without /proc).
  UniqueFd file(::open(path_.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!file || ::fstat(file.get(), &st) != 0) fail(path_, "cannot open the socket file");
  if (!S_ISSOCK(st.st_mode)) {
    errno = EEXIST;
    fail(path_, "is no longer the socket just bound");
  }
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  if ((owner != static_cast<uid_t>(-1) || group != static_cast<gid_t>(-1)) &&
      ::fchownat(file.get(), "", owner, group, AT_EMPTY_PATH) != 0)
    fail(path_, "cannot set owner " + config.owner + " / group " + config.group);
  if (chmod_opened(file.get(), path_, st, config.mode) != 0) fail(path_, "chmod");
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
  const ino_t ino = ino_.exchange(0);
  if (path_.empty() || ino == 0) return;
  struct stat st {};
  const bool seen = ::lstat(path_.c_str(), &st) == 0;
  if (seen && (st.st_dev != dev_ || st.st_ino != ino)) return;  // not ours any more
  if (seen && ::unlink(path_.c_str()) == 0) return;
  if (errno != EACCES && errno != EPERM) return;
  // After the privilege drop, in a directory the daemon's user may not
  // write (or search): the file stays.  Harmless: nothing listens on it, and
  // the next start replaces it once it has checked that.
  std::string who = std::to_string(::geteuid());
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwuid_r(::geteuid(), &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr)
    who = found->pw_name;
  const auto slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
  log::info("socket " + path_ + " left behind: user " + who + " cannot remove it from " + dir +
            "; the next start replaces it");
}

std::string peer_description(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return "peer=unknown";
  return "peer_uid=" + std::to_string(cred.uid) + " peer_pid=" + std::to_string(cred.pid);
}

}  // namespace mailauth
