#include "src/daemon/daemon.h"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <iostream>
#include <memory>
#include <vector>

#include "src/auth/authenticator.h"
#include "src/config/config.h"
#include "src/daemon/dovecot_server.h"
#include "src/daemon/event_loop.h"
#include "src/daemon/listener.h"
#include "src/daemon/mux_server.h"
#include "src/daemon/worker_pool.h"
#include "src/password/schemes.h"
#include "src/util/log.h"
#include "version.h"

namespace mailauth {

namespace {

constexpr std::chrono::milliseconds kShutdownGrace{5000};

config::Config load_config(const DaemonOptions& opt) {
  if (opt.saslauthd) return config::from_saslauthd_args(*opt.saslauthd);
  return config::load_file(opt.config_path);
}

bool under_systemd() { return std::getenv("NOTIFY_SOCKET") || std::getenv("INVOCATION_ID"); }

log::Target log_target(const config::Config& cfg, const DaemonOptions& opt) {
  if (cfg.daemon.log_target) return *cfg.daemon.log_target;
  return opt.foreground ? log::Target::Stderr : log::Target::Syslog;
}

log::Level log_level(const config::Config& cfg, const DaemonOptions& opt) {
  return opt.debug ? log::Level::Debug : cfg.daemon.log_level;
}

// Detach from the terminal: fork, new session, stdio to /dev/null.
void daemonize() {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid > 0) ::_exit(0);
  ::setsid();
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    if (null > 2) ::close(null);
  }
  if (::chdir("/") != 0) { /* nothing relative is used after start-up */ }
}

// Writes "PID\n" to a file and removes it again on destruction.
class PidFile {
 public:
  explicit PidFile(std::string path) : path_(std::move(path)) {
    if (path_.empty()) return;
    FILE* f = std::fopen(path_.c_str(), "we");
    if (f == nullptr) {
      log::warning("cannot write " + path_ + ": " + std::strerror(errno));
      path_.clear();
      return;
    }
    std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
    std::fclose(f);
  }
  ~PidFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  std::string path_;
};

class Daemon {
 public:
  Daemon(DaemonOptions opt, config::Config cfg, std::shared_ptr<const auth::BackendChain> chain)
      : opt_(std::move(opt)), cfg_(std::move(cfg)), chain_(std::move(chain)) {}

  int run() {
    // Signals are taken from a signalfd on the loop; block them before any
    // thread starts so that the workers inherit the mask.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&mask, s);
    if (pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0)
      throw std::runtime_error("cannot block signals");
    ::signal(SIGPIPE, SIG_IGN);
    UniqueFd sigfd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!sigfd) throw std::runtime_error(std::string("signalfd: ") + std::strerror(errno));

    // Privileged set-up: sockets with their owners.
    std::unique_ptr<UnixListener> mux_listener, dovecot_listener;
    if (cfg_.mux) mux_listener = std::make_unique<UnixListener>(cfg_.mux->socket);
    if (cfg_.dovecot) dovecot_listener = std::make_unique<UnixListener>(cfg_.dovecot->socket);

    if (!opt_.foreground && !under_systemd()) daemonize();
    // In the saslauthd-compatible form, DIR/saslauthd.pid as saslauthd writes
    // it, so that init scripts written for saslauthd can stop us.
    PidFile pidfile(opt_.saslauthd ? opt_.saslauthd->dir + "/saslauthd.pid" : std::string());
    drop_privileges(cfg_.daemon.user, cfg_.daemon.group);
    if (::geteuid() == 0)
      log::warning("running as root: set [daemon] user (and group) to run unprivileged");
    if (opt_.saslauthd && opt_.saslauthd->cache)
      log::warning("-c: this version of mailauthd has no credential cache; every login is "
                   "checked against the backend (-s and -t are ignored)");
    if (!cfg_.daemon.control_socket.empty())
      log::warning("control_socket is not served by this version; the key is ignored");

    EventLoop loop;
    WorkerPool pool(loop, cfg_.daemon.workers, static_cast<std::size_t>(cfg_.daemon.queue_size));
    auth::Authenticator authenticator(loop, pool, chain_);
    std::unique_ptr<MuxServer> mux;
    std::unique_ptr<DovecotServer> dovecot;
    if (mux_listener)
      mux = std::make_unique<MuxServer>(loop, authenticator, *cfg_.mux, std::move(mux_listener));
    if (dovecot_listener)
      dovecot = std::make_unique<DovecotServer>(loop, authenticator, *cfg_.dovecot,
                                                std::move(dovecot_listener));

    bool stopping = false;
    loop.add(sigfd.get(), EPOLLIN, [&](uint32_t) {
      signalfd_siginfo si{};
      while (::read(sigfd.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGHUP) {
          reload(authenticator, mux.get(), dovecot.get());
        } else if (!stopping) {
          stopping = true;
          log::info(std::string("received ") + strsignal(static_cast<int>(si.ssi_signo)) +
                    "; shutting down");
          if (mux) mux->stop_accepting();
          if (dovecot) dovecot->stop_accepting();
          const auto deadline = std::chrono::steady_clock::now() + kShutdownGrace;
          // Let requests in flight finish, then stop; bounded by the grace time.
          shutdown_check_ = [&, deadline] {
            // Dovecot clients keep their connections open; wait only for
            // their requests in flight.
            const bool idle = authenticator.in_flight() == 0 && (!mux || mux->connections() == 0) &&
                              (!dovecot || dovecot->busy() == 0);
            if (idle ||
                std::chrono::steady_clock::now() >= deadline) {
              loop.stop();
              return;
            }
            loop.add_timer(std::chrono::milliseconds(20), [this] { shutdown_check_(); });
          };
          shutdown_check_();
        }
      }
    });

