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
#include <algorithm>
#include <thread>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "src/auth/authenticator.h"
#include "src/config/config.h"
#include <systemd/sd-daemon.h>

#include "src/daemon/control_server.h"
#include "src/daemon/dovecot_server.h"
#include "src/runtime/metrics.h"
#include "src/runtime/event_loop.h"
#include "src/net/listener.h"
#include "src/daemon/mux_server.h"
#include "src/runtime/worker_pool.h"
#include "src/password/schemes.h"
#include "src/util/log.h"
#include "version.h"

namespace mailauth {

namespace {

constexpr std::chrono::milliseconds kShutdownGrace{5000};

config::Config load_config(const DaemonOptions& opt) {
  if (opt.saslauthd) return backend::from_saslauthd_args(*opt.saslauthd);
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

// Writes "PID\n" to DIR/NAME and removes it again on destruction.
//
// The directory is opened first (before the daemon detaches, so that a
// refusal reaches the terminal) without following a final symlink, and
// refused when another user could plant or replace files in it: group or
// others may write it, or it belongs to a user who is neither root nor us.
// Everything after that goes through the directory's descriptor.
class PidFile {
 public:
  PidFile() = default;
  PidFile(const std::string& dir, std::string name) : name_(std::move(name)) {
    dir_ = UniqueFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!dir_ || ::fstat(dir_.get(), &st) != 0)
      throw std::runtime_error("cannot open " + dir + " for the PID file: " + std::strerror(errno));
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 || (st.st_uid != 0 && st.st_uid != ::geteuid())) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      throw std::runtime_error("refusing to write " + name_ + " in " + dir + ": another user can " +
                               "write there (mode " + mode + ", owner uid " +
                               std::to_string(st.st_uid) + "); make it owned by root, mode 0710 " +
                               "or 0755");
    }
    display_ = dir + "/" + name_;
  }
  // Written whole, then renamed, so a reader never sees a half-written file.
  // Created afresh (O_EXCL, O_NOFOLLOW): a symlink planted at the temporary
  // name is replaced, never written through, even as root; rename replaces
  // a symlink at the final name itself.
  void write() {
    if (!dir_) return;
    const std::string tmp = name_ + ".tmp";
    ::unlinkat(dir_.get(), tmp.c_str(), 0);
    const int fd = ::openat(dir_.get(), tmp.c_str(),
                            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    FILE* f = fd < 0 ? nullptr : ::fdopen(fd, "w");
    if (f == nullptr && fd >= 0) ::close(fd);
    bool ok = f != nullptr;
    if (ok) {
      ok = std::fprintf(f, "%d\n", static_cast<int>(::getpid())) >= 0;
      ok = std::fclose(f) == 0 && ok;
    }
    if (!ok || ::renameat(dir_.get(), tmp.c_str(), dir_.get(), name_.c_str()) != 0) {
      const int err = errno;
      if (!ok) ::unlinkat(dir_.get(), tmp.c_str(), 0);
      log::warning("cannot write " + display_ + ": " + std::strerror(err));
      dir_.reset();
      return;
    }
    written_ = true;
  }
  ~PidFile() {
    if (written_) ::unlinkat(dir_.get(), name_.c_str(), 0);
  }
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  UniqueFd dir_;
  std::string name_;
  std::string display_;
  bool written_ = false;
};

// One event loop thread and what runs on it: its connections (a server per
// listener, all shards accepting on the same sockets), an authenticator
// (in-flight count, answer-time samples) and an executor that brings worker
// results back to this loop.  Everything else -- worker pool, chain,
// services -- is shared by all shards.
struct Shard {
  EpollLoop loop;
  std::unique_ptr<WorkerPool::ForLoop> executor;
  std::unique_ptr<auth::Authenticator> authenticator;
  std::unique_ptr<MuxServer> mux;
  std::unique_ptr<DovecotServer> dovecot;
  std::thread thread;  // none for shard 0, which runs on the main thread
  std::function<void()> shutdown_check;  // loop thread

