#include "src/migrate/migrate.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "backends/ldap/saslauthd_conf.h"
#include "src/migrate/parse.h"

namespace mailauth::migrate {

namespace {

// --- the configuration being written -------------------------------------------

struct Kv {
  std::string key;
  std::string value;  // a TOML value, already quoted
  std::string comment;
};

struct Table {
  std::string header;   // "daemon", "[backend]" for an array table
  std::vector<std::string> comments;
  std::vector<Kv> kv;
  bool commented_out = false;
  void set(std::string key, std::string value, std::string comment = "") {
    for (auto& k : kv)
      if (k.key == key) {
        k.value = std::move(value);
        k.comment = std::move(comment);
        return;
      }
    kv.push_back(Kv{std::move(key), std::move(value), std::move(comment)});
  }
  bool has(std::string_view key) const {
    return std::any_of(kv.begin(), kv.end(), [&](const Kv& k) { return k.key == key; });
  }
};

std::string from(const std::string& file, int line) {
  return "from " + file + (line > 0 ? ":" + std::to_string(line) : std::string());
}

// A comment must stay on its line and be valid TOML: control bytes become
// blanks, invalid UTF-8 becomes '?'.
std::string one_line(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char ch = static_cast<unsigned char>(s[i]);
    if (ch < 0x80) {
      out += (ch < 0x20 || ch == 0x7f) ? ' ' : static_cast<char>(ch);
      ++i;
      continue;
    }
    const std::size_t len = (ch & 0xe0) == 0xc0 ? 2 : (ch & 0xf0) == 0xe0 ? 3
                            : (ch & 0xf8) == 0xf0 ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size() && ch >= 0xc2 && ch <= 0xf4;
    for (std::size_t k = 1; ok && k < len; ++k)
      ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok && len == 3) {  // no overlongs, no surrogates
      const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(ch == 0xe0 && c1 < 0xa0) && !(ch == 0xed && c1 >= 0xa0);
    }
    if (ok && len == 4) {
      const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(ch == 0xf0 && c1 < 0x90) && !(ch == 0xf4 && c1 >= 0x90);
    }
    if (ok && len >= 2) {
      out.append(s, i, len);
      i += len;
    } else {
      out += '?';
      ++i;
    }
  }
  return out;
}

std::string render(const std::vector<Table>& tables, const std::string& source) {
  std::string out =
      "# mailauthd configuration written by mailauth-migrate from " + source +
      ".\n# Each value says where it came from; check the report mailauth-migrate printed\n"
      "# for what it could not carry over.  Test it with:\n"
      "#   mailauthd --check-config --config THIS_FILE\n"
      "# and compare it with the running daemon (mailauth-migrate --compare).\n";
  for (const auto& t : tables) {
    out += "\n";
    for (const auto& c : t.comments) out += "# " + one_line(c) + "\n";
    const std::string p = t.commented_out ? "# " : "";
    out += p + "[" + t.header + "]\n";
    for (const auto& k : t.kv) {
      out += p + k.key + " = " + k.value;
      if (!k.comment.empty()) out += "  # " + one_line(k.comment);
      out += "\n";
    }
  }
  return out;
}

std::string toml_int(long long v) { return std::to_string(v); }
std::string toml_bool(bool v) { return v ? "true" : "false"; }
std::string toml_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + toml_quote(items[i]);
  return out + "]";
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string dirname(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// "/run/x" and "/var/run/x" are one place on Debian.
std::string same_run(std::string p) {
  if (p.rfind("/var/run/", 0) == 0) p.erase(0, 4);
  return p;
}

long long parse_number(std::string_view s, bool* ok) {
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  *ok = ec == std::errc() && p == s.data() + s.size() && v >= 0;
  return v;
}

// Dovecot's "NUMBER UNIT" values: the number (at most 9 digits, so the
// products below cannot overflow) and the lower-cased unit; false when
// there is no number.
bool number_and_unit(std::string_view text, long long* n, std::string* unit) {
  const std::string t = lower(trim(text));
  std::size_t k = 0;
  while (k < t.size() && std::isdigit(static_cast<unsigned char>(t[k]))) ++k;
  if (k == 0 || k > 9) return false;
  bool ok = false;
  *n = parse_number(std::string_view(t).substr(0, k), &ok);
  *unit = trim(std::string_view(t).substr(k));
  return ok;
}

// Dovecot's durations ("2 secs", "1 hour", "0", "500 ms") in milliseconds;
// -1 when unreadable.
long long dovecot_duration_ms(std::string_view text) {
  long long n = 0;
  std::string unit;
  if (!number_and_unit(text, &n, &unit)) return -1;
  if (unit.empty() || unit[0] == 's') return n * 1000;  // plain numbers are seconds
  if (unit.rfind("ms", 0) == 0 || unit.rfind("msec", 0) == 0) return n;
  if (unit[0] == 'm') return n * 60'000;
  if (unit[0] == 'h') return n * 3'600'000;
  if (unit[0] == 'd') return n * 86'400'000;
  if (unit[0] == 'w') return n * 604'800'000;
  return -1;
}

// Dovecot sizes ("10M", "1 G", "0") in bytes; -1 when unreadable.
long long dovecot_size(std::string_view text) {
  long long n = 0;
  std::string unit;
  if (!number_and_unit(text, &n, &unit)) return -1;
  if (unit.empty() || unit[0] == 'b') return n;
  if (unit[0] == 'k') return n << 10;
  if (unit[0] == 'm') return n << 20;
  if (unit[0] == 'g') return n << 30;
  return -1;
}

std::string duration_text(long long ms) {
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

struct Ctx {
  const Sources& src;
  const Options& opt;
  Result& result;
  Report& report;
  std::vector<Table> backends;
  bool needs_root = false;     // a pam backend: PAM modules (pam_unix) need root
  bool needs_shadow = false;   // a shadow backend, run as mailauth with group shadow
  long long failure_delay_ms = -1;

  // A NOT CARRIED item that may let the new configuration accept a login the
  // old one refused: every backend is then written commented out.
  bool widens = false;

  // Paths from the migrated files are resolved lexically inside the machine's
  // root ("/a/../../etc" is "/etc"), so "!include ../../x" or "@include ../x"
  // never names a file outside --root; the program resolves symlinks under
  // the root itself.
  static std::string in_root(const std::string& path) {
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i <= path.size()) {
      const std::size_t j = std::min(path.find('/', i), path.size());
      const std::string part = path.substr(i, j - i);
      if (part == "..") {
        if (!parts.empty()) parts.pop_back();
      } else if (!part.empty() && part != ".") {
        parts.push_back(part);
      }
      i = j + 1;
    }
    std::string out;
    for (const auto& p : parts) out += "/" + p;
    return out.empty() ? "/" : out;
  }
  std::optional<std::string> read(const std::string& path) const {
    return src.read ? src.read(in_root(path)) : std::nullopt;
  }
  std::vector<std::string> list(const std::string& dir) const {
    return src.list ? src.list(in_root(dir)) : std::vector<std::string>{};
  }
  std::string secret_path(const std::string& stem) const {
    int n = 0;
    for (const auto& b : backends)
      for (const auto& k : b.kv)
        if (k.key == "password_file") ++n;
    return opt.secret_dir + (n == 0 ? "/" + stem + ".secret"
                                    : "/" + stem + "-" + std::to_string(n + 1) + ".secret");
  }
  void add_secret(Table& b, const std::string& password, const std::string& file, int line,
                  const std::string& stem = "mysql") {
    if (password.empty()) return;
    const std::string path = secret_path(stem);
    const std::string what = stem == "mysql" ? "database" : "service bind";
    b.set("password_file", toml_quote(path), "the " + what + " password, not in this file");
    result.secrets.push_back(SecretFile{path, password + "\n"});
    report.carried(file, line,
                   what + " password -> " + path + " (root only, 0600; never printed)");
  }
};

// A NOT CARRIED item could let the translated backends accept a login the
// old setup refused: write every backend commented out, so mailauthd refuses
// to start ("no [[backend]]") until an administrator has decided.
void disable_if_widened(Ctx& c) {
  if (!c.widens) return;
  for (auto& b : c.backends) b.commented_out = true;
  c.report.unsupported("", 0,
                       "a setting not carried over could let the new configuration accept "
                       "logins the old one refused: every backend is written commented out; "
                       "mailauthd will not start until you review them");
}

// --- MySQL connection settings ---------------------------------------------------

// pam_mysql's and Dovecot's host= (with an optional port).
void set_mysql_host(Ctx& c, Table& b, const std::string& host, const std::string& port,
                    const std::string& file, int line) {
  if (host.empty() || host == "localhost") {
    // libmysqlclient/Connector C: "localhost" means the default UNIX socket.
    b.set("socket", toml_quote("/run/mysqld/mysqld.sock"),
          "host=" + (host.empty() ? std::string("(none)") : host) + ": the local server's socket");
    c.report.carried(file, line,
                     "host=" + (host.empty() ? std::string("(none)") : host) +
                         " -> socket = \"/run/mysqld/mysqld.sock\" (what the MySQL client "
                         "library uses for localhost; set hosts = [\"127.0.0.1\"] for TCP)");
  } else if (host[0] == '/') {
    b.set("socket", toml_quote(host));
    c.report.carried(file, line, "host=" + host + " -> socket");
  } else {
    std::string h = host;
    if (!port.empty() && h.find(':') == std::string::npos) h += ":" + port;
    b.set("hosts", toml_list({h}));
    c.report.carried(file, line, "host=" + host + " -> hosts = [\"" + h + "\"]");
  }
}

bool sql_identifier(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '$';
  });
}

