// mailauth-bench-tools: the reference points of `make bench`
// (scripts/bench-compare.sh).  A test tool, never installed.
//
//   crypt-limit --hash HASH --password PW [--threads N] [--seconds S]
//       crypt_r() verifications of HASH per second on N threads (default
//       nproc): the most a daemon that verifies that hash once per login can
//       answer on this machine.  One JSON line.
//   echo-mux --socket PATH [--threads N]
//       a saslauthd-framed echo server: per connection, read one request of
//       counted strings (login, password, service, realm), answer "OK",
//       shutdown(SHUT_WR), drain to EOF and close, as saslauthd does.
//   echo-dovecot --socket PATH [--threads N]
//       a Dovecot-auth-framed echo server: the 2.3 handshake on accept
//       (VERSION, MECH, SPID, CUID, COOKIE, DONE), then OK <id> user=<authcid>
//       for every AUTH with a PLAIN initial response; persistent connections.
//   idle-dovecot --socket PATH --count N
//       open N connections to a Dovecot-protocol socket, do the handshake on
//       each (read to DONE), print "ready N", hold them until stdin closes.
//
// The echo servers are the "limit of the socket": no password is looked at,
// so what they reach is what the framing, the syscalls and the kernel allow
// with the same client on the same machine.  Each thread runs its own epoll
// loop; the listening socket is in every loop with EPOLLEXCLUSIVE.
#include <crypt.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "src/util/encoding.h"

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "mailauth-bench-tools: %s\n", what.c_str());
  std::exit(1);
}
[[noreturn]] void die_errno(const std::string& what) { die(what + ": " + std::strerror(errno)); }

struct Options {
  std::string mode, socket, hash, password;
  int threads = 0;
  double seconds = 3;
  long count = 0;
};

Options parse(int argc, char** argv) {
  if (argc < 2) die("usage: mailauth-bench-tools crypt-limit|echo-mux|echo-dovecot|idle-dovecot ...");
  Options o;
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) die("option " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--socket") o.socket = v;
    else if (a == "--hash") o.hash = v;
    else if (a == "--password") o.password = v;
    else if (a == "--threads") o.threads = std::atoi(v.c_str());
    else if (a == "--seconds") o.seconds = std::atof(v.c_str());
    else if (a == "--count") o.count = std::atol(v.c_str());
    else die("unknown option " + a);
  }
  if (o.threads <= 0) o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return o;
}

// --- crypt-limit ------------------------------------------------------------------