  // Loop thread: serve until the loop stops, then close the servers on the
  // thread that owns them.
  void serve() {
    loop.run();
    mux.reset();
    dovecot.reset();
  }

  // Loop thread: stop accepting, let requests in flight finish, then stop
  // the loop; bounded by `deadline`.
  void begin_shutdown(std::chrono::steady_clock::time_point deadline) {
    if (mux) mux->stop_accepting();
    if (dovecot) dovecot->stop_accepting();
    shutdown_check = [this, deadline] {
      // Dovecot clients keep their connections open; wait only for their
      // requests in flight.
      const bool idle = authenticator->in_flight() == 0 && (!mux || mux->connections() == 0) &&
                        (!dovecot || dovecot->busy() == 0);
      if (idle || std::chrono::steady_clock::now() >= deadline) {
        loop.stop();
        return;
      }
      loop.add_timer(std::chrono::milliseconds(20), [this] { shutdown_check(); });
    };
    shutdown_check();
  }
};

// [daemon] loops: 0 is one per core, at most kMaxAutoLoops.
constexpr int kMaxAutoLoops = 8;
int loop_count(int configured) {
  if (configured > 0) return configured;
  const unsigned cores = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(cores, 1u, static_cast<unsigned>(kMaxAutoLoops)));
}

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

    // Privileged set-up: sockets with their owners (or the ones systemd
    // passed in), before privileges are dropped.
    Activated activated = take_activated_sockets();
    // A socket directory mailauthd creates belongs to the user it drops to,
    // so that it can still remove its sockets at exit.
    const uid_t dir_owner = socket_dir_owner();
    std::unique_ptr<UnixListener> mux_listener, dovecot_listener, control_listener;
    if (cfg_.mux)
      mux_listener = listener_for(activated, {"saslauthd", "mux"}, cfg_.mux->socket, dir_owner);
    if (cfg_.dovecot)
      dovecot_listener =
          listener_for(activated, {"dovecot", "auth"}, cfg_.dovecot->socket, dir_owner);
    if (!cfg_.daemon.control_socket.empty()) {
      config::SocketConfig sc;
      sc.path = cfg_.daemon.control_socket;
      sc.mode = cfg_.daemon.control_mode;
      sc.group = cfg_.daemon.control_group;
      control_listener = listener_for(activated, {"control"}, sc, dir_owner);
    }
    for (const auto& [name, fd] : activated)
      log::warning("systemd passed a socket named '" + name + "' that no configured listener uses");

    // In the saslauthd-compatible form, DIR/saslauthd.pid as saslauthd writes
    // it, so that init scripts written for saslauthd can stop us.
    std::optional<PidFile> pidfile;
    if (opt_.saslauthd) pidfile.emplace(opt_.saslauthd->dir, "saslauthd.pid");
    if (!opt_.foreground && !under_systemd()) daemonize();
    if (pidfile) pidfile->write();
    drop_privileges(cfg_.daemon.user, cfg_.daemon.group);
    check_not_root();

    // One event loop per core (`loops`), each with its own connections and
    // authenticator, all accepting on the same listening sockets and sharing
    // the worker pool, the chain and the services.  Shard 0 runs on this
    // thread, which also takes the signals and the control socket.
    const int nloops = loop_count(cfg_.daemon.loops);
    std::vector<std::unique_ptr<Shard>> shards;
    for (int i = 0; i < nloops; ++i) shards.push_back(std::make_unique<Shard>());
    WorkerPool pool(shards[0]->loop, cfg_.daemon.workers,
                    static_cast<std::size_t>(cfg_.daemon.queue_size));
    pool_ = &pool;
    services_ = auth::make_services(cfg_, services_, auth::system_clock());
    std::shared_ptr<net::SharedListener> mux_shared, dovecot_shared;
    if (mux_listener)
      mux_shared = std::make_shared<net::SharedListener>(std::move(mux_listener),
                                                         cfg_.daemon.max_connections);
    if (dovecot_listener)
      dovecot_shared = std::make_shared<net::SharedListener>(std::move(dovecot_listener),
                                                             cfg_.daemon.max_connections);
    for (auto& sh : shards) {
      sh->executor = std::make_unique<WorkerPool::ForLoop>(pool, sh->loop);
      sh->authenticator =
          std::make_unique<auth::Authenticator>(sh->loop, *sh->executor, chain_, services_);
      if (mux_shared)
        sh->mux = std::make_unique<MuxServer>(sh->loop, *sh->authenticator, *cfg_.mux, mux_shared);
      if (dovecot_shared)
        sh->dovecot = std::make_unique<DovecotServer>(sh->loop, *sh->authenticator,
                                                      *cfg_.dovecot, dovecot_shared);
    }
    shards_ = &shards;
    Shard& main = *shards[0];
    EpollLoop& loop = main.loop;
    std::unique_ptr<ControlServer> control;
    if (control_listener) {
      ControlServer::Handlers h;
      h.stats = [&] {
        Metrics::Gauges g;
        g.queue_depth = pool.queued();
        g.workers_busy = pool.busy();
        g.workers = pool.threads();
        for (const auto& sh : shards) g.in_flight += sh->authenticator->in_flight();
        g.mux_connections = main.mux ? main.mux->server().total_connections() : 0;
        g.dovecot_connections = main.dovecot ? main.dovecot->server().total_connections() : 0;
        g.cache_entries = services_.cache ? services_.cache->size() : 0;
        return services_.metrics->prometheus(g);
      };
      h.flush = [this](std::optional<std::string> user) -> std::size_t {
        if (!services_.cache) return 0;
        if (!user) return services_.cache->flush(std::nullopt);
        // Entries are kept under each backend's canonical name for the user:
        // `flush ALICE@EXAMPLE.COM` drops alice@example.com's.
        std::set<std::string> names{*user};
        if (chain_)
          for (const auto& b : chain_->backends()) names.insert(b->canonical_user(*user));
        std::size_t n = 0;
        for (const auto& name : names)
          if (!name.empty()) n += services_.cache->flush(std::string_view(name));
        return n;
      };
      h.reload = [&] { return reload(); };
      control = std::make_unique<ControlServer>(loop, std::move(control_listener), std::move(h));
    }

    bool stopping = false;
    loop.add(sigfd.get(), EPOLLIN, [&](uint32_t) {
      signalfd_siginfo si{};
      while (::read(sigfd.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGHUP) {
          reload();
        } else if (!stopping) {
          stopping = true;
          log::info(std::string("received ") + strsignal(static_cast<int>(si.ssi_signo)) +
                    "; shutting down");
          notify("STOPPING=1");
          if (control) control->stop_accepting();
          const auto deadline = std::chrono::steady_clock::now() + kShutdownGrace;
          for (auto& sh : shards) {
            Shard* p = sh.get();
            p->loop.post([p, deadline] { p->begin_shutdown(deadline); });
          }
        }
      }
    });

    // From here on every loop thread is joined on the way out, whatever
    // throws (a std::thread destroyed while joinable would abort).
    struct JoinAll {
      std::vector<std::unique_ptr<Shard>>& shards;
      ~JoinAll() {
        for (auto& sh : shards) {
          if (!sh->thread.joinable()) continue;
          sh->loop.stop();
          sh->thread.join();
        }
      }
    } join_all{shards};
    for (std::size_t i = 1; i < shards.size(); ++i) {
      Shard* p = shards[i].get();
      p->thread = std::thread([p] { p->serve(); });
    }

    log::info(std::string("mailauthd ") + MAILAUTH_VERSION + " ready" +
              log::kv("loops", nloops) + log::kv("workers", cfg_.daemon.workers) +
              log::kv("backends", static_cast<long long>(chain_->backends().size())) +
              log::kv("cache", services_.cache ? "on" : "off") +
              log::kv("policy", services_.policy ? "on" : "off"));
    notify("READY=1\nSTATUS=serving");
    probe_backends(pool, chain_, "start");
    main.serve();
    control.reset();
    // The other loops stop on their own once idle (or at the deadline).
    for (std::size_t i = 1; i < shards.size(); ++i)
      if (shards[i]->thread.joinable()) shards[i]->thread.join();
    shards_ = nullptr;
    pool_ = nullptr;
    pool.shutdown();
    log::info("mailauthd stopped");
    return 0;
  }

 private:
  using Activated = std::vector<std::pair<std::string, int>>;

  // Sockets passed by systemd socket activation (LISTEN_FDS/LISTEN_FDNAMES),
  // by their FileDescriptorName=.
  static Activated take_activated_sockets() {
    Activated out;
    char** names = nullptr;
    const int n = sd_listen_fds_with_names(1, &names);
    if (n <= 0) return out;
    for (int i = 0; i < n; ++i) {
      out.emplace_back(names && names[i] ? names[i] : "", SD_LISTEN_FDS_START + i);
      if (names) std::free(names[i]);
    }
    std::free(names);
    log::info("systemd passed " + std::to_string(n) + " socket(s)");
    return out;
  }

  // The uid drop_privileges() will switch to, or -1 when it will not switch
  // (not root, no [daemon] user, user = "root", or no such user: then
  // drop_privileges() says so).
  uid_t socket_dir_owner() const {
    if (::geteuid() != 0 || cfg_.daemon.user.empty()) return static_cast<uid_t>(-1);
    try {
      const uid_t uid = lookup_uid(cfg_.daemon.user);
      return uid == 0 ? static_cast<uid_t>(-1) : uid;
    } catch (const std::exception&) {
      return static_cast<uid_t>(-1);
    }
  }

  static std::unique_ptr<UnixListener> listener_for(Activated& activated,
                                                    std::initializer_list<const char*> names,
                                                    const config::SocketConfig& config,
                                                    uid_t dir_owner) {
    for (auto it = activated.begin(); it != activated.end(); ++it) {
      for (const char* n : names) {
        if (it->first == n) {
          auto l = UnixListener::adopt(it->second, config.path);
          activated.erase(it);
          return l;
        }
      }
    }
    return std::make_unique<UnixListener>(config, dir_owner);
  }

  static void notify(const char* state) { sd_notify(0, state); }

  // After dropping privileges: running on as root is refused unless asked
  // for (user = "root"), needed by a backend (pam: pam_unix checks other
  // users' passwords only as root), or the saslauthd-compatible form.
  void check_not_root() const {
    if (::geteuid() != 0) return;
    if (cfg_.daemon.user == "root") {
      log::warning("running as root, as [daemon] user = \"root\" asks");
      return;
    }
    for (const auto& b : chain_->backends()) {
      if (const std::string why = b->needs_root(); !why.empty()) {
        log::warning("running as root: backend " + b->name() + " (" + b->type() +
                     ") may need it (" + why + "); set [daemon] user if it does not");
        return;
      }
    }
    if (opt_.saslauthd) {
      log::warning("running as root (saslauthd-compatible form; use a config file with "
                   "[daemon] user to run unprivileged)");
      return;
    }
    throw std::runtime_error(
        "refusing to run as root: no backend needs it.  Set [daemon] user (make install "
        "creates \"mailauth\"), or user = \"root\" to insist");
  }

  // What --check-config would say about each backend, said in the log once
  // the daemon serves (at start and after a reload): a wrong service
  // password or a database that is down shows at once, not only at the
  // first login.  On workers, as health() may block up to the backend's
  // timeout; the jobs keep the chain they probe alive.
  static void probe_backends(Executor& pool, std::shared_ptr<const auth::BackendChain> chain,
                             const char* when) {
    for (std::size_t i = 0; i < chain->backends().size(); ++i) {
      pool.submit(
          [chain, i, when]() -> Executor::Continuation {
            backend::Backend& b = *chain->backends()[i];
            const backend::Backend::Health h = b.health();
            if (!h.problem.empty()) {
              const std::string line = "backend problem at " + std::string(when) +
                                       log::kv("backend", b.name()) +
                                       log::kv("kind", h.unreachable ? "unreachable" : "error") +
                                       log::kv("problem", log::sanitize(h.problem, 1024));
              if (h.unreachable)
                log::warning(line + " (temporary failures until it can be reached)");
              else
                log::error(line);
            }
            return [] {};
          },
          [] {});
    }
  }

  static bool same_socket(const config::SocketConfig& a, const config::SocketConfig& b) {
    return a.path == b.path && a.mode == b.mode && a.owner == b.owner && a.group == b.group;
  }

  // Returns empty on success, else what was wrong.  Main loop thread: the
  // other loops get the new chain, services and options posted to them.
  std::string reload() {
    log::info("reloading " + (opt_.saslauthd ? std::string("the backends") : opt_.config_path));
    notify("RELOADING=1");
    try {
      config::Config next = load_config(opt_);
      auto chain = auth::build_chain(next);
      const Shard& main = *(*shards_)[0];
      if (next.mux.has_value() != (main.mux != nullptr) ||
          (main.mux && !same_socket(next.mux->socket, main.mux->config().socket)))
        log::warning("reload: [saslauthd] socket settings changed; they take effect on restart");
      if (next.dovecot.has_value() != (main.dovecot != nullptr) ||
          (main.dovecot && !same_socket(next.dovecot->socket, main.dovecot->config().socket)))
        log::warning("reload: [dovecot] socket settings changed; they take effect on restart");
      if (main.mux) main.mux->server().set_max_connections(next.daemon.max_connections);
      if (main.dovecot) main.dovecot->server().set_max_connections(next.daemon.max_connections);
      if (next.daemon.workers != cfg_.daemon.workers || next.daemon.user != cfg_.daemon.user ||
          next.daemon.control_socket != cfg_.daemon.control_socket ||
          loop_count(next.daemon.loops) != loop_count(cfg_.daemon.loops))
        log::warning("reload: [daemon] workers/loops/user/control_socket changed; they take "
                     "effect on restart");
      log::set_level(log_level(next, opt_));
      chain_ = std::move(chain);
      if (pool_ != nullptr) probe_backends(*pool_, chain_, "reload");
      cfg_ = std::move(next);
      // Requests in flight keep the services they started with.
      services_ = auth::make_services(cfg_, services_, auth::system_clock());
      for (auto& sh : *shards_) {
        Shard* p = sh.get();
        // By value: this runs on each shard's own thread, later.
        auto apply = [p, chain = chain_, services = services_,
                      mux = cfg_.mux, dovecot = cfg_.dovecot] {
          p->authenticator->set_chain(chain);
          p->authenticator->set_services(services);
          if (p->mux && mux) p->mux->set_options(*mux);
          if (p->dovecot && dovecot) p->dovecot->set_options(*dovecot);
        };
        if (p == &main) apply();
        else p->loop.post(std::move(apply));
      }
      services_.metrics->reload(true);
      log::info("reload: done" +
                log::kv("backends", static_cast<long long>(chain_->backends().size())));
      notify("READY=1\nSTATUS=serving");
      return {};
    } catch (const std::exception& e) {
      services_.metrics->reload(false);
      log::error(std::string("reload failed, keeping the running configuration: ") + e.what());
      notify("READY=1\nSTATUS=serving (last reload failed)");
      return e.what();
    }
  }

  DaemonOptions opt_;
  // Shared with every request in flight; a reload replaces them here.
  auth::Services services_{std::make_shared<Metrics>(), nullptr, nullptr};
  config::Config cfg_;
  std::shared_ptr<const auth::BackendChain> chain_;
  WorkerPool* pool_ = nullptr;  // while run() serves: for reload()'s backend probe
  std::vector<std::unique_ptr<Shard>>* shards_ = nullptr;  // while run() serves
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
  if (pw.pw_uid == 0) return;  // user = "root": nothing to drop (check_not_root says so)
  const gid_t gid = group.empty() ? pw.pw_gid : lookup_gid(group);
  if (::initgroups(pw.pw_name, gid) != 0 || ::setgid(gid) != 0 || ::setuid(pw.pw_uid) != 0)
    throw std::runtime_error("cannot switch to user '" + user + "': " + std::strerror(errno));
  if (::setuid(0) == 0) throw std::runtime_error("privileges were not dropped (setuid(0) worked)");
  log::info("running as user " + user);
}

