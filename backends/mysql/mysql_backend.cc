#include "backends/mysql/mysql_backend.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>

#include "backends/common/password_file.h"
#include "mysql_schemas.h"
#include "src/util/log.h"

namespace mailauth::backend {

using mysql::Clock;
using mysql::Template;
using mysql::Values;

namespace {

// A lookup that failed on a broken connection is retried once on a fresh one,
// but only if the failure came quickly ("gone away" after idling, a killed
// connection).  A failure that took this long was a timeout: retrying it would
// take the answer past Postfix's 10 s.
constexpr auto kRetryWindow = std::chrono::seconds(1);

// The escapes each statement may use (query_template.h).
constexpr const char* kAllowed[MysqlBackend::kOpCount] = {"undrs", "undhNe", "undh", "und",
                                                          "unde",  "d",      "undho"};

// --- presets ---------------------------------------------------------------------

struct Preset {
  const char* name;
  // One entry per Op; statements of one op are separated by "\n;\n".
  const char* statements[MysqlBackend::kOpCount];
};

// The flurdy-style guides' users table (schema-users.sql).
constexpr Preset kUsersPreset = {
    "users",
    {
        "SELECT crypt, enabled, id AS user FROM users WHERE id = '%u'",
        "INSERT INTO users (id, name, crypt, enabled, maildir) VALUES ('%u', '%N', '%h', %e, "
        "CONCAT(IF('%d' = '', '', CONCAT('%d', '/')), '%n', '/'))",
        // The guides' plaintext copy would keep the old password working.
        "UPDATE users SET crypt = '%h', clear = '' WHERE id = '%u'",
        "DELETE FROM users WHERE id = '%u'",
        "UPDATE users SET enabled = %e WHERE id = '%u'",
        "SELECT id, name, enabled FROM users WHERE '%d' = '' OR SUBSTRING_INDEX(id, '@', -1) = "
        "'%d' ORDER BY id",
        // Rehash: the password is the same, so clear stays as it is.  The
        // comparison is binary: the column's _ci collation would take
        // {PLAIN}Secret for {PLAIN}secret, and ignores trailing spaces.
        "UPDATE users SET crypt = '%h' WHERE id = '%u' AND crypt = CAST('%o' AS BINARY)",
    }};

// PostfixAdmin 3.x (schema-postfixadmin.sql).  Like PostfixAdmin itself, a
// new mailbox gets its address → address alias, and loses it when deleted
// (an alias that forwards elsewhere is left alone).
constexpr Preset kPostfixadminPreset = {
    "postfixadmin",
    {
        "SELECT password, active AS enabled, username AS user FROM mailbox WHERE username = '%u'",
        "INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, "
        "created, modified, active) VALUES ('%u', '%h', '%N', '%d/%n/', 0, '%n', '%d', NOW(), "
        "NOW(), %e)"
        "\n;\n"
        "INSERT INTO alias (address, goto, domain, created, modified, active) VALUES ('%u', '%u', "
        "'%d', NOW(), NOW(), %e) ON DUPLICATE KEY UPDATE modified = modified",
        "UPDATE mailbox SET password = '%h', modified = NOW() WHERE username = '%u'",
        "DELETE FROM mailbox WHERE username = '%u'"
        "\n;\n"
        "DELETE FROM alias WHERE address = '%u' AND goto = '%u'",
        "UPDATE mailbox SET active = %e, modified = NOW() WHERE username = '%u'"
        "\n;\n"
        "UPDATE alias SET active = %e, modified = NOW() WHERE address = '%u' AND goto = '%u'",
        "SELECT username, name, active FROM mailbox WHERE '%d' = '' OR domain = '%d' ORDER BY "
        "username",
        "UPDATE mailbox SET password = '%h', modified = NOW() WHERE username = '%u' AND "
        "password = CAST('%o' AS BINARY)",
    }};

std::vector<std::string> split_statements(std::string_view text) {
  std::vector<std::string> out;
  while (true) {
    const auto sep = text.find("\n;\n");
    out.emplace_back(text.substr(0, sep));
    if (sep == std::string_view::npos) return out;
    text.remove_prefix(sep + 3);
  }
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

mysql::Endpoint parse_host(const config::Section& s, const std::string& text) {
  mysql::Endpoint ep;
  std::string port;
  const std::string where = "\"" + text + "\": ";
  if (text.empty()) s.fail("hosts", "an entry is empty");
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos) s.fail("hosts", where + "missing ']'");
    ep.host = text.substr(1, close - 1);
    const std::string rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':')
      s.fail("hosts", where + "expected \":PORT\" after ']'");
    if (!rest.empty()) port = rest.substr(1);
    if (!rest.empty() && port.empty()) s.fail("hosts", where + "the port is empty");
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    const auto colon = text.find(':');
    ep.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (port.empty()) s.fail("hosts", where + "the port is empty");
  } else {
    ep.host = text;  // a name, an IPv4 address or a bare IPv6 address
  }
  if (ep.host.empty()) s.fail("hosts", where + "the host name is empty");
  if (ep.host.find_first_of(" \t/") != std::string::npos)
    s.fail("hosts", where + "not a host name (for a UNIX socket, use socket = \"PATH\")");
  if (!port.empty()) {
    long long p = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || p > 65535) s.fail("hosts", where + "the port must be 1 to 65535");
      p = p * 10 + (c - '0');
    }
    if (p < 1 || p > 65535) s.fail("hosts", where + "the port must be 1 to 65535");
    ep.port = static_cast<unsigned>(p);
  }
  return ep;
}

