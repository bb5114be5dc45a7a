// mailauth-user: password hashing (and, later, account management).
#include <iostream>

#include "src/cli/args.h"
#include "src/password/schemes.h"
#include "src/util/secret.h"
#include "version.h"

namespace {

constexpr const char* kHelp = R"(Usage:
  mailauth-user hash [--scheme S] [--password-stdin] [--dovecot-prefix]

Commands:
  hash    read a password and print its hash, like `mkpasswd` or
          `doveadm pw`.  On a terminal it asks twice without echo; otherwise
          it reads one line from stdin.

Options:
  --scheme S          argon2id (default), yescrypt, bcrypt, sha512-crypt,
                      sha256-crypt, scram-sha-256, scram-sha-1, ssha512,
                      cram-md5, plain
  --password-stdin    read the password from stdin even on a terminal
  --dovecot-prefix    write crypt and Argon2 hashes with their Dovecot
                      {SCHEME} prefix ({CRYPT}$y$…, {ARGON2ID}$argon2id$…),
                      for tables shared with Dovecot or PostfixAdmin.
                      Without it they are bare, as pam_pwdfile and
                      /etc/shadow read them.
  --help, --version

Exit status: 0 done, 1 the password could not be read, 2 usage error.
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace mailauth;
  cli::Args args(argc, argv);
  std::string command, scheme = "argon2id";
  bool password_stdin = false, prefix = false;
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "--help" || a == "-h") {
      std::cout << kHelp;
      return 0;
    } else if (a == "--version" || a == "-v") {
      std::cout << "mailauth-user " << MAILAUTH_VERSION << "\n";
      return 0;
    } else if (a == "--scheme") {
      scheme = args.value(a);
    } else if (a == "--password-stdin") {
      password_stdin = true;
    } else if (a == "--dovecot-prefix") {
      prefix = true;
    } else if (!a.empty() && a[0] == '-') {
      args.usage_error("unknown option '" + a + "'");
    } else if (command.empty()) {
      command = a;
    } else {
      args.usage_error("unexpected argument '" + a + "'");
    }
  }
  if (command.empty()) args.usage_error("no command given");
  if (command != "hash") args.usage_error("unknown command '" + command + "'");
  bool known = false;
  for (const auto& s : password::hash_schemes()) known |= (s == scheme);
  if (!known) args.usage_error("unknown scheme '" + scheme + "'");

  password::init();
  std::string pw, error;
  if (!cli::read_password("Password: ", true, password_stdin, &pw, &error)) {
    std::cerr << args.program() << ": " << error << "\n";
    return 1;
  }
  std::string hashed;
  try {
    hashed = password::hash(scheme, pw);
  } catch (const std::exception& e) {
    wipe(pw.data(), pw.size());
    std::cerr << args.program() << ": " << e.what() << "\n";
    return 1;
  }
  wipe(pw.data(), pw.size());
  std::cout << (prefix ? password::with_dovecot_prefix(hashed) : hashed) << "\n";
  return 0;
}