namespace {

bool user_exists(const std::string& name) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* result = nullptr;
  return getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &result) == 0 && result != nullptr;
}

// The user and group names start-up resolves -- [daemon] user and group
// (drop_privileges, started as root), each socket's owner and group and the
// control socket's group (UnixListener) -- each checked as start-up checks
// it; one message per name it would fail on.
std::vector<std::string> unresolvable_names(const config::Config& cfg) {
  std::vector<std::string> out;
  auto problem = [&](std::string_view table, std::string_view key, const std::string& message) {
    out.push_back(config::key_message(cfg, table, key, message));
  };
  auto check_id = [&](std::string_view table, std::string_view key, const std::string& name,
                      auto lookup) {
    if (name.empty()) return;
    try {
      lookup(name);
    } catch (const std::runtime_error& e) {
      problem(table, key, e.what());
    }
  };
  const config::DaemonConfig& d = cfg.daemon;
  if (!d.user.empty() && !user_exists(d.user))
    problem("daemon", "user",
            "user '" + d.user + "' does not exist (make install creates \"mailauth\"; or change "
            "the key)");
  if (d.user.empty() && !d.group.empty())
    problem("daemon", "group", "is set but [daemon] user is not");
  check_id("daemon", "group", d.group, lookup_gid);
  const std::pair<std::string_view, const config::SocketConfig*> sockets[] = {
      {"saslauthd", cfg.mux ? &cfg.mux->socket : nullptr},
      {"dovecot", cfg.dovecot ? &cfg.dovecot->socket : nullptr}};
  for (const auto& [table, socket] : sockets) {
    if (socket == nullptr) continue;
    check_id(table, "owner", socket->owner, lookup_uid);
    check_id(table, "group", socket->group, lookup_gid);
  }
  if (!d.control_socket.empty()) check_id("daemon", "control_group", d.control_group, lookup_gid);
  return out;
}