unsigned whole_seconds(const config::Section& s, const char* key, std::chrono::seconds def) {
  const auto ms = s.get_duration(key, def);
  if (ms.count() % 1000 != 0 || ms < std::chrono::seconds(1) || ms > std::chrono::seconds(9))
    s.fail(key,
           "must be whole seconds from 1s to 9s (the MariaDB client counts in seconds, and "
           "Postfix gives up on an answer after 10s)");
  return static_cast<unsigned>(ms.count() / 1000);
}

// An `enabled` column's value: fail closed.
bool flag_enabled(const mysql::Cell& cell) {
  if (!cell) return false;
  if (cell->view() == std::string_view("\x01", 1)) return true;  // a BIT(1) column
  std::string v = trim(cell->view());
  for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v == "y" || v == "yes" || v == "true" || v == "t" || v == "on") return true;
  if (v.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(v.c_str(), &end);
  return errno == 0 && end && *end == '\0' && d != 0.0;
}

// The result column called `name` (any case), after the first; -1 if none.
int named_column(const std::vector<std::string>& columns, std::string_view name) {
  for (std::size_t k = 1; k < columns.size(); ++k) {
    std::string c = columns[k];
    for (char& ch : c) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (c == name) return static_cast<int>(k);
  }
  return -1;
}

// normalize = "lower": what MariaDB's PAD SPACE _ci collations (both presets'
// utf8mb4_general_ci, and the server's defaults) are sure to ignore: trailing
// spaces (not tabs, not leading spaces) and the case of A-Z.  Other letters
// are left alone: a collation's folding of them (é = e = E, ß = s) is not one
// rule; the `user` column catches the rows they match (see lookup()).
std::string fold_lower(std::string_view user) {
  while (!user.empty() && user.back() == ' ') user.remove_suffix(1);
  std::string out(user);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Server errors that mean "these values are not acceptable", as opposed to
// the database being unusable.
bool refused_values(unsigned code) {
  switch (code) {
    case 1048:  // ER_BAD_NULL_ERROR
    case 1264:  // ER_WARN_DATA_OUT_OF_RANGE
    case 1364:  // ER_NO_DEFAULT_FOR_FIELD
    case 1366:  // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    case 1406:  // ER_DATA_TOO_LONG
      return true;
    default: return false;
  }
}

constexpr unsigned kDuplicateEntry = 1062;  // ER_DUP_ENTRY

// Connection errors that say the server could not be reached, or could not
// take a session now -- what a database that is down or starting looks
// like -- as opposed to a server refusing our settings (access denied,
// unknown database, TLS), which is a configuration error.
bool is_unreachable(unsigned code) {
  switch (code) {
    case 2002:  // CR_CONNECTION_ERROR: connect() to the socket or port failed
    case 2003:  // CR_CONN_HOST_ERROR
    case 2005:  // CR_UNKNOWN_HOST: the name does not resolve (yet: DNS at boot)
    case 2006:  // CR_SERVER_GONE_ERROR
    case 2013:  // CR_SERVER_LOST: e.g. connect_timeout during the handshake
    case 1040:  // ER_CON_COUNT_ERROR: too many connections
    case 1053:  // ER_SERVER_SHUTDOWN
    case 1203:  // ER_TOO_MANY_USER_CONNECTIONS
      return true;
    default: return false;
  }
}

bool is_access_denied(unsigned code) {
  return code == 1044      // ER_DBACCESS_DENIED_ERROR
         || code == 1142   // ER_TABLEACCESS_DENIED_ERROR
         || code == 1143;  // ER_COLUMNACCESS_DENIED_ERROR
}

// The schema files, embedded at build time (CMake reads
// backends/mysql/schema-*.sql into mysql_schemas.h).

}  // namespace