std::string squeeze(std::string_view s) {
  std::string out;
  for (char ch : s)
    if (!std::isspace(static_cast<unsigned char>(ch)) && ch != '\'' && ch != '"' && ch != '`')
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

// '%' in literal SQL (LIKE patterns) must be '%%' in a mailauthd template.
std::string escape_percent(std::string_view s) {
  std::string out;
  for (char ch : s) {
    out += ch;
    if (ch == '%') out += '%';
  }
  return out;
}

// --- LDAP (saslauthd -a ldap) ------------------------------------------------------

// saslauthd.conf read exactly as `mailauthd -a ldap -O FILE` reads it (the
// ldap backend's own translator), the bind password moved to a root-only
// file.  What the translator refuses (ldap_use_sasl, %D, unknown keys) is
// reported with its line and no backend is written.
void ldap_backend(Ctx& c, const std::string& path, const std::string& from_file, int from_line) {
  const auto text = c.read(path);
  if (!text) {
    c.report.unsupported(from_file, from_line,
                         "MECHANISMS=ldap: " + path + " cannot be read: backend not written");
    return;
  }
  toml::table doc;
  try {
    doc = toml::parse(backend::ldap::saslauthd_conf_to_toml(*text, path), path);
  } catch (const std::exception& e) {
    c.report.unsupported(path, 0, std::string(e.what()) + ": backend not written");
    return;
  }
  const toml::array* arr = doc["backend"].as_array();
  if (arr == nullptr || arr->empty() || !arr->front().is_table()) {
    c.report.unsupported(path, 0, "no LDAP settings: backend not written");
    return;
  }
  Table b;
  b.header = "[backend]";
  b.comments.push_back("saslauthd -a ldap " + from(path, 0));
  for (const auto& [key, value] : *arr->front().as_table()) {
    if (key.str() == "password") {
      if (const auto pw = value.value<std::string>()) c.add_secret(b, *pw, path, 0, "ldap");
      continue;
    }
    std::ostringstream v;
    value.visit([&](const auto& n) {
      if constexpr (toml::is_string<decltype(n)>)
        v << toml_quote(n.get());
      else
        v << n;  // numbers, booleans, arrays of strings: toml++'s TOML form
    });
    b.set(std::string(key.str()), v.str());
  }
  if (!b.has("name")) b.set("name", toml_quote("ldap"));
  c.report.carried(path, 0,
                   "saslauthd LDAP settings -> an ldap backend (as mailauthd -a ldap -O " +
                       path + " reads them)");
  c.backends.push_back(std::move(b));
}

// --- PAM ---------------------------------------------------------------------------

struct PamState {
  std::set<std::string> visited;
  int auth_modules = 0;  // auth lines seen that can fail
  bool fallback = false;  // a module mailauthd cannot translate: run the stack through PAM
  std::map<std::string, std::string> mysql_args;  // the auth line's, to compare the account line
  bool shadow_added = false;
  int account_modules = 0;  // account lines seen that check something
  // The auth stack as PAM runs it, includes inlined: control flags are
  // checked on the whole of it before any line is translated.
  std::vector<std::pair<PamLine, std::string>> auth;
  bool auth_shape_ok = true;
};

void pam_mysql_backend(Ctx& c, const PamLine& l, const std::string& file) {
  auto a = pam_args(l.args);
  Table b;
  b.header = "[backend]";
  b.comments.push_back("pam_mysql " + from(file, l.line));
  b.set("type", toml_quote("mysql"));
  b.set("name", toml_quote(c.backends.empty() ? "mysql" : "mysql" + std::to_string(c.backends.size() + 1)));
  bool ok = true;
  auto take = [&](const char* key) {
    auto it = a.find(key);
    if (it == a.end()) return std::string();
    std::string v = it->second;
    a.erase(it);
    return v;
  };
  const std::string user = take("user"), passwd = take("passwd"), host = take("host"),
                    db = take("db"), table = take("table"), usercol = take("usercolumn"),
                    passcol = take("passwdcolumn"), crypt_arg = take("crypt"),
                    where = take("where");
  set_mysql_host(c, b, host, "", file, l.line);
  if (user.empty() || db.empty() || table.empty() || usercol.empty() || passcol.empty()) {
    c.report.unsupported(file, l.line,
                         "pam_mysql without user=, db=, table=, usercolumn= and passwdcolumn= "
                         "(a config_file= is not read): backend not written");
    return;
  }
  b.set("user", toml_quote(user));
  b.set("database", toml_quote(db));
  c.add_secret(b, passwd, file, l.line);
  if (!sql_identifier(table) || !sql_identifier(usercol) || !sql_identifier(passcol)) {
    c.report.unsupported(file, l.line,
                         "table=/usercolumn=/passwdcolumn= are not plain SQL names: backend "
                         "written commented out");
    ok = false;
  }
  // The stored credential, as mailauthd reads it.
  const std::string cr = lower(crypt_arg.empty() ? "0" : crypt_arg);
  std::string expr = passcol;
  bool crypt_scheme = false;
  if (cr == "0" || cr == "plain" || cr == "n" || cr == "no") {
    expr = "CONCAT('{PLAIN}', " + passcol + ")";
    c.report.carried(file, l.line, "crypt=" + crypt_arg + " (plaintext column) -> {PLAIN} in the query");
  } else if (cr == "1" || cr == "y" || cr == "yes" || cr == "crypt") {
    crypt_scheme = true;
    c.report.carried(file, l.line,
                     "crypt=1 (crypt(3)) -> stored hashes read as crypt strings ($1$, $5$, $6$, "
                     "$y$, $2y$, …; {SCHEME} prefixes also work)");
  } else if (cr == "3" || cr == "md5") {
    expr = "CONCAT('{PLAIN-MD5}', " + passcol + ")";
    c.report.carried(file, l.line, "crypt=3 (MD5 hex digest) -> {PLAIN-MD5} in the query");
  } else if (cr == "4" || cr == "sha1") {
    expr = "CONCAT('{SHA.HEX}', " + passcol + ")";
    c.report.carried(file, l.line, "crypt=4 (SHA1 hex digest) -> {SHA.HEX} in the query");
  } else if (cr == "2" || cr == "mysql") {
    c.report.unsupported(file, l.line,
                         "crypt=2 (MySQL PASSWORD()) hashes cannot be verified by mailauthd: "
                         "backend written commented out; rehash those passwords "
                         "(mailauth-user passwd) before switching");
    ok = false;
  } else {
    c.report.unsupported(file, l.line,
                         "crypt=" + crypt_arg + " is a scheme mailauth-migrate does not know: "
                         "backend written commented out");
    ok = false;
  }
  // Presets: the guides' users table and PostfixAdmin's mailbox table.
  const std::string w = squeeze(where);
  std::string preset;
  if (crypt_scheme && lower(table) == "users" && lower(usercol) == "id" &&
      lower(passcol) == "crypt")
    preset = w == "enabled=1" ? "users" : "users*";
  if (crypt_scheme && lower(table) == "mailbox" && lower(usercol) == "username" &&
      lower(passcol) == "password")
    preset = w == "active=1" ? "postfixadmin" : "postfixadmin*";
  if (!preset.empty()) {
    const std::string name = preset.back() == '*' ? preset.substr(0, preset.size() - 1) : preset;
    b.set("schema", toml_quote(name), "mailauth-user writes with the preset's statements");
    c.report.carried(file, l.line,
                     "table=" + table + " -> schema = \"" + name + "\"" +
                         (preset.back() == '*' ? " (with its own query below: where= differs)"
                                               : " (where=" + where +
                                                     " is the preset's enabled column: a "
                                                     "disabled user is known and refused)"));
  }
  if (preset.empty() || preset.back() == '*') {
    std::string q = "SELECT " + expr;
    if (!where.empty()) q += ", (" + escape_percent(where) + ") AS enabled";
    q += " FROM " + table + " WHERE " + usercol + " = '%u'";
    b.set("query", toml_quote(q));
    if (!where.empty())
      c.report.carried(file, l.line,
                       "where=" + where + " -> a column named enabled (a user it excludes is "
                       "known and refused, and no later backend is asked)");
  }
  if (crypt_scheme) b.set("default_scheme", toml_quote("CRYPT"));
  for (const auto& [k, v] : a) {
    static const std::set<std::string, std::less<>> kLog = {
        "sqllog", "logtable", "logmsgcolumn", "logpidcolumn", "logusercolumn", "loghostcolumn",
        "logrhostcolumn", "logtimecolumn", "verbose", "debug", "disconnect_every_op",
        "disconnect_every_operation", "md5", "use_first_pass", "try_first_pass"};
    if (kLog.count(k)) {
      c.report.ignored(file, l.line,
                       k + (v.empty() ? "" : "=" + v) +
                           (k.rfind("log", 0) == 0 || k == "sqllog"
                                ? ": mailauthd logs every attempt to syslog, not to a table"
                                : ": has no meaning for mailauthd"));
    } else {
      c.report.unsupported(file, l.line,
                           "pam_mysql argument " + k + " is not carried over");  // value may be secret
    }
  }
  b.commented_out = !ok;
  c.backends.push_back(std::move(b));
}

void pwdfile_backend(Ctx& c, const PamLine& l, const std::string& file) {
  std::string path;
  for (std::size_t i = 0; i < l.args.size(); ++i) {
    const std::string& arg = l.args[i];
    if (arg.rfind("pwdfile=", 0) == 0) {
      path = arg.substr(8);
    } else if (arg == "pwdfile" && i + 1 < l.args.size()) {
      path = l.args[++i];
    } else if (arg == "nodelay") {
      c.report.ignored(file, l.line,
                       "nodelay: mailauthd never sleeps in a worker; [saslauthd] failure_delay "
                       "holds a wrong password's answer back if you want that");
    } else if (arg == "debug") {
      c.report.ignored(file, l.line, "debug: use [daemon] log_level = \"debug\" when needed");
    } else if (arg == "flock" || arg == "noflock" || arg == "legacy_crypt") {
      c.report.ignored(file, l.line,
                       arg + ": mailauthd reads the file whole and sees every rewrite");
    } else {
      c.report.unsupported(file, l.line, "pam_pwdfile argument " + arg + " is not carried over");
    }
  }
  if (path.empty()) {
    c.report.unsupported(file, l.line, "pam_pwdfile without pwdfile=PATH: backend not written");
    return;
  }
  Table b;
  b.header = "[backend]";
  b.comments.push_back("pam_pwdfile " + from(file, l.line));
  b.set("type", toml_quote("pwdfile"));
  b.set("path", toml_quote(path));
  c.backends.push_back(std::move(b));
  c.report.carried(file, l.line,
                   "pam_pwdfile pwdfile=" + path +
                       " -> pwdfile backend (saslauthd read it as root; mailauthd reads it as "
                       "user mailauth: chgrp mailauth " + path + "; chmod 0640 " + path + ")");
}

void shadow_backend(Ctx& c, PamState& st, const PamLine& l, const std::string& file) {
  if (st.shadow_added) return;
  st.shadow_added = true;
  Table b;
  b.header = "[backend]";
  b.comments.push_back("pam_unix " + from(file, l.line) +
                       ": system accounts, read from /etc/shadow by mailauthd itself");
  b.set("type", toml_quote("shadow"));
  c.backends.push_back(std::move(b));
  c.needs_shadow = true;
  c.report.carried(file, l.line,
                   "pam_unix -> shadow backend (mailauthd reads /etc/shadow as user mailauth "
                   "in group shadow instead of running PAM as root; locked, expired and "
                   "must-change accounts are refused as pam_unix's account check does)");
  const auto a = pam_args(l.args);
  if (!a.count("nodelay") && c.failure_delay_ms < 0) {
    c.failure_delay_ms = 2000;
    c.report.carried(file, l.line,
                     "pam_unix waits about 2 s after a wrong password -> [saslauthd] "
                     "failure_delay = \"2s\" (a timer, no worker waits)");
  }
  for (const auto& [k, v] : a) {
    if (k == "nodelay") continue;
    if (k == "nullok" || k == "nullok_secure")
      c.report.ignored(file, l.line, k + ": mailauthd never accepts an empty password");
    else
      c.report.ignored(file, l.line,
                       "pam_unix " + k + (v.empty() ? "" : "=" + v) +
                           ": has no meaning for a password check");
  }
}

void translate_pam_file(Ctx& c, PamState& st, const std::string& path, int depth,
                        const std::string& only_type);

void translate_pam_line(Ctx& c, PamState& st, const PamLine& l, const std::string& file,
                        int depth) {
  if (l.type == "@include") {
    translate_pam_file(c, st, "/etc/pam.d/" + l.module, depth + 1, "");
    return;
  }
  if (l.control == "substack" && l.type == "auth") {
    // A substack's done/die end the substack only: not the inlined stack.
    st.auth.emplace_back(l, file);
    return;
  }
  if (l.control == "include" || l.control == "substack") {
    translate_pam_file(c, st, l.module.empty() || l.module[0] == '/' ? l.module
                                                                     : "/etc/pam.d/" + l.module,
                       depth + 1, l.type);
    return;
  }
  const std::string mod = pam_module_name(l.module);
  if (l.type == "password" || l.type == "session") {
    c.report.ignored(file, l.line,
                     l.type + " " + mod + ": " + l.type +
                         " lines take no part in a password check");
    return;
  }
  if (l.type == "account") {
    if (mod == "pam_deny") {
      if (st.account_modules > 0)
        c.report.ignored(file, l.line,
                         "account pam_deny after the account checks: the stack's usual "
                         "closing line (Debian's common-account)");
      else
      {
        c.report.unsupported(file, l.line,
                             "account pam_deny before any account check: nobody can log in "
                             "through this stack");
        c.widens = true;
      }
      return;
    }
    if (mod != "pam_permit") ++st.account_modules;
    if (mod == "pam_mysql") {
      const bool same = pam_args(l.args) == st.mysql_args;
      if (same)
        c.report.carried(file, l.line,
                         "account pam_mysql: the same table and where=, checked by the "
                         "mysql backend's lookup");
      else {
        c.report.unsupported(file, l.line,
                             "account pam_mysql with other arguments than the auth line: "
                             "not carried over");
        c.widens = true;
      }
    } else if (mod == "pam_unix") {
      c.report.carried(file, l.line,
                       "account pam_unix: the shadow backend refuses locked and expired "
                       "accounts");
    } else if (mod == "pam_permit") {
      c.report.ignored(file, l.line, "account pam_permit: allows every account");
    } else if (mod == "pam_pwdfile") {
      c.report.ignored(file, l.line, "account pam_pwdfile: it has no account check");
    } else {
      c.report.unsupported(file, l.line,
                           "account " + mod + ": mailauthd has no such account check; the "
                           "stack is kept as a pam backend that runs it through PAM");
      st.fallback = true;
    }
    return;
  }
  if (l.type != "auth") {
    c.report.unsupported(file, l.line, "unknown PAM line type '" + l.type + "'");
    return;
  }
  if (pam_module_name(l.module) == "pam_mysql") st.mysql_args = pam_args(l.args);  // the account line compares
  st.auth.emplace_back(l, file);
}

bool pam_neutral(const std::string& mod) {
  return mod == "pam_env" || mod == "pam_warn" || mod == "pam_echo" || mod == "pam_debug" ||
         mod == "pam_mail" || mod == "pam_motd" || mod == "pam_lastlog" || mod == "pam_cap" ||
         mod == "pam_gnome_keyring" || mod == "pam_systemd" || mod == "pam_faildelay";
}

// "[success=N default=ignore]" (in any order, nothing else): N, else -1.
int success_jump(const std::string& control) {
  if (control.size() < 2 || control.front() != '[' || control.back() != ']') return -1;
  int jump = -1;
  bool ignore = false;
  for (const auto& w : shell_words(control.substr(1, control.size() - 2))) {
    if (w == "default=ignore") {
      ignore = true;
    } else if (w.rfind("success=", 0) == 0) {
      bool ok = false;
      const long long n = parse_number(w.substr(8), &ok);
      if (!ok || n < 1 || n > 64) return -1;
      jump = static_cast<int>(n);
    } else {
      return -1;
    }
  }
  return ignore ? jump : -1;
}

// Whether the auth stack provably means "any one of these password modules
// accepts, else refuse" -- the only thing a chain of mailauthd backends can
// say.  Shapes proved: `sufficient` modules closed by a `required`/
// `requisite` pam_deny, by one `required`/`requisite` module, or by the end
// of the stack; one `required`/`requisite` module; Debian's common-auth
// (`[success=N default=ignore]` modules whose successes all jump over a
// closing `requisite pam_deny` onto `pam_permit`).  pam_permit may follow
// the closing line.  On failure *bad is the index of the first line not
// understood.
bool pam_auth_shape(const std::vector<std::pair<PamLine, std::string>>& auth, std::size_t* bad) {
  auto mod = [&](std::size_t i) { return pam_module_name(auth[i].first.module); };
  auto ctl = [&](std::size_t i) { return auth[i].first.control; };
  auto hard = [&](std::size_t i) { return ctl(i) == "required" || ctl(i) == "requisite"; };
  auto password = [&](std::size_t i) {
    const std::string m = mod(i);
    return !pam_neutral(m) && m != "pam_deny" && m != "pam_permit";
  };
  std::vector<std::size_t> d;  // the lines that decide
  for (std::size_t i = 0; i < auth.size(); ++i) {
    if (pam_neutral(mod(i))) continue;
    if (auth[i].first.quiet) {  // "-auth": the line may or may not be there
      *bad = i;
      return false;
    }
    d.push_back(i);
  }
  // After the closing line: only pam_permit that cannot succeed alone.
  auto only_permits_from = [&](std::size_t k) {
    for (; k < d.size(); ++k)
      if (mod(d[k]) != "pam_permit" ||
          !(hard(d[k]) || ctl(d[k]) == "optional")) {
        *bad = d[k];
        return false;
      }
    return true;
  };
  std::size_t k = 0;
  while (k < d.size() && ctl(d[k]) == "sufficient" && password(d[k])) ++k;
  if (k == d.size()) {
    if (k > 0) return true;
    *bad = 0;
    return false;
  }
  if (hard(d[k]) && (mod(d[k]) == "pam_deny" || password(d[k]))) {
    if (k == 0 && mod(d[k]) == "pam_deny") {  // refuses everyone
      *bad = d[k];
      return false;
    }
    return only_permits_from(k + 1);
  }
  if (k > 0) {
    *bad = d[k];
    return false;
  }
  // Debian's common-auth.
  while (k < d.size() && password(d[k]) && success_jump(ctl(d[k])) > 0) ++k;
  if (k == 0 || k == d.size() || mod(d[k]) != "pam_deny" || !hard(d[k])) {
    *bad = d[k < d.size() ? k : 0];
    return false;
  }
  const std::size_t deny = d[k];
  for (std::size_t j = 0; j < k; ++j) {
    const std::size_t land = d[j] + 1 + static_cast<std::size_t>(success_jump(ctl(d[j])));
    // It must land after the deny, on a line (a jump past the end is an error).
    if (land <= deny || land >= auth.size()) {
      *bad = d[j];
      return false;
    }
    // Every decider it jumps over must be a pam_permit, and a pam_permit must
    // run after it lands (a jump is not a success: it only skips lines).
    bool permit_after = false;
    for (std::size_t m = k + 1; m < d.size(); ++m) {
      if (d[m] < land && mod(d[m]) != "pam_permit") {
        *bad = d[m];
        return false;
      }
      if (d[m] >= land && mod(d[m]) == "pam_permit" && hard(d[m])) permit_after = true;
    }
    if (!permit_after) {
      *bad = d[j];
      return false;
    }
  }
  if (k + 1 == d.size()) {  // nothing after the deny: a success returns... nothing ran
    *bad = deny;
    return false;
  }
  return only_permits_from(k + 1);
}

void translate_pam_auth_line(Ctx& c, PamState& st, const PamLine& l, const std::string& file) {
  const std::string mod = pam_module_name(l.module);
  if (mod == "pam_mysql") {
    st.mysql_args = pam_args(l.args);
    ++st.auth_modules;
    pam_mysql_backend(c, l, file);
  } else if (mod == "pam_pwdfile") {
    ++st.auth_modules;
    pwdfile_backend(c, l, file);
  } else if (mod == "pam_unix" || mod == "pam_unix2") {
    ++st.auth_modules;
    shadow_backend(c, st, l, file);
  } else if (mod == "pam_deny") {
    if (st.auth_shape_ok)
      c.report.carried(file, l.line,
                       "pam_deny closes the stack: mailauthd refuses a login no backend "
                       "accepts, as the stack did");
    else
      c.report.unsupported(file, l.line,
                           "pam_deny here is part of a stack kept as a pam backend");
  } else if (mod == "pam_permit") {
    if (st.auth_modules == 0) {
      c.report.unsupported(file, l.line,
                           "auth pam_permit before any password check accepts every password; "
                           "mailauthd never does");
    } else {
      c.report.ignored(file, l.line,
                       "auth pam_permit after the password checks: the stack's usual "
                       "closing line (Debian's common-auth)");
    }
  } else if (mod == "pam_faildelay") {
    const auto a = pam_args(l.args);
    bool ok = false;
    const auto it = a.find("delay");
    const long long us = it == a.end() ? -1 : parse_number(it->second, &ok);
    if (ok && us <= 8'000'000) {
      c.failure_delay_ms = us / 1000;
      c.report.carried(file, l.line,
                       "pam_faildelay delay=" + it->second + " -> [saslauthd] failure_delay = \"" +
                           duration_text(us / 1000) + "\"");
    } else {
      c.report.ignored(file, l.line, "pam_faildelay without a usable delay= (at most 8 s)");
    }
  } else if (mod == "pam_env" || mod == "pam_warn" || mod == "pam_echo" || mod == "pam_debug" ||
             mod == "pam_mail" || mod == "pam_motd" || mod == "pam_lastlog" ||
             mod == "pam_cap" || mod == "pam_gnome_keyring" || mod == "pam_systemd") {
    c.report.ignored(file, l.line, mod + ": does not decide a password check");
  } else {
    c.report.unsupported(file, l.line,
                         "auth " + (mod.empty() ? std::string("(no module)") : mod) +
                             ": mailauthd has no backend for this PAM module; the stack is "
                             "kept as a pam backend that runs it through PAM");
    st.fallback = true;
  }
}

void translate_pam_file(Ctx& c, PamState& st, const std::string& path, int depth,
                        const std::string& only_type) {
  if (depth > 8 || !st.visited.insert(path + "\n" + only_type).second) {
    c.report.unsupported(path, 0, "included again or too deeply: not read twice");
    return;
  }
  const auto text = c.read(path);
  if (!text) {
    c.report.unsupported(path, 0, "included PAM file is missing");
    return;
  }
  for (const auto& l : parse_pam(*text)) {
    if (!only_type.empty() && l.type != only_type && l.type != "@include") continue;
    translate_pam_line(c, st, l, path, depth);
  }
}

void translate_pam(Ctx& c, const std::string& service) {
  std::string path = "/etc/pam.d/" + service;
  if (!c.read(path)) {
    c.report.carried(path, 0, "missing: PAM uses /etc/pam.d/other for service " + service);
    path = "/etc/pam.d/other";
  }
  PamState st;
  const std::size_t before = c.backends.size();
  const std::size_t secrets_before = c.result.secrets.size();
  translate_pam_file(c, st, path, 0, "");
  std::size_t bad = 0;
  if (!st.auth.empty() && !pam_auth_shape(st.auth, &bad)) {
    st.auth_shape_ok = false;
    st.fallback = true;
    const auto& [l, file] = st.auth[bad];
    c.report.unsupported(file, l.line,
                         "auth " + (l.quiet ? std::string("-") : std::string()) + l.control +
                             " " + pam_module_name(l.module) +
                             ": with these control flags the stack is not \"any one of its "
                             "modules accepts\"; it is kept as a pam backend that runs it");
  }
  for (const auto& [l, file] : st.auth) translate_pam_auth_line(c, st, l, file);
  if (st.fallback) {
    c.backends.resize(before);
    c.result.secrets.resize(secrets_before);  // no password for a backend not written
    Table b;
    b.header = "[backend]";
    b.comments.push_back("the PAM stack " + path +
                         " uses modules mailauthd cannot translate: it runs the stack itself");
    b.set("type", toml_quote("pam"));
    b.set("service", toml_quote(service));
    b.set("max_concurrent", "1", "PAM modules are not all thread-safe");
    c.backends.push_back(std::move(b));
    c.needs_root = true;
    c.report.unsupported(path, 0,
                         "kept as a pam backend (service = \"" + service +
                             "\"): mailauthd must then run as root, as saslauthd did");
  } else if (c.backends.size() == before) {
    c.report.unsupported(path, 0, "the PAM stack checks no password mailauthd can check");
  }
}

// --- saslauthd -----------------------------------------------------------------------

struct Instance {
  std::string name;  // "saslauthd" or NAME of saslauthd-NAME
  std::string file;
  std::map<std::string, Value> vars;
  SaslauthdOptions options;
  bool start = true;
  std::string socket;
};

Instance read_instance(const std::string& name, const std::string& file, const std::string& text) {
  Instance in;
  in.name = name;
  in.file = file;
  in.vars = parse_shell_assignments(text);
  auto var = [&](const char* k) {
    auto it = in.vars.find(k);
    return it == in.vars.end() ? std::string() : it->second.value;
  };
  const std::string start = lower(var("START"));
  in.start = !(start == "no" || start == "false" || start == "0");
  std::vector<std::string> words;
  const auto mechs = shell_words(var("MECHANISMS"));
  if (!mechs.empty()) words.insert(words.end(), {"-a", mechs[0]});
  if (!var("MECH_OPTIONS").empty()) words.insert(words.end(), {"-O", var("MECH_OPTIONS")});
  if (!var("THREADS").empty()) words.insert(words.end(), {"-n", var("THREADS")});
  for (auto& w : shell_words(var("OPTIONS"))) words.push_back(std::move(w));
  in.options = parse_saslauthd_options(words);
  in.socket = (in.options.dir.empty() ? "/var/run/saslauthd" : in.options.dir) + "/mux";
  return in;
}

struct PostfixView {
  bool found = false;
  std::string sasl_type = "cyrus";
  std::string socket;  // where libsasl2 in smtpd looks, as a path outside the chroot
  std::string conf_file;
  std::string pwcheck;
  int pwcheck_line = 0;
  std::string main_cf = "/etc/postfix/main.cf";
  std::map<std::string, Value> main;
  bool chroot = true;
};

PostfixView postfix_view(Ctx& c) {
  PostfixView p;
  const auto main = c.read(p.main_cf);
  if (!main) return p;
  p.found = true;
  p.main = parse_postfix_main_cf(*main);
  auto get = [&](const char* k, const char* def) {
    auto it = p.main.find(k);
    return it == p.main.end() ? std::string(def) : it->second.value;
  };
  p.sasl_type = lower(get("smtpd_sasl_type", "cyrus"));
  const std::string sasl_path = get("smtpd_sasl_path", "smtpd");
  const std::string queue = get("queue_directory", "/var/spool/postfix");
  if (const auto master = c.read("/etc/postfix/master.cf")) {
    p.chroot = false;
    for (const auto& s : parse_postfix_master_cf(*master))
      if (s.command == "smtpd" && s.chroot == "y") p.chroot = true;
  }
  std::string saslauthd_path = "/var/run/saslauthd/mux";
  if (p.sasl_type == "cyrus") {
    for (const std::string dir : {"/etc/postfix/sasl/", "/etc/sasl2/", "/usr/lib/sasl2/"}) {
      const std::string f = dir + sasl_path + ".conf";
      if (const auto text = c.read(f)) {
        p.conf_file = f;
        const auto conf = parse_sasl_conf(*text);
        if (auto it = conf.find("pwcheck_method"); it != conf.end()) {
          p.pwcheck = it->second.value;
          p.pwcheck_line = it->second.line;
        }
        if (auto it = conf.find("saslauthd_path"); it != conf.end())
          saslauthd_path = it->second.value;
        if (auto it = conf.find("mech_list"); it != conf.end())
          c.report.ignored(f, it->second.line,
                           "mech_list: " + it->second.value +
                               " stays as it is: libsasl2 in Postfix offers the mechanisms and "
                               "asks mailauthd over the same mux protocol");
        break;
      }
    }
  }
  p.socket = (p.chroot ? queue : std::string()) + saslauthd_path;
  return p;
}

// The group Postfix reaches the socket by: sasl when postfix is in it (as
// Debian's README.Debian says), else postfix.
std::string socket_group(Ctx& c) {
  const auto text = c.read("/etc/group");
  if (!text) return "postfix";
  std::map<std::string, std::string> members;
  std::string_view t = *text;
  while (!t.empty()) {
    const std::size_t nl = t.find('\n');
    const std::string_view l = t.substr(0, nl);
    const std::size_t c1 = l.find(':');
    const std::size_t c3 = l.rfind(':');
    if (c1 != std::string_view::npos && c3 != c1)
      members[std::string(l.substr(0, c1))] = "," + std::string(l.substr(c3 + 1)) + ",";
    if (nl == std::string_view::npos) break;
    t.remove_prefix(nl + 1);
  }
  if (members.count("sasl") && members["sasl"].find(",postfix,") != std::string::npos)
    return "sasl";
  return "postfix";
}

Table daemon_table(Ctx& c, long long workers) {
  Table d;
  d.header = "daemon";
  if (c.needs_root) {
    d.set("user", toml_quote("root"), "the pam backend's modules need root");
    d.set("group", toml_quote("root"));
  } else {
    d.set("user", toml_quote("mailauth"), "make install creates it");
    d.set("group", toml_quote("mailauth"));
  }
  if (workers > 0) d.set("workers", toml_int(std::clamp(workers, 1LL, 256LL)));
  d.set("log", toml_quote("syslog"));
  d.set("control_socket", toml_quote("/run/mailauth/control"));
  if (c.needs_shadow && !c.needs_root)
    c.report.carried("", 0,
                     "shadow backend: run `usermod -aG shadow mailauth` so the daemon can read "
                     "/etc/shadow");
  return d;
}

void migrate_saslauthd(Ctx& c) {
  std::vector<Instance> all;
  for (const auto& name : c.list("/etc/default")) {
    if (name != "saslauthd" && name.rfind("saslauthd-", 0) != 0) continue;
    if (ends_with(name, "~") || name.find(".dpkg-") != std::string::npos ||
        ends_with(name, ".bak") || ends_with(name, ".orig"))
      continue;
    const std::string file = "/etc/default/" + name;
    const auto text = c.read(file);
    if (!text) continue;
    all.push_back(read_instance(name == "saslauthd" ? "saslauthd" : name.substr(10), file, *text));
  }
  if (all.empty()) {
    c.result.error = "no /etc/default/saslauthd or /etc/default/saslauthd-* found";
    return;
  }
  PostfixView pf = postfix_view(c);
  const Instance* pick = nullptr;
  if (!c.opt.instance.empty()) {
    for (const auto& in : all)
      if (in.name == c.opt.instance || (c.opt.instance == "default" && in.name == "saslauthd"))
        pick = &in;
    if (!pick) {
      c.result.error = "no saslauthd instance '" + c.opt.instance + "' (found:";
      for (const auto& in : all) c.result.error += " " + in.name;
      c.result.error += ")";
      return;
    }
  } else {
    std::vector<const Instance*> running;
    for (const auto& in : all)
      if (in.start) running.push_back(&in);
    if (running.size() == 1) pick = running[0];
    if (running.size() > 1 && pf.found)
      for (const auto* in : running)
        if (same_run(in->socket) == same_run(pf.socket)) pick = in;
    if (!pick) {
      c.result.error = running.empty() ? "no saslauthd instance is started (START=no in all of:"
                                       : "several saslauthd instances and none is where Postfix "
                                         "looks; choose one with --instance NAME (found:";
      for (const auto& in : all) c.result.error += " " + in.name;
      c.result.error += ")";
      return;
    }
  }
  const Instance& in = *pick;
  for (const auto& other : all)
    if (&other != pick)
      c.report.ignored(other.file, 0,
                       "saslauthd instance '" + other.name + "'" +
                           (other.start ? "" : " (START=no)") +
                           " not migrated: one configuration per instance (--instance " +
                           other.name + ")");
  auto line_of = [&](const char* k) {
    auto it = in.vars.find(k);
    return it == in.vars.end() ? 0 : it->second.line;
  };
  const SaslauthdOptions& o = in.options;
  if (!in.start)
    c.report.ignored(in.file, line_of("START"), "START=no: the instance is not running now");

  // Backends.
  const auto mechs = shell_words(in.vars.count("MECHANISMS") ? in.vars.at("MECHANISMS").value : "");
  for (std::size_t i = 1; i < mechs.size(); ++i)
    c.report.unsupported(in.file, line_of("MECHANISMS"),
                         "MECHANISMS word '" + mechs[i] + "': saslauthd uses only the first");
  const std::string mech = lower(o.mech);
  if (mech == "pam") {
    c.report.carried(in.file, line_of("MECHANISMS"),
                     "MECHANISMS=pam: the PAM stack of service " + c.opt.service +
                         " (what Postfix asks for) is translated below");
    if (!o.option.empty())
      c.report.ignored(in.file, line_of("MECH_OPTIONS"), "MECH_OPTIONS: pam takes none");
    translate_pam(c, c.opt.service);
  } else if (mech == "shadow") {
    PamState st;
    PamLine l;
    l.line = line_of("MECHANISMS");
    l.args = {"nodelay"};
    shadow_backend(c, st, l, in.file);
    if (!o.option.empty()) {
      c.backends.back().set("path", toml_quote(o.option));
      c.report.carried(in.file, line_of("MECH_OPTIONS"), "MECH_OPTIONS -> shadow path");
    }
  } else if (mech == "ldap") {
    ldap_backend(c, o.option.empty() ? "/etc/saslauthd.conf" : o.option, in.file,
                 line_of(o.option.empty() ? "MECHANISMS" : "MECH_OPTIONS"));
  } else {
    c.report.unsupported(in.file, line_of("MECHANISMS"),
                         "MECHANISMS=" + (o.mech.empty() ? std::string("(none)") : o.mech) +
                             ": mailauthd has no such backend (pam, shadow and ldap are "
                             "migrated)");
  }

  // The socket.
  Table mux;
  mux.header = "saslauthd";
  std::string socket = in.socket;
  const int options_line = line_of("OPTIONS");
  if (pf.found && pf.sasl_type == "cyrus") {
    if (!pf.pwcheck.empty() && lower(pf.pwcheck).find("saslauthd") == std::string::npos)
      c.report.unsupported(pf.conf_file, pf.pwcheck_line,
                           "pwcheck_method: " + pf.pwcheck +
                               ": Postfix does not ask saslauthd (sasldb/auxprop is not "
                               "migrated)");
    if (same_run(pf.socket) != same_run(in.socket)) {
      c.report.carried(pf.conf_file.empty() ? pf.main_cf : pf.conf_file, 0,
                       "Postfix's smtpd looks for the socket at " + pf.socket +
                           " (saslauthd's is " + in.socket + "): mailauthd listens where "
                           "Postfix looks");
      socket = pf.socket;
    } else {
      c.report.carried(in.file, options_line,
                       "socket " + socket + " (-m), where Postfix's " +
                           (pf.chroot ? "chrooted " : "") + "smtpd looks");
    }
  } else {
    if (pf.found)
      c.report.ignored(pf.main_cf, pf.main.count("smtpd_sasl_type") ? pf.main.at("smtpd_sasl_type").line : 0,
                       "smtpd_sasl_type = " + pf.sasl_type +
                           ": Postfix does not use saslauthd; the socket stays where "
                           "saslauthd had it");
    c.report.carried(in.file, options_line, "socket " + socket + " (-m)");
  }
  mux.set("socket", toml_quote(socket), from(in.file, options_line));
  mux.set("mode", toml_quote("0660"));
  mux.set("owner", toml_quote("root"));
  const std::string group = socket_group(c);
  mux.set("group", toml_quote(group),
          group == "sasl" ? "postfix is in group sasl (Debian's README.Debian)"
                          : "Postfix's smtpd runs as postfix");
  mux.set("join_realm", toml_bool(o.join_realm), o.join_realm ? "-r" : "no -r");
  if (o.join_realm)
    c.report.carried(in.file, options_line, "-r -> join_realm = true (user@realm is looked up)");
  if (c.failure_delay_ms > 0)
    mux.set("failure_delay", toml_quote(duration_text(c.failure_delay_ms)));
  if (o.debug) c.report.ignored(in.file, options_line, "-d: use mailauthd --foreground --debug");
  for (const auto& w : o.not_understood)
    c.report.ignored(in.file, options_line, "option " + w + " is not carried over");

  std::vector<Table> tables;
  long long workers = o.threads;
  if (workers >= 0)
    c.report.carried(in.file, line_of("THREADS") ? line_of("THREADS") : options_line,
                     "-n " + std::to_string(workers) + " -> [daemon] workers");
  if (workers == 0) workers = 4;  // -n 0: a process per connection
  tables.push_back(daemon_table(c, workers));
  tables.push_back(std::move(mux));
  if (o.cache) {
    Table cache;
    cache.header = "cache";
    const long ttl = o.cache_ttl >= 0 ? o.cache_ttl : 28800;
    cache.set("ttl", toml_quote(std::to_string(std::clamp(ttl, 1L, 31'536'000L)) + "s"),
              "-t (saslauthd's default 8 h)");
    // -s KiB: saslauthd's slots are about 100 bytes.
    if (o.cache_kb > 0)
      cache.set("size", toml_int(std::clamp(o.cache_kb, 2L, 1'000'000L) * 10), "-s");
    tables.push_back(std::move(cache));
    c.report.carried(in.file, options_line,
                     "-c -> [cache] (it keys on the stored credential: a changed password "
                     "never keeps working, unlike saslauthd's cache)");
  }
  disable_if_widened(c);
  for (auto& b : c.backends) tables.push_back(std::move(b));
  c.result.source = "saslauthd";
  c.result.config = render(tables, "saslauthd instance '" + in.name + "' (" + in.file + ")");
}

// --- Dovecot -------------------------------------------------------------------------

struct DovecotConf {
  std::vector<DovecotNode> nodes;  // includes expanded
};

bool glob_match(std::string_view pattern, std::string_view name) {
  // '*' and '?' only, as Dovecot's !include uses them.
  std::size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p, ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

void expand(Ctx& c, std::vector<DovecotNode>& nodes, const std::string& file, int depth) {
  std::vector<DovecotNode> out;
  for (auto& n : nodes) {
    if (n.kind == DovecotNode::Kind::Section) {
      expand(c, n.children, file, depth);
      out.push_back(std::move(n));
      continue;
    }
    if (n.kind != DovecotNode::Kind::Include) {
      out.push_back(std::move(n));
      continue;
    }
    std::string pattern = n.key;
    if (pattern.empty() || pattern[0] != '/') pattern = dirname(file) + "/" + pattern;
    const std::string dir = dirname(pattern);
    const std::string base = pattern.substr(dir.size() + (dir == "/" ? 0 : 1));
    std::vector<std::string> paths;
    if (base.find_first_of("*?") == std::string::npos) {
      paths.push_back(pattern);
    } else {
      for (const auto& name : c.list(dir))
        if (glob_match(base, name)) paths.push_back(dir + "/" + name);
    }
    bool any = false;
    for (const auto& p : paths) {
      const auto text = c.read(p);
      if (!text) continue;
      any = true;
      if (depth > 8) {
        c.report.unsupported(p, 0, "included too deeply: not read");
        continue;
      }
      std::vector<Value> problems;
      auto inner = parse_dovecot_conf(*text, p, &problems);
      for (const auto& pr : problems) c.report.unsupported(p, pr.line, pr.value);
      expand(c, inner, p, depth + 1);
      for (auto& i : inner) out.push_back(std::move(i));
    }
    if (!any && !n.include_try)
      c.report.unsupported(n.file, n.line, "!include " + n.key + ": no such file");
  }
  nodes = std::move(out);
}

const DovecotNode* setting(const std::vector<DovecotNode>& nodes, std::string_view key) {
  const DovecotNode* found = nullptr;
  for (const auto& n : nodes)
    if (n.kind == DovecotNode::Kind::Setting && n.key == key) found = &n;
  return found;
}

// A Dovecot SQL query for mailauthd: the password column first.  Returns ""
// (with `why`) when it cannot be expressed.
std::string translate_query(const std::string& q, const std::string& wrap_scheme, std::string* why) {
  std::string t = trim(q);
  while (!t.empty() && (t.back() == ';' || t.back() == ' ' || t.back() == '\t')) t.pop_back();
  // Escapes: mailauthd has %u %n %d %s; Dovecot's %Lu etc. lower-case (the
  // backend's normalize = "lower" does that).
  std::string out;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] != '%') {
      out += t[i];
      continue;
    }
    if (i + 1 >= t.size()) {
      *why = "a lone '%' at the end";
      return "";
    }
    std::size_t j = i + 1;
    if (t[j] == '%') {
      out += "%%";
      i = j;
      continue;
    }
    if (t[j] == 'L') ++j;  // lower-case modifier
    if (j >= t.size()) {
      *why = "a lone '%L' at the end";
      return "";
    }
    const char e = t[j];
    if (e == 'u' || e == 'n' || e == 'd' || e == 's') {
      out += '%';
      out += e;
      i = j;
      continue;
    }
    if (e == '{') {
      const std::size_t close = t.find('}', j);
      const std::string var = t.substr(j + 1, close == std::string::npos ? 0 : close - j - 1);
      static const std::map<std::string, char, std::less<>> kVars = {
          {"user", 'u'}, {"username", 'n'}, {"domain", 'd'}, {"service", 's'},
          {"protocol", 's'}};
      if (auto it = kVars.find(var); it != kVars.end() && close != std::string::npos) {
        out += '%';
        out += it->second;
        i = close;
        continue;
      }
    }
    *why = "the variable %" + std::string(1, e) +
           " (mailauthd's queries take %u, %n, %d and %s; Dovecot's %r is the client address)";
    return "";
  }
  // Column order: Dovecot names the password column; mailauthd takes the first.
  const std::string lo = lower(out);
  const std::size_t sel = lo.find("select ");
  std::size_t fr = std::string::npos;
  int depth = 0;
  bool quoted = false;
  for (std::size_t i = sel == std::string::npos ? 0 : sel + 7; i + 6 <= lo.size(); ++i) {
    const char ch = lo[i];
    if (ch == '\'') quoted = !quoted;
    if (quoted) continue;
    if (ch == '(') ++depth;
    if (ch == ')') --depth;
    if (depth == 0 && std::isspace(static_cast<unsigned char>(ch)) &&
        lo.compare(i + 1, 5, "from ") == 0) {
      fr = i;
      break;
    }
  }
  if (sel != 0 || fr == std::string::npos) {
    *why = "not a SELECT … FROM … query";
    return "";
  }
  std::vector<std::string> cols;
  std::string cur;
  depth = 0;
  quoted = false;
  for (std::size_t i = 7; i < fr; ++i) {
    const char ch = out[i];
    if (ch == '\'') quoted = !quoted;
    if (!quoted && ch == '(') ++depth;
    if (!quoted && ch == ')') --depth;
    if (!quoted && depth == 0 && ch == ',') {
      cols.push_back(trim(cur));
      cur.clear();
      continue;
    }
    cur += ch;
  }
  cols.push_back(trim(cur));
  auto alias = [](const std::string& col) {
    std::string l = lower(col);
    const std::size_t as = l.rfind(" as ");
    std::string name = trim(as == std::string::npos ? l : l.substr(as + 4));
    if (const std::size_t dot = name.rfind('.'); dot != std::string::npos) name.erase(0, dot + 1);
    name.erase(std::remove(name.begin(), name.end(), '`'), name.end());
    return name;
  };
  std::size_t pw = cols.size();
  for (std::size_t i = 0; i < cols.size(); ++i)
    if (alias(cols[i]) == "password") pw = i;
  if (pw == cols.size()) {
    *why = "no column named password";
    return "";
  }
  std::string first = cols[pw];
  if (!wrap_scheme.empty()) {
    std::string expr = first;
    const std::string l = lower(expr);
    if (const std::size_t as = l.rfind(" as "); as != std::string::npos) expr = trim(expr.substr(0, as));
    first = "IF(LEFT(" + expr + ", 1) = '{', " + expr + ", CONCAT('{" + wrap_scheme + "}', " +
            expr + ")) AS password";
  }
  std::string sql = "SELECT " + first;
  for (std::size_t i = 0; i < cols.size(); ++i) {
    if (i == pw) continue;
    const std::string a = alias(cols[i]);
    if (a != "user" && a != "enabled") continue;  // extra fields: nothing for mailauthd
    sql += ", " + cols[i];
  }
  return sql + out.substr(fr);
}

