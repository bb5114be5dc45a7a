// mailauth-user: account management for the writable backends (pwdfile,
// mysql) and a password hasher.  See --help and interface.md.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "backends/backend.h"
#include "backends/mysql/mysql_backend.h"
#include "src/cli/args.h"
#include "src/cli/control_client.h"
#include "src/config/config.h"
#include "src/password/schemes.h"
#include "src/util/log.h"
#include "src/util/secret.h"
#include "version.h"

namespace {

using mailauth::backend::AccountStore;
using mailauth::backend::Backend;

constexpr int kOk = 0;
constexpr int kNo = 1;       // no such user / exists already / password did not verify
constexpr int kUsage = 2;
constexpr int kUnavailable = 3;

constexpr const char* kHelp = R"(Usage:
  mailauth-user [--config FILE] [--backend NAME] COMMAND [ARGUMENTS] [OPTIONS]

Commands:
  add USER [--password-stdin | --random] [--scheme S] [--name TEXT] [--disabled]
                  create an account
  passwd USER [--password-stdin | --random] [--scheme S]
                  set a new password
  del USER        delete an account
  enable USER     allow an account to log in again
  disable USER    keep the account but refuse its logins
  list [--domain D] [--json]
                  accounts (user, enabled/disabled, name)
  show USER [--json]
                  where the account lives, its hash scheme and status (never
                  the hash)
  verify USER [--password-stdin]
                  check a password, as mailauthd would
  import FILE [--scheme S] [--update]
                  bulk load "user:password" or "user:hash" lines (a hash is
                  recognised and stored as it is, in the store's form: a bare
                  crypt string gets its {SCHEME} prefix in PostfixAdmin's
                  table); existing users are skipped, or updated with
                  --update (counted as added / updated / skipped); a bad line
                  is reported with its number and the rest goes on; progress
                  on a terminal
  hash [--scheme S] [--password-stdin] [--dovecot-prefix]
                  print a hash, like mkpasswd or doveadm pw (no config needed)
  schema [--apply]
                  print (or run) the SQL schema of the mysql backend's preset

Options:
  --config FILE       mailauthd's configuration [default: /etc/mailauth/mailauthd.conf];
                      only its [[backend]] tables and [daemon] control_socket
                      are used, so a file with just those will do (an admin
                      host that only manages accounts needs no listener)
  --backend NAME      the backend to write to (its `name`, default its type)
                      [default: the first writable one: pwdfile or mysql]
  --scheme S          argon2id (default), yescrypt, bcrypt, sha512-crypt,
                      sha256-crypt, scram-sha-256 (also scram-sha-1, ssha512,
                      cram-md5, plain)
  --password-stdin    read the password from stdin (one line), even on a terminal
  --random            generate a strong password and print it once on stdout
  Without either, the password is asked twice on the terminal, without echo.
  Passwords are never taken from the command line.

Stored form: in a pwdfile, hashes are written bare ($argon2id$…, $y$…), as
pam_pwdfile and mailauthd read them; in PostfixAdmin's table (mysql
schema = "postfixadmin"), shared with Dovecot and PostfixAdmin, with
Dovecot's {SCHEME} prefix ({ARGON2ID}$argon2id$…, {CRYPT}$y$…); in the
guides' users table (schema = "users") bare, as pam_mysql's crypt() reads
them (pam_mysql knows no Argon2: pick yescrypt or sha512-crypt if it still
reads the table).  A disabled pwdfile account is a line
whose hash starts with '!'.

After every change, a running mailauthd is asked (control_socket) to forget
the user's cached credentials, so the old password stops working at once;
no running daemon is not an error.

Exit status: 0 done, 1 the user does not exist / already exists / the
password did not verify, 2 usage error, 3 backend unavailable.
)";

struct Options {
  std::string config = "/etc/mailauth/mailauthd.conf";
  std::string backend;
  std::string command;
  std::vector<std::string> operands;
  std::string scheme = "argon2id";
  std::string name;
  std::string domain;
  bool password_stdin = false, random = false, disabled = false, json = false, update = false,
       apply = false, dovecot_prefix = false;
};

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

