// Parsers for the files mailauth-migrate reads: Debian's
// /etc/default/saslauthd, saslauthd's command line, PAM stacks, Postfix's
// main.cf/master.cf and libsasl2's smtpd.conf, Dovecot's configuration
// (dovecot.conf, doveconf -n, dovecot-sql.conf.ext) and its SQL connect
// string.  Pure functions over text: no I/O, never throw on any input (the
// fuzz target tests/fuzz/fuzz_migrate.cc holds them to that).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mailauth::migrate {

struct Value {
  std::string value;
  int line = 0;
};

// Words as a POSIX shell splits them: blanks separate, '…' and "…" quote,
// backslash escapes.  No expansion.
std::vector<std::string> shell_words(std::string_view text);

// KEY=value assignments of a shell fragment (/etc/default/saslauthd), with
// the line each was set on; the last assignment wins.  `export` is skipped;
// other lines (commands, conditionals) are returned in `other` by line.
std::map<std::string, Value> parse_shell_assignments(std::string_view text,
                                                     std::vector<Value>* other = nullptr);

// saslauthd's command line options (what Debian's init script builds from
// MECHANISMS, MECH_OPTIONS, THREADS and OPTIONS).
struct SaslauthdOptions {
  std::string mech;                          // -a
  std::string option;                        // -O
  std::string dir;                           // -m (empty: not given)
  bool cache = false;                        // -c
  long cache_ttl = -1;                       // -t (-1: not given)
  long cache_kb = -1;                        // -s
  bool join_realm = false;                   // -r
  long threads = -1;                         // -n
  bool debug = false;                        // -d
  std::vector<std::string> not_understood;   // each flag (with its value) not carried
};
SaslauthdOptions parse_saslauthd_options(const std::vector<std::string>& words);

// One line of a PAM configuration file (/etc/pam.d/SERVICE).
struct PamLine {
  int line = 0;
  std::string type;     // auth, account, password, session; "@include" for @include lines
  bool quiet = false;   // "-auth": a missing module is not an error
  std::string control;  // required, requisite, sufficient, optional, include, substack,
                        // or "[success=1 default=ignore]"
  std::string module;   // pam_unix.so, /lib/…/pam_mysql.so; for @include: the file
  std::vector<std::string> args;  // "[a b]" arguments arrive without the brackets
};
std::vector<PamLine> parse_pam(std::string_view text);
// A module's base name: "/lib/x86_64-linux-gnu/security/pam_mysql.so" -> "pam_mysql".
std::string pam_module_name(std::string_view module);
// key=value arguments (a bare flag maps to ""); later ones win.
std::map<std::string, std::string> pam_args(const std::vector<std::string>& args);

// Postfix main.cf: "name = value", continued by lines that start with
// blanks; comments are whole lines starting with '#'.
std::map<std::string, Value> parse_postfix_main_cf(std::string_view text);
// Postfix master.cf service lines.
struct MasterService {
  int line = 0;
  std::string service, type, chroot, command;
};
std::vector<MasterService> parse_postfix_master_cf(std::string_view text);
// libsasl2's application configuration (smtpd.conf): "key: value".
std::map<std::string, Value> parse_sasl_conf(std::string_view text);

// Dovecot's configuration syntax (dovecot.conf, conf.d/*.conf, doveconf -n
// output, dovecot-sql.conf.ext): "key = value", "name [arg] {" … "}",
// "!include[_try] PATTERN", a trailing '\' continues a line.
struct DovecotNode {
  enum class Kind { Setting, Section, Include } kind = Kind::Setting;
  std::string key;    // setting name, section type ("passdb", "service"), or include pattern
  std::string value;  // setting value (unquoted), or the section's argument ("auth")
  std::string file;
  int line = 0;
  bool include_try = false;
  std::vector<DovecotNode> children;  // sections only
};
// Problems (an unclosed section, a stray '}') go to `problems` as "LINE: text".
std::vector<DovecotNode> parse_dovecot_conf(std::string_view text, const std::string& file,
                                            std::vector<Value>* problems = nullptr);
// "host=localhost dbname=mail user=u password=\"p w\"" -> map.
std::map<std::string, std::string> parse_connect_string(std::string_view text);

// Lower-case ASCII copy.
std::string lower(std::string_view s);
std::string trim(std::string_view s);

}  // namespace mailauth::migrate