// The columns of a SELECT: what comes before its first FROM.
std::string select_list(const std::string& q) {
  const std::string l = lower(q);
  for (std::size_t at = l.find("from"); at != std::string::npos; at = l.find("from", at + 1)) {
    const bool before = at == 0 || std::isspace(static_cast<unsigned char>(l[at - 1]));
    const bool after = at + 4 >= l.size() || std::isspace(static_cast<unsigned char>(l[at + 4]));
    if (before && after) return q.substr(0, at);
  }
  return q;
}

// Dovecot passdb extra fields that make it refuse a login mailauthd would
// accept (from a query's columns, a passwd-file's extra fields or
// override_fields/default_fields): the first one named in `text`, or "".
std::string restricting_field(const std::string& text) {
  static const char* const kFields[] = {"allow_nets", "allow_real_nets", "nologin",
                                        "noauthenticate", "allow_ips"};
  const std::string l = lower(text);
  auto word = [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
  };
  for (const char* f : kFields) {
    const std::string k = f;
    for (std::size_t at = l.find(k); at != std::string::npos; at = l.find(k, at + 1)) {
      const bool before = at == 0 || !word(l[at - 1]);
      const bool after = at + k.size() >= l.size() || !word(l[at + k.size()]);
      if (before && after) return k;
    }
  }
  return "";
}

