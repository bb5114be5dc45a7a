// mailauth-migrate: writes a mailauthd.conf from what saslauthd (with its PAM
// stacks and Postfix's SASL settings) or Dovecot's auth service is configured
// with, and compares the old daemon's answers with the new configuration's.
// See --help.  The translation itself is src/migrate (pure, fuzzed); this
// file reads the files and talks to the sockets.
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "protocol/mux/codec.h"
#include "src/auth/authenticator.h"
#include "src/cli/args.h"
#include "src/cli/dovecot_client.h"
#include "src/cli/mux_client.h"
#include "src/config/config.h"
#include "src/migrate/migrate.h"
#include "src/util/log.h"
#include "src/util/secret.h"

namespace {

namespace migrate = mailauth::migrate;

// Exit status.
constexpr int kComplete = 0;     // migration: everything carried over; compare: no difference
constexpr int kDifferent = 1;    // compare: at least one difference
constexpr int kUsage = 2;
constexpr int kFailed = 3;       // nothing migrated / could not compare (no file, bad config)
constexpr int kPartial = 4;      // a configuration was written, but something was not carried

constexpr const char* kHelp = R"(Usage:
  mailauth-migrate [--root DIR] [--output FILE] [--from saslauthd|dovecot|auto]
                   [--instance NAME] [--service NAME] [--doveconf FILE]
  mailauth-migrate --compare --old SOCKET [--old-protocol mux|dovecot]
                   --config NEW.conf --logins FILE [--service NAME]

Writes a complete mailauthd.conf from the configuration of the daemon it
replaces, and reports, with FILE:LINE, everything it carried over and
everything it could not.

Sources (under --root DIR, default /):
  saslauthd  /etc/default/saslauthd and /etc/default/saslauthd-NAME (MECHANISMS,
             MECH_OPTIONS, OPTIONS -c -m -r -n -t -s, THREADS, START); the PAM
             stack /etc/pam.d/SERVICE (pam_mysql -> mysql backend, pam_pwdfile ->
             pwdfile backend, pam_unix -> shadow backend, @include followed);
             Postfix's main.cf, master.cf and sasl/smtpd.conf, to put the socket
             where Postfix's (chrooted) smtpd looks.
  dovecot    /etc/dovecot/dovecot.conf with its !include files, or `doveconf -n`
             output (--doveconf FILE; without --root, `doveconf -n` is run when
             it is installed): passdb passwd-file, sql (dovecot-sql.conf.ext),
             pam, shadow; auth_mechanisms, auth_failure_delay, auth_cache_*,
             auth_username_format; service auth's unix_listener for Postfix.

Options:
  --root DIR        read the files under DIR instead of / (paths written into
                    the configuration are the machine's, not DIR's; a path
                    named in a file that already lies under DIR is read as it is)
  --output FILE     write the configuration to FILE (and database passwords to
                    FILE's directory, mysql.secret, mode 0600); the report goes
                    to stdout.  Without it the configuration goes to stdout, the
                    report to stderr, and no password file is written.
  --from WHAT       saslauthd, dovecot or auto [default: auto; with both, the
                    one Postfix's main.cf uses]
  --instance NAME   the saslauthd instance: "saslauthd" for /etc/default/saslauthd,
                    NAME for /etc/default/saslauthd-NAME [default: the one that
                    is started, or the one whose socket Postfix uses]
  --service NAME    the PAM service Postfix's logins use [default: smtp]
  --doveconf FILE   `doveconf -n` output to read instead of /etc/dovecot

  PAM stacks: pam_unix becomes the shadow backend (mailauthd reads /etc/shadow
  as user mailauth in group shadow, instead of running PAM as root, and
  refuses locked and expired accounts itself).  A stack with a module that has
  no mailauthd backend is kept as a pam backend that runs the stack (as root),
  and reported.  pam_mysql crypt=0 (plain), 1 (crypt(3)), 3 (MD5) and 4 (SHA1)
  are verified; crypt=2 (MySQL PASSWORD()) cannot be, and is reported.

Report lines:
  carried      FILE:LINE: what it became
  ignored      FILE:LINE: not carried over; does not change who can log in
  NOT CARRIED  FILE:LINE: not carried over; logins may be decided differently
Database passwords go to a separate root-only file, never into the report.

Compare (shadow mode):
  --compare         ask the old daemon (over its socket) and the new
                    configuration (in this process, through mailauthd's own
                    backend chain) about every line of --logins, and print each
                    difference: user, old answer, new answer
  --old SOCKET      the old daemon's socket (saslauthd's mux, or Dovecot's auth
                    client socket)
  --old-protocol P  mux (default) or dovecot
  --config FILE     the new mailauthd.conf
  --logins FILE     "user:password" lines, or "user" alone: then a random wrong
                    password is tried and both must refuse it.  Passwords are
                    never printed or logged, and never asked for.
  --service NAME    the service both are asked for [default: smtp]
  Over the mux protocol the user is split at the last '@' into login and realm,
  as libsasl2 in Postfix does; the new side joins them again when the
  configuration's [saslauthd] join_realm (-r) says so.

Exit status:
  0  migration complete / compare: no difference
  1  compare: at least one difference
  2  usage error
  3  nothing migrated (no source found, output not written) / compare could
     not run (configuration invalid, logins file unreadable) or was
     inconclusive: no difference, but a temporary failure or an error on
     either side (or a logins line refused) left some logins not compared
  4  partial migration: the configuration was written, but the report lists
     settings that were NOT CARRIED
)";

struct Options {
  std::string root = "/";
  std::string output;
  std::string from = "auto";
  std::string instance;
  std::string service = "smtp";
  std::string doveconf;
  bool compare = false;
  std::string old_socket, old_protocol = "mux", config, logins;
};

// Opens `path` (of the migrated machine) with every component -- "..",
// absolute symlinks -- resolved inside `root`, as openat2(RESOLVE_IN_ROOT)
// does; where the kernel lacks openat2, a file whose real path is not under
// the root is refused.  -1 when it cannot be opened.
int open_in_root(const std::string& root, const std::string& path, int flags) {
  if (root.empty() || root == "/") return ::open(path.c_str(), flags | O_CLOEXEC);
  const std::string r = root.back() == '/' ? root.substr(0, root.size() - 1) : root;
  std::string rel = path.rfind(r + "/", 0) == 0 ? path.substr(r.size()) : path;
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  if (rel.empty()) rel = ".";
  const int rootfd = ::open(r.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) return -1;
#ifdef SYS_openat2
  struct open_how how {};
  how.flags = static_cast<unsigned long long>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const long fd = ::syscall(SYS_openat2, rootfd, rel.c_str(), &how, sizeof how);
  if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) {
    ::close(rootfd);
    return static_cast<int>(fd);
  }
#endif
  ::close(rootfd);
  char* real_root = ::realpath(r.c_str(), nullptr);
  char* real = ::realpath((r + "/" + rel).c_str(), nullptr);
  const bool inside = real_root && real &&
                      (std::string(real) == real_root ||
                       std::string(real).rfind(std::string(real_root) + "/", 0) == 0);
  const std::string target = real ? real : "";
  std::free(real_root);
  std::free(real);
  if (!inside) {
    errno = EXDEV;
    return -1;
  }
  return ::open(target.c_str(), flags | O_CLOEXEC);
}

