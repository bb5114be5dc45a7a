// mysql: a lookup backend over a MySQL/MariaDB table, through MariaDB
// Connector/C with pooled connections and prepared statements.
//
// Configuration ([[backend]] with type = "mysql"; interface.md):
//
//   hosts = ["db1:3306", "db2"]   tried in order (failover), default port 3306;
//   socket = "/run/mysqld/…"      or a UNIX socket instead (exactly one of the two)
//   user, database                required
//   password | password_file      the file is read at start (as root, before
//                                 the privilege drop) and again on SIGHUP,
//                                 surrounding whitespace trimmed.  A reload
//                                 that may no longer read it (0600 root)
//                                 keeps what was read from the same path
//                                 before, with a warning; a path not read
//                                 before must be readable by the daemon's
//                                 user or group
//   schema = "users" | "postfixadmin"   a preset: lookup and write statements
//   query                         the lookup (required without schema); any
//                                 preset statement can be overridden one by one:
//   insert_query, password_query, delete_query, enable_query, list_query,
//   rehash_query                  (a string, or a list of strings run in one
//                                 transaction)
//   rehash = "argon2id"           rehash-on-login (argon2id, yescrypt, bcrypt,
//                                 sha512-crypt, sha256-crypt): see replace_password()
//   default_scheme = "CRYPT"      "PLAIN" to read a bare plaintext column
//   normalize = "lower"           how the table compares user names, so that
//                                 the spellings it takes for one account are
//                                 one name (canonical_user()): "lower" (the
//                                 default; _ci collations, as in both presets)
//                                 drops trailing spaces and lower-cases A-Z;
//                                 "none" for an exact (_bin) column
//   connect_timeout = "3s", read_timeout = "5s", write_timeout = "5s"
//                                 whole seconds, 1s to 9s: Postfix waits 10s
//   tls = false, tls_ca, tls_cert, tls_key
//                                 tls = true requires TLS; with tls_ca the
//                                 server certificate is verified too
//   pool_size = 4                 connections shared by the worker threads
//
// Templates (backends/mysql/query_template.h) take %u %n %d %r %s in the
// lookup; the writes take %u %n %d, %h (the new stored credential), %N (the
// display name) and %e (1/0).  list_query takes %d (the domain filter, empty
// for all) and returns user[, name[, enabled]].  rehash_query takes %u %n %d,
// %h and %o (the old credential, exactly as the lookup returned it) and must
// use %h, %o and %u (or %n and %d).
//
// What a lookup answers:
//   - no row: Unknown (the next backend is asked);
//   - a row: Found, with the first column as the stored credential;
//   - more than one row (a query by %n alone, namesakes in two domains):
//     TempFail, "ambiguous", logged once per user as a configuration
//     problem.  Never the first row's password, and never Unknown (the next
//     backend is not asked): a temporary failure is not counted against the
//     client (fail2ban, the brute-force policy) for the operator's mistake;
//     the mail client retries, and the log says what to fix;
//   - a result column named `enabled` (after the first; write `active AS
//     enabled`) is the account flag: NULL, 0, or anything that is not a
//     non-zero number or yes/true/on marks the account disabled: Found and
//     disabled, never Unknown, so a disabled account cannot fall through to a
//     later backend that might still hold an old password for it.  Both
//     presets select it.  A query that filters disabled accounts out in its
//     WHERE clause instead (`AND enabled = 1`) makes them unknown users.
//   - a result column named `user` (after the first; write `id AS user`) is
//     the row's stored name: a row whose name is not the one asked for under
//     `normalize` (the collation matched alicé@… for alice@…, or ALICE@…
//     with normalize = "none") is Unknown.  Both presets select it.
//   - a NULL or empty credential: Found and disabled, with nothing to verify.
//     The row exists, so the user is this backend's and must not fall through
//     either; it is logged once per user as a configuration problem.
//   - the server down, timed out or failing the query: TempFail, which ends
//     the chain.  The outage is logged when it starts and when it ends, not
//     per request.
//
// Connections: see connection_pool.h (lazy, pinged after idling, one
// transparent retry of a lookup on a fresh connection after "gone away",
// failover across hosts with backoff, back to a preferred host when it
// returns).  The daemon starts while the database is down; lookups fail
// temporarily until it is reachable.
//
// Threads: lookup() and the write operations are thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "backends/mysql/connection_pool.h"
#include "backends/mysql/query_template.h"

namespace mailauth::backend {

class MysqlBackend final : public Backend, public AccountStore {
 public:
  // What the type offers (registered in backends/backend.cc).
  static const TypeInfo kTypeInfo;
  static std::unique_ptr<Backend> create(const config::BackendSpec& spec);
  // saslauthd's -a mysql -O OPTION (TypeInfo::saslauthd).
  static config::SaslauthdBackends saslauthd_form(const std::string& option);