bool crypt_family(const std::string& scheme) {
  static const std::set<std::string, std::less<>> k = {"CRYPT", "MD5-CRYPT", "SHA256-CRYPT",
                                                       "SHA512-CRYPT", "BLF-CRYPT", "DES-CRYPT"};
  return k.count(scheme) > 0;
}

void dovecot_sql_passdb(Ctx& c, const DovecotNode& passdb, const std::string& args,
                        bool restricted) {
  const std::string path = trim(args);
  const auto text = c.read(path);
  if (!text) {
    c.report.unsupported(passdb.file, passdb.line, "sql passdb: cannot read " + path);
    return;
  }
  std::vector<Value> problems;
  const auto nodes = parse_dovecot_conf(*text, path, &problems);
  for (const auto& p : problems) c.report.unsupported(path, p.line, p.value);
  Table b;
  b.header = "[backend]";
  b.comments.push_back("Dovecot passdb sql " + from(passdb.file, passdb.line) + ", " + path);
  b.set("type", toml_quote("mysql"));
  b.set("name", toml_quote(c.backends.empty() ? "mysql" : "mysql" + std::to_string(c.backends.size() + 1)));
  bool ok = true;
  const DovecotNode* driver = setting(nodes, "driver");
  if (!driver || lower(driver->value) != "mysql") {
    c.report.unsupported(path, driver ? driver->line : 0,
                         "driver = " + (driver ? driver->value : std::string("(none)")) +
                             ": mailauthd speaks MySQL/MariaDB only");
    ok = false;
  }
  const DovecotNode* connect = setting(nodes, "connect");
  if (!connect) {
    c.report.unsupported(path, 0, "no connect = … line");
    return;
  }
  auto cs = parse_connect_string(connect->value);
  auto take = [&](const char* k) {
    auto it = cs.find(k);
    if (it == cs.end()) return std::string();
    std::string v = it->second;
    cs.erase(it);
    return v;
  };
  const std::string host = take("host"), port = take("port"), dbname = take("dbname"),
                    user = take("user"), password = take("password");
  set_mysql_host(c, b, host, port, path, connect->line);
  if (dbname.empty() || user.empty()) {
    c.report.unsupported(path, connect->line, "connect = … without dbname= and user=");
    ok = false;
  }
  b.set("user", toml_quote(user));
  b.set("database", toml_quote(dbname));
  c.add_secret(b, password, path, connect->line);
  for (const auto& [k, v] : cs)
    c.report.unsupported(path, connect->line, "connect " + k + "=… is not carried over");
  std::string scheme = "MD5";  // Dovecot's default default_pass_scheme
  if (const auto* d = setting(nodes, "default_pass_scheme")) scheme = d->value;
  std::string upper = scheme;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::string wrap;
  if (crypt_family(upper)) {
    b.set("default_scheme", toml_quote("CRYPT"), "default_pass_scheme = " + scheme);
    c.report.carried(path, 0, "default_pass_scheme = " + scheme +
                                  " -> unprefixed values are read as crypt strings");
  } else if (upper == "PLAIN" || upper == "CLEAR") {
    b.set("default_scheme", toml_quote("PLAIN"), "default_pass_scheme = " + scheme);
    c.report.carried(path, 0, "default_pass_scheme = " + scheme + " -> default_scheme = \"PLAIN\"");
  } else {
    wrap = upper;
    c.report.carried(path, 0,
                     "default_pass_scheme = " + scheme + " -> unprefixed values get {" + upper +
                         "} in the query");
  }
  const DovecotNode* q = setting(nodes, "password_query");
  if (!q) {
    c.report.unsupported(path, 0, "no password_query (Dovecot's default query is not migrated)");
    ok = false;
  } else {
    std::string why;
    const std::string sql = translate_query(q->value, wrap, &why);
    if (sql.empty()) {
      c.report.unsupported(path, q->line, "password_query cannot be expressed: " + why);
      ok = false;
    } else if (const std::string r = restricting_field(select_list(q->value)); !r.empty()) {
      c.report.unsupported(path, q->line,
                           "password_query returns " + r +
                               ", which restricts logins; mailauthd has no such field: "
                               "backend written commented out");
      ok = false;
    } else {
      b.set("query", toml_quote(sql));
      c.report.carried(path, q->line,
                       "password_query -> query (password column first; Dovecot's extra "
                       "fields dropped)");
      const std::string lq = squeeze(q->value);
      if (lq.find("active=1") != std::string::npos || lq.find("enabled=1") != std::string::npos)
        c.report.ignored(path, q->line,
                         "a disabled user is filtered in the WHERE clause: mailauthd treats it "
                         "as unknown and asks the next backend; a column named enabled would "
                         "make it known and refused");
    }
  }
  for (const auto& n : nodes) {
    if (n.kind != DovecotNode::Kind::Setting) continue;
    if (n.key == "driver" || n.key == "connect" || n.key == "default_pass_scheme" ||
        n.key == "password_query")
      continue;
    if (n.key == "user_query" || n.key == "iterate_query")
      c.report.ignored(path, n.line, n.key + ": userdb lookups are Dovecot's, not Postfix's");
    else
      c.report.unsupported(path, n.line, n.key + " is not carried over");
  }
  b.commented_out = !ok || restricted;
  c.backends.push_back(std::move(b));
}