std::optional<std::string> read_under(const std::string& root, const std::string& path) {
  const int fd = open_in_root(root, path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (16 << 20)) {
    ::close(fd);
    return std::nullopt;
  }
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > (16u << 20)) break;
  }
  ::close(fd);
  return out;
}

std::vector<std::string> list_under(const std::string& root, const std::string& path) {
  std::vector<std::string> out;
  const int fd = open_in_root(root, path, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return out;
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return out;
  }
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> read_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (16 << 20))
    return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}


// Write through a temporary file in the same directory.
bool write_file(const std::string& path, const std::string& text, mode_t mode, std::string* error) {
  const std::string tmp = path + ".tmp-migrate";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    *error = tmp + ": " + std::strerror(errno);
    return false;
  }
  ::fchmod(fd, mode);
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      *error = tmp + ": " + std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

std::optional<std::string> run_doveconf() {
  if (::access("/usr/bin/doveconf", X_OK) != 0 || ::access("/etc/dovecot/dovecot.conf", R_OK) != 0)
    return std::nullopt;
  FILE* p = ::popen("/usr/bin/doveconf -n 2>/dev/null", "r");
  if (!p) return std::nullopt;
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  if (::pclose(p) != 0) return std::nullopt;
  return out;
}

int run_migrate(const Options& o) {
  migrate::Options mo;
  mo.from = o.from;
  mo.instance = o.instance;
  mo.service = o.service;
  if (!o.output.empty()) {
    const std::size_t slash = o.output.rfind('/');
    std::string dir = slash == std::string::npos ? "." : o.output.substr(0, slash);
    if (dir.empty()) dir = "/";
    if (dir[0] != '/') {
      char cwd[4096];
      if (::getcwd(cwd, sizeof cwd)) dir = std::string(cwd) + (dir == "." ? "" : "/" + dir);
    }
    mo.secret_dir = dir;
  }
  if (!o.doveconf.empty()) {
    auto text = read_file(o.doveconf);
    if (!text) {
      std::cerr << "mailauth-migrate: cannot read --doveconf " << o.doveconf << "\n";
      return kFailed;
    }
    mo.doveconf = std::move(*text);
    mo.doveconf_name = o.doveconf;
  } else if ((o.root == "/" || o.root.empty()) && o.from != "saslauthd") {
    if (auto text = run_doveconf()) mo.doveconf = std::move(*text);
  }
  migrate::Sources src;
  // Every path stays inside --root: "..", and symlinks, resolve there.
  src.read = [&](const std::string& p) { return read_under(o.root, p); };
  src.list = [&](const std::string& p) { return list_under(o.root, p); };
  migrate::Result r = migrate::migrate(src, mo);
  std::ostream& rep = o.output.empty() ? std::cerr : std::cout;
  for (const auto& n : r.report.notes()) {
    const char* tag = n.kind == migrate::Note::Kind::Carried   ? "carried     "
                      : n.kind == migrate::Note::Kind::Ignored ? "ignored     "
                                                               : "NOT CARRIED ";
    rep << tag << migrate::Report::where(n) << n.message << "\n";
  }
  if (r.config.empty()) {
    std::cerr << "mailauth-migrate: " << (r.error.empty() ? "nothing to migrate" : r.error) << "\n";
    return r.error.find("choose") != std::string::npos ? kUsage : kFailed;
  }
  if (o.output.empty()) {
    std::cout << r.config;
    for (const auto& s : r.secrets)
      rep << "ignored     password file " << s.path
          << " not written (no --output): put the database password there, mode 0600\n";
  } else {
    std::string error;
    for (const auto& s : r.secrets) {
      if (!write_file(s.path, s.content, 0600, &error)) {
        std::cerr << "mailauth-migrate: " << error << "\n";
        return kFailed;
      }
      rep << "wrote       " << s.path << " (0600)\n";
    }
    if (!write_file(o.output, r.config, 0644, &error)) {
      std::cerr << "mailauth-migrate: " << error << "\n";
      return kFailed;
    }
    rep << "wrote       " << o.output << " (from " << r.source << ")\n";
  }
  if (r.report.partial()) {
    rep << "mailauth-migrate: partial migration: see the NOT CARRIED lines (exit status "
        << kPartial << ")\n";
    return kPartial;
  }
  rep << "mailauth-migrate: everything was carried over; check it with mailauthd --check-config "
         "and mailauth-migrate --compare\n";
  return kComplete;
}