  // Statements by purpose; each holds one or more templates.
  enum Op { kLookup, kInsert, kPassword, kDelete, kEnable, kList, kRehash, kOpCount };
  static const char* key_of(Op op);  // the configuration key: "query", "insert_query", …

  struct Settings {
    mysql::ConnectOptions connect;
    std::size_t pool_size = 4;
    std::string preset;  // "users", "postfixadmin" or empty
    std::string default_scheme = "CRYPT";
    bool normalize_lower = true;  // normalize = "lower" (else "none")
    std::vector<mysql::Template> statements[kOpCount];
  };

  MysqlBackend(std::string name, Settings settings);
  ~MysqlBackend() override;

  Kind kind() const override { return Kind::Lookup; }
  // normalize = "lower": trailing spaces dropped, A-Z lower-cased; "none": as is.
  std::string canonical_user(std::string_view user) const override;
  LookupResult lookup(const Query& query) override;
  // Connects to every host, prepares every statement and checks the shape of
  // its result: empty if usable (a down secondary host is a warning only).
  std::string check() override { return health().problem; }
  // check(), with `unreachable` set when no host could be reached and every
  // host failed for want of a server (refused, timed out, no such socket,
  // host name not resolved, server full or shutting down) rather than
  // refusing our settings (credentials, database, TLS).
  Health health() override;

  // --- AccountStore: the account operations mailauth-user uses ----------------
  // Each runs its statement(s) (a list runs in one transaction) on a pooled
  // connection pinged first; a write is never retried blindly.  passwd,
  // delete and enable report NotFound when the first statement matched no
  // row; add reports Exists on a duplicate key and Refused when the
  // database rejects the values (too long, wrong type).
  AccountStore* accounts() override { return this; }
  // `stored` as it should be stored: a hash from password::hash, with
  // with_dovecot_prefix for the postfixadmin preset (wants_scheme_prefix()).
  Result add(std::string_view user, std::string_view stored, std::string_view name,
             bool enabled) override;
  Result set_password(std::string_view user, std::string_view stored) override;
  // Rehash-on-login's compare-and-swap: runs rehash_query with %o = `expected`
  // (the credential lookup() returned, {SCHEME} prefix and all) and %h =
  // `stored`.  The statement's WHERE clause does the comparing, so the check
  // and the write are one atomic UPDATE (InnoDB reads the latest committed row
  // for it).  No matching row: NotFound ("the credential changed meanwhile",
  // or the user is gone).  The connection sets CLIENT_FOUND_ROWS, so "rows
  // affected" counts rows matched, not rows changed; for a rehash the two are
  // the same anyway (the new value is a freshly salted hash, never the old
  // one).  NotConfigured without a rehash_query.
  Result replace_password(std::string_view user, std::string_view expected,
                          std::string_view stored) override;
  Result remove(std::string_view user) override;
  Result set_enabled(std::string_view user, bool enabled) override;
  // Every account, or those of `domain` when it is not empty, in the order
  // list_query returns them (columns: user[, name[, enabled]]).
  Result list(std::string_view domain, std::vector<Account>* out) override;
  // True for stores shared with Dovecot/PostfixAdmin, which expect "{SCHEME}"
  // in front of every hash.
  bool wants_scheme_prefix() const override { return settings_.preset == "postfixadmin"; }

  // mailauth-user schema --apply: create the preset's tables (CREATE TABLE IF
  // NOT EXISTS: existing tables are left alone).  NotConfigured without a
  // preset.
  Result apply_schema();

  const std::string& preset() const { return settings_.preset; }
  const Settings& settings() const { return settings_; }

  // The SQL schema of a preset ("users", "postfixadmin"): the text of
  // backends/mysql/schema-PRESET.sql.  Empty for anything else.
  static std::string_view schema_sql(std::string_view preset);

 private:
  std::size_t index_of(Op op, std::size_t k) const { return first_[op] + k; }
  Result write(Op op, const mysql::Values& values, bool must_match);
  void note_failure(const std::string& reason);
  void note_success();
  void warn_no_credential(std::string_view user);
  void warn_ambiguous(std::string_view user);

  const Settings settings_;
  std::size_t first_[kOpCount]{};  // statement id of each op's first template
  mysql::Pool pool_;
  std::atomic<bool> failing_{false};
  std::mutex state_mutex_;
  std::set<std::string, std::less<>> warned_;  // users logged for a missing credential
  std::set<std::string, std::less<>> ambiguous_;  // users logged for more than one row
};

}  // namespace mailauth::backend