void dovecot_passdb(Ctx& c, const DovecotNode& passdb) {
  std::string driver, args;
  bool restricted = false;  // override_fields/default_fields that refuse some logins
  int driver_line = passdb.line;
  for (const auto& n : passdb.children) {
    if (n.kind != DovecotNode::Kind::Setting) continue;
    if (n.key == "driver") {
      driver = lower(n.value);
      driver_line = n.line;
    } else if (n.key == "args") {
      args = n.value;
    } else if (n.key == "deny" || n.key == "master" || n.key == "pass") {
      const std::string v = lower(n.value);
      if (v == "yes" || v == "true") {
        c.report.unsupported(n.file, n.line, n.key + " = yes: this passdb is not migrated");
        // Without its deny list the users it refused reach the other passdbs.
        if (n.key == "deny") c.widens = true;
        return;
      }
    } else if (n.key == "result_success" || n.key == "result_failure" ||
               n.key == "result_internalfail" || n.key == "skip" ||
               n.key == "username_filter") {
      c.report.unsupported(n.file, n.line,
                           n.key + ": mailauthd's chain rule is fixed (the first backend that "
                                   "knows the user decides)");
      c.widens = true;
    } else if (n.key == "override_fields" || n.key == "default_fields") {
      const std::string r = restricting_field(n.value);
      c.report.unsupported(n.file, n.line,
                           "passdb " + n.key + " is not carried over" +
                               (r.empty() ? "" : " (" + r + " restricts logins: backend "
                                                 "written commented out)"));
      if (!r.empty()) restricted = true;
    } else if (n.key == "name") {
      c.report.ignored(n.file, n.line, "passdb name: a label");
    } else {
      c.report.unsupported(n.file, n.line, "passdb " + n.key + " is not carried over");
      c.widens = true;
    }
  }
  const std::string& f = passdb.file;
  if (driver == "passwd-file") {
    std::string path;
    std::string scheme = "CRYPT";
    for (const auto& w : shell_words(args)) {
      if (w.rfind("scheme=", 0) == 0) {
        scheme = w.substr(7);
      } else if (w.rfind("username_format=", 0) == 0) {
        const std::string fmt = w.substr(16);
        if (fmt == "%u" || fmt == "%Lu" || fmt == "%{user}")
          c.report.carried(f, driver_line, "username_format=" + fmt + ": the name as given");
        else
          c.report.unsupported(f, driver_line,
                               "username_format=" + fmt +
                                   ": mailauthd looks the name up as given (%u)");
      } else if (w.find('=') != std::string::npos) {
        c.report.unsupported(f, driver_line,
                             "passwd-file argument " + w.substr(0, w.find('=')) +
                                 " is not carried over");
      } else {
        path = w;
      }
    }
    if (path.empty() || path.find('%') != std::string::npos) {
      c.report.unsupported(f, driver_line,
                           path.empty() ? "passwd-file without a path"
                                        : "passwd-file path " + path +
                                              " depends on the user: one file per domain is "
                                              "not migrated");
      return;
    }
    std::string upper = scheme;
    for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    Table b;
    b.header = "[backend]";
    b.comments.push_back("Dovecot passdb passwd-file " + from(f, passdb.line));
    b.set("type", toml_quote("pwdfile"));
    b.set("name", toml_quote(c.backends.empty() ? "pwdfile" : "pwdfile" + std::to_string(c.backends.size() + 1)));
    b.set("path", toml_quote(path));
    if (upper == "PLAIN" || upper == "CLEAR") {
      b.set("default_scheme", toml_quote("PLAIN"), "scheme=" + scheme);
    } else if (!crypt_family(upper)) {
      c.report.unsupported(f, driver_line,
                           "scheme=" + scheme + ": unprefixed values of this scheme cannot be "
                           "read from a pwdfile (give them their {" + upper + "} prefix)");
    }
    if (const auto users = c.read(path); !users) {
      c.report.unsupported(f, driver_line,
                           "passwd-file " + path + " cannot be read: its extra fields "
                           "(allow_nets, nologin) cannot be checked; backend written "
                           "commented out");
      restricted = true;
    } else {
      int n = 0;
      std::istringstream in(*users);
      for (std::string line; std::getline(in, line);) {
        ++n;
        // user:password:uid:gid:gecos:home:shell:extra fields
        std::size_t at = 0;
        for (int colons = 0; colons < 7 && at != std::string::npos; ++colons)
          at = line.find(':', at == 0 && colons == 0 ? 0 : at + 1);
        if (at == std::string::npos) continue;
        if (const std::string r = restricting_field(line.substr(at + 1)); !r.empty()) {
          c.report.unsupported(path, n,
                               "extra field " + r + " restricts this user's logins; "
                               "mailauthd has no such field: backend written commented out");
          restricted = true;
          break;
        }
      }
    }
    b.commented_out = restricted;
    c.report.carried(f, driver_line,
                     "passdb passwd-file " + path + " (scheme=" + scheme +
                         ") -> pwdfile backend (mailauthd reads it as user mailauth: make it "
                         "readable by group mailauth)");
    c.backends.push_back(std::move(b));
  } else if (driver == "sql") {
    dovecot_sql_passdb(c, passdb, args, restricted);
  } else if (driver == "pam") {
    std::string service = "dovecot";
    for (const auto& w : shell_words(args)) {
      if (w.find('=') != std::string::npos || w[0] == '*')
        c.report.ignored(f, driver_line,
                         "pam argument " + w.substr(0, w.find('=')) + " is not carried over");
      else
        service = w;
    }
    Table b;
    b.header = "[backend]";
    b.comments.push_back("Dovecot passdb pam " + from(f, passdb.line));
    b.commented_out = restricted;
    b.set("type", toml_quote("pam"));
    if (service != "%s" && service != "%{service}" && service != "%{protocol}")
      b.set("service", toml_quote(service));
    c.backends.push_back(std::move(b));
    c.needs_root = true;
    c.report.carried(f, driver_line,
                     "passdb pam -> pam backend (PAM service " + service +
                         "); mailauthd runs as root for it");
  } else if (driver == "shadow") {
    Table b;
    b.header = "[backend]";
    b.comments.push_back("Dovecot passdb shadow " + from(f, passdb.line));
    b.commented_out = restricted;
    b.set("type", toml_quote("shadow"));
    c.backends.push_back(std::move(b));
    c.needs_shadow = true;
    c.report.carried(f, driver_line, "passdb shadow -> shadow backend");
  } else {
    c.report.unsupported(f, driver_line,
                         "passdb driver " + (driver.empty() ? std::string("(none)") : driver) +
                             ": mailauthd has no such backend");
  }
}

