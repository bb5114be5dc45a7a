#include "src/cli/dovecot_client.h"

#include <sys/time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <cstring>

#include "protocol/dovecot/escape.h"
#include "protocol/sasl/cram_md5.h"
#include "protocol/sasl/scram.h"
#include "src/util/encoding.h"
#include "src/util/secret.h"

namespace mailauth::cli {

namespace {
std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const auto tab = line.find('\t', start);
    out.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) break;
    start = tab + 1;
  }
  return out;
}
}  // namespace

bool DovecotClient::connect(const std::string& socket_path, std::string* error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    *error = "socket path too long: " + socket_path;
    return false;
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd_ || ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    *error = "connect(" + socket_path + "): " + std::strerror(errno);
    fd_.reset();
    return false;
  }
  // Reads block with this timeout instead of a poll() before each recv():
  // one system call less per answer, which --bench on a persistent
  // connection notices (the load generator must stay cheaper than the
  // servers it measures).
  const auto ms = timeout_.count();
  timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (!send_line("VERSION\t1\t2") || !send_line("CPID\t" + std::to_string(::getpid()))) {
    *error = "cannot send the handshake";
    fd_.reset();
    return false;
  }
  std::string line;
  bool version = false;
  for (;;) {
    if (!read_line(&line, error)) {
      *error = "handshake failed: " + *error;
      fd_.reset();
      return false;
    }
    auto f = split_tabs(line);
    if (f[0] == "VERSION") {
      if (f.size() < 3 || f[1] != "1") {
        *error = "unsupported protocol version: " + line;
        fd_.reset();
        return false;
      }
      version = true;
    } else if (f[0] == "MECH" && f.size() >= 2) {
      mechanisms_.push_back(f[1]);
    } else if (f[0] == "DONE") {
      break;
    }
  }
  if (!version || mechanisms_.empty()) {
    *error = "the server sent no VERSION or no MECH line (not an auth-client socket?)";
    fd_.reset();
    return false;
  }
  return true;
}

bool DovecotClient::send_line(const std::string& line) {
  std::string data = line + "\n";
  std::size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd_.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      wipe(data.data(), data.size());
      return false;
    }
    sent += static_cast<std::size_t>(n);
  }
  wipe(data.data(), data.size());
  return true;
}

bool DovecotClient::read_line(std::string* line, std::string* error) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    const auto nl = in_.find('\n');
    if (nl != std::string::npos) {
      *line = in_.substr(0, nl);
      in_.erase(0, nl + 1);
      return true;
    }
    // A line trickling in byte by byte still ends at the deadline.
    if (!in_.empty() && std::chrono::steady_clock::now() > deadline) {
      *error = "no reply within " + std::to_string(timeout_.count()) + " ms";
      return false;
    }
    char buf[4096];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);  // SO_RCVTIMEO: at most timeout_
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      *error = "no reply within " + std::to_string(timeout_.count()) + " ms";
      return false;
    }
    if (n <= 0) {
      *error = n == 0 ? "connection closed without a reply (temporary failure)"
                      : std::string("read: ") + std::strerror(errno);
      return false;
    }
    in_.append(buf, static_cast<std::size_t>(n));
  }
}