int status_exit(AccountStore::Status s) {
  switch (s) {
    case AccountStore::Status::Done: return kOk;
    case AccountStore::Status::NotFound:
    case AccountStore::Status::Exists: return kNo;
    case AccountStore::Status::Refused:
    case AccountStore::Status::NotConfigured: return kUsage;
    case AccountStore::Status::TempFail: return kUnavailable;
  }
  return kUnavailable;
}

class Tool {
 public:
  Tool(mailauth::cli::Args& args, Options opt) : args_(args), opt_(std::move(opt)) {}

  int run() {
    const std::string& c = opt_.command;
    if (c == "hash") return hash();
    if (c == "add") return add();
    if (c == "passwd") return passwd();
    if (c == "del" || c == "delete") return del();
    if (c == "enable" || c == "disable") return enable(c == "enable");
    if (c == "list") return list();
    if (c == "show") return show();
    if (c == "verify") return verify();
    if (c == "import") return import();
    if (c == "schema") return schema();
    args_.usage_error("unknown command '" + c + "'");
  }

 private:
  [[noreturn]] void usage(const std::string& m) { args_.usage_error(m); }

  int error(int code, const std::string& message) {
    std::cerr << args_.program() << ": " << message << "\n";
    return code;
  }

  const std::string& user_operand() {
    if (opt_.operands.size() != 1) usage(opt_.command + " takes exactly one USER");
    return opt_.operands[0];
  }

  // Loads the configuration and the target backend.  Exits on errors.
  void open_backend(bool create_missing_file) {
    try {
      // Backends (and the control socket) are all it needs: a file without
      // [saslauthd] or [dovecot], for an admin host, is fine here.
      cfg_ = mailauth::config::load_file(opt_.config, mailauth::config::Reader::AccountTool);
    } catch (const mailauth::config::ConfigError& e) {
      std::cerr << args_.program() << ": " << e.what() << "\n";
      std::exit(kUsage);
    }
    const mailauth::config::BackendSpec* spec = nullptr;
    for (const auto& s : cfg_.backends) {
      const auto* t = mailauth::backend::find_type(s.type);
      if (!opt_.backend.empty() ? s.name == opt_.backend : (t != nullptr && t->keeps_accounts)) {
        spec = &s;
        break;
      }
    }
    if (spec == nullptr) {
      if (!opt_.backend.empty()) {
        std::cerr << args_.program() << ": no backend named '" << opt_.backend << "' in "
                  << opt_.config << "\n";
        std::exit(kUsage);
      }
      std::cerr << args_.program() << ": " << opt_.config
                << " has no backend that keeps accounts (";
      std::string sep;
      for (const auto& type : mailauth::backend::types()) {
        const auto* t = mailauth::backend::find_type(type);
        if (t->keeps_accounts) std::cerr << sep << type, sep = ", ";
      }
      std::cerr << ")";
      for (const auto& s : cfg_.backends) {
        const auto* t = mailauth::backend::find_type(s.type);
        if (t != nullptr && t->accounts_hint != nullptr) {
          std::cerr << "; " << s.type << ": " << t->accounts_hint;
          break;
        }
      }
      std::cerr << "\n";
      std::exit(kUsage);
    }
    const auto* info = mailauth::backend::find_type(spec->type);
    if (create_missing_file && info != nullptr && info->create_empty_store != nullptr) {
      try {
        if (const std::string note = info->create_empty_store(*spec); !note.empty())
          std::cerr << args_.program() << ": " << note << "\n";
      } catch (const std::exception& e) {
        std::cerr << args_.program() << ": " << e.what() << "\n";
        std::exit(kUsage);
      }
    }
    try {
      backend_ = mailauth::backend::create(*spec);
    } catch (const std::exception& e) {
      std::cerr << args_.program() << ": " << e.what() << "\n";
      std::exit(kUnavailable);
    }
    // Named with --backend: whether it can be used is the built instance's
    // answer (ldap is no default store, but serves passwd/show/verify).
    store_ = backend_->accounts();
    if (store_ == nullptr) {
      std::cerr << args_.program() << ": backend '" << spec->name << "' (" << spec->type
                << ") is not writable"
                << (info != nullptr && info->accounts_hint != nullptr
                        ? std::string(": ") + info->accounts_hint
                        : "")
                << "\n";
      std::exit(kUsage);
    }
  }