const char* MysqlBackend::key_of(Op op) {
  static constexpr const char* kKeys[kOpCount] = {
      "query",        "insert_query", "password_query", "delete_query",
      "enable_query", "list_query",   "rehash_query"};
  return kKeys[op];
}

std::string_view MysqlBackend::schema_sql(std::string_view preset) {
  if (preset == "users") return kSchemaUsers;
  if (preset == "postfixadmin") return kSchemaPostfixadmin;
  return {};
}

std::unique_ptr<Backend> MysqlBackend::create(const config::BackendSpec& spec) {
  const auto& s = spec.section;
  Settings st;

  // Where the server is.
  const std::vector<std::string> hosts = s.get_string_list("hosts", {});
  const std::string socket = s.get_string("socket", "");  // "" as in interface.md's example: unset
  if (!hosts.empty() && !socket.empty()) s.fail("socket", "set either hosts or socket, not both");
  if (hosts.empty() && socket.empty())
    s.fail("hosts",
           "is required (a list of \"host:port\"), or socket = \"/run/mysqld/mysqld.sock\"");
  for (const auto& h : hosts) st.connect.endpoints.push_back(parse_host(s, h));
  if (!socket.empty()) {
    if (socket.front() != '/') s.fail("socket", "must be an absolute path");
    mysql::Endpoint ep;
    ep.socket = socket;
    st.connect.endpoints.push_back(ep);
  }

  // Who we are.
  st.connect.user = s.require_string("user");
  st.connect.database = s.require_string("database");
  const auto password = s.opt_string("password");
  const auto password_file = s.opt_string("password_file");
  if (password && password_file)
    s.fail("password_file", "set either password or password_file, not both");
  if (password) st.connect.password = Secret(*password);
  if (password_file)
    st.connect.password =
        read_password_file(s, *password_file, "mysql " + spec.name,
                           " (omit password_file for a user without a password)");

  // How long we wait.
  st.connect.connect_timeout_s = whole_seconds(s, "connect_timeout", std::chrono::seconds(3));
  st.connect.read_timeout_s = whole_seconds(s, "read_timeout", std::chrono::seconds(5));
  st.connect.write_timeout_s = whole_seconds(s, "write_timeout", std::chrono::seconds(5));
  st.pool_size = static_cast<std::size_t>(s.get_int("pool_size", 4, 1, 64));

  // TLS.
  st.connect.tls = s.get_bool("tls", false);
  st.connect.tls_ca = s.get_string("tls_ca", "");
  st.connect.tls_cert = s.get_string("tls_cert", "");
  st.connect.tls_key = s.get_string("tls_key", "");
  for (const char* key : {"tls_ca", "tls_cert", "tls_key"})
    if (!st.connect.tls && !s.get_string(key, "").empty()) s.fail(key, "needs tls = true");
  if (st.connect.tls_cert.empty() != st.connect.tls_key.empty())
    s.fail(st.connect.tls_cert.empty() ? "tls_key" : "tls_cert",
           "tls_cert and tls_key go together (the client certificate and its key)");

  std::string scheme = s.get_string("default_scheme", "CRYPT");
  for (char& c : scheme) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (scheme != "CRYPT" && scheme != "PLAIN")
    s.fail("default_scheme", "must be \"CRYPT\" or \"PLAIN\"");
  st.default_scheme = scheme;

  const std::string normalize = s.get_string("normalize", "lower");
  if (normalize != "lower" && normalize != "none")
    s.fail("normalize",
           "must be \"lower\" (names compared ignoring A-Z case and trailing spaces, as "
           "MariaDB's _ci collations do) or \"none\" (exact, for a binary/_bin column)");
  st.normalize_lower = normalize == "lower";

  // The statements: the preset's, each overridable.
  const Preset* preset = nullptr;
  if (auto name = s.opt_string("schema")) {
    if (*name == "users")
      preset = &kUsersPreset;
    else if (*name == "postfixadmin")
      preset = &kPostfixadminPreset;
    else
      s.fail("schema", "must be \"users\" or \"postfixadmin\"");
    st.preset = *name;
  }
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = static_cast<Op>(i);
    const char* key = key_of(op);
    std::vector<std::string> texts;
    if (s.has(key)) {
      texts = op == kLookup ? std::vector<std::string>{s.get_string(key, "")}
                            : s.get_string_list(key, {});
      if (texts.empty()) s.fail(key, "must not be empty");
      for (const auto& t : texts)
        if (trim(t).empty()) s.fail(key, "must not be empty");
    } else if (preset) {
      texts = split_statements(preset->statements[op]);
    } else if (op == kLookup) {
      s.fail("query", "is required (or schema = \"users\" or \"postfixadmin\" for a preset)");
    }
    for (std::size_t k = 0; k < texts.size(); ++k) {
      Template t;
      try {
        t = mysql::translate(texts[k], kAllowed[op]);
      } catch (const mysql::TemplateError& e) {
        s.fail(key, texts.size() > 1 ? "statement " + std::to_string(k + 1) + " " + e.what()
                                     : std::string(e.what()));
      }
      // Statements that act on one user must say which user.  The rehash
      // runs unattended at logins: %n alone could match a namesake in
      // another domain.
      if (k == 0 && op == kRehash && !t.uses('u') && !(t.uses('n') && t.uses('d')))
        s.fail(key, "must use %u (or %n and %d) to select the user's row");
      if (k == 0 && op != kList && !t.uses('u') && !t.uses('n'))
        s.fail(key,
               "must use %u (or %n) to select the user; without it every login would "
               "match the same row");
      if (k == 0 && (op == kInsert || op == kPassword || op == kRehash) && !t.uses('h'))
        s.fail(key, "must use %h, the new stored credential");
      if (k == 0 && op == kRehash && !t.uses('o'))
        s.fail(key,
               "must use %o, the stored credential the login was verified against, so that one "
               "changed meanwhile is left alone (e.g. AND crypt = CAST('%o' AS BINARY))");
      if (k == 0 && op == kEnable && !t.uses('e')) s.fail(key, "must use %e (1 or 0)");
      st.statements[op].push_back(std::move(t));
    }
  }

  // Rehash-on-login (as for pwdfile), through rehash_query.
  const std::string rehash = s.get_string("rehash", "");
  if (!rehash.empty()) {
    if (rehash != "argon2id" && rehash != "yescrypt" && rehash != "bcrypt" &&
        rehash != "sha512-crypt" && rehash != "sha256-crypt")
      s.fail("rehash", "must be argon2id, yescrypt, bcrypt, sha512-crypt or sha256-crypt");
    if (st.statements[kRehash].empty())
      s.fail("rehash", "needs rehash_query (or schema = \"users\" or \"postfixadmin\", which "
                       "supply one)");
  }
  auto b = std::make_unique<MysqlBackend>(spec.name, std::move(st));
  b->set_rehash_scheme(rehash);
  return b;
}