int crypt_limit(const Options& o) {
  if (o.hash.empty()) die("crypt-limit needs --hash and --password");
  {
    auto data = std::make_unique<crypt_data>();
    const char* r = crypt_r(o.password.c_str(), o.hash.c_str(), data.get());
    if (r == nullptr || o.hash != r) die("the password does not verify against --hash");
  }
  std::atomic<bool> stop{false};
  std::vector<long long> done(static_cast<std::size_t>(o.threads), 0);
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < o.threads; ++t) {
    threads.emplace_back([&, t] {
      auto data = std::make_unique<crypt_data>();
      long long n = 0;
      bool ok = true;
      while (!stop.load(std::memory_order_relaxed)) {
        const char* r = crypt_r(o.password.c_str(), o.hash.c_str(), data.get());
        ok &= r != nullptr && std::strcmp(r, o.hash.c_str()) == 0;
        ++n;
      }
      done[static_cast<std::size_t>(t)] = ok ? n : -1;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop = true;
  for (auto& th : threads) th.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long long total = 0;
  for (long long n : done) {
    if (n < 0) die("a verification failed");
    total += n;
  }
  std::printf("{\"threads\": %d, \"seconds\": %.3f, \"verifications\": %lld, \"per_s\": %.1f}\n",
              o.threads, secs, total, static_cast<double>(total) / secs);
  return 0;
}

// --- echo servers -----------------------------------------------------------------

int listen_on(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) die("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die_errno("socket");
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die_errno("bind " + path);
  if (::chmod(path.c_str(), 0666) != 0) die_errno("chmod " + path);
  if (::listen(fd, 4096) != 0) die_errno("listen");
  return fd;
}

struct Conn {
  int fd = -1;
  std::string in, out;
  bool answered = false;  // mux: the reply is queued
  bool shut = false;      // mux: reply sent, SHUT_WR done, draining to EOF
};

class EchoLoop {
 public:
  EchoLoop(int listen_fd, bool dovecot, std::atomic<unsigned>* cuid)
      : listen_fd_(listen_fd), dovecot_(dovecot), cuid_(cuid) {}

  void run() {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) die_errno("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.ptr = nullptr;
    if (::epoll_ctl(ep_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) die_errno("epoll_ctl listen");
    epoll_event events[256];
    for (;;) {
      const int n = ::epoll_wait(ep_, events, 256, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        die_errno("epoll_wait");
      }
      for (int i = 0; i < n; ++i) {
        if (events[i].data.ptr == nullptr) {
          accept_all();
        } else {
          auto* c = static_cast<Conn*>(events[i].data.ptr);
          if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            if (!readable(c)) continue;  // closed
          }
          if ((events[i].events & EPOLLOUT) && !flush(c)) continue;
        }
      }
    }
  }

 private:
  void accept_all() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EMFILE || errno == ENFILE) return;  // the client will wait
        die_errno("accept4");
      }
      auto* c = new Conn;
      c->fd = fd;
      if (dovecot_) {
        char cookie[33];
        for (int i = 0; i < 32; ++i) cookie[i] = "0123456789abcdef"[std::rand() & 15];
        cookie[32] = 0;
        c->out = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t" +
                 std::to_string(::getpid()) + "\nCUID\t" + std::to_string(++*cuid_) +
                 "\nCOOKIE\t" + cookie + "\nDONE\n";
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = c;
      if (::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) die_errno("epoll_ctl add");
      if (dovecot_) {
        flush(c);
      } else {
        readable(c);  // the request is often here already
      }
    }
  }

  void close_conn(Conn* c) {
    ::close(c->fd);  // also leaves the epoll set
    delete c;
  }

  // Returns false when the connection was closed.
  bool readable(Conn* c) {
    char buf[16384];
    for (;;) {
      const ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) {  // EOF or error: the mux drain ends here
        close_conn(c);
        return false;
      }
      if (c->answered) continue;  // draining
      c->in.append(buf, static_cast<std::size_t>(n));
      if (static_cast<std::size_t>(n) < sizeof buf) break;
    }
    if (dovecot_) {
      dovecot_lines(c);
    } else if (!c->answered && mux_complete(c->in)) {
      c->answered = true;
      c->in.clear();
      static constexpr char kOk[] = {0, 2, 'O', 'K'};
      c->out.assign(kOk, sizeof kOk);
    }
    return flush(c);
  }

  // Four counted strings (login, password, service, realm), as saslauthd
  // 2.1.28 reads them; a fifth is drained, never waited for.
  static bool mux_complete(const std::string& b) {
    std::size_t pos = 0;
    for (int field = 0; field < 4; ++field) {
      if (b.size() < pos + 2) return false;
      const std::size_t len = (static_cast<unsigned char>(b[pos]) << 8) | static_cast<unsigned char>(b[pos + 1]);
      pos += 2 + len;
      if (b.size() < pos) return false;
    }
    return true;
  }

  void dovecot_lines(Conn* c) {
    std::size_t start = 0;
    for (;;) {
      const auto nl = c->in.find('\n', start);
      if (nl == std::string::npos) break;
      const std::string_view line(c->in.data() + start, nl - start);
      start = nl + 1;
      if (line.rfind("AUTH\t", 0) != 0) continue;  // VERSION, CPID
      const auto id_end = line.find('\t', 5);
      const std::string_view id = line.substr(5, id_end == std::string_view::npos ? std::string_view::npos : id_end - 5);
      std::string user;
      const auto resp = line.find("\tresp=");
      if (resp != std::string_view::npos) {
        auto value = line.substr(resp + 6);
        value = value.substr(0, value.find('\t'));
        if (auto msg = mailauth::base64_decode(value)) {
          // authzid NUL authcid NUL password
          const auto a = msg->find('\0');
          const auto b = a == std::string::npos ? std::string::npos : msg->find('\0', a + 1);
          if (b != std::string::npos) user = msg->substr(a + 1, b - a - 1);
        }
      }
      if (user.empty()) {
        c->out.append("FAIL\t").append(id).append("\n");
      } else {
        c->out.append("OK\t").append(id).append("\tuser=").append(user).append("\n");
      }
    }
    c->in.erase(0, start);
  }

  // Writes what is pending; returns false when the connection was closed.
  bool flush(Conn* c) {
    while (!c->out.empty()) {
      const ssize_t n = ::send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.ptr = c;
        ::epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev);
        return true;
      }
      if (n < 0) {
        close_conn(c);
        return false;
      }
      c->out.erase(0, static_cast<std::size_t>(n));
      if (c->out.empty()) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        ::epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev);
      }
    }
    if (!dovecot_ && c->answered && c->out.empty() && !c->shut) {
      c->shut = true;
      ::shutdown(c->fd, SHUT_WR);  // then drain to the client's EOF, as saslauthd
    }
    return true;
  }

  int listen_fd_;
  bool dovecot_;
  std::atomic<unsigned>* cuid_;
  int ep_ = -1;
};