  std::string stored_form(const std::string& hashed) const {
    return store_ != nullptr && store_->wants_scheme_prefix()
               ? mailauth::password::with_dovecot_prefix(hashed)
               : hashed;
  }

  void check_scheme() {
    for (const auto& s : mailauth::password::hash_schemes())
      if (s == opt_.scheme) return;
    usage("unknown scheme '" + opt_.scheme + "' for --scheme");
  }

  // The new password: --random, --password-stdin, or asked twice.
  std::optional<mailauth::Secret> new_password(bool* printed) {
    *printed = false;
    if (opt_.random) {
      std::string pw = mailauth::password::random_password(20);
      mailauth::Secret s(pw);
      std::cout << pw << "\n";
      std::cout.flush();
      mailauth::wipe(pw.data(), pw.size());
      *printed = true;
      return s;
    }
    std::string pw, err;
    if (!mailauth::cli::read_password("New password: ", true, opt_.password_stdin, &pw, &err)) {
      std::cerr << args_.program() << ": " << err << "\n";
      return std::nullopt;
    }
    mailauth::Secret s(pw);
    mailauth::wipe(pw.data(), pw.size());
    return s;
  }

  // Tell a running mailauthd to drop the user's cache entries.
  void flush(const std::string& user) {
    const std::string& sock = cfg_.daemon.control_socket;
    if (sock.empty()) return;
    std::string reply, err;
    if (!mailauth::cli::control_request(sock, "flush " + user, std::chrono::seconds(5), &reply, &err)) {
      // No daemon running (no socket, or nobody listening): nothing cached.
      if (err.find("No such file") == std::string::npos &&
          err.find("Connection refused") == std::string::npos)
        std::cerr << args_.program() << ": warning: could not ask mailauthd to forget " << user
                  << "'s cached credentials (" << err << "); it forgets them within [cache] ttl\n";
    }
  }

  int hash() {
    if (!opt_.operands.empty()) usage("hash takes no arguments");
    check_scheme();
    std::string pw, err;
    if (!mailauth::cli::read_password("Password: ", true, opt_.password_stdin, &pw, &err))
      return error(kNo, err);
    std::string hashed;
    try {
      hashed = mailauth::password::hash(opt_.scheme, pw);
    } catch (const std::exception& e) {
      mailauth::wipe(pw.data(), pw.size());
      return error(kNo, e.what());
    }
    mailauth::wipe(pw.data(), pw.size());
    std::cout << (opt_.dovecot_prefix ? mailauth::password::with_dovecot_prefix(hashed) : hashed)
              << "\n";
    return kOk;
  }

  int add() {
    const std::string user = user_operand();
    check_scheme();
    if (opt_.random && opt_.password_stdin) usage("--random and --password-stdin exclude each other");
    open_backend(true);
    bool printed = false;
    auto pw = new_password(&printed);
    if (!pw) return kNo;
    const std::string stored = stored_form(mailauth::password::hash(opt_.scheme, pw->view()));
    auto r = store_->add(user, stored, opt_.name, !opt_.disabled);
    if (r.status != AccountStore::Status::Done) return error(status_exit(r.status), r.message);
    if (!opt_.name.empty() && !store_->stores_names())
      std::cerr << args_.program() << ": note: a " << backend_->type()
                << " has no place for --name; not stored\n";
    flush(user);
    std::cerr << args_.program() << ": added " << user << " (" << opt_.scheme
              << (opt_.disabled ? ", disabled" : "") << ") to " << backend_->name() << "\n";
    return kOk;
  }

  int passwd() {
    const std::string user = user_operand();
    check_scheme();
    if (opt_.random && opt_.password_stdin) usage("--random and --password-stdin exclude each other");
    open_backend(false);
    bool printed = false;
    auto pw = new_password(&printed);
    if (!pw) return kNo;
    if (store_->takes_plaintext()) {
      // The store hashes it (LDAP Password Modify): the plaintext goes as is.
      auto r = store_->set_password(user, pw->view());
      if (r.status != AccountStore::Status::Done) return error(status_exit(r.status), r.message);
      flush(user);
      std::cerr << args_.program() << ": new password for " << user << " (hashed by "
                << backend_->name() << (r.message.empty() ? "" : ", " + r.message) << ")\n";
      return kOk;
    }
    const std::string stored = stored_form(mailauth::password::hash(opt_.scheme, pw->view()));
    auto r = store_->set_password(user, stored);
    if (r.status != AccountStore::Status::Done) return error(status_exit(r.status), r.message);
    flush(user);
    std::cerr << args_.program() << ": new password for " << user << " (" << opt_.scheme << ")\n";
    return kOk;
  }