// --- compare -------------------------------------------------------------------------

std::string random_password() {
  std::random_device rd;
  static const char* alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  std::string out = "wrong-";
  for (int i = 0; i < 20; ++i) out += alphabet[rd() % 57];
  return out;
}

// Control bytes, backslashes and bytes above 0x7e as \xNN: a user name
// from the logins file or an answer never drives the terminal.
std::string printable(const std::string& s) {
  static const char* const hex = "0123456789abcdef";
  std::string out;
  for (const unsigned char ch : s) {
    if (ch < 0x20 || ch >= 0x7f || ch == '\\') {
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out;
}

int run_compare(const Options& o) {
  mailauth::log::init(mailauth::log::Target::Stderr, mailauth::log::Level::Error, "mailauth-migrate");
  mailauth::config::Config cfg;
  std::shared_ptr<const mailauth::auth::BackendChain> chain;
  try {
    cfg = mailauth::config::load_file(o.config, mailauth::config::Reader::AccountTool);
    chain = mailauth::auth::build_chain(cfg);
  } catch (const std::exception& e) {
    std::cerr << "mailauth-migrate: " << e.what() << "\n";
    return kFailed;
  }
  const bool join_realm = cfg.mux && cfg.mux->join_realm;
  std::ifstream in(o.logins);
  if (!in) {
    std::cerr << "mailauth-migrate: cannot read --logins " << o.logins << ": "
              << std::strerror(errno) << "\n";
    return kFailed;
  }
  mailauth::cli::DovecotClient dovecot(std::chrono::seconds(15));
  int compared = 0, differences = 0, inconclusive = 0, lineno = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const std::size_t colon = line.find(':');
    const bool given = colon != std::string::npos;
    if (!given && line.find_first_of(" \t") != std::string::npos) {
      // "alice secret" may be a password written the wrong way: never echo it.
      std::fill(line.begin(), line.end(), '\0');
      std::cout << "REFUSED   " << o.logins << ":" << lineno
                << ": not USER:PASSWORD nor a single user name (line not shown)\n";
      ++inconclusive;
      continue;
    }
    const std::string user = line.substr(0, colon);
    const std::string shown = printable(user);
    mailauth::Secret password(given ? line.substr(colon + 1) : random_password());
    std::fill(line.begin(), line.end(), '\0');

    // The old daemon.
    std::string old_answer;
    if (o.old_protocol == "dovecot") {
      std::string err;
      if (!dovecot.connected() && !dovecot.connect(o.old_socket, &err)) {
        old_answer = "error (" + err + ")";
      } else {
        const auto a = dovecot.authenticate("PLAIN", user, password.view(), o.service, "");
        old_answer = a.kind == mailauth::cli::DovecotAnswer::Ok   ? "ok"
                     : a.kind == mailauth::cli::DovecotAnswer::No ? "no"
                     : a.kind == mailauth::cli::DovecotAnswer::TempFail
                         ? "tempfail"
                         : "error (" + a.error + ")";
        if (a.kind == mailauth::cli::DovecotAnswer::NoReply ||
            a.kind == mailauth::cli::DovecotAnswer::Error)
          dovecot = mailauth::cli::DovecotClient(std::chrono::seconds(15));
      }
    }
    // Over the mux, as libsasl2 sends it: login and realm split at the last '@'.
    std::string login = user, realm;
    if (o.old_protocol == "mux") {
      if (const std::size_t at = user.rfind('@'); at != std::string::npos) {
        login = user.substr(0, at);
        realm = user.substr(at + 1);
      }
      const auto a = mailauth::cli::mux_authenticate(o.old_socket, login, password.view(),
                                                     o.service, realm, std::chrono::seconds(30));
      old_answer = a.kind == mailauth::cli::MuxAnswer::Ok        ? "ok"
                   : a.kind == mailauth::cli::MuxAnswer::No      ? "no"
                   : a.kind == mailauth::cli::MuxAnswer::NoReply ? "tempfail"
                                                                 : "error (" + a.error + ")";
    }

    // The new configuration, in process.
    mailauth::auth::AuthRequest req;
    req.protocol = o.old_protocol;
    req.mechanism = "PLAIN";
    req.user = o.old_protocol == "mux" ? (join_realm && !realm.empty() ? login + "@" + realm : login)
                                       : user;
    req.realm = realm;
    req.service = o.service;
    req.password = std::move(password);
    const auto res = chain->check_password(req, nullptr, true);
    const std::string new_answer = res.outcome == mailauth::auth::Outcome::Ok     ? "ok"
                                   : res.outcome == mailauth::auth::Outcome::Fail ? "no"
                                                                                  : "tempfail";
    ++compared;
    const std::string kind = given ? "given password" : "random wrong password";
    const auto decided = [](const std::string& a) { return a == "ok" || a == "no"; };
    if (!decided(old_answer) || !decided(new_answer)) {
      // A temporary failure or an error says nothing about the password.
      ++inconclusive;
      std::cout << "INCONCLUSIVE " << o.logins << ":" << lineno << ": user=" << shown << " ("
                << kind << "): old=" << printable(old_answer) << " new=" << new_answer
                << " (new: backend=" << res.backend << " reason=" << printable(res.reason)
                << ")\n";
    } else if (old_answer != new_answer) {
      ++differences;
      std::cout << "DIFFERENT " << o.logins << ":" << lineno << ": user=" << shown << " (" << kind
                << "): old=" << old_answer << " new=" << new_answer
                << " (new: backend=" << res.backend << " reason=" << res.reason << ")\n";
    } else if (!given && new_answer == "ok") {
      ++differences;
      std::cout << "DIFFERENT " << o.logins << ":" << lineno << ": user=" << shown
                << " (random wrong password): both accepted it\n";
    } else {
      std::cout << "same      " << o.logins << ":" << lineno << ": user=" << shown << " (" << kind
                << "): " << new_answer << "\n";
    }
  }
  std::cout << "mailauth-migrate: compared " << compared << " logins: " << differences
            << (differences == 1 ? " difference" : " differences");
  if (inconclusive > 0) std::cout << ", " << inconclusive << " inconclusive (not compared)";
  std::cout << "\n";
  if (differences > 0) return kDifferent;
  return inconclusive > 0 ? kFailed : kComplete;
}

}  // namespace