    log::info(std::string("mailauthd ") + MAILAUTH_VERSION + " ready" +
              log::kv("workers", cfg_.daemon.workers) +
              log::kv("backends", static_cast<long long>(chain_->backends().size())));
    loop.run();
    mux.reset();
    dovecot.reset();
    pool.shutdown();
    log::info("mailauthd stopped");
    return 0;
  }

 private:
  static bool same_socket(const config::SocketConfig& a, const config::SocketConfig& b) {
    return a.path == b.path && a.mode == b.mode && a.owner == b.owner && a.group == b.group;
  }

  void reload(auth::Authenticator& authenticator, MuxServer* mux, DovecotServer* dovecot) {
    log::info("received SIGHUP; reloading " +
              (opt_.saslauthd ? std::string("the backends") : opt_.config_path));
    try {
      config::Config next = load_config(opt_);
      auto chain = auth::build_chain(next);
      if (next.mux.has_value() != (mux != nullptr) ||
          (mux && !same_socket(next.mux->socket, mux->config().socket)))
        log::warning("reload: [saslauthd] socket settings changed; they take effect on restart");
      if (next.dovecot.has_value() != (dovecot != nullptr) ||
          (dovecot && !same_socket(next.dovecot->socket, dovecot->config().socket)))
        log::warning("reload: [dovecot] socket settings changed; they take effect on restart");
      if (mux && next.mux)
        mux->set_options(next.mux->join_realm, next.mux->request_timeout, next.mux->max_field);
      if (dovecot && next.dovecot) dovecot->set_options(*next.dovecot);
      if (next.daemon.workers != cfg_.daemon.workers || next.daemon.user != cfg_.daemon.user)
        log::warning("reload: [daemon] workers/user changed; they take effect on restart");
      log::set_level(log_level(next, opt_));
      authenticator.set_chain(chain);
      chain_ = std::move(chain);
      cfg_ = std::move(next);
      log::info("reload: done" +
                log::kv("backends", static_cast<long long>(chain_->backends().size())));
    } catch (const std::exception& e) {
      log::error(std::string("reload failed, keeping the running configuration: ") + e.what());
    }
  }

  DaemonOptions opt_;
  std::function<void()> shutdown_check_;  // polls until requests in flight are done
  config::Config cfg_;
  std::shared_ptr<const auth::BackendChain> chain_;
};

}  // namespace

void drop_privileges(const std::string& user, const std::string& group) {
  if (user.empty() && group.empty()) return;
  if (::geteuid() != 0) {
    log::debug("not started as root; staying the user we are");
    return;
  }
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* result = nullptr;
  if (user.empty()) throw std::runtime_error("[daemon] group is set but user is not");
  if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &result) != 0 || result == nullptr)
    throw std::runtime_error("[daemon] user '" + user +
                             "' does not exist (make install creates it; or change the key)");
  const gid_t gid = group.empty() ? pw.pw_gid : lookup_gid(group);
  if (::initgroups(pw.pw_name, gid) != 0 || ::setgid(gid) != 0 || ::setuid(pw.pw_uid) != 0)
    throw std::runtime_error("cannot switch to user '" + user + "': " + std::strerror(errno));
  if (::setuid(0) == 0) throw std::runtime_error("privileges were not dropped (setuid(0) worked)");
  log::info("running as user " + user);
}

int run_daemon(const DaemonOptions& opt) {
  password::init();
  config::Config cfg;
  try {
    cfg = load_config(opt);
  } catch (const config::ConfigError& e) {
    std::cerr << "mailauthd: " << e.what() << "\n";
    return 1;
  }
  log::init(opt.check_config ? log::Target::Stderr : log_target(cfg, opt), log_level(cfg, opt),
            "mailauthd");
  std::shared_ptr<const auth::BackendChain> chain;
  try {
    chain = auth::build_chain(cfg);
  } catch (const std::exception& e) {
    std::cerr << "mailauthd: " << e.what() << "\n";
    return 1;
  }
  if (opt.check_config) {
    int problems = 0;
    for (const auto& b : chain->backends()) {
      std::string problem = b->check();
      if (!problem.empty()) {
        std::cerr << "mailauthd: backend " << b->name() << ": " << problem << "\n";
        ++problems;
      }
    }
    if (problems) return 1;
    std::cout << (opt.saslauthd ? std::string("saslauthd command line") : opt.config_path)
              << ": configuration OK (" << chain->backends().size()
              << " backend" << (chain->backends().size() == 1 ? "" : "s") << ")\n";
    return 0;
  }
  const bool to_stderr_too = log_target(cfg, opt) != log::Target::Stderr;
  try {
    Daemon d(opt, std::move(cfg), std::move(chain));
    return d.run();
  } catch (const std::exception& e) {
    log::error(std::string("fatal: ") + e.what());
    if (to_stderr_too) std::cerr << "mailauthd: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace mailauth