  int del() {
    const std::string user = user_operand();
    open_backend(false);
    auto r = store_->remove(user);
    if (r.status != AccountStore::Status::Done) return error(status_exit(r.status), r.message);
    flush(user);
    std::cerr << args_.program() << ": deleted " << user << "\n";
    return kOk;
  }

  int enable(bool on) {
    const std::string user = user_operand();
    open_backend(false);
    auto r = store_->set_enabled(user, on);
    if (r.status != AccountStore::Status::Done) return error(status_exit(r.status), r.message);
    flush(user);
    std::cerr << args_.program() << ": " << (on ? "enabled " : "disabled ") << user << "\n";
    return kOk;
  }

  int list() {
    if (!opt_.operands.empty()) usage("list takes no arguments (use --domain D)");
    open_backend(false);
    std::vector<AccountStore::Account> accounts;
    auto r = store_->list(opt_.domain, &accounts);
    if (r.status != AccountStore::Status::Done) return error(status_exit(r.status), r.message);
    if (opt_.json) {
      std::cout << "[";
      for (std::size_t i = 0; i < accounts.size(); ++i) {
        const auto& a = accounts[i];
        std::cout << (i ? ",\n " : "") << "{\"user\": " << json_string(a.user)
                  << ", \"name\": " << json_string(a.name)
                  << ", \"enabled\": " << (a.enabled ? "true" : "false") << "}";
      }
      std::cout << "]\n";
    } else {
      for (const auto& a : accounts)
        std::cout << a.user << "\t" << (a.enabled ? "enabled" : "disabled")
                  << (a.name.empty() ? "" : "\t" + a.name) << "\n";
    }
    return kOk;
  }

  // The stored credential as mailauthd would see it.
  int lookup(const std::string& user, mailauth::backend::LookupResult* out) {
    *out = backend_->lookup(mailauth::backend::Query{user, "", "smtp", ""});
    if (out->status == mailauth::backend::Status::TempFail) return error(kUnavailable, out->reason);
    if (out->status == mailauth::backend::Status::Unknown)
      return error(kNo, "no user " + user + " in " + backend_->name());
    return kOk;
  }

  int show() {
    const std::string user = user_operand();
    open_backend(false);
    mailauth::backend::LookupResult r;
    if (int rc = lookup(user, &r); rc != kOk) return rc;
    // A verify-only backend (ldap with auth = "bind") checks passwords itself.
    const bool verify_only = backend_->kind() == mailauth::backend::Backend::Kind::VerifyOnly;
    const std::string scheme =
        verify_only ? std::string("(checked by the backend)")
                    : mailauth::password::scheme_of(r.credential.stored.view(),
                                                    r.credential.default_scheme);
    // What the backend says about where it found the user (ldap: the DN and
    // which filters matched), if anything.
    const std::string& entry = r.reason;
    const std::string status = r.credential.disabled
                                   ? "disabled" + (r.credential.disabled_reason.empty()
                                                       ? std::string()
                                                       : " (" + r.credential.disabled_reason + ")")
                                   : "enabled";
    if (opt_.json) {
      std::cout << "{\"user\": " << json_string(user) << ", \"backend\": "
                << json_string(backend_->name()) << ", \"type\": " << json_string(backend_->type())
                << ", \"scheme\": " << json_string(scheme)
                << ", \"enabled\": " << (r.credential.disabled ? "false" : "true")
                << (entry.empty() ? std::string() : ", \"entry\": " + json_string(entry)) << "}\n";
    } else {
      std::cout << "user:    " << user << "\nbackend: " << backend_->name() << " ("
                << backend_->type() << ")\nscheme:  " << scheme << "\nstatus:  " << status << "\n";
      if (!entry.empty()) std::cout << "entry:   " << entry << "\n";
    }
    return kOk;
  }

