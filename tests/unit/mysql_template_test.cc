// The mysql backend without a server: template translation, the values
// escapes stand for, the failover policy (with a fake clock), configuration
// errors, and a database that is down.
//
// The MysqlLive.* tests at the end need a server: tests/integration/test_mysql.py
// runs them against its private MariaDB by setting MAILAUTH_TEST_MYSQL_SOCKET
// (and _USER, _PASSWORD, _DATABASE); without it they are skipped.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "backends/mysql/connection_pool.h"
#include "backends/mysql/mysql_backend.h"
#include "backends/mysql/query_template.h"
#include "tests/unit/test_util.h"

namespace mailauth::backend {
namespace {

using mysql::HostSelector;
using mysql::Template;
using mysql::TemplateError;
using mysql::translate;
using mysql::Values;
using namespace std::chrono_literals;

constexpr const char* kLookupEscapes = "undrs";

std::string translate_error(std::string_view text, std::string_view allowed = kLookupEscapes) {
  try {
    translate(text, allowed);
  } catch (const TemplateError& e) {
    return e.what();
  }
  return "";
}

// --- translation -------------------------------------------------------------------

TEST(MysqlTemplate, BareEscapesBecomeMarkers) {
  Template t = translate("SELECT crypt FROM users WHERE id = %u AND svc = %s", kLookupEscapes);
  EXPECT_EQ(t.sql, "SELECT crypt FROM users WHERE id = ? AND svc = ?");
  EXPECT_EQ(t.params, "us");
  EXPECT_TRUE(t.uses('u'));
  EXPECT_FALSE(t.uses('d'));
}

TEST(MysqlTemplate, QuotedEscapesFromSaslauthdDovecotAndPostfixTemplatesLoseTheirQuotes) {
  // pam_mysql / saslauthd style
  EXPECT_EQ(
      translate("SELECT crypt FROM users WHERE id = '%u' AND enabled = 1", kLookupEscapes).sql,
      "SELECT crypt FROM users WHERE id = ? AND enabled = 1");
  // Dovecot style, with a quoted constant that must stay quoted
  Template d = translate(
      "SELECT password FROM mailbox WHERE local_part = '%n' AND domain = \"%d\" AND active = '1'",
      kLookupEscapes);
  EXPECT_EQ(d.sql,
            "SELECT password FROM mailbox WHERE local_part = ? AND domain = ? AND active = '1'");
  EXPECT_EQ(d.params, "nd");
}

TEST(MysqlTemplate, LiteralsMixingTextAndEscapesBecomeConcat) {
  Template t = translate("SELECT crypt FROM users WHERE id = '%n@%d'", kLookupEscapes);
  EXPECT_EQ(t.sql, "SELECT crypt FROM users WHERE id = CONCAT(?, '@', ?)");
  EXPECT_EQ(t.params, "nd");
  EXPECT_EQ(translate("SELECT 1 WHERE x = 'pre-%u'", kLookupEscapes).sql,
            "SELECT 1 WHERE x = CONCAT('pre-', ?)");
  EXPECT_EQ(translate("SELECT 1 WHERE x = \"%u.x\"", kLookupEscapes).sql,
            "SELECT 1 WHERE x = CONCAT(?, \".x\")");
  // SQL escapes inside the text pieces are kept as they were.
  EXPECT_EQ(translate("SELECT 1 WHERE x = 'it''s %u\\'s'", kLookupEscapes).sql,
            "SELECT 1 WHERE x = CONCAT('it''s ', ?, '\\'s')");
  EXPECT_EQ(translate("SELECT 1 WHERE x = '%u%u'", kLookupEscapes).params, "uu");
}

TEST(MysqlTemplate, DoublePercentIsALiteralPercentInsideAndOutsideStrings) {
  Template t = translate(
      "SELECT crypt FROM users WHERE id LIKE '%%@example.com' AND id = '%u' "
      "AND 7 %% 2 = 1",
      kLookupEscapes);
  EXPECT_EQ(t.sql,
            "SELECT crypt FROM users WHERE id LIKE '%@example.com' AND id = ? AND 7 % 2 = 1");
  EXPECT_EQ(t.params, "u");
  EXPECT_EQ(translate("SELECT 1 WHERE x = '100%%'", kLookupEscapes).sql,
            "SELECT 1 WHERE x = '100%'");
}

TEST(MysqlTemplate, LiteralsWithoutEscapesAndQuestionMarksInsideThemAreUntouched) {
  const char* sql = "SELECT 'a''b', 'c\\'d', \"e\"\"f\", '?', '' FROM t WHERE id = %u";
  EXPECT_EQ(translate(sql, kLookupEscapes).sql,
            "SELECT 'a''b', 'c\\'d', \"e\"\"f\", '?', '' FROM t WHERE id = ?");
}

TEST(MysqlTemplate, CommentsAreCopiedButExecutableCommentsAreTranslated) {
  EXPECT_EQ(
      translate("SELECT c FROM t -- look up %x here\nWHERE id = %u # and '%y\n", kLookupEscapes)
          .sql,
      "SELECT c FROM t -- look up %x here\nWHERE id = ? # and '%y\n");
  EXPECT_EQ(translate("SELECT c /* %q? */ FROM t WHERE id = %u", kLookupEscapes).sql,
            "SELECT c /* %q? */ FROM t WHERE id = ?");
  EXPECT_EQ(translate("SELECT c FROM t WHERE id = /*!50000 %u */ 1", kLookupEscapes).params, "u");
  // "--" not followed by a space is an operator pair, not a comment.
  EXPECT_EQ(translate("SELECT 1--%u", kLookupEscapes).sql, "SELECT 1--?");
}

TEST(MysqlTemplate, WriteEscapes) {
  Template t = translate(
      "INSERT INTO users (id, name, crypt, enabled) VALUES ('%u', '%N', '%h', %e)", "undhNe");
  EXPECT_EQ(t.sql, "INSERT INTO users (id, name, crypt, enabled) VALUES (?, ?, ?, ?)");
  EXPECT_EQ(t.params, "uNhe");
}

TEST(MysqlTemplate, OldCredentialEscapeForTheRehash) {
  Template t = translate(
      "UPDATE users SET crypt = '%h' WHERE id = '%u' AND crypt = CAST('%o' AS BINARY)", "undho");
  EXPECT_EQ(t.sql, "UPDATE users SET crypt = ? WHERE id = ? AND crypt = CAST(? AS BINARY)");
  EXPECT_EQ(t.params, "huo");
  EXPECT_TRUE(t.uses('o'));
  // Only the rehash takes it.
  EXPECT_EQ(translate_error("SELECT c FROM t WHERE id = %u AND c = '%o'"),
            "%o cannot be used in this statement (it takes %u %n %d %r %s)");
  EXPECT_EQ(translate_error("UPDATE t SET c = '%h' WHERE id = '%u' AND c = '%o'", "undh"),
            "%o cannot be used in this statement (it takes %u %n %d %h)");
  EXPECT_EQ(translate_error("UPDATE t SET c = '%h' WHERE id = '%u' AND c = '%x'", "undho"),
            "unknown escape %x (this statement takes %u %n %d %h %o; write %% for a literal "
            "percent sign)");
}

TEST(MysqlTemplate, ErrorsSayWhatIsWrong) {
  EXPECT_EQ(translate_error("SELECT c FROM t WHERE id = '%x'"),
            "unknown escape %x (this statement takes %u %n %d %r %s; write %% for a literal "
            "percent sign)");
  EXPECT_EQ(translate_error("SELECT c FROM t WHERE id = %u AND h = %h"),
            "%h cannot be used in this statement (it takes %u %n %d %r %s)");
  EXPECT_EQ(translate_error("SELECT c FROM t WHERE id = %u AND x = 5%"),
            "ends with a lone '%' (write %% for a literal percent sign)");
  EXPECT_EQ(translate_error("SELECT c FROM t WHERE id = ?"),
            "contains a '?' parameter marker; write an escape such as %u instead");
  EXPECT_EQ(translate_error("SELECT c FROM t WHERE id = '%u"),
            "has an unterminated string literal starting at character 28");
  EXPECT_EQ(translate_error("SELECT c FROM `%u` WHERE 1"),
            "%u inside a `quoted identifier`: escapes are values, not table or column names");
  EXPECT_EQ(translate_error("SELECT c FROM `t WHERE 1"),
            "has an unterminated `quoted identifier` starting at character 15");
  EXPECT_EQ(translate_error(std::string_view("SELECT \0 %u", 11)), "contains a NUL byte");
  EXPECT_EQ(translate_error("SELECT c FROM t WHERE id = '\\%u'"),
            "an escape right after a backslash inside a string literal cannot be translated");
  EXPECT_EQ(translate_error("SELECT c FROM t WHERE id = %\x01"),
            "unknown escape %\\x01 (this statement takes %u %n %d %r %s; write %% for a literal "
            "percent sign)");
  EXPECT_EQ(translate_error("SELECT %u", ""),
            "%u cannot be used in this statement (it takes no escapes)");
}

// --- values ------------------------------------------------------------------------

TEST(MysqlValues, UserSplitsAtTheLastAt) {
  Values v = Values::for_user("alice@example.com");
  EXPECT_EQ(v['u'], "alice@example.com");
  EXPECT_EQ(v['n'], "alice");
  EXPECT_EQ(v['d'], "example.com");
  v = Values::for_user("\"a@b\"@example.com");
  EXPECT_EQ(v['n'], "\"a@b\"");
  EXPECT_EQ(v['d'], "example.com");
  v = Values::for_user("bob");
  EXPECT_EQ(v['n'], "bob");
  EXPECT_EQ(v['d'], "");
  v = Values::for_user("carol@");
  EXPECT_EQ(v['n'], "carol");
  EXPECT_EQ(v['d'], "");
  v.enabled = false;
  EXPECT_EQ(v['e'], "0");
  v.enabled = true;
  EXPECT_EQ(v['e'], "1");
  v.stored = "$y$x";
  v.old = "$5$old";
  v.name = "Carol";
  v.realm = "r";
  v.service = "smtp";
  EXPECT_EQ(v['h'], "$y$x");
  EXPECT_EQ(v['o'], "$5$old");
  EXPECT_EQ(v['N'], "Carol");
  EXPECT_EQ(v['r'], "r");
  EXPECT_EQ(v['s'], "smtp");
}

TEST(MysqlValues, Utf8Validation) {
  EXPECT_TRUE(mysql::valid_utf8(""));
  EXPECT_TRUE(mysql::valid_utf8("alice@example.com"));
  EXPECT_TRUE(
      mysql::valid_utf8("jos\xC3\xA9@b\xC3\xBC"
                        "cher.de"));
  EXPECT_TRUE(mysql::valid_utf8("\xF0\x9F\x93\xAC"));           // U+1F4EC
  EXPECT_TRUE(mysql::valid_utf8(std::string_view("a\0b", 3)));  // NUL is bound as data
  EXPECT_FALSE(mysql::valid_utf8("\xFF"));
  EXPECT_FALSE(mysql::valid_utf8("a\xC3"));             // truncated
  EXPECT_FALSE(mysql::valid_utf8("\xE2\x82"));          // truncated
  EXPECT_FALSE(mysql::valid_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(mysql::valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(mysql::valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(mysql::valid_utf8("\x80"));
}

// --- failover policy -----------------------------------------------------------------

using Plan = std::vector<std::size_t>;

TEST(MysqlHostSelector, SkipsAFailedHostForItsBackoffThenClaimsOneRetry) {
  HostSelector h(2);
  const auto t0 = mysql::Clock::time_point{} + 1000s;
  EXPECT_EQ(h.plan(t0), (Plan{0, 1}));
  EXPECT_TRUE(h.failed(0, t0));  // up → down: log it
  EXPECT_TRUE(h.is_down(0));
  EXPECT_EQ(h.plan(t0 + 1s), (Plan{1}));
  EXPECT_EQ(h.plan(t0 + 4900ms), (Plan{1}));
  // Due after 5 s: one caller gets it first in order, the next ones do not wait on it.
  EXPECT_EQ(h.plan(t0 + 5s), (Plan{0, 1}));
  EXPECT_EQ(h.plan(t0 + 5s), (Plan{1}));
  EXPECT_FALSE(h.failed(0, t0 + 5s));  // still down: not logged again
  EXPECT_EQ(h.retry_at(0), t0 + 5s + 10s);
  EXPECT_EQ(h.plan(t0 + 14s), (Plan{1}));
  EXPECT_EQ(h.plan(t0 + 15s), (Plan{0, 1}));
  EXPECT_TRUE(h.succeeded(0));  // down → up: log it
  EXPECT_FALSE(h.succeeded(0));
  EXPECT_EQ(h.plan(t0 + 15s), (Plan{0, 1}));
}

TEST(MysqlHostSelector, BackoffDoublesUpToSixtySeconds) {
  HostSelector h(2);
  auto t = mysql::Clock::time_point{} + 1000s;
  h.failed(0, t);
  std::vector<long long> waits;
  for (int i = 0; i < 6; ++i) {
    const auto due = h.retry_at(0);
    waits.push_back(std::chrono::duration_cast<std::chrono::seconds>(due - t).count());
    t = due;
    ASSERT_EQ(h.plan(t).front(), 0u);
    h.failed(0, t);
  }
  EXPECT_EQ(waits, (std::vector<long long>{5, 10, 20, 40, 60, 60}));
}

TEST(MysqlHostSelector, WhenEveryHostIsDownEachIsProbedAtMostOncePerSecond) {
  HostSelector h(2);
  const auto t0 = mysql::Clock::time_point{} + 1000s;
  h.failed(0, t0);
  h.failed(1, t0);
  // Within the second after the failures: fail fast.
  EXPECT_EQ(h.plan(t0 + 500ms), Plan{});
  // Then one caller probes both (in order), the others fail fast again.
  EXPECT_EQ(h.plan(t0 + 1s), (Plan{0, 1}));
  EXPECT_EQ(h.plan(t0 + 1s), Plan{});
  EXPECT_EQ(h.plan(t0 + 1500ms), Plan{});
  EXPECT_EQ(h.plan(t0 + 2s), (Plan{0, 1}));
  // A probe that succeeds brings the host back at once.
  EXPECT_TRUE(h.succeeded(1));
  EXPECT_EQ(h.plan(t0 + 2100ms), (Plan{1}));
}

TEST(MysqlHostSelector, ClaimBetterMovesConnectionsBackToAPreferredHost) {
  HostSelector h(3);
  const auto t0 = mysql::Clock::time_point{} + 1000s;
  EXPECT_EQ(h.claim_better(0, t0), std::nullopt);
  EXPECT_EQ(h.claim_better(2, t0), std::optional<std::size_t>(0));  // 0 is up
  h.failed(0, t0);
  EXPECT_EQ(h.claim_better(2, t0), std::optional<std::size_t>(1));
  EXPECT_EQ(h.claim_better(1, t0 + 1s), std::nullopt);  // 0 is in its backoff
  EXPECT_EQ(h.claim_better(1, t0 + 5s), std::optional<std::size_t>(0));
  EXPECT_EQ(h.claim_better(1, t0 + 5s), std::nullopt);  // claimed by the caller before
}

// --- configuration -------------------------------------------------------------------

std::string base_config(const std::string& backend_keys) {
  return "[saslauthd]\nsocket = \"/tmp/x/mux\"\n\n[[backend]]\ntype = \"mysql\"\n" + backend_keys;
}

const char* kWhere =
    "hosts = [\"127.0.0.1:3306\"]\nuser = \"mail\"\npassword = \"pw\"\ndatabase = \"mail\"\n";

std::unique_ptr<Backend> make(const std::string& text) {
  config::Config c = config::load_string(text, "test.conf");
  return backend::create(c.backends.at(0));
}

MysqlBackend& as_mysql(const std::unique_ptr<Backend>& b) {
  return dynamic_cast<MysqlBackend&>(*b);
}

std::string config_error(const std::string& backend_keys) {
  try {
    make(base_config(backend_keys));
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "";
}

const std::vector<Template>& statements(const MysqlBackend& b, MysqlBackend::Op op) {
  return b.settings().statements[op];
}

TEST(MysqlConfig, UsersPresetSuppliesLookupAndWrites) {
  auto b = make(base_config(std::string(kWhere) + "schema = \"users\"\n"));
  auto& m = as_mysql(b);
  EXPECT_EQ(m.type(), "mysql");
  EXPECT_EQ(m.name(), "mysql");
  EXPECT_EQ(m.preset(), "users");
  EXPECT_FALSE(m.wants_scheme_prefix());
  EXPECT_EQ(statements(m, MysqlBackend::kLookup).at(0).sql,
            "SELECT crypt, enabled, id AS user FROM users WHERE id = ?");
  EXPECT_EQ(statements(m, MysqlBackend::kInsert).at(0).params, "uNheddn");
  EXPECT_EQ(statements(m, MysqlBackend::kPassword).at(0).sql,
            "UPDATE users SET crypt = ?, clear = '' WHERE id = ?");
  EXPECT_EQ(statements(m, MysqlBackend::kDelete).at(0).sql, "DELETE FROM users WHERE id = ?");
  EXPECT_EQ(statements(m, MysqlBackend::kEnable).at(0).params, "eu");
  EXPECT_EQ(statements(m, MysqlBackend::kList).at(0).params, "dd");
  const auto& o = m.settings().connect;
  ASSERT_EQ(o.endpoints.size(), 1u);
  EXPECT_EQ(o.endpoints[0].label(), "127.0.0.1:3306");
  EXPECT_EQ(o.connect_timeout_s, 3u);
  EXPECT_EQ(o.read_timeout_s, 5u);
  EXPECT_EQ(o.write_timeout_s, 5u);
  EXPECT_EQ(m.settings().pool_size, 4u);
  EXPECT_EQ(m.settings().default_scheme, "CRYPT");
  EXPECT_EQ(o.password.view(), "pw");
}

TEST(MysqlConfig, NormalizeFoldsWhatACiCollationIgnores) {
  // The default: "lower", as both presets' utf8mb4_general_ci compare.
  for (const char* keys : {"schema = \"users\"\n", "schema = \"users\"\nnormalize = \"lower\"\n",
                           "query = \"SELECT pw FROM t WHERE u = '%u'\"\n"}) {
    auto b = make(base_config(std::string(kWhere) + keys));
    EXPECT_EQ(b->canonical_user("ALICE@Example.COM"), "alice@example.com") << keys;
    EXPECT_EQ(b->canonical_user("alice@example.com   "), "alice@example.com") << keys;
    // Only what PAD SPACE and A-Z case folding ignore: leading spaces, tabs
    // and other letters stay (the `user` column catches a collation's
    // other matches).
    EXPECT_EQ(b->canonical_user(" alice@example.com\t"), " alice@example.com\t") << keys;
    EXPECT_EQ(b->canonical_user("\xC3\x89LODIE@x"), "\xC3\x89lodie@x") << keys;
    EXPECT_EQ(b->canonical_user("   "), "") << keys;
    EXPECT_EQ(b->canonical_user(""), "") << keys;
  }
  auto b = make(base_config(std::string(kWhere) + "schema = \"users\"\nnormalize = \"none\"\n"));
  EXPECT_EQ(b->canonical_user("ALICE@example.com  "), "ALICE@example.com  ");
  // Both presets return the row's stored name as `user`.
  auto pfa = make(base_config(std::string(kWhere) + "schema = \"postfixadmin\"\n"));
  EXPECT_EQ(statements(as_mysql(pfa), MysqlBackend::kLookup).at(0).sql,
            "SELECT password, active AS enabled, username AS user FROM mailbox WHERE username = ?");
  EXPECT_NE(config_error(std::string(kWhere) + "schema = \"users\"\nnormalize = \"upper\"\n")
                .find("normalize"),
            std::string::npos);
}

TEST(MysqlConfig, PostfixadminPresetWithOverridesOneByOne) {
  auto b =
      make(base_config(std::string(kWhere) +
                       "name = \"pfa\"\nschema = \"postfixadmin\"\n"
                       "query = \"SELECT password, active AS enabled FROM mailbox WHERE "
                       "username = '%u' AND smtp_active = 1\"\n"
                       "delete_query = \"UPDATE mailbox SET active = 0 WHERE username = '%u'\"\n"));
  auto& m = as_mysql(b);
  EXPECT_EQ(m.name(), "pfa");
  EXPECT_TRUE(m.wants_scheme_prefix());
  EXPECT_EQ(
      statements(m, MysqlBackend::kLookup).at(0).sql,
      "SELECT password, active AS enabled FROM mailbox WHERE username = ? AND smtp_active = 1");
  ASSERT_EQ(statements(m, MysqlBackend::kDelete).size(), 1u);
  EXPECT_EQ(statements(m, MysqlBackend::kDelete).at(0).sql,
            "UPDATE mailbox SET active = 0 WHERE username = ?");
  // Preset statements that were not overridden: the mailbox and its alias.
  const auto& insert = statements(m, MysqlBackend::kInsert);
  ASSERT_EQ(insert.size(), 2u);
  EXPECT_NE(insert[0].sql.find("CONCAT(?, '/', ?, '/')"), std::string::npos) << insert[0].sql;
  EXPECT_EQ(insert[1].sql.rfind("INSERT INTO alias", 0), 0u);
}

TEST(MysqlConfig, CustomQueryAloneHasNoWriteStatements) {
  auto b = make(base_config(std::string(kWhere) +
                            "query = \"SELECT CONCAT('{PLAIN}', clear) FROM users WHERE id = '%u' "
                            "AND enabled = 1\"\ndefault_scheme = \"plain\"\n"
                            "insert_query = [\"INSERT INTO a VALUES ('%u', '%h')\", "
                            "\"INSERT INTO b VALUES ('%u', %e)\"]\n"));
  auto& m = as_mysql(b);
  EXPECT_EQ(m.preset(), "");
  EXPECT_EQ(m.settings().default_scheme, "PLAIN");
  EXPECT_EQ(statements(m, MysqlBackend::kLookup).at(0).sql,
            "SELECT CONCAT('{PLAIN}', clear) FROM users WHERE id = ? AND enabled = 1");
  EXPECT_EQ(statements(m, MysqlBackend::kInsert).size(), 2u);
  // Operations without a statement say so, without touching the (absent) server.
  EXPECT_EQ(m.set_password("a", "x").status, AccountStore::Status::NotConfigured);
  EXPECT_EQ(m.remove("a").status, AccountStore::Status::NotConfigured);
  EXPECT_EQ(m.set_enabled("a", false).message,
            "no enable_query is configured (set schema or enable_query)");
  std::vector<AccountStore::Account> accounts;
  EXPECT_EQ(m.list("", &accounts).status, AccountStore::Status::NotConfigured);
}

TEST(MysqlConfig, HostsSocketTimeoutsTlsAndPasswordFile) {
  mailauth::testing::TempDir dir;
  mailauth::testing::write_file(dir.file("secret"), "  s3cret pw\t\n\n");
  auto b = make(base_config(
      "hosts = [\"db1\", \"db2:3307\", \"[::1]:3308\", \"fe80::1\"]\nuser = \"u\"\n"
      "password_file = \"" +
      dir.file("secret") +
      "\"\ndatabase = \"d\"\nschema = \"users\"\n"
      "connect_timeout = \"1s\"\nread_timeout = 2\nwrite_timeout = \"9s\"\npool_size = 2\n"
      "tls = true\ntls_ca = \"/etc/ssl/ca.pem\"\n"));
  const auto& s = as_mysql(b).settings();
  ASSERT_EQ(s.connect.endpoints.size(), 4u);
  EXPECT_EQ(s.connect.endpoints[0].label(), "db1:3306");
  EXPECT_EQ(s.connect.endpoints[1].label(), "db2:3307");
  EXPECT_EQ(s.connect.endpoints[2].label(), "[::1]:3308");
  EXPECT_EQ(s.connect.endpoints[3].label(), "[fe80::1]:3306");
  EXPECT_EQ(s.connect.password.view(), "s3cret pw");
  EXPECT_EQ(s.connect.connect_timeout_s, 1u);
  EXPECT_EQ(s.connect.read_timeout_s, 2u);
  EXPECT_EQ(s.connect.write_timeout_s, 9u);
  EXPECT_EQ(s.pool_size, 2u);
  EXPECT_TRUE(s.connect.tls);
  EXPECT_EQ(s.connect.tls_ca, "/etc/ssl/ca.pem");

  auto u =
      make(base_config("socket = \"/run/mysqld/mysqld.sock\"\nhosts = []\nuser = \"u\"\n"
                       "database = \"d\"\nschema = \"users\"\n"));
  EXPECT_EQ(as_mysql(u).settings().connect.endpoints.at(0).label(), "unix:/run/mysqld/mysqld.sock");
  // interface.md's example writes socket = "" beside hosts: empty means unset.
  auto v = make(base_config(std::string(kWhere) + "socket = \"\"\nschema = \"users\"\n"));
  EXPECT_EQ(as_mysql(v).settings().connect.endpoints.at(0).label(), "127.0.0.1:3306");
}

TEST(MysqlConfig, ErrorsNameTheFileLineAndKey) {
  const std::string w = kWhere;
  EXPECT_EQ(config_error(w),
            "test.conf:4: key 'backend[1].query': is required (or schema = "
            "\"users\" or \"postfixadmin\" for a preset)");
  EXPECT_EQ(config_error(w + "query = \"SELECT crypt FROM users WHERE id = '%x'\"\n"),
            "test.conf:10: key 'backend[1].query': unknown escape %x (this statement takes %u %n "
            "%d %r %s; write %% for a literal percent sign)");
  EXPECT_EQ(config_error(w + "query = \"SELECT crypt FROM users WHERE id = '%h'\"\n"),
            "test.conf:10: key 'backend[1].query': %h cannot be used in this statement (it takes "
            "%u %n %d %r %s)");
  EXPECT_EQ(config_error(w + "query = \"SELECT crypt FROM users LIMIT 1\"\n"),
            "test.conf:10: key 'backend[1].query': must use %u (or %n) to select the user; "
            "without it every login would match the same row");
  EXPECT_EQ(
      config_error(w + "schema = \"users\"\npassword_query = \"UPDATE users SET crypt = "
                       "'x' WHERE id = '%u'\"\n"),
      "test.conf:11: key 'backend[1].password_query': must use %h, the new stored credential");
  EXPECT_EQ(config_error(w + "schema = \"users\"\nenable_query = [\"UPDATE users SET enabled = %e "
                             "WHERE id = '%u'\", \"UPDATE x SET y = '%h'\"]\n"),
            "test.conf:11: key 'backend[1].enable_query': statement 2 %h cannot be used in this "
            "statement (it takes %u %n %d %e)");
  EXPECT_EQ(config_error(w + "schema = \"guide\"\n"),
            "test.conf:10: key 'backend[1].schema': must be \"users\" or \"postfixadmin\"");
  EXPECT_EQ(config_error(w + "schema = \"users\"\nsocket = \"/run/mysqld/mysqld.sock\"\n"),
            "test.conf:11: key 'backend[1].socket': set either hosts or socket, not both");
  EXPECT_EQ(config_error("user = \"u\"\ndatabase = \"d\"\nschema = \"users\"\n"),
            "test.conf:4: key 'backend[1].hosts': is required (a list of \"host:port\"), or "
            "socket = \"/run/mysqld/mysqld.sock\"");
  EXPECT_EQ(
      config_error("hosts = [\"db:99999\"]\nuser = \"u\"\ndatabase = \"d\"\nschema = \"users\"\n"),
      "test.conf:6: key 'backend[1].hosts': \"db:99999\": the port must be 1 to 65535");
  EXPECT_EQ(config_error("hosts = [\"db:\"]\nuser = \"u\"\ndatabase = \"d\"\nschema = \"users\"\n"),
            "test.conf:6: key 'backend[1].hosts': \"db:\": the port is empty");
  EXPECT_EQ(
      config_error(
          "hosts = [\"/run/mysqld.sock\"]\nuser = \"u\"\ndatabase = \"d\"\nschema = \"users\"\n"),
      "test.conf:6: key 'backend[1].hosts': \"/run/mysqld.sock\": not a host name (for a "
      "UNIX socket, use socket = \"PATH\")");
  EXPECT_EQ(config_error("hosts = [\"db\"]\ndatabase = \"d\"\nschema = \"users\"\n"),
            "test.conf:4: key 'backend[1].user': is required");
  EXPECT_EQ(config_error(w + "schema = \"users\"\npassword_file = \"/nonexistent/secret\"\n"),
            "test.conf:11: key 'backend[1].password_file': set either password or password_file, "
            "not both");
  EXPECT_EQ(config_error("hosts = [\"db\"]\nuser = \"u\"\ndatabase = \"d\"\nschema = \"users\"\n"
                         "password_file = \"/nonexistent/secret\"\n"),
            "test.conf:10: key 'backend[1].password_file': cannot read /nonexistent/secret: No "
            "such file or directory");
  EXPECT_EQ(config_error(w + "schema = \"users\"\nread_timeout = \"1500ms\"\n"),
            "test.conf:11: key 'backend[1].read_timeout': must be whole seconds from 1s to 9s (the "
            "MariaDB client counts in seconds, and Postfix gives up on an answer after 10s)");
  EXPECT_NE(config_error(w + "schema = \"users\"\nconnect_timeout = \"30s\"\n").find("1s to 9s"),
            std::string::npos);
  EXPECT_EQ(config_error(w + "schema = \"users\"\ntls_ca = \"/ca.pem\"\n"),
            "test.conf:11: key 'backend[1].tls_ca': needs tls = true");
  EXPECT_EQ(config_error(w + "schema = \"users\"\ntls = true\ntls_cert = \"/c.pem\"\n"),
            "test.conf:12: key 'backend[1].tls_cert': tls_cert and tls_key go together (the client "
            "certificate and its key)");
  EXPECT_EQ(config_error(w + "schema = \"users\"\npool_size = 0\n"),
            "test.conf:11: key 'backend[1].pool_size': must be between 1 and 64");
  EXPECT_EQ(config_error(w + "schema = \"users\"\ndefault_scheme = \"MD5\"\n"),
            "test.conf:11: key 'backend[1].default_scheme': must be \"CRYPT\" or \"PLAIN\"");
  EXPECT_EQ(config_error(w + "schema = \"users\"\nqeury = \"x\"\n"),
            "test.conf:11: key 'backend[1].qeury': unknown key");
  EXPECT_EQ(config_error(w + "schema = \"users\"\nlist_query = []\n"),
            "test.conf:11: key 'backend[1].list_query': must not be empty");
}

TEST(MysqlConfig, RehashKeyAndThePresetsRehashQuery) {
  // Without `rehash`, nothing is rehashed, but the preset still has the statement.
  auto plain = make(base_config(std::string(kWhere) + "schema = \"users\"\n"));
  EXPECT_EQ(plain->rehash_scheme(), "");
  // users: the crypt column, compared as bytes; clear is left alone (the
  // password did not change).
  auto b = make(base_config(std::string(kWhere) + "schema = \"users\"\nrehash = \"yescrypt\"\n"));
  auto& m = as_mysql(b);
  EXPECT_EQ(m.rehash_scheme(), "yescrypt");
  ASSERT_EQ(statements(m, MysqlBackend::kRehash).size(), 1u);
  EXPECT_EQ(statements(m, MysqlBackend::kRehash).at(0).sql,
            "UPDATE users SET crypt = ? WHERE id = ? AND crypt = CAST(? AS BINARY)");
  EXPECT_EQ(statements(m, MysqlBackend::kRehash).at(0).params, "huo");
  EXPECT_EQ(MysqlBackend::key_of(MysqlBackend::kRehash), std::string("rehash_query"));
  // postfixadmin: the password column, with modified as its password change sets it.
  auto p = make(base_config(std::string(kWhere) +
                            "schema = \"postfixadmin\"\nrehash = \"argon2id\"\n"));
  auto& pm = as_mysql(p);
  EXPECT_EQ(pm.rehash_scheme(), "argon2id");
  EXPECT_TRUE(pm.wants_scheme_prefix());
  EXPECT_EQ(statements(pm, MysqlBackend::kRehash).at(0).sql,
            "UPDATE mailbox SET password = ?, modified = NOW() WHERE username = ? AND password = "
            "CAST(? AS BINARY)");
  EXPECT_EQ(statements(pm, MysqlBackend::kRehash).at(0).params, "huo");
  // Every scheme pwdfile's rehash takes.
  for (const char* scheme : {"argon2id", "yescrypt", "bcrypt", "sha512-crypt", "sha256-crypt"}) {
    auto x = make(base_config(std::string(kWhere) + "schema = \"users\"\nrehash = \"" + scheme +
                              "\"\n"));
    EXPECT_EQ(x->rehash_scheme(), scheme);
  }
  // A custom statement: %n with %d selects the row too; a list runs in one transaction.
  auto c = make(base_config(
      std::string(kWhere) +
      "query = \"SELECT pw FROM accounts WHERE local = '%n' AND dom = '%d'\"\n"
      "rehash = \"bcrypt\"\n"
      "rehash_query = [\"UPDATE accounts SET pw = '%h' WHERE local = '%n' AND dom = '%d' AND "
      "pw = BINARY '%o'\", \"UPDATE audit SET rehashed = NOW() WHERE login = '%n@%d'\"]\n"));
  auto& cm = as_mysql(c);
  EXPECT_EQ(cm.rehash_scheme(), "bcrypt");
  ASSERT_EQ(statements(cm, MysqlBackend::kRehash).size(), 2u);
  EXPECT_EQ(statements(cm, MysqlBackend::kRehash).at(0).params, "hndo");
  // A custom lookup alone has no rehash statement: the operation says so
  // without touching the (absent) server.
  auto none = make(base_config(std::string(kWhere) +
                               "query = \"SELECT crypt FROM users WHERE id = '%u'\"\n"));
  auto r = as_mysql(none).replace_password("a", "$5$old", "$y$new");
  EXPECT_EQ(r.status, AccountStore::Status::NotConfigured);
  EXPECT_EQ(r.message, "no rehash_query is configured (set schema or rehash_query)");
}

TEST(MysqlConfig, RehashErrors) {
  const std::string w = std::string(kWhere) + "schema = \"users\"\n";
  EXPECT_EQ(config_error(w + "rehash = \"md5-crypt\"\n"),
            "test.conf:11: key 'backend[1].rehash': must be argon2id, yescrypt, bcrypt, "
            "sha512-crypt or sha256-crypt");
  EXPECT_EQ(config_error(w + "rehash = \"ARGON2ID\"\n"),
            "test.conf:11: key 'backend[1].rehash': must be argon2id, yescrypt, bcrypt, "
            "sha512-crypt or sha256-crypt");
  EXPECT_EQ(config_error(std::string(kWhere) +
                         "query = \"SELECT crypt FROM users WHERE id = '%u'\"\n"
                         "rehash = \"argon2id\"\n"),
            "test.conf:11: key 'backend[1].rehash': needs rehash_query (or schema = \"users\" or "
            "\"postfixadmin\", which supply one)");
  EXPECT_EQ(config_error(w + "rehash_query = \"UPDATE users SET crypt = '%h' WHERE id = '%u'\"\n"),
            "test.conf:11: key 'backend[1].rehash_query': must use %o, the stored credential the "
            "login was verified against, so that one changed meanwhile is left alone (e.g. AND "
            "crypt = CAST('%o' AS BINARY))");
  EXPECT_EQ(config_error(w + "rehash_query = \"UPDATE users SET crypt = 'x' WHERE id = '%u' AND "
                             "crypt = '%o'\"\n"),
            "test.conf:11: key 'backend[1].rehash_query': must use %h, the new stored credential");
  EXPECT_EQ(config_error(w + "rehash_query = \"UPDATE users SET crypt = '%h' WHERE crypt = "
                             "'%o'\"\n"),
            "test.conf:11: key 'backend[1].rehash_query': must use %u (or %n and %d) to select "
            "the user's row");
  EXPECT_EQ(config_error(w + "rehash_query = \"UPDATE users SET crypt = '%h' WHERE local = '%n' "
                             "AND crypt = '%o'\"\n"),
            "test.conf:11: key 'backend[1].rehash_query': must use %u (or %n and %d) to select "
            "the user's row");
  EXPECT_EQ(config_error(w + "rehash_query = \"UPDATE users SET crypt = '%h' WHERE id = '%u' AND "
                             "crypt = '%o' AND svc = '%s'\"\n"),
            "test.conf:11: key 'backend[1].rehash_query': %s cannot be used in this statement (it "
            "takes %u %n %d %h %o)");
  EXPECT_EQ(config_error(w + "rehash_query = []\n"),
            "test.conf:11: key 'backend[1].rehash_query': must not be empty");
  // %o belongs to the rehash alone.
  EXPECT_EQ(config_error(w + "password_query = \"UPDATE users SET crypt = '%h' WHERE id = '%u' "
                             "AND crypt = '%o'\"\n"),
            "test.conf:11: key 'backend[1].password_query': %o cannot be used in this statement "
            "(it takes %u %n %d %h)");
}

TEST(MysqlConfig, SchemaTextIsTheShippedSqlFile) {
  for (std::string preset : {"users", "postfixadmin"}) {
    std::ifstream in(std::string(MAILAUTH_TEST_DATA) + "/../../backends/mysql/schema-" + preset +
                     ".sql");
    ASSERT_TRUE(in) << preset;
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_EQ(MysqlBackend::schema_sql(preset), text.str()) << preset;
  }
  EXPECT_EQ(MysqlBackend::schema_sql("other"), "");
}

// --- a database that is down -------------------------------------------------------------

TEST(MysqlDown, LookupsAreTemporaryFailuresAndFailFastWhileDown) {
  // Port 1 on loopback: connection refused at once.
  auto b =
      make(base_config("hosts = [\"127.0.0.1:1\"]\nuser = \"u\"\npassword = \"p\"\n"
                       "database = \"d\"\nschema = \"users\"\nconnect_timeout = \"1s\"\n"));
  auto& m = as_mysql(b);
  LookupResult r = m.lookup(Query{"alice", "", "smtp", ""});
  EXPECT_EQ(r.status, Status::TempFail);
  EXPECT_NE(r.reason.find("127.0.0.1:1"), std::string::npos) << r.reason;
  // Within the next second: no new connection attempt, still a temporary failure.
  r = m.lookup(Query{"alice", "", "smtp", ""});
  EXPECT_EQ(r.status, Status::TempFail);
  EXPECT_NE(r.reason.find("no database host is reachable"), std::string::npos) << r.reason;
  // A name that cannot be in a utf8mb4 column is unknown, not a failure.
  EXPECT_EQ(m.lookup(Query{"\xFF\xFE", "", "smtp", ""}).status, Status::Unknown);
  EXPECT_EQ(m.add("a@b", "x", "", true).status, AccountStore::Status::TempFail);
  const std::string problem = m.check();
  EXPECT_EQ(problem.rfind("cannot connect to the database: 127.0.0.1:1: ", 0), 0u) << problem;
}

// --- live: against the integration test's private MariaDB ----------------------------------

struct LiveServer {
  std::string socket, user, password, database;
  static std::optional<LiveServer> from_env() {
    const char* s = std::getenv("MAILAUTH_TEST_MYSQL_SOCKET");
    if (!s || !*s) return std::nullopt;
    auto get = [](const char* k, const char* def) {
      const char* v = std::getenv(k);
      return std::string(v ? v : def);
    };
    return LiveServer{s, get("MAILAUTH_TEST_MYSQL_USER", "mailauth"),
                      get("MAILAUTH_TEST_MYSQL_PASSWORD", ""),
                      get("MAILAUTH_TEST_MYSQL_DATABASE", "mailauth_writes")};
  }
  std::unique_ptr<Backend> backend(const std::string& extra, std::string db = "") const {
    if (db.empty()) db = database;
    return make(base_config("socket = \"" + socket + "\"\nuser = \"" + user + "\"\npassword = \"" +
                            password + "\"\ndatabase = \"" + db + "\"\n" + extra));
  }
};

#define REQUIRE_LIVE_SERVER(var)                                                               \
  auto var##_opt = LiveServer::from_env();                                                     \
  if (!var##_opt) GTEST_SKIP() << "MAILAUTH_TEST_MYSQL_SOCKET is not set (see test_mysql.py)"; \
  const LiveServer& var = *var##_opt

using WS = AccountStore::Status;

void exercise_writes(MysqlBackend& m, const std::string& user, const std::string& domain) {
  LookupResult r = m.lookup(Query{user, "", "smtp", ""});
  ASSERT_EQ(r.status, Status::Unknown) << r.reason;
  auto w = m.add(user, "{PLAIN}first", "Test User", true);
  ASSERT_EQ(w.status, WS::Done) << w.message;
  r = m.lookup(Query{user, "", "smtp", ""});
  ASSERT_EQ(r.status, Status::Found) << r.reason;
  EXPECT_EQ(r.credential.stored.view(), "{PLAIN}first");
  EXPECT_FALSE(r.credential.disabled);
  EXPECT_EQ(m.add(user, "{PLAIN}again", "", true).status, WS::Exists);

  EXPECT_EQ(m.set_password(user, "{PLAIN}second").status, WS::Done);
  // The same value again still counts as a match (CLIENT_FOUND_ROWS).
  EXPECT_EQ(m.set_password(user, "{PLAIN}second").status, WS::Done);
  EXPECT_EQ(m.lookup(Query{user, "", "smtp", ""}).credential.stored.view(), "{PLAIN}second");

  EXPECT_EQ(m.set_enabled(user, false).status, WS::Done);
  r = m.lookup(Query{user, "", "smtp", ""});
  EXPECT_EQ(r.status, Status::Found);
  EXPECT_TRUE(r.credential.disabled);
  EXPECT_EQ(m.set_enabled(user, false).status, WS::Done);
  EXPECT_EQ(m.set_enabled(user, true).status, WS::Done);
  EXPECT_FALSE(m.lookup(Query{user, "", "smtp", ""}).credential.disabled);

  ASSERT_EQ(m.add("other@elsewhere.test", "{PLAIN}o", "Other", false).status, WS::Done);
  std::vector<AccountStore::Account> accounts;
  ASSERT_EQ(m.list(domain, &accounts).status, WS::Done);
  ASSERT_EQ(accounts.size(), 1u);
  EXPECT_EQ(accounts[0].user, user);
  EXPECT_EQ(accounts[0].name, "Test User");
  EXPECT_TRUE(accounts[0].enabled);
  ASSERT_EQ(m.list("", &accounts).status, WS::Done);
  ASSERT_EQ(accounts.size(), 2u);
  const auto& other = accounts[0].user == user ? accounts[1] : accounts[0];
  EXPECT_EQ(other.user, "other@elsewhere.test");
  EXPECT_EQ(other.name, "Other");
  EXPECT_FALSE(other.enabled);

  EXPECT_EQ(m.remove(user).status, WS::Done);
  EXPECT_EQ(m.lookup(Query{user, "", "smtp", ""}).status, Status::Unknown);
  EXPECT_EQ(m.remove(user).status, WS::NotFound);
  EXPECT_EQ(m.set_password(user, "{PLAIN}x").status, WS::NotFound);
  EXPECT_EQ(m.set_enabled(user, true).status, WS::NotFound);
  EXPECT_EQ(m.remove("other@elsewhere.test").status, WS::Done);
  // Values the table cannot hold are refused, not a backend failure.
  EXPECT_EQ(m.add(std::string(300, 'x') + "@" + domain, "{PLAIN}x", "", true).status,
            WS::Refused);
}

TEST(MysqlLive, UsersPresetWrites) {
  REQUIRE_LIVE_SERVER(server);
  auto b = server.backend("schema = \"users\"\n");
  auto& m = as_mysql(b);
  ASSERT_EQ(b->accounts(), static_cast<AccountStore*>(&m));  // what mailauth-user uses
  ASSERT_EQ(m.check(), "");
  exercise_writes(m, "writer@users.test", "users.test");
}

TEST(MysqlLive, PostfixadminPresetWrites) {
  REQUIRE_LIVE_SERVER(server);
  auto b = server.backend("schema = \"postfixadmin\"\n");
  auto& m = as_mysql(b);
  ASSERT_EQ(m.check(), "");
  // The alias row is created along with the mailbox (test_mysql.py checks it
  // with SQL afterwards); a user name with quotes and backslashes is data.
  exercise_writes(m, "o'brien\\x@pfa.test", "pfa.test");
  ASSERT_EQ(m.add("kept@pfa.test", "{PLAIN}k", "Kept", true).status, WS::Done);
}

TEST(MysqlLive, ApplySchemaCreatesThePresetTables) {
  REQUIRE_LIVE_SERVER(server);
  for (const std::string preset : {"users", "postfixadmin"}) {
    // test_mysql.py made these empty databases and granted ALL on them.
    auto b = server.backend("schema = \"" + preset + "\"\n", "mailauth_schema_" + preset);
    auto& m = as_mysql(b);
    EXPECT_NE(m.check(), "") << preset;  // no tables yet
    auto r = m.apply_schema();
    ASSERT_EQ(r.status, WS::Done) << preset << ": " << r.message;
    EXPECT_EQ(m.apply_schema().status, WS::Done) << preset;  // existing tables are kept
    EXPECT_EQ(m.check(), "") << preset;
    ASSERT_EQ(m.add("new@schema.test", "{PLAIN}x", "New", true).status, WS::Done) << preset;
    EXPECT_EQ(m.lookup(Query{"new@schema.test", "", "smtp", ""}).status, Status::Found);
  }
  // Without a preset there is no schema; without CREATE privilege it is refused.
  auto custom = server.backend("query = \"SELECT secret FROM edge WHERE login = '%u'\"\n");
  EXPECT_EQ(as_mysql(custom).apply_schema().status, WS::NotConfigured);
  auto readonly = server.backend("schema = \"users\"\n", "mail");
  auto r = as_mysql(readonly).apply_schema();
  EXPECT_EQ(r.status, WS::Refused) << r.message;
  EXPECT_NE(r.message.find("CREATE command denied"), std::string::npos) << r.message;
}

TEST(MysqlLive, RehashReplacesOnlyTheCredentialTheLoginSaw) {
  REQUIRE_LIVE_SERVER(server);
  for (const std::string preset : {"users", "postfixadmin"}) {
    auto b = server.backend("schema = \"" + preset + "\"\nrehash = \"yescrypt\"\n");
    auto& m = as_mysql(b);
    ASSERT_EQ(m.check(), "") << preset;
    const std::string user = "rehash@" + preset + ".test";
    auto stored = [&] {
      return std::string(m.lookup(Query{user, "", "smtp", ""}).credential.stored.view());
    };
    ASSERT_EQ(m.add(user, "{PLAIN}Old-Secret", "Rehash", true).status, WS::Done) << preset;
    const std::string seen = stored();  // as the login's lookup returned it, prefix and all
    ASSERT_EQ(seen, "{PLAIN}Old-Secret");

    // Not the stored credential: nothing is written.
    auto r = m.replace_password(user, "{PLAIN}other", "{PLAIN}new");
    EXPECT_EQ(r.status, WS::NotFound) << preset << ": " << r.message;
    EXPECT_EQ(r.message, "the credential changed meanwhile (no row matched rehash_query)");
    // Compared as bytes, not by the column's case-insensitive, space-padding
    // collation.
    EXPECT_EQ(m.replace_password(user, "{plain}old-secret", "{PLAIN}new").status, WS::NotFound)
        << preset;
    EXPECT_EQ(m.replace_password(user, seen + " ", "{PLAIN}new").status, WS::NotFound) << preset;
    EXPECT_EQ(stored(), seen) << preset;

    // The admin sets a password between the login's lookup and its rehash.
    ASSERT_EQ(m.set_password(user, "{PLAIN}admin-set").status, WS::Done);
    EXPECT_EQ(m.replace_password(user, seen, "{PLAIN}rehashed").status, WS::NotFound) << preset;
    EXPECT_EQ(stored(), "{PLAIN}admin-set") << preset;

    // Still the credential the login saw: replaced, once.
    r = m.replace_password(user, "{PLAIN}admin-set", "{PLAIN}rehashed");
    EXPECT_EQ(r.status, WS::Done) << preset << ": " << r.message;
    EXPECT_EQ(stored(), "{PLAIN}rehashed") << preset;
    EXPECT_EQ(m.replace_password(user, "{PLAIN}admin-set", "{PLAIN}again").status, WS::NotFound);
    EXPECT_EQ(stored(), "{PLAIN}rehashed") << preset;
    // Nobody, or a name no utf8mb4 column holds: no row.
    EXPECT_EQ(m.replace_password("nobody@" + preset + ".test", "{PLAIN}rehashed", "{PLAIN}x").status,
              WS::NotFound);
    EXPECT_EQ(m.replace_password("\xFF", "{PLAIN}rehashed", "{PLAIN}x").status, WS::NotFound);
    EXPECT_EQ(stored(), "{PLAIN}rehashed") << preset;

    ASSERT_EQ(m.remove(user).status, WS::Done) << preset;  // test_mysql.py counts the rows left
    EXPECT_EQ(m.replace_password(user, "{PLAIN}rehashed", "{PLAIN}x").status, WS::NotFound);
  }
}

TEST(MysqlLive, LookupEdgeCases) {
  REQUIRE_LIVE_SERVER(server);
  // test_mysql.py made this table: login, secret (NULL allowed), flag.
  auto b =
      server.backend("query = \"SELECT secret, flag AS Enabled FROM edge WHERE login = '%u'\"\n");
  auto& m = as_mysql(b);
  auto find = [&](std::string_view user) { return m.lookup(Query{user, "", "smtp", ""}); };
  LookupResult r = find("long");
  ASSERT_EQ(r.status, Status::Found) << r.reason;
  EXPECT_EQ(r.credential.stored.size(), 3000u);  // longer than the first fetch buffer
  EXPECT_FALSE(r.credential.disabled);
  r = find("null-secret");
  EXPECT_EQ(r.status, Status::Found);
  EXPECT_TRUE(r.credential.disabled);
  EXPECT_EQ(r.credential.disabled_reason, "no stored credential (NULL or empty)");
  EXPECT_TRUE(r.credential.stored.empty());
  r = find("empty-secret");
  EXPECT_EQ(r.status, Status::Found);
  EXPECT_TRUE(r.credential.disabled);
  for (const char* user : {"flag-null", "flag-zero", "flag-no", "flag-junk"}) {
    r = find(user);
    EXPECT_EQ(r.status, Status::Found) << user;
    EXPECT_TRUE(r.credential.disabled) << user;
  }
  for (const char* user : {"flag-two", "flag-yes", "flag-bit"}) {
    r = find(user);
    EXPECT_EQ(r.status, Status::Found) << user;
    EXPECT_FALSE(r.credential.disabled) << user;
  }
  EXPECT_EQ(find(std::string_view("long\0", 5)).status, Status::Unknown);
  EXPECT_EQ(find("x' OR '1'='1").status, Status::Unknown);
  EXPECT_EQ(find("%").status, Status::Unknown);
  EXPECT_EQ(find("\\").status, Status::Unknown);
}

}  // namespace
}  // namespace mailauth::backend