MysqlBackend::MysqlBackend(std::string name, Settings settings)
    : Backend("mysql", std::move(name)),
      settings_(std::move(settings)),
      pool_("mysql " + this->name(), settings_.connect, settings_.pool_size) {
  std::size_t next = 0;
  for (int op = 0; op < kOpCount; ++op) {
    first_[op] = next;
    next += settings_.statements[op].size();
  }
}

MysqlBackend::~MysqlBackend() = default;

std::string MysqlBackend::canonical_user(std::string_view user) const {
  return settings_.normalize_lower ? fold_lower(user) : std::string(user);
}

void MysqlBackend::note_failure(const std::string& reason) {
  std::lock_guard lock(state_mutex_);
  if (failing_.load()) return;
  failing_ = true;
  log::error("mysql " + name() + ": database unavailable: " + log::sanitize(reason, 1024) +
             "; logins get a temporary failure until it is back");
}

void MysqlBackend::note_success() {
  if (!failing_.load(std::memory_order_relaxed)) return;
  std::lock_guard lock(state_mutex_);
  if (!failing_.load()) return;
  failing_ = false;
  log::info("mysql " + name() + ": database reachable again");
}

LookupResult MysqlBackend::lookup(const Query& query) {
  // The connection speaks utf8mb4; a name that is not UTF-8 cannot be
  // anyone's and must not turn into a server error.
  if (!mysql::valid_utf8(query.user) || !mysql::valid_utf8(query.realm) ||
      !mysql::valid_utf8(query.service))
    return {backend::Status::Unknown, {}, "user, realm or service is not valid UTF-8"};
  Values values = Values::for_user(query.user);
  values.realm = query.realm;
  values.service = query.service;

  const Template& t = settings_.statements[kLookup].front();
  const auto start = Clock::now();
  std::string reason;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string error;
    auto lease = pool_.acquire(&error, /*fresh=*/attempt > 0);
    if (!lease) {
      reason = error;
      break;
    }
    mysql::Result r;
    mysql::SqlError e;
    // Two rows at most: one more than an answer can use, to tell it is not one.
    if (lease->execute(index_of(kLookup, 0), t, values, 2, &r, &e)) {
      lease.release();
      note_success();
      if (r.rows.empty()) return {backend::Status::Unknown, {}, {}};
      if (r.rows.size() > 1) {
        // A query that selects by %n alone matches namesakes in other
        // domains; a table without a unique key may hold a name twice.
        // Taking the first row would check the password against whichever
        // row the server returns first.  Not Unknown either (no falling
        // through): a temporary failure, until the query or the data is fixed.
        warn_ambiguous(query.user);
        return {backend::Status::TempFail, {},
                "ambiguous: the lookup returned more than one row for this user"};
      }
      LookupResult out;
      out.status = backend::Status::Found;
      out.credential.default_scheme = settings_.default_scheme;
      mysql::Row& row = r.rows.front();
      // The row's own name: the collation may have matched a spelling that
      // is another name under `normalize` (alicé for alice, ALICE for alice
      // with normalize = "none").  That spelling is nobody here, not a second
      // name for the account.
      if (const int k = named_column(r.columns, "user"); k > 0) {
        const bool same = row[k] && canonical_user(row[k]->view()) == canonical_user(query.user);
        if (!same) return {backend::Status::Unknown, {}, "the row found is for another name"};
      }
      if (row.empty() || !row[0] || row[0]->empty()) {
        // The user is ours but has nothing to check a password against: a
        // known user who cannot log in (not Unknown: no falling through).
        out.credential.disabled = true;
        out.credential.disabled_reason = "no stored credential (NULL or empty)";
        warn_no_credential(query.user);
      } else {
        out.credential.stored = std::move(*row[0]);
      }
      if (const int k = named_column(r.columns, "enabled"); k > 0 && !flag_enabled(row[k]))
        out.credential.disabled = true;
      return out;
    }
    const std::string label = settings_.connect.endpoints[lease->endpoint()].label();
    reason = "lookup on " + label + " failed: " + e.text();
    if (!e.connection_lost()) break;  // the connection is fine; the statement is not
    lease.discard();
    if (attempt > 0 || Clock::now() - start >= kRetryWindow) break;
    log::debug("mysql " + name() + ": " + reason + "; retrying once on a fresh connection");
  }
  note_failure(reason);
  return {backend::Status::TempFail, {}, reason};
}