  int verify() {
    const std::string user = user_operand();
    open_backend(false);
    mailauth::backend::LookupResult r;
    if (int rc = lookup(user, &r); rc != kOk) return rc;
    std::string pw, err;
    if (!mailauth::cli::read_password("Password: ", false, opt_.password_stdin, &pw, &err))
      return error(kNo, err);
    if (backend_->kind() == mailauth::backend::Backend::Kind::VerifyOnly) {
      const auto vr = backend_->verify(mailauth::backend::Query{user, "", "smtp", ""}, pw);
      mailauth::wipe(pw.data(), pw.size());
      switch (vr.verdict) {
        case mailauth::backend::Verdict::Ok: break;
        case mailauth::backend::Verdict::Fail: return error(kNo, "refused: " + vr.reason);
        case mailauth::backend::Verdict::Unknown: return error(kNo, "no user " + user + " in " + backend_->name());
        case mailauth::backend::Verdict::TempFail: return error(kUnavailable, vr.reason);
      }
      std::cerr << args_.program() << ": password OK\n";
      return kOk;
    }
    const auto v = mailauth::password::verify(r.credential.stored.view(), pw,
                                              r.credential.default_scheme);
    mailauth::wipe(pw.data(), pw.size());
    if (v == mailauth::password::Verdict::Invalid)
      return error(kNo, "the stored credential of " + user + " cannot be verified (scheme " +
                            mailauth::password::scheme_of(r.credential.stored.view(),
                                                          r.credential.default_scheme) + ")");
    if (v != mailauth::password::Verdict::Match) return error(kNo, "password does not match");
    if (r.credential.disabled) return error(kNo, "password matches, but the account is disabled");
    std::cerr << args_.program() << ": password OK\n";
    return kOk;
  }