// --check-config after the configuration parsed and the chain was built:
// what start-up would still fail on (a name that does not exist, a backend
// that refuses its settings) is an error (1); a backend that cannot
// be reached now is not -- mailauthd starts without it and answers
// temporary failures until it is back -- so it is a warning (exit 0), or
// exit kExitUnreachable with --strict.
int check_config(const DaemonOptions& opt, const config::Config& cfg,
                 const auth::BackendChain& chain) {
  int invalid = 0, unreachable = 0;
  for (const std::string& problem : unresolvable_names(cfg)) {
    std::cerr << "mailauthd: " << problem << "\n";
    ++invalid;
  }
  for (const auto& b : chain.backends()) {
    const backend::Backend::Health h = b->health();
    for (const std::string& note : h.notes)
      std::cerr << "mailauthd: warning: backend " << b->name() << ": " << note << "\n";
    if (h.problem.empty()) continue;
    if (h.unreachable) {
      std::cerr << "mailauthd: warning: backend " << b->name() << ": " << h.problem
                << " (not a configuration error: mailauthd starts and answers temporary "
                   "failures until it can connect)\n";
      ++unreachable;
    } else {
      std::cerr << "mailauthd: backend " << b->name() << ": " << h.problem << "\n";
      ++invalid;
    }
  }
  if (invalid) return 1;
  const std::size_t n = chain.backends().size();
  if (unreachable && opt.strict) {
    std::cerr << "mailauthd: --strict: " << unreachable << " of " << n << " backend"
              << (n == 1 ? "" : "s") << " cannot be reached now\n";
    return kExitUnreachable;
  }
  std::cout << (opt.saslauthd ? std::string("saslauthd command line") : opt.config_path)
            << ": configuration OK (" << n << " backend" << (n == 1 ? "" : "s");
  if (unreachable) std::cout << ", " << unreachable << " not reachable now";
  std::cout << ")\n";
  return 0;
}

}  // namespace

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
  if (opt.check_config) return check_config(opt, cfg, *chain);
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