void migrate_dovecot(Ctx& c) {
  std::vector<DovecotNode> nodes;
  std::string main_file;
  if (c.opt.doveconf) {
    main_file = c.opt.doveconf_name;
    std::vector<Value> problems;
    nodes = parse_dovecot_conf(*c.opt.doveconf, main_file, &problems);
    for (const auto& p : problems) c.report.unsupported(main_file, p.line, p.value);
  } else {
    main_file = "/etc/dovecot/dovecot.conf";
    const auto text = c.read(main_file);
    if (!text) {
      c.result.error = "no /etc/dovecot/dovecot.conf found (or give --doveconf FILE)";
      return;
    }
    std::vector<Value> problems;
    nodes = parse_dovecot_conf(*text, main_file, &problems);
    for (const auto& p : problems) c.report.unsupported(main_file, p.line, p.value);
  }
  expand(c, nodes, main_file, 0);

  Table dov;
  dov.header = "dovecot";
  Table cache;
  cache.header = "cache";
  bool have_cache = false;
  long long cache_bytes = 0;
  std::string base_dir = "/var/run/dovecot";
  std::string listener;
  std::string listener_mode = "0660", listener_user, listener_group;
  int listener_line = 0;
  std::string listener_file;
  int other_settings = 0;
  bool passdbs = false;

  std::map<std::string, std::string> main_cf;
  std::string postfix_socket;
  if (const auto mc = c.read("/etc/postfix/main.cf")) {
    const auto m = parse_postfix_main_cf(*mc);
    const std::string type = m.count("smtpd_sasl_type") ? lower(m.at("smtpd_sasl_type").value) : "cyrus";
    const std::string queue = m.count("queue_directory") ? m.at("queue_directory").value : "/var/spool/postfix";
    if (type == "dovecot" && m.count("smtpd_sasl_path")) {
      const std::string p = m.at("smtpd_sasl_path").value;
      postfix_socket = p.empty() || p[0] == '/' ? p : queue + "/" + p;
    }
  }

  for (const auto& n : nodes) {
    if (n.kind == DovecotNode::Kind::Section) {
      if (n.key == "passdb") {
        passdbs = true;
        dovecot_passdb(c, n);
      } else if (n.key == "userdb") {
        c.report.ignored(n.file, n.line, "userdb: Postfix's SMTP AUTH needs no userdb");
      } else if (n.key == "service" && n.value == "auth") {
        for (const auto& s : n.children) {
          if (s.kind != DovecotNode::Kind::Section || s.key != "unix_listener") continue;
          std::string path = s.value;
          if (!path.empty() && path[0] != '/') path = base_dir + "/" + path;
          const bool postfix = (!postfix_socket.empty() && path == postfix_socket) ||
                               (postfix_socket.empty() && path.rfind("/var/spool/postfix/", 0) == 0);
          if (!postfix) {
            c.report.ignored(s.file, s.line,
                             "unix_listener " + s.value + ": not the socket Postfix uses");
            continue;
          }
          listener = path;
          listener_line = s.line;
          listener_file = s.file;
          for (const auto& k : s.children) {
            if (k.kind != DovecotNode::Kind::Setting) continue;
            if (k.key == "mode") listener_mode = k.value;
            else if (k.key == "user") listener_user = k.value;
            else if (k.key == "group") listener_group = k.value;
            else c.report.ignored(k.file, k.line, "unix_listener " + k.key + " is not carried over");
          }
        }
        for (const auto& s : n.children)
          if (s.kind == DovecotNode::Kind::Setting)
            c.report.ignored(s.file, s.line, "service auth " + s.key + ": Dovecot process tuning");
      } else {
        ++other_settings;
      }
      continue;
    }
    if (n.kind != DovecotNode::Kind::Setting) continue;
    const std::string& k = n.key;
    if (k == "base_dir") {
      base_dir = n.value;
    } else if (k == "auth_mechanisms") {
      std::vector<std::string> mechs;
      for (const auto& m : shell_words(n.value)) {
        std::string up = m;
        for (char& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        if (up == "PLAIN" || up == "LOGIN" || up == "CRAM-MD5" || up == "SCRAM-SHA-1" ||
            up == "SCRAM-SHA-256") {
          if (std::find(mechs.begin(), mechs.end(), up) == mechs.end()) mechs.push_back(up);
        } else {
          c.report.unsupported(n.file, n.line, "auth mechanism " + m + " is not offered by mailauthd");
        }
      }
      if (mechs.empty()) mechs = {"PLAIN"};
      dov.set("mechanisms", toml_list(mechs), from(n.file, n.line));
      c.report.carried(n.file, n.line, "auth_mechanisms -> [dovecot] mechanisms");
    } else if (k == "auth_failure_delay") {
      const long long ms = dovecot_duration_ms(n.value);
      if (ms < 0 || ms > 8000) {
        c.report.unsupported(n.file, n.line, "auth_failure_delay = " + n.value +
                                                 ": mailauthd takes 0 to 8 s (Postfix waits 10 s)");
      } else {
        dov.set("failure_delay", toml_quote(duration_text(ms)), from(n.file, n.line));
        c.report.carried(n.file, n.line, "auth_failure_delay -> [dovecot] failure_delay");
      }
    } else if (k == "auth_cache_size") {
      cache_bytes = dovecot_size(n.value);
      if (cache_bytes < 0)
        c.report.unsupported(n.file, n.line, "auth_cache_size = " + n.value + ": not a size");
      have_cache = cache_bytes > 0;
      if (have_cache) {
        cache.set("size", toml_int(std::clamp(cache_bytes / 256, 16LL, 10'000'000LL)),
                  "auth_cache_size = " + n.value + " (about 256 bytes an entry)");
        c.report.carried(n.file, n.line, "auth_cache_size -> [cache] size (entries, not bytes)");
      }
    } else if (k == "auth_cache_ttl" || k == "auth_cache_negative_ttl") {
      const long long ms = dovecot_duration_ms(n.value);
      if (ms < 0) {
        c.report.unsupported(n.file, n.line, k + " = " + n.value + ": not a duration");
        continue;
      }
      cache.set(k == "auth_cache_ttl" ? "ttl" : "negative_ttl",
                toml_quote(duration_text(std::max(ms, 1000LL))), from(n.file, n.line));
      c.report.carried(n.file, n.line,
                       k + " -> [cache] " + (k == "auth_cache_ttl" ? "ttl" : "negative_ttl") +
                           " (the cache keys on the stored credential: a changed password never "
                           "keeps working)");
    } else if (k == "auth_username_format") {
      if (n.value == "%Lu" || n.value == "%{user | lower}")
        c.report.carried(n.file, n.line,
                         "auth_username_format = %Lu: the mysql backend lower-cases names "
                         "(normalize = \"lower\"); a pwdfile compares them as written, so keep "
                         "its names in lower case");
      else if (n.value == "%u" || n.value == "%{user}")
        c.report.carried(n.file, n.line, "auth_username_format = %u: names as given");
      else
        c.report.unsupported(n.file, n.line, "auth_username_format = " + n.value +
                                                 ": mailauthd looks names up as given");
    } else if (k.rfind("auth_", 0) == 0) {
      static const std::set<std::string, std::less<>> kHarmless = {
          "auth_verbose", "auth_debug", "auth_verbose_passwords", "auth_debug_passwords",
          "auth_worker_max_count", "auth_default_realm", "auth_realms", "auth_ssl_require_client_cert",
          "auth_master_user_separator", "auth_anonymous_username"};
      if (kHarmless.count(k) && k != "auth_default_realm")
        c.report.ignored(n.file, n.line, k + ": no counterpart needed");
      else
        c.report.unsupported(n.file, n.line, k + " is not carried over");  // the value may be a secret
    } else if (k == "disable_plaintext_auth") {
      c.report.ignored(n.file, n.line,
                       "disable_plaintext_auth: Postfix decides when AUTH is offered "
                       "(smtpd_tls_auth_only)");
    } else {
      ++other_settings;
    }
  }
  if (other_settings > 0)
    c.report.ignored(main_file, 0,
                     std::to_string(other_settings) +
                         " settings of Dovecot's mail service are not about authentication "
                         "and stay with Dovecot");
  if (!passdbs) c.report.unsupported(main_file, 0, "no passdb: no backend could be written");
  if (listener.empty()) {
    listener = postfix_socket.empty() ? "/var/spool/postfix/private/auth" : postfix_socket;
    c.report.carried(main_file, 0,
                     "no unix_listener for Postfix in service auth: socket " + listener +
                         " (Postfix: smtpd_sasl_path = private/auth)");
    listener_user = listener_group = "postfix";
  } else {
    c.report.carried(listener_file, listener_line,
                     "unix_listener " + listener + " -> [dovecot] socket (mode " + listener_mode +
                         (listener_user.empty() ? "" : ", user " + listener_user) +
                         (listener_group.empty() ? "" : ", group " + listener_group) + ")");
  }
  dov.kv.insert(dov.kv.begin(), Kv{"socket", toml_quote(listener),
                                   listener_file.empty() ? "" : from(listener_file, listener_line)});
  if (listener_mode.size() == 3) listener_mode = "0" + listener_mode;
  const bool mode_ok = listener_mode.size() == 4 &&
                       std::all_of(listener_mode.begin(), listener_mode.end(),
                                   [](char ch) { return ch >= '0' && ch <= '7'; });
  if (!mode_ok) {
    c.report.unsupported(listener_file, listener_line, "mode " + listener_mode + ": not an octal mode");
    listener_mode = "0660";
  }
  dov.kv.insert(dov.kv.begin() + 1, Kv{"mode", toml_quote(listener_mode), ""});
  if (!listener_user.empty()) dov.kv.insert(dov.kv.begin() + 2, Kv{"owner", toml_quote(listener_user), ""});
  if (!listener_group.empty()) dov.set("group", toml_quote(listener_group));
  dov.set("temp_failure", toml_quote("disconnect"),
          "Postfix turns FAIL into 535; a closed connection is 454");

  std::vector<Table> tables;
  tables.push_back(daemon_table(c, -1));
  tables.push_back(std::move(dov));
  if (have_cache) tables.push_back(std::move(cache));
  disable_if_widened(c);
  for (auto& b : c.backends) tables.push_back(std::move(b));
  c.result.source = "dovecot";
  c.result.config = render(tables, "Dovecot (" + main_file + ")");
}

}  // namespace

