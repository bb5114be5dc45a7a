// Listening UNIX sockets with the owner, group and mode the config asks for.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <string>
#include <string_view>

#include "src/config/config.h"
#include "src/util/fd.h"

namespace mailauth {

// A bound, listening, non-blocking UNIX stream socket.  Removes its socket
// file on destruction if the file is still the one it created.
class UnixListener {
 public:
  // Creates missing parent directories (the socket's own with dir_mode, the
  // owner `dir_owner` and the socket's group, the ones above 0755), replaces
  // a stale socket file (never a regular file), binds, applies
  // owner/group/mode without following symlinks, listens.  The daemon
  // passes its [daemon] user as dir_owner, so that after the privilege drop
  // it can still remove the socket from a directory it created.
  // Throws std::runtime_error with a message that names the path.
  explicit UnixListener(const config::SocketConfig& config,
                        uid_t dir_owner = static_cast<uid_t>(-1));
  // A listening socket handed over by systemd (socket activation).  Its file
  // belongs to systemd: it is not removed on destruction.
  static std::unique_ptr<UnixListener> adopt(int fd, std::string path);
  ~UnixListener();
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  int fd() const { return fd_.get(); }
  // Accepts every pending connection (non-blocking, close-on-exec) and hands
  // each to `take`.  Returns 0 when nothing more is pending, else the errno
  // that ended the round (EMFILE, ENFILE, ENOBUFS, …) for the caller to act on.
  int accept_all(const std::function<void(UniqueFd fd)>& take);
  const std::string& path() const { return path_; }
  // Unlink the socket file now (shutdown).  Where the process may no longer
  // (privileges dropped, a directory it cannot write), the file stays and
  // an info line says so.  Any thread; only the first call does anything.
  void remove_file();

 private:
  UnixListener() = default;
  UniqueFd fd_;
  std::string path_;
  dev_t dev_ = 0;
  std::atomic<ino_t> ino_{0};  // 0: not ours to remove (adopted, or removed already)
};

// Peer credentials of a connected UNIX socket, as "uid=N pid=N" for logs.
std::string peer_description(int fd);

// Resolve a user or group name (or a number) to an id; throws with a clear
// message if it does not exist.
uid_t lookup_uid(const std::string& name);
gid_t lookup_gid(const std::string& name);

}  // namespace mailauth