int echo_server(const Options& o, bool dovecot) {
  if (o.socket.empty()) die("--socket is required");
  const int fd = listen_on(o.socket);
  std::atomic<unsigned> cuid{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t)
    threads.emplace_back([&] { EchoLoop(fd, dovecot, &cuid).run(); });
  for (auto& th : threads) th.join();  // never: SIGTERM ends the process
  return 0;
}

// --- idle-dovecot -----------------------------------------------------------------

int idle_dovecot(const Options& o) {
  if (o.socket.empty() || o.count <= 0) die("idle-dovecot needs --socket and --count");
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t want = static_cast<rlim_t>(o.count) + 64;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = want;
    if (rl.rlim_max < want) rl.rlim_max = want;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) die_errno("setrlimit(RLIMIT_NOFILE)");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (o.socket.size() >= sizeof addr.sun_path) die("socket path too long");
  std::memcpy(addr.sun_path, o.socket.c_str(), o.socket.size() + 1);
  const std::string hello = "VERSION\t1\t2\nCPID\t" + std::to_string(::getpid()) + "\n";
  std::vector<int> fds;
  fds.reserve(static_cast<std::size_t>(o.count));
  for (long i = 0; i < o.count; ++i) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die_errno("socket (connection " + std::to_string(i) + ")");
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      die_errno("connect (connection " + std::to_string(i) + ")");
    if (::send(fd, hello.data(), hello.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(hello.size()))
      die_errno("send");
    std::string got;
    while (got.find("DONE\n") == std::string::npos) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10000) != 1) die("no handshake on connection " + std::to_string(i));
      char buf[1024];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) die("connection " + std::to_string(i) + " closed during the handshake");
      got.append(buf, static_cast<std::size_t>(n));
    }
    fds.push_back(fd);
  }
  std::printf("ready %ld\n", o.count);
  std::fflush(stdout);
  char c;
  while (::read(0, &c, 1) > 0) {
  }
  // Every connection still open? (a server that dropped idle ones would show here)
  long alive = 0;
  for (int fd : fds) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 0) ++alive;
  }
  std::printf("alive %ld\n", alive);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (o.mode == "crypt-limit") return crypt_limit(o);
  if (o.mode == "echo-mux") return echo_server(o, false);
  if (o.mode == "echo-dovecot") return echo_server(o, true);
  if (o.mode == "idle-dovecot") return idle_dovecot(o);
  die("unknown mode " + o.mode);
}