void MysqlBackend::warn_no_credential(std::string_view user) {
  {
    std::lock_guard lock(state_mutex_);
    if (warned_.size() >= 10000 || !warned_.emplace(user).second) return;
  }
  log::warning("config problem: mysql " + name() + ": user " + log::sanitize(user) +
               " has a NULL or empty stored credential; this user cannot log in until one is set");
}

void MysqlBackend::warn_ambiguous(std::string_view user) {
  {
    std::lock_guard lock(state_mutex_);
    if (ambiguous_.size() >= 10000 || !ambiguous_.emplace(user).second) return;
  }
  log::error("config problem: mysql " + name() + ": the lookup for user " + log::sanitize(user) +
             " is ambiguous: the query returned more than one row (" +
             log::sanitize(settings_.statements[kLookup].front().sql, 1024) +
             "); this user gets a temporary failure until the query selects one row (use %u, or "
             "%n and %d) or the duplicate is removed");
}

Backend::Health MysqlBackend::health() {
  std::unique_ptr<mysql::Connection> conn;
  const auto errors = pool_.probe_all(&conn);
  std::string all;
  bool all_unreachable = true;
  std::vector<std::string> notes;
  for (std::size_t i = 0; i < errors.size(); ++i) {
    if (!errors[i]) continue;
    const std::string what = settings_.connect.endpoints[i].label() + ": " + errors[i]->text();
    all += (all.empty() ? "" : "; ") + what;
    all_unreachable = all_unreachable && is_unreachable(errors[i]->code);
    if (errors.size() > 1) notes.push_back("cannot connect to " + what);
  }
  if (!conn) return {"cannot connect to the database: " + all, all_unreachable, {}};
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = static_cast<Op>(i);
    const auto& list = settings_.statements[op];
    for (std::size_t k = 0; k < list.size(); ++k) {
      const std::string where = std::string(key_of(op)) +
                                (list.size() > 1 ? " statement " + std::to_string(k + 1) : "") +
                                " (" + list[k].sql + ")";
      std::vector<std::string> columns;
      mysql::SqlError e;
      if (!conn->prepare(index_of(op, k), list[k], &columns, &e)) {
        // The daemon only reads: an account without write privileges is the
        // recommended setup, and only mailauth-user would need them.  The
        // exception is rehash_query with `rehash` set, which the daemon runs
        // itself; without `rehash` nobody runs it.
        if (op == kRehash && is_access_denied(e.code)) {
          if (!rehash_scheme().empty())
            notes.push_back(where + ": " + e.text() + " (rehash = \"" + rehash_scheme() +
                            "\" needs this privilege: logins work, but their hashes are not "
                            "upgraded)");
          continue;
        }
        if (op != kLookup && is_access_denied(e.code)) {
          notes.push_back(where + ": " + e.text() +
                          " (mailauthd only reads; mailauth-user needs this privilege)");
          continue;
        }
        return {where + ": " + e.text()};
      }
      const bool reads = op == kLookup || op == kList;
      if (reads && columns.empty()) return {where + ": returns no columns; it must be a SELECT"};
      if (!reads && !columns.empty())
        return {where + ": returns rows; it must change data (INSERT, UPDATE, DELETE)"};
    }
  }
  return {{}, false, std::move(notes)};
}