std::string toml_quote(std::string_view s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char ch = static_cast<unsigned char>(s[i]);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20 || ch == 0x7f) {
      static const char* hex = "0123456789ABCDEF";
      out += "\\u00";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    } else if (ch < 0x80) {
      out += static_cast<char>(ch);
    } else {
      // Valid UTF-8 passes; any other byte becomes U+FFFD.
      std::size_t len = ch >= 0xF0 && ch <= 0xF4 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC2 && ch < 0xE0 ? 2 : 0;
      if (ch >= 0xF5) len = 0;
      bool ok = len > 0 && i + len <= s.size();
      for (std::size_t k = 1; ok && k < len; ++k)
        ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
      if (ok && len == 3) {
        const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
        if ((ch == 0xE0 && c1 < 0xA0) || (ch == 0xED && c1 >= 0xA0)) ok = false;
      }
      if (ok && len == 4) {
        const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
        if ((ch == 0xF0 && c1 < 0x90) || (ch == 0xF4 && c1 >= 0x90)) ok = false;
      }
      if (ok) {
        out.append(s.substr(i, len));
        i += len - 1;
      } else {
        out += "\\uFFFD";
      }
    }
  }
  return out + "\"";
}

Result migrate(const Sources& sources, const Options& options) {
  Result result;
  Ctx c{sources, options, result, result.report, {}, false, false, -1};
  std::string from_what = options.from;
  if (from_what == "auto") {
    bool sasl = false;
    if (sources.list)
      for (const auto& n : sources.list("/etc/default"))
        if (n == "saslauthd" || n.rfind("saslauthd-", 0) == 0) sasl = true;
    bool dove = options.doveconf.has_value() ||
                      (sources.read && sources.read("/etc/dovecot/dovecot.conf").has_value());
    // Postfix decides which one is in use when both are there.
    if (sasl && dove && sources.read) {
      if (const auto mc = sources.read("/etc/postfix/main.cf")) {
        const auto m = parse_postfix_main_cf(*mc);
        if (m.count("smtpd_sasl_type") && lower(m.at("smtpd_sasl_type").value) == "dovecot")
          sasl = false;
        else
          dove = false;
      }
    }
    if (sasl && dove) {
      result.error = "both saslauthd and Dovecot are configured: choose with --from";
      return result;
    }
    from_what = sasl ? "saslauthd" : dove ? "dovecot" : "";
    if (from_what.empty()) {
      result.error = "found neither /etc/default/saslauthd nor /etc/dovecot/dovecot.conf";
      return result;
    }
  }
  if (from_what == "saslauthd")
    migrate_saslauthd(c);
  else if (from_what == "dovecot")
    migrate_dovecot(c);
  else
    result.error = "--from must be saslauthd, dovecot or auto";
  return result;
}

}  // namespace mailauth::migrate
