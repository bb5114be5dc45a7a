#include "src/cli/mux_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "protocol/mux/codec.h"
#include "src/util/fd.h"
#include "src/util/secret.h"

namespace mailauth::cli {

MuxAnswer mux_authenticate(const std::string& socket_path, std::string_view login,
                           std::string_view password, std::string_view service,
                           std::string_view realm, std::chrono::milliseconds timeout) {
  MuxAnswer a;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    a.error = "socket path too long: " + socket_path;
    return a;
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    a.error = "connect(" + socket_path + "): " + std::strerror(errno);
    return a;
  }
  std::string req;
  try {
    req = mux::encode_request(login, password, service, realm);
  } catch (const std::exception& e) {
    a.error = e.what();
    return a;
  }
  std::size_t sent = 0;
  while (sent < req.size()) {
    const ssize_t n = ::send(fd.get(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      wipe(req.data(), req.size());
      a.kind = MuxAnswer::NoReply;
      a.error = std::string("write: ") + std::strerror(errno);
      return a;
    }
    sent += static_cast<std::size_t>(n);
  }
  wipe(req.data(), req.size());
  std::string buf;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto reply = mux::decode_reply(buf)) {
      a.text = *reply;
      a.kind = a.text.rfind("OK", 0) == 0 ? MuxAnswer::Ok : MuxAnswer::No;
      return a;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd.get(), POLLIN, 0};
    const int r = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      a.kind = MuxAnswer::NoReply;
      a.error = "no reply within " + std::to_string(timeout.count()) + " ms";
      return a;
    }
    char chunk[1024];
    const ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      a.kind = MuxAnswer::NoReply;
      a.error = n == 0 ? "connection closed without a reply (temporary failure)"
                       : std::string("read: ") + std::strerror(errno);
      return a;
    }
    buf.append(chunk, static_cast<std::size_t>(n));
  }
}

}  // namespace mailauth::cli