AccountStore::Result MysqlBackend::write(Op op, const Values& values, bool must_match) {
  const auto& list = settings_.statements[op];
  if (list.empty())
    return {Status::NotConfigured,
            std::string("no ") + key_of(op) + " is configured (set schema or " + key_of(op) + ")"};
  std::string error;
  auto lease = pool_.acquire(&error, /*fresh=*/true);  // writes are never retried blindly
  if (!lease) return {Status::TempFail, error};
  mysql::SqlError e;
  const bool transaction = list.size() > 1;
  auto fail = [&](const std::string& where) -> Result {
    if (transaction) lease->rollback();
    if (e.connection_lost()) lease.discard();
    if (e.code == kDuplicateEntry) return {Status::Exists, "the user exists already"};
    return {refused_values(e.code) ? Status::Refused : Status::TempFail,
            where + ": " + e.text()};
  };
  if (transaction && !lease->begin(&e)) return fail("START TRANSACTION");
  for (std::size_t k = 0; k < list.size(); ++k) {
    mysql::Result r;
    const std::string where =
        std::string(key_of(op)) + (transaction ? " statement " + std::to_string(k + 1) : "");
    if (!lease->execute(index_of(op, k), list[k], values, 0, &r, &e)) return fail(where);
    if (k == 0 && must_match && r.affected == 0) {
      if (transaction) lease->rollback();
      return {Status::NotFound, "no such user"};
    }
  }
  if (transaction && !lease->commit(&e)) return fail("COMMIT");
  return {Status::Done, {}};
}

AccountStore::Result MysqlBackend::add(std::string_view user, std::string_view stored,
                                                 std::string_view name, bool enabled) {
  Values v = Values::for_user(user);
  v.stored = stored;
  v.name = name;
  v.enabled = enabled;
  return write(kInsert, v, false);
}

AccountStore::Result MysqlBackend::set_password(std::string_view user,
                                                     std::string_view stored) {
  Values v = Values::for_user(user);
  v.stored = stored;
  return write(kPassword, v, true);
}