int main(int argc, char** argv) {
  mailauth::cli::Args args(argc, argv);
  Options o;
  while (!args.done()) {
    const std::string a = args.next();
    args.help_or_version(a, kHelp);
    if (a == "--root") o.root = args.value(a);
    else if (a == "--output" || a == "-o") o.output = args.value(a);
    else if (a == "--from") o.from = args.value(a);
    else if (a == "--instance") o.instance = args.value(a);
    else if (a == "--service") o.service = args.value(a);
    else if (a == "--doveconf") o.doveconf = args.value(a);
    else if (a == "--compare") o.compare = true;
    else if (a == "--old") o.old_socket = args.value(a);
    else if (a == "--old-protocol") o.old_protocol = args.value(a);
    else if (a == "--config") o.config = args.value(a);
    else if (a == "--logins") o.logins = args.value(a);
    else args.usage_error("unknown option '" + a + "'");
  }
  if (o.from != "auto" && o.from != "saslauthd" && o.from != "dovecot")
    args.usage_error("invalid value '" + o.from + "' for --from (saslauthd, dovecot or auto)");
  if (o.old_protocol != "mux" && o.old_protocol != "dovecot")
    args.usage_error("invalid value '" + o.old_protocol + "' for --old-protocol (mux or dovecot)");
  if (o.service.empty()) args.usage_error("--service needs a name");
  if (o.compare) {
    if (o.old_socket.empty()) args.usage_error("--compare needs --old SOCKET");
    if (o.config.empty()) args.usage_error("--compare needs --config NEW.conf");
    if (o.logins.empty()) args.usage_error("--compare needs --logins FILE");
    return run_compare(o);
  }
  if (!o.old_socket.empty() || !o.config.empty() || !o.logins.empty())
    args.usage_error("--old, --config and --logins go with --compare");
  return run_migrate(o);
}