  int import() {
    if (opt_.operands.size() != 1) usage("import takes one FILE");
    check_scheme();
    const std::string& file = opt_.operands[0];
    std::ifstream in(file, std::ios::binary);
    if (!in) return error(kUsage, "cannot read " + file);
    open_backend(true);

    struct Pending {
      int line;
      std::string user;
      std::string value;   // a password or a hash
      bool is_hash;
    };
    std::vector<Pending> pending;
    std::string line;
    int n = 0, bad = 0;
    while (std::getline(in, line)) {
      ++n;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line[0] == '#') continue;
      const auto colon = line.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == line.size()) {
        std::cerr << file << ":" << n << ": expected user:password or user:hash; skipped\n";
        ++bad;
        mailauth::wipe(line.data(), line.size());
        continue;
      }
      Pending p{n, line.substr(0, colon), line.substr(colon + 1), false};
      const char first = p.value[0];
      p.is_hash = (first == '$' || first == '{' || first == '!') &&
                  mailauth::password::scheme_of(first == '!' ? p.value.substr(1) : p.value) != "UNKNOWN";
      pending.push_back(std::move(p));
      mailauth::wipe(line.data(), line.size());
    }

    // Hash the plaintext passwords on every core; slow hashes dominate.
    const bool tty = ::isatty(STDERR_FILENO);
    std::vector<AccountStore::NewAccount> entries(pending.size());
    std::atomic<std::size_t> next{0}, done{0};
    std::atomic<bool> failed{false};
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        for (std::size_t i; (i = next++) < pending.size();) {
          auto& p = pending[i];
          entries[i].user = p.user;
          try {
            // A hash as given, in the store's form: PostfixAdmin's table
            // needs the {SCHEME} prefix on bare crypt strings too.
            entries[i].stored = p.is_hash && p.value[0] == '!' ? p.value
                                : p.is_hash ? stored_form(p.value)
                                            : stored_form(mailauth::password::hash(opt_.scheme, p.value));
          } catch (const std::exception&) {
            failed = true;
          }
          mailauth::wipe(p.value.data(), p.value.size());
          ++done;
        }
      });
    while (tty && done < pending.size()) {
      std::fprintf(stderr, "\rhashing: %zu/%zu (%zu%%)", done.load(), pending.size(),
                   pending.empty() ? 100 : done.load() * 100 / pending.size());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    for (auto& t : pool) t.join();
    if (tty) std::fprintf(stderr, "\rhashing: %zu/%zu (100%%)\n", pending.size(), pending.size());
    if (failed) return error(kUnavailable, "hashing failed");

    std::vector<AccountStore::Result> results;
    auto r = store_->import(entries, opt_.update, &results);
    if (r.status == AccountStore::Status::TempFail && results.empty())
      return error(kUnavailable, r.message);
    int added = 0, updated = 0, skipped = 0, errors = 0;
    for (std::size_t i = 0; i < results.size(); ++i) {
      const auto& res = results[i];
      if (res.status == AccountStore::Status::Done) {
        (res.message == "updated" ? updated : added)++;
        flush(entries[i].user);
      } else if (res.status == AccountStore::Status::Exists) {
        ++skipped;
      } else {
        ++errors;
        std::cerr << file << ":" << pending[i].line << ": " << pending[i].user << ": "
                  << res.message << "\n";
      }
    }
    std::cerr << args_.program() << ": import into " << backend_->name() << ": " << added
              << " added, " << updated << " updated, " << skipped << " skipped (exist"
              << (opt_.update ? "" : "; --update replaces them") << "), " << errors + bad
              << " failed\n";
    if (r.status == AccountStore::Status::TempFail) return kUnavailable;
    return (errors + bad) ? kNo : kOk;
  }

  int schema() {
    if (!opt_.operands.empty()) usage("schema takes no arguments");
    open_backend(false);
    auto* mysql = dynamic_cast<mailauth::backend::MysqlBackend*>(backend_.get());
    if (mysql == nullptr)
      return error(kUsage, "backend '" + backend_->name() + "' (" + backend_->type() +
                               ") has no SQL schema; schema is for the mysql backend");
    const std::string_view sql = mailauth::backend::MysqlBackend::schema_sql(mysql->preset());
    if (sql.empty())
      return error(kUsage, "backend '" + backend_->name() +
                               "' has no schema preset (schema = \"users\" or \"postfixadmin\"); "
                               "a custom query's tables are yours");
    if (!opt_.apply) {
      std::cout << sql;
      return kOk;
    }
    auto r = mysql->apply_schema();
    if (r.status != AccountStore::Status::Done) return error(status_exit(r.status), r.message);
    std::cerr << args_.program() << ": schema \"" << mysql->preset() << "\" applied to "
              << backend_->name() << " (existing tables were left alone)\n";
    return kOk;
  }

  mailauth::cli::Args& args_;
  Options opt_;
  mailauth::config::Config cfg_;
  std::unique_ptr<Backend> backend_;
  AccountStore* store_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  mailauth::cli::Args args(argc, argv);
  Options opt;
  while (!args.done()) {
    const std::string a = args.next();
    args.help_or_version(a, kHelp);
    if (a == "--config") {
      opt.config = args.value(a);
    } else if (a == "--backend") {
      opt.backend = args.value(a);
    } else if (a == "--scheme") {
      opt.scheme = args.value(a);
      for (char& c : opt.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (a == "--name") {
      opt.name = args.value(a);
    } else if (a == "--domain") {
      opt.domain = args.value(a);
    } else if (a == "--password-stdin") {
      opt.password_stdin = true;
    } else if (a == "--random") {
      opt.random = true;
    } else if (a == "--disabled") {
      opt.disabled = true;
    } else if (a == "--json") {
      opt.json = true;
    } else if (a == "--update") {
      opt.update = true;
    } else if (a == "--apply") {
      opt.apply = true;
    } else if (a == "--dovecot-prefix") {
      opt.dovecot_prefix = true;
    } else if (a == "-p" || a == "--password") {
      args.usage_error("passwords are never taken from the command line (they show in ps); use "
                       "--password-stdin, --random or the prompt");
    } else if (!a.empty() && a[0] == '-' && a != "-") {
      args.usage_error("unknown option '" + a + "'");
    } else if (opt.command.empty()) {
      opt.command = a;
    } else {
      opt.operands.push_back(a);
    }
  }
  if (opt.command.empty()) args.usage_error("no command given");
  mailauth::password::init();
  // Backends log through the daemon's logger; here, warnings go to stderr.
  mailauth::log::init(mailauth::log::Target::Stderr, mailauth::log::Level::Warning,
                      "mailauth-user");
  Tool tool(args, opt);
  return tool.run();
}