AccountStore::Result MysqlBackend::replace_password(std::string_view user,
                                                    std::string_view expected,
                                                    std::string_view stored) {
  // Values a utf8mb4 column cannot hold would be server errors: no row can
  // hold them (user, expected), or they cannot be stored.
  if (!mysql::valid_utf8(user) || !mysql::valid_utf8(expected))
    return {Status::NotFound, "no row can hold this user or credential (not UTF-8)"};
  if (!mysql::valid_utf8(stored)) return {Status::Refused, "the new credential is not UTF-8"};
  Values v = Values::for_user(user);
  v.stored = stored;
  v.old = expected;
  Result r = write(kRehash, v, true);
  // 0 rows matched: the row no longer holds `expected` (or is gone).
  if (r.status == Status::NotFound)
    r.message = "the credential changed meanwhile (no row matched rehash_query)";
  return r;
}

AccountStore::Result MysqlBackend::remove(std::string_view user) {
  return write(kDelete, Values::for_user(user), true);
}

AccountStore::Result MysqlBackend::set_enabled(std::string_view user, bool enabled) {
  Values v = Values::for_user(user);
  v.enabled = enabled;
  return write(kEnable, v, true);
}

AccountStore::Result MysqlBackend::apply_schema() {
  const std::string_view sql = schema_sql(settings_.preset);
  if (sql.empty())
    return {Status::NotConfigured,
            "no schema preset is configured (schema = \"users\" or \"postfixadmin\")"};
  std::string error;
  auto lease = pool_.acquire(&error, /*fresh=*/true);
  if (!lease) return {Status::TempFail, error};
  // The files hold CREATE TABLE statements ending in ";\n" and "--" comments.
  std::size_t pos = 0;
  while (pos < sql.size()) {
    auto end = sql.find(";\n", pos);
    if (end == std::string_view::npos) end = sql.size();
    std::string statement;
    std::string_view chunk = sql.substr(pos, end - pos);
    while (!chunk.empty()) {
      const auto nl = chunk.find('\n');
      const std::string_view line = chunk.substr(0, nl);
      if (!trim(line).starts_with("--")) statement += std::string(line) + "\n";
      chunk.remove_prefix(nl == std::string_view::npos ? chunk.size() : nl + 1);
    }
    pos = end + 2;
    if (trim(statement).empty()) continue;
    mysql::SqlError e;
    if (!lease->run_sql(statement, &e)) {
      if (e.connection_lost()) lease.discard();
      return {is_access_denied(e.code) ? Status::Refused : Status::TempFail,
              "schema " + settings_.preset + ": " + e.text()};
    }
  }
  return {Status::Done, {}};
}

AccountStore::Result MysqlBackend::list(std::string_view domain,
                                                   std::vector<Account>* out) {
  out->clear();
  const auto& list = settings_.statements[kList];
  if (list.empty())
    return {Status::NotConfigured, "no list_query is configured (set schema or list_query)"};
  std::string error;
  auto lease = pool_.acquire(&error);
  if (!lease) return {Status::TempFail, error};
  Values v;
  v.domain = domain;
  mysql::Result r;
  mysql::SqlError e;
  if (!lease->execute(index_of(kList, 0), list.front(), v, std::numeric_limits<std::size_t>::max(),
                      &r, &e)) {
    if (e.connection_lost()) lease.discard();
    return {Status::TempFail, "list_query: " + e.text()};
  }
  for (auto& row : r.rows) {
    Account a;
    if (!row.empty() && row[0]) a.user = std::string(row[0]->view());
    if (row.size() > 1 && row[1]) a.name = std::string(row[1]->view());
    if (row.size() > 2) a.enabled = flag_enabled(row[2]);
    out->push_back(std::move(a));
  }
  return {Status::Done, {}};
}

// -O names a TOML file whose [[backend]] tables (type = "mysql", hosts,
// user, …) are used as they are; errors then name that file's lines.
config::SaslauthdBackends MysqlBackend::saslauthd_form(const std::string& option) {
  if (option.empty())
    throw config::ConfigError(
        "saslauthd command line: -a mysql needs -O FILE (a TOML file with a [[backend]] table)");
  std::ifstream in(option, std::ios::binary);
  if (!in) throw config::ConfigError(option + ": cannot open: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return {text.str(), option};
}

const TypeInfo MysqlBackend::kTypeInfo{
    .type = "mysql",
    .create = &MysqlBackend::create,
    .keeps_accounts = true,
    .saslauthd = &MysqlBackend::saslauthd_form,
};

}  // namespace mailauth::backend
