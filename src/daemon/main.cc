// mailauthd: the authentication daemon.
#include <iostream>
#include <string_view>

#include "src/cli/args.h"
#include "src/daemon/daemon.h"
#include "version.h"

namespace {

constexpr const char* kHelp = R"(Usage: mailauthd [--config FILE] [--foreground] [--debug] [--check-config [--strict]]
       mailauthd -a MECH [-O OPTION] [-m DIR] [-c] [-r] [-n N] [-s SIZE] [-t SECONDS] [-d]

mailauthd checks mail users' passwords for Postfix (and anything else that
speaks the saslauthd "mux" protocol or Dovecot's auth client protocol)
against an ordered chain of backends: pwdfile, mysql, ldap, pam, shadow.  It
serves UNIX sockets from one event loop and does the slow work (hash
checks, file and database lookups, PAM) on a pool of worker threads.

Options:
  --config FILE    configuration file (TOML)
                   [default: /etc/mailauth/mailauthd.conf]
  --foreground     do not detach; log to stderr unless the configuration's
                   [daemon] log key says otherwise
  --debug          log every step at debug level (passwords are never logged)
  --check-config   parse and validate the configuration, check that the user
                   and group names in it exist ([daemon] user, group,
                   control_group; each socket's owner and group), open each
                   backend, print what is wrong (file:line: key
                   'table.key': problem); exit 0 if usable, 1 if not (what
                   would stop mailauthd from starting).  Never listens.  A backend
                   that cannot be reached now (its database server down,
                   refusing connections, not answering) is a warning on
                   stderr, not an error: mailauthd starts without it and
                   answers temporary failures until it is back, so the
                   unit's ExecStartPre= lets it start.
  --strict         with --check-config: a backend that cannot be reached now
                   makes it exit 3 (for scripts that need every backend up)
  --help           show this help and exit
  --version        show the version and exit

saslauthd-compatible form (mailauthd stands in for saslauthd with the argv
of /etc/default/saslauthd, e.g. -a pam -c -m /var/spool/postfix/var/run/saslauthd -r -n 5):
  -a MECH          backend: pam, shadow, pwdfile, mysql or ldap
  -O OPTION        the backend's option: pwdfile: the users file; mysql: a
                   TOML file with a [[backend]] table; pam: a PAM
                   configuration directory instead of /etc/pam.d;
                   shadow: a shadow-format file instead of /etc/shadow;
                   ldap: saslauthd's LDAP file (default /etc/saslauthd.conf)
  -m DIR           listen on DIR/mux (absolute; default /var/run/saslauthd)
  -r               look users up as login@realm when a realm is sent
  -n N             worker threads (default 5)
  -c               credential cache on (keyed on the stored credential, so a
                   changed password never hits an old entry; with -a pam
                   there is no stored credential: only successes are cached,
                   30 s at most, so an old PAM password works for at most
                   30 s after a change)
  -t SECONDS       cache TTL (default 28800, as saslauthd; PAM: 30 s at most)
  -s KILOBYTES     cache size
  -d               debug: foreground, log to stderr at debug level
  -l, -V           accepted and ignored (accept lock, verbose)
  -v               version; -h help
  The mux socket is created mode 0660, root:sasl (root's group where no
  sasl group exists), and a missing DIR 0710 root:sasl: add Postfix's user
  to the group (adduser postfix sasl).  -a pam uses the client's PAM
  service only if it is smtp, submission, imap, pop3 or sieve; any other
  (su, runuser, ...) is refused.  Logging goes to syslog (auth) unless -d.
  SIGHUP re-reads -O files.

Signals:
  SIGHUP           re-read the configuration and reopen the backends; an
                   invalid new configuration is logged and the running one
                   stays in force.  Socket settings need a restart.
  SIGTERM, SIGINT  stop accepting, finish requests in flight (at most 5 s),
                   remove the sockets, exit 0.

Protocols:
  [saslauthd] socket   the saslauthd mux protocol, as libsasl2 clients use it
                       (Postfix smtpd_sasl_type = cyrus with
                       pwcheck_method: saslauthd, testsaslauthd, Cyrus IMAP).
                       A wrong password is answered "NO"; a backend that
                       cannot answer (temporary failure) makes mailauthd close
                       the connection without a reply, which Postfix reports
                       as "454 Temporary authentication failure" instead of
                       a permanent 535.
  [dovecot] socket     Dovecot's auth client protocol (Postfix
                       smtpd_sasl_type = dovecot, doveadm auth test, Exim)
                       with the mechanisms PLAIN, LOGIN, CRAM-MD5,
                       SCRAM-SHA-1 and SCRAM-SHA-256.  A failed login is
                       answered after failure_delay (a timer, never a busy
                       worker).  A temporary failure closes the connection
                       (Postfix: 454) unless temp_failure = "fail", which
                       answers FAIL ... code=temp_fail.

Cache, policy, control:
  [cache]          remembers recent answers as keyed hashes (never
                   passwords); a changed stored credential misses it.  PAM
                   (no stored credential): successes only, for
                   verify_only_ttl (default 30 s, at most 60 s).
  [policy]         escalating per-address and per-user penalties after
                   failures (timers, capped), a cap on requests in flight per
                   address; loopback and no-penalty requests exempt.
  control_socket   `mailauth-test --control SOCKET stats|flush [USER]|reload`;
                   stats are in Prometheus text format.

systemd:
  Type=notify (READY/RELOADING/STOPPING), and socket activation: sockets
  passed with FileDescriptorName=saslauthd, dovecot or control replace the
  ones the configuration would create.  Without systemd, mailauthd detaches
  unless --foreground.  It refuses to stay root unless a backend needs it
  (pam), the saslauthd form is used, or [daemon] user = "root".

Logging:
  One line per attempt, key=value, for log tools and fail2ban:
    auth: result=ok|fail|tempfail proto=mux|dovecot [mech=M] user=U service=S
          realm=R rip=IP backend=NAME reason=TEXT ms=N
  Syslog facility: auth.

Exit status:
  0 stopped cleanly (or --check-config: usable, a backend perhaps not
  reachable now), 1 configuration or start-up error, 2 usage error, 3
  --check-config --strict: valid, but a backend cannot be reached now.

See conf/mailauthd.conf for every configuration key, and README.md.
)";

}  // namespace