DovecotAnswer DovecotClient::authenticate(std::string_view mechanism, std::string_view user,
                                          std::string_view password, std::string_view service,
                                          std::string_view rip) {
  DovecotAnswer a;
  const unsigned id = next_id_++;
  const std::string mech(mechanism);
  if (std::find(mechanisms_.begin(), mechanisms_.end(), mech) == mechanisms_.end()) {
    a.error = "the server does not offer " + mech;
    return a;
  }
  std::string line = "AUTH\t" + std::to_string(id) + "\t" + mech +
                     "\tservice=" + dovecot::tab_escape(service) + "\tnologin";
  if (!rip.empty()) line += "\trip=" + dovecot::tab_escape(rip);

  std::unique_ptr<sasl::ScramClient> scram;
  enum class LoginStep { User, Password } login_step = LoginStep::User;
  if (mech == "PLAIN") {
    std::string msg = std::string(1, '\0') + std::string(user) + '\0' + std::string(password);
    line += "\tresp=" + base64_encode(msg);
    wipe(msg.data(), msg.size());
  } else if (mech == "SCRAM-SHA-1" || mech == "SCRAM-SHA-256") {
    scram = std::make_unique<sasl::ScramClient>(mech == "SCRAM-SHA-1" ? "SHA1" : "SHA256",
                                                std::string(user), std::string(password));
    line += "\tresp=" + base64_encode(scram->client_first());
  }
  const bool sent = send_line(line);
  wipe(line.data(), line.size());
  if (!sent) {
    a.kind = DovecotAnswer::NoReply;
    a.error = "connection closed";
    return a;
  }
  bool scram_verified = false;
  for (;;) {
    std::string reply;
    if (!read_line(&reply, &a.error)) {
      a.kind = DovecotAnswer::NoReply;
      fd_.reset();
      return a;
    }
    auto f = split_tabs(reply);
    if (f.size() < 2 || f[1] != std::to_string(id)) continue;  // not ours
    if (f[0] == "OK" || f[0] == "FAIL") {
      bool temp = false;
      for (std::size_t i = 2; i < f.size(); ++i) {
        if (f[i].rfind("user=", 0) == 0) a.user = dovecot::tab_unescape(f[i].substr(5));
        if (f[i] == "temp" || f[i] == "code=temp_fail") temp = true;
        if (f[i].rfind("resp=", 0) == 0 && scram) {
          auto v = base64_decode(f[i].substr(5));
          scram_verified = v && scram->verify_server_final(*v);
        }
      }
      if (f[0] == "FAIL") {
        a.kind = temp ? DovecotAnswer::TempFail : DovecotAnswer::No;
        if (temp) a.error = "temporary failure (code=temp_fail)";
        return a;
      }
      if (scram && !scram_verified) {
        a.kind = DovecotAnswer::Error;
        a.error = "the server's SCRAM signature did not verify";
        return a;
      }
      if (a.user.empty()) {
        a.kind = DovecotAnswer::Error;
        a.error = "OK without user= (Postfix would refuse it)";
        return a;
      }
      a.kind = DovecotAnswer::Ok;
      return a;
    }
    if (f[0] != "CONT" || f.size() < 3) {
      a.error = "unexpected reply: " + reply.substr(0, 80);
      return a;
    }
    auto challenge = base64_decode(f[2]);
    if (!challenge) {
      a.error = "invalid base64 in the server's challenge";
      return a;
    }
    std::string response;
    if (mech == "PLAIN") {
      response = std::string(1, '\0') + std::string(user) + '\0' + std::string(password);
    } else if (mech == "LOGIN") {
      response = login_step == LoginStep::User ? std::string(user) : std::string(password);
      login_step = LoginStep::Password;
    } else if (mech == "CRAM-MD5") {
      response = sasl::cram_md5_client_response(user, password, *challenge);
    } else if (scram) {
      if (challenge->rfind("v=", 0) == 0) {
        if (!scram->verify_server_final(*challenge)) {
          a.error = "the server's SCRAM signature did not verify";
          return a;
        }
        scram_verified = true;
        response.clear();
      } else {
        auto final_msg = scram->client_final(*challenge);
        if (!final_msg) {
          a.error = "malformed SCRAM server-first message";
          return a;
        }
        response = *final_msg;
      }
    }
    const bool ok = send_line("CONT\t" + std::to_string(id) + "\t" + base64_encode(response));
    wipe(response.data(), response.size());
    if (!ok) {
      a.kind = DovecotAnswer::NoReply;
      a.error = "connection closed";
      return a;
    }
  }
}

}  // namespace mailauth::cli