namespace {

bool looks_like_saslauthd_argv(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "-a") return true;
  return false;
}

int saslauthd_main(mailauth::cli::Args& args) {
  mailauth::DaemonOptions opt;
  mailauth::config::SaslauthdArgs s;
  while (!args.done()) {
    const std::string a = args.next();
    args.help_or_version(a, kHelp);
    if (a == "-a") {
      s.mech = args.value(a);
    } else if (a == "-O") {
      s.option = args.value(a);
    } else if (a == "-m") {
      s.dir = args.value(a);
      while (s.dir.size() > 1 && s.dir.back() == '/') s.dir.pop_back();
    } else if (a == "-c") {
      s.cache = true;
    } else if (a == "-s") {
      s.cache_kb = args.int_value(a, 0, 1'000'000'000);
    } else if (a == "-t") {
      s.cache_ttl = args.int_value(a, 0, 1'000'000'000);
    } else if (a == "-r") {
      s.join_realm = true;
    } else if (a == "-n") {
      s.threads = static_cast<int>(args.int_value(a, 0, 256));
    } else if (a == "-d") {
      s.debug = true;
    } else if (a == "-l" || a == "-V") {
      // saslauthd's accept lock and verbose flag: nothing to do.
    } else {
      args.usage_error("unknown option '" + a + "' (saslauthd-compatible form)");
    }
  }
  opt.foreground = s.debug;
  opt.debug = s.debug;
  opt.saslauthd = s;
  return mailauth::run_daemon(opt);
}

}  // namespace

int main(int argc, char** argv) {
  mailauth::cli::Args args(argc, argv);
  if (looks_like_saslauthd_argv(argc, argv)) return saslauthd_main(args);
  mailauth::DaemonOptions opt;
  while (!args.done()) {
    const std::string a = args.next();
    args.help_or_version(a, kHelp);
    if (a == "--config") {
      opt.config_path = args.value(a);
    } else if (a == "--foreground") {
      opt.foreground = true;
    } else if (a == "--debug") {
      opt.debug = true;
    } else if (a == "--check-config") {
      opt.check_config = true;
    } else if (a == "--strict") {
      opt.strict = true;
    } else {
      args.usage_error("unknown option '" + a + "'");
    }
  }
  if (opt.strict && !opt.check_config) args.usage_error("--strict goes with --check-config");
  return mailauth::run_daemon(opt);
}
