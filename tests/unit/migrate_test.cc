// mailauth-migrate's parsers and translation (src/migrate), over text and
// in-memory file trees: what is carried over, and what is reported rather
// than silently dropped.
#include "src/migrate/migrate.h"

#include <gtest/gtest.h>

#include <dirent.h>

#include <fstream>
#include <map>
#include <sstream>

#include "src/config/config.h"
#include "src/migrate/parse.h"

namespace mailauth::migrate {
namespace {

// --- parsers ---------------------------------------------------------------------

TEST(MigrateParse, ShellAssignmentsAsDebiansDefaultFile) {
  const auto v = parse_shell_assignments(
      "# comment\nSTART=yes\nDESC=\"SASL Authentication Daemon\"\n"
      "OPTIONS='-c -m /var/spool/postfix/var/run/saslauthd -r'\nexport THREADS=3\n"
      "echo hi\nMECH_OPTIONS=\"\"\n");
  EXPECT_EQ(v.at("START").value, "yes");
  EXPECT_EQ(v.at("DESC").value, "SASL Authentication Daemon");
  EXPECT_EQ(v.at("OPTIONS").value, "-c -m /var/spool/postfix/var/run/saslauthd -r");
  EXPECT_EQ(v.at("OPTIONS").line, 4);
  EXPECT_EQ(v.at("THREADS").value, "3");
  EXPECT_EQ(v.at("MECH_OPTIONS").value, "");
  EXPECT_EQ(v.count("echo"), 0u);
}

TEST(MigrateParse, SaslauthdOptions) {
  const auto o = parse_saslauthd_options(
      shell_words("-a pam -cr -m /var/spool/postfix/var/run/saslauthd -n5 -t 3600 -s 512 -V -l"));
  EXPECT_EQ(o.mech, "pam");
  EXPECT_TRUE(o.cache);
  EXPECT_TRUE(o.join_realm);
  EXPECT_EQ(o.dir, "/var/spool/postfix/var/run/saslauthd");
  EXPECT_EQ(o.threads, 5);
  EXPECT_EQ(o.cache_ttl, 3600);
  EXPECT_EQ(o.cache_kb, 512);
  ASSERT_EQ(o.not_understood.size(), 2u);  // -V and -l: reported, not dropped
  EXPECT_EQ(o.not_understood[0], "-V");
  const auto bad = parse_saslauthd_options(shell_words("-n many -m"));
  EXPECT_EQ(bad.threads, -1);
  EXPECT_EQ(bad.not_understood.size(), 2u);
}

TEST(MigrateParse, PamLines) {
  const auto lines = parse_pam(
      "# comment\n"
      "auth\t[success=1 default=ignore]\tpam_unix.so nullok\n"
      "-auth optional pam_gnome_keyring.so\n"
      "@include common-account\n"
      "auth required /lib/x86_64-linux-gnu/security/pam_mysql.so user=u \\\n"
      "  [where=active = 1] crypt=1 # trailing comment\n"
      "account include system-auth\n");
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0].line, 2);
  EXPECT_EQ(lines[0].control, "[success=1 default=ignore]");
  EXPECT_EQ(lines[0].module, "pam_unix.so");
  EXPECT_TRUE(lines[1].quiet);
  EXPECT_EQ(lines[1].type, "auth");
  EXPECT_EQ(lines[2].type, "@include");
  EXPECT_EQ(lines[2].module, "common-account");
  EXPECT_EQ(lines[3].line, 5);
  EXPECT_EQ(pam_module_name(lines[3].module), "pam_mysql");
  const auto a = pam_args(lines[3].args);
  EXPECT_EQ(a.at("where"), "active = 1");
  EXPECT_EQ(a.at("crypt"), "1");
  EXPECT_EQ(lines[4].control, "include");
}

TEST(MigrateParse, PostfixAndSaslConf) {
  const auto m = parse_postfix_main_cf(
      "queue_directory = /var/spool/postfix\n# c\nsmtpd_recipient_restrictions =\n"
      "    permit_sasl_authenticated,\n    reject_unauth_destination\nsmtpd_sasl_type=dovecot\n");
  EXPECT_EQ(m.at("smtpd_recipient_restrictions").value,
            " permit_sasl_authenticated, reject_unauth_destination");
  EXPECT_EQ(m.at("smtpd_sasl_type").value, "dovecot");
  EXPECT_EQ(m.at("smtpd_sasl_type").line, 6);
  const auto master = parse_postfix_master_cf(
      "smtp      inet  n       -       y       -       -       smtpd\n  -o x=y\n"
      "qmgr      unix  n       -       n       300     1       qmgr\n");
  ASSERT_EQ(master.size(), 2u);
  EXPECT_EQ(master[0].chroot, "y");
  EXPECT_EQ(master[0].command, "smtpd");
  const auto s = parse_sasl_conf("pwcheck_method: saslauthd\nmech_list: PLAIN LOGIN\n");
  EXPECT_EQ(s.at("mech_list").value, "PLAIN LOGIN");
}

TEST(MigrateParse, DovecotConfSectionsIncludesAndContinuations) {
  std::vector<Value> problems;
  const auto nodes = parse_dovecot_conf(
      "auth_mechanisms = plain login\n"
      "!include conf.d/*.conf\n"
      "service auth {\n"
      "  unix_listener /var/spool/postfix/private/auth {\n"
      "    mode = 0660\n"
      "  }\n"
      "}\n"
      "password_query = SELECT a \\\n  FROM b\n"
      "}\n"
      "passdb {\n",
      "f.conf", &problems);
  ASSERT_EQ(nodes.size(), 5u);
  EXPECT_EQ(nodes[1].kind, DovecotNode::Kind::Include);
  EXPECT_EQ(nodes[1].key, "conf.d/*.conf");
  EXPECT_EQ(nodes[2].kind, DovecotNode::Kind::Section);
  EXPECT_EQ(nodes[2].value, "auth");
  ASSERT_EQ(nodes[2].children.size(), 1u);
  EXPECT_EQ(nodes[2].children[0].value, "/var/spool/postfix/private/auth");
  EXPECT_EQ(nodes[2].children[0].children[0].value, "0660");
  EXPECT_EQ(nodes[3].value, "SELECT a    FROM b");
  EXPECT_EQ(nodes[3].line, 8);
  ASSERT_EQ(problems.size(), 2u);  // the stray '}' and the unclosed passdb
  EXPECT_EQ(problems[0].line, 10);
  EXPECT_EQ(problems[1].line, 11);
}

TEST(MigrateParse, ConnectString) {
  const auto c = parse_connect_string("host=/run/mysqld/mysqld.sock dbname=mail user=m "
                                      "password=\"p w\" port=3306");
  EXPECT_EQ(c.at("password"), "p w");
  EXPECT_EQ(c.at("dbname"), "mail");
}

TEST(MigrateParse, TomlQuote) {
  EXPECT_EQ(toml_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
  EXPECT_EQ(toml_quote("\xc3\xa9"), "\"\xc3\xa9\"");
  EXPECT_EQ(toml_quote("\xff"), "\"\\uFFFD\"");
}

// --- translation over an in-memory tree ------------------------------------------------

struct Tree {
  std::map<std::string, std::string> files;
  Sources sources() const {
    Sources s;
    s.read = [this](const std::string& p) -> std::optional<std::string> {
      auto it = files.find(p);
      if (it == files.end()) return std::nullopt;
      return it->second;
    };
    s.list = [this](const std::string& dir) {
      std::vector<std::string> out;
      const std::string prefix = dir + "/";
      for (const auto& [p, _] : files)
        if (p.rfind(prefix, 0) == 0 && p.find('/', prefix.size()) == std::string::npos)
          out.push_back(p.substr(prefix.size()));
      return out;
    };
    return s;
  }
};

bool has_note(const Result& r, Note::Kind kind, const std::string& where, const std::string& text) {
  for (const auto& n : r.report.notes())
    if (n.kind == kind && Report::where(n).find(where) == 0 &&
        n.message.find(text) != std::string::npos)
      return true;
  return false;
}

std::string all_text(const Result& r) {
  std::string s = r.config;
  for (const auto& n : r.report.notes()) s += Report::where(n) + n.message + "\n";
  return s;
}

// The generated file is valid TOML that mailauthd's own loader accepts.
void expect_loads(const Result& r) {
  ASSERT_FALSE(r.config.empty()) << r.error;
  try {
    (void)config::load_string(r.config, "generated.conf", config::Reader::AccountTool);
  } catch (const config::ConfigError& e) {
    ADD_FAILURE() << e.what() << "\n" << r.config;
  }
}

// Nothing usable was written: mailauthd refuses the file (rather than start
// and refuse every login), and the report says the migration is partial.
void expect_no_backend(const Result& r) {
  ASSERT_FALSE(r.config.empty()) << r.error;
  EXPECT_TRUE(r.report.partial());
  try {
    (void)config::load_string(r.config, "generated.conf", config::Reader::AccountTool);
    ADD_FAILURE() << "loaded without a backend";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no [[backend]]"), std::string::npos) << e.what();
  }
}

Tree saslauthd_tree(const std::string& pam_smtp, const std::string& options = "-c -m /var/run/saslauthd") {
  Tree t;
  t.files["/etc/default/saslauthd"] =
      "START=yes\nMECHANISMS=\"pam\"\nTHREADS=5\nOPTIONS=\"" + options + "\"\n";
  t.files["/etc/pam.d/smtp"] = pam_smtp;
  return t;
}

TEST(Migrate, PamMysqlUsersTableBecomesThePresetAndThePasswordASecret) {
  const std::string args =
      "user=mail passwd=s3cr3t-Pw host=db.example.com db=maildb table=users usercolumn=id "
      "passwdcolumn=crypt crypt=1 where=enabled=1 sqllog=0";
  Tree t = saslauthd_tree("auth required pam_mysql.so " + args + "\naccount sufficient pam_mysql.so " +
                          args + "\n");
  Options o;
  o.secret_dir = "/etc/mailauth";
  const Result r = migrate(t.sources(), o);
  expect_loads(r);
  EXPECT_NE(r.config.find("schema = \"users\""), std::string::npos) << r.config;
  EXPECT_NE(r.config.find("hosts = [\"db.example.com\"]"), std::string::npos);
  EXPECT_NE(r.config.find("password_file = \"/etc/mailauth/mysql.secret\""), std::string::npos);
  ASSERT_EQ(r.secrets.size(), 1u);
  EXPECT_EQ(r.secrets[0].content, "s3cr3t-Pw\n");
  EXPECT_EQ(all_text(r).find("s3cr3t-Pw"), std::string::npos);  // never in config or report
  EXPECT_TRUE(has_note(r, Note::Kind::Ignored, "/etc/pam.d/smtp:1:", "sqllog=0"));
  EXPECT_TRUE(has_note(r, Note::Kind::Carried, "/etc/pam.d/smtp:2:", "account pam_mysql"));
  EXPECT_FALSE(r.report.partial());
}

TEST(Migrate, PamMysqlQueryFromArgumentsWithWhereAsEnabledColumn) {
  Tree t = saslauthd_tree(
      "auth required pam_mysql.so user=u passwd= host=/run/mysqld/mysqld.sock db=d table=accounts "
      "usercolumn=login passwdcolumn=pw crypt=3 [where=status = 'ok' AND login LIKE '%@x']\n");
  const Result r = migrate(t.sources(), Options{});
  expect_loads(r);
  EXPECT_NE(r.config.find("query = \"SELECT CONCAT('{PLAIN-MD5}', pw), (status = 'ok' AND login "
                          "LIKE '%%@x') AS enabled FROM accounts WHERE login = '%u'\""),
            std::string::npos)
      << r.config;
  EXPECT_NE(r.config.find("socket = \"/run/mysqld/mysqld.sock\""), std::string::npos);
  EXPECT_TRUE(r.secrets.empty());  // passwd= empty: no password
}

TEST(Migrate, MysqlPasswordSchemeIsReportedAndTheBackendCommentedOut) {
  Tree t = saslauthd_tree(
      "auth required pam_mysql.so user=u passwd=p host=localhost db=d table=t usercolumn=u "
      "passwdcolumn=p crypt=2 statcolumn=st\n");
  const Result r = migrate(t.sources(), Options{});
  expect_no_backend(r);
  EXPECT_TRUE(r.report.partial());
  EXPECT_TRUE(has_note(r, Note::Kind::Unsupported, "/etc/pam.d/smtp:1:", "crypt=2"));
  EXPECT_TRUE(has_note(r, Note::Kind::Unsupported, "/etc/pam.d/smtp:1:", "statcolumn"));
  EXPECT_NE(r.config.find("# [[backend]]\n# type = \"mysql\""), std::string::npos) << r.config;
}

TEST(Migrate, UnknownPamModuleKeepsThePamStackAndIsReported) {
  Tree t = saslauthd_tree("auth sufficient pam_ldap.so\nauth required pam_unix.so\n");
  const Result r = migrate(t.sources(), Options{});
  expect_loads(r);
  EXPECT_TRUE(r.report.partial());
  EXPECT_TRUE(has_note(r, Note::Kind::Unsupported, "/etc/pam.d/smtp:1:", "pam_ldap"));
  EXPECT_NE(r.config.find("type = \"pam\"\nservice = \"smtp\""), std::string::npos) << r.config;
  EXPECT_EQ(r.config.find("type = \"shadow\""), std::string::npos);
  EXPECT_NE(r.config.find("user = \"root\""), std::string::npos);
}

TEST(Migrate, PamUnixBecomesShadowAndDebiansGlueIsNotPartial) {
  Tree t = saslauthd_tree("");
  t.files.erase("/etc/pam.d/smtp");
  t.files["/etc/pam.d/other"] = "@include common-auth\n@include common-account\n";
  t.files["/etc/pam.d/common-auth"] =
      "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\n"
      "auth required pam_permit.so\n";
  t.files["/etc/pam.d/common-account"] =
      "account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so\n"
      "account requisite pam_deny.so\naccount required pam_permit.so\n";
  const Result r = migrate(t.sources(), Options{});
  expect_loads(r);
  EXPECT_FALSE(r.report.partial()) << all_text(r);
  EXPECT_NE(r.config.find("type = \"shadow\""), std::string::npos);
  EXPECT_NE(r.config.find("failure_delay = \"2s\""), std::string::npos);
  EXPECT_NE(r.config.find("user = \"mailauth\""), std::string::npos);
  EXPECT_TRUE(has_note(r, Note::Kind::Carried, "/etc/pam.d/common-auth:1:", "shadow backend"));
}

TEST(Migrate, PamPermitAloneAcceptsAnythingAndIsReported) {
  Tree t = saslauthd_tree("auth required pam_permit.so\n");
  const Result r = migrate(t.sources(), Options{});
  EXPECT_TRUE(has_note(r, Note::Kind::Unsupported, "/etc/pam.d/smtp:1:", "accepts every password"));
  EXPECT_TRUE(r.report.partial());
}

TEST(Migrate, UnknownMechanismIsReported) {
  Tree t = saslauthd_tree("");
  t.files["/etc/default/saslauthd"] = "MECHANISMS=\"sasldb\"\nOPTIONS=\"-c -m /var/run/saslauthd -Z\"\n";
  const Result r = migrate(t.sources(), Options{});
  expect_no_backend(r);
  EXPECT_TRUE(has_note(r, Note::Kind::Unsupported, "/etc/default/saslauthd:1:", "MECHANISMS=sasldb"));
  EXPECT_TRUE(has_note(r, Note::Kind::Ignored, "/etc/default/saslauthd:2:", "-Z"));
}

TEST(Migrate, SaslauthdLdapIsReadAsMailauthdDashALdapReadsIt) {
  Tree t = saslauthd_tree("");
  t.files["/etc/default/saslauthd"] = "MECHANISMS=\"ldap\"\nOPTIONS=\"-c -m /var/run/saslauthd\"\n";
  t.files["/etc/saslauthd.conf"] =
      "ldap_servers: ldap://ldap1.example.com/ ldap://ldap2.example.com/\n"
      "ldap_search_base: ou=people,dc=example,dc=com\n"
      "ldap_filter: (mail=%u)\n"
      "ldap_bind_dn: cn=saslauthd,dc=example,dc=com\n"
      "ldap_password: b1nd-S3cret\n"
      "ldap_start_tls: yes\n";
  const Result r = migrate(t.sources(), Options{});
  expect_loads(r);
  EXPECT_NE(r.config.find("type = \"ldap\""), std::string::npos) << r.config;
  EXPECT_NE(r.config.find("ldap://ldap2.example.com/"), std::string::npos) << r.config;
  EXPECT_NE(r.config.find("password_file = \"/etc/mailauth/ldap.secret\""), std::string::npos)
      << r.config;
  ASSERT_EQ(r.secrets.size(), 1u);
  EXPECT_EQ(r.secrets[0].content, "b1nd-S3cret\n");
  EXPECT_EQ(all_text(r).find("b1nd-S3cret"), std::string::npos);  // never in config or report
  EXPECT_FALSE(r.report.partial());

  // What -a ldap refuses is reported with its line, and nothing is written.
  t.files["/etc/saslauthd.conf"] += "ldap_use_sasl: yes\n";
  const Result refused = migrate(t.sources(), Options{});
  EXPECT_TRUE(refused.report.partial());
  EXPECT_TRUE(has_note(refused, Note::Kind::Unsupported, "/etc/saslauthd.conf", "ldap_use_sasl"));
  EXPECT_EQ(refused.config.find("type = \"ldap\""), std::string::npos);
  EXPECT_EQ(all_text(refused).find("b1nd-S3cret"), std::string::npos);
}

TEST(Migrate, TheSocketGoesWherePostfixLooks) {
  Tree t = saslauthd_tree("auth required pam_pwdfile.so pwdfile=/etc/mail/passwd\n");
  t.files["/etc/postfix/main.cf"] = "smtpd_sasl_type = cyrus\n";
  t.files["/etc/postfix/master.cf"] = "smtp inet n - y - - smtpd\n";
  t.files["/etc/postfix/sasl/smtpd.conf"] =
      "pwcheck_method: saslauthd\nsaslauthd_path: /var/run/saslauthd/mux\n";
  const Result r = migrate(t.sources(), Options{});
  expect_loads(r);
  // saslauthd's -m is /var/run/saslauthd, but smtpd is chrooted.
  EXPECT_NE(r.config.find("socket = \"/var/spool/postfix/var/run/saslauthd/mux\""),
            std::string::npos)
      << r.config;
  EXPECT_NE(r.config.find("group = \"postfix\""), std::string::npos);  // no /etc/group: postfix
}

TEST(Migrate, SeveralInstancesNeedAChoice) {
  Tree t = saslauthd_tree("auth required pam_unix.so\n");
  t.files["/etc/default/saslauthd-other"] = "MECHANISMS=pam\nOPTIONS=\"-m /var/run/other\"\n";
  Result r = migrate(t.sources(), Options{});
  EXPECT_TRUE(r.config.empty());
  EXPECT_NE(r.error.find("--instance"), std::string::npos);
  Options o;
  o.instance = "other";
  r = migrate(t.sources(), o);
  expect_loads(r);
  EXPECT_NE(r.config.find("socket = \"/var/run/other/mux\""), std::string::npos);
  EXPECT_TRUE(has_note(r, Note::Kind::Ignored, "/etc/default/saslauthd:", "not migrated"));
}

Tree dovecot_tree(const std::string& sql) {
  Tree t;
  t.files["/etc/dovecot/dovecot.conf"] =
      "!include conf.d/*.conf\nauth_mechanisms = plain login cram-md5 ntlm\n"
      "auth_failure_delay = 20 secs\n";
  t.files["/etc/dovecot/conf.d/10-auth.conf"] =
      "passdb {\n  driver = sql\n  args = /etc/dovecot/dovecot-sql.conf.ext\n}\n";
  t.files["/etc/dovecot/dovecot-sql.conf.ext"] = sql;
  return t;
}

TEST(Migrate, DovecotDurationsAndSizes) {
  const std::string sql =
      "driver = mysql\nconnect = host=127.0.0.1 dbname=mail user=dove password=p\n"
      "password_query = SELECT password FROM users WHERE email = '%u'\n";
  auto with = [&](const std::string& settings) {
    Tree t = dovecot_tree(sql);
    t.files["/etc/dovecot/dovecot.conf"] = "!include conf.d/*.conf\n" + settings;
    Options o;
    o.from = "dovecot";
    return migrate(t.sources(), o);
  };
  Result r = with("auth_failure_delay = 500 msecs\nauth_cache_size = 1 M\n"
                  "auth_cache_ttl = 1 hour\nauth_cache_negative_ttl = 0\n");
  expect_loads(r);
  EXPECT_NE(r.config.find("failure_delay = \"500ms\""), std::string::npos) << r.config;
  EXPECT_NE(r.config.find("size = 4096"), std::string::npos) << r.config;  // 1 MiB / 256
  EXPECT_NE(r.config.find("ttl = \"3600s\""), std::string::npos) << r.config;
  EXPECT_NE(r.config.find("negative_ttl = \"1s\""), std::string::npos) << r.config;
  r = with("auth_failure_delay = 2\n");  // a plain number is seconds
  EXPECT_NE(r.config.find("failure_delay = \"2s\""), std::string::npos) << r.config;
  for (const char* bad : {"auth_failure_delay = soon\n", "auth_failure_delay = 9999999999 ms\n",
                          "auth_cache_size = lots\n"}) {
    r = with(bad);
    EXPECT_TRUE(r.report.partial()) << bad;
  }
}

TEST(Migrate, DovecotSqlQueryPasswordColumnFirst) {
  Tree t = dovecot_tree(
      "driver = mysql\nconnect = host=127.0.0.1 port=3307 dbname=mail user=dove password=Xyz-123\n"
      "default_pass_scheme = SSHA512\n"
      "password_query = SELECT email AS user, password, 'Y' AS userdb_x FROM virtual_users WHERE "
      "email = '%Lu';\n");
  Options o;
  o.from = "dovecot";
  const Result r = migrate(t.sources(), o);
  expect_loads(r);
  EXPECT_NE(r.config.find("query = \"SELECT IF(LEFT(password, 1) = '{', password, "
                          "CONCAT('{SSHA512}', password)) AS password, email AS user FROM "
                          "virtual_users WHERE email = '%u'\""),
            std::string::npos)
      << r.config;
  EXPECT_NE(r.config.find("hosts = [\"127.0.0.1:3307\"]"), std::string::npos);
  EXPECT_NE(r.config.find("mechanisms = [\"PLAIN\", \"LOGIN\", \"CRAM-MD5\"]"), std::string::npos);
  EXPECT_TRUE(has_note(r, Note::Kind::Unsupported, "/etc/dovecot/dovecot.conf:2:", "ntlm"));
  EXPECT_TRUE(has_note(r, Note::Kind::Unsupported, "/etc/dovecot/dovecot.conf:3:",
                       "auth_failure_delay"));
  EXPECT_EQ(all_text(r).find("Xyz-123"), std::string::npos);
  ASSERT_EQ(r.secrets.size(), 1u);
}

TEST(Migrate, DovecotQueryWithTheClientAddressIsReported) {
  Tree t = dovecot_tree(
      "driver = mysql\nconnect = host=localhost dbname=mail user=dove\n"
      "password_query = SELECT password FROM users WHERE user = '%u' AND ip = '%r'\n");
  Options o;
  o.from = "dovecot";
  const Result r = migrate(t.sources(), o);
  expect_no_backend(r);
  EXPECT_TRUE(has_note(r, Note::Kind::Unsupported, "/etc/dovecot/dovecot-sql.conf.ext:3:",
                       "password_query cannot be expressed"));
  EXPECT_TRUE(r.report.partial());
}

// --- security review: the generated config never accepts a login the old setup refused ---

bool has_kind(const Result& r, Note::Kind kind, const std::string& text) {
  for (const auto& n : r.report.notes())
    if (n.kind == kind && n.message.find(text) != std::string::npos) return true;
  return false;
}

// The whole stack is kept as a pam backend: nothing translated runs alone.
void expect_pam_fallback(const Result& r) {
  expect_loads(r);
  EXPECT_TRUE(r.report.partial()) << all_text(r);
  EXPECT_NE(r.config.find("type = \"pam\"\nservice = \"smtp\""), std::string::npos) << r.config;
  EXPECT_EQ(r.config.find("type = \"shadow\""), std::string::npos) << r.config;
  EXPECT_EQ(r.config.find("type = \"mysql\""), std::string::npos) << r.config;
  EXPECT_FALSE(has_kind(r, Note::Kind::Ignored, "pam_deny")) << all_text(r);
}

const char* kDebianCommonAuth =
    "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\n"
    "auth required pam_permit.so\n";
const char* kMysqlArgs =
    " user=u passwd=p host=localhost db=d table=users usercolumn=id passwdcolumn=crypt crypt=1";

TEST(MigrateControl, DenyBeforeTheIncludeDeniesEveryone) {
  Tree t = saslauthd_tree("auth requisite pam_deny.so\n@include common-auth\n");
  t.files["/etc/pam.d/common-auth"] = kDebianCommonAuth;
  expect_pam_fallback(migrate(t.sources(), Options{}));
}

TEST(MigrateControl, TwoRequiredModulesMustBothPass) {
  Tree t = saslauthd_tree(std::string("auth required pam_unix.so\nauth required pam_mysql.so") +
                          kMysqlArgs + "\n");
  const Result r = migrate(t.sources(), Options{});
  expect_pam_fallback(r);
  EXPECT_TRUE(r.secrets.empty()) << "no secret for a dropped mysql backend";
}

TEST(MigrateControl, OptionalModuleIsNotAnAlternative) {
  Tree t = saslauthd_tree(std::string("auth optional pam_mysql.so") + kMysqlArgs +
                          "\nauth required pam_unix.so\n");
  expect_pam_fallback(migrate(t.sources(), Options{}));
}

TEST(MigrateControl, SuccessJumpThatLandsOnTheDenyIsNotEither) {
  Tree t = saslauthd_tree(std::string("auth [success=1 default=ignore] pam_mysql.so") + kMysqlArgs +
                          "\nauth requisite pam_deny.so\nauth required pam_unix.so\n");
  expect_pam_fallback(migrate(t.sources(), Options{}));
}

TEST(MigrateControl, SuccessJumpPastThePermitIsNotProved) {
  Tree t = saslauthd_tree(
      "auth [success=2 default=ignore] pam_unix.so\nauth requisite pam_deny.so\n"
      "auth required pam_permit.so\nauth optional pam_cap.so\n");
  expect_pam_fallback(migrate(t.sources(), Options{}));
}

TEST(MigrateControl, QuietAuthLineFallsBack) {
  Tree t = saslauthd_tree("-auth required pam_unix.so\n");
  expect_pam_fallback(migrate(t.sources(), Options{}));
}

TEST(MigrateControl, ProvableShapesStillTranslate) {
  {
    Tree t = saslauthd_tree(std::string("auth sufficient pam_mysql.so") + kMysqlArgs +
                            "\nauth sufficient pam_unix.so\nauth required pam_deny.so\n");
    const Result r = migrate(t.sources(), Options{});
    expect_loads(r);
    EXPECT_FALSE(r.report.partial()) << all_text(r);
    EXPECT_NE(r.config.find("type = \"shadow\""), std::string::npos);
    EXPECT_NE(r.config.find("type = \"mysql\""), std::string::npos);
    EXPECT_TRUE(has_note(r, Note::Kind::Carried, "/etc/pam.d/smtp:3:", "pam_deny"));
  }
  {
    Tree t = saslauthd_tree(
        std::string("auth [success=2 default=ignore] pam_mysql.so") + kMysqlArgs +
        "\nauth [success=1 default=ignore] pam_unix.so\nauth requisite pam_deny.so\n"
        "auth required pam_permit.so\n");
    const Result r = migrate(t.sources(), Options{});
    expect_loads(r);
    EXPECT_FALSE(r.report.partial()) << all_text(r);
    EXPECT_NE(r.config.find("type = \"mysql\""), std::string::npos);
  }
}

Tree dovecot_passwd_tree(const std::string& passdb_body) {
  Tree t;
  t.files["/etc/dovecot/dovecot.conf"] = "auth_mechanisms = plain\npassdb {\n" + passdb_body +
                                         "}\npassdb {\n  driver = passwd-file\n"
                                         "  args = scheme=CRYPT /etc/dovecot/users\n}\n";
  return t;
}

Options dovecot_opts() {
  Options o;
  o.from = "dovecot";
  return o;
}

TEST(MigrateDovecot, TrailingCommentIsNotPartOfTheValue) {
  const auto n = parse_dovecot_conf(
      "deny = yes # blocked\nmaster = yes\t# admins\nx = \"a # b\"\ny = a#b\n", "f");
  ASSERT_EQ(n.size(), 4u);
  EXPECT_EQ(n[0].value, "yes");
  EXPECT_EQ(n[1].value, "yes");
  EXPECT_EQ(n[2].value, "a # b");
  EXPECT_EQ(n[3].value, "a#b");
  Tree t = dovecot_passwd_tree(
      "  driver = passwd-file\n  args = /etc/dovecot/masters\n  master = yes  # admins\n");
  const Result r = migrate(t.sources(), dovecot_opts());
  EXPECT_EQ(r.config.find("/etc/dovecot/masters"), std::string::npos) << r.config;
  EXPECT_TRUE(r.report.partial());
}

TEST(MigrateDovecot, DenyPassdbSkippedWritesNoLiveBackend) {
  Tree t = dovecot_passwd_tree(
      "  driver = passwd-file\n  args = /etc/dovecot/blocked\n  deny = yes # blocked\n");
  const Result r = migrate(t.sources(), dovecot_opts());
  expect_no_backend(r);
  EXPECT_TRUE(has_kind(r, Note::Kind::Unsupported, "commented out")) << all_text(r);
}

TEST(MigrateDovecot, UsernameFilterAndResultRulesWriteNoLiveBackend) {
  for (const char* extra : {"  username_filter = *@a.example\n", "  result_failure = continue\n",
                            "  skip = authenticated\n"}) {
    SCOPED_TRACE(extra);
    Tree t;
    t.files["/etc/dovecot/dovecot.conf"] = std::string("passdb {\n  driver = passwd-file\n"
                                                       "  args = /etc/dovecot/users\n") +
                                           extra + "}\n";
    expect_no_backend(migrate(t.sources(), dovecot_opts()));
  }
}

TEST(MigrateDovecot, AccountDenyBeforeChecksWritesNoLiveBackend) {
  Tree t = saslauthd_tree("auth required pam_unix.so\naccount requisite pam_deny.so\n");
  expect_no_backend(migrate(t.sources(), Options{}));
}

TEST(MigrateDovecot, RestrictingExtraFieldsAreNotCarried) {
  Tree t = dovecot_tree(
      "driver = mysql\nconnect = host=localhost dbname=mail user=dove\n"
      "password_query = SELECT email AS user, password, allow_nets FROM users WHERE email = '%u'\n");
  Result r = migrate(t.sources(), dovecot_opts());
  expect_no_backend(r);
  EXPECT_TRUE(has_kind(r, Note::Kind::Unsupported, "allow_nets")) << all_text(r);
  Tree p = dovecot_passwd_tree(
      "  driver = passwd-file\n  args = /etc/dovecot/users\n"
      "  override_fields = nologin=y\n");
  r = migrate(p.sources(), dovecot_opts());
  expect_no_backend(r);
}

TEST(MigrateDovecot, IncludesStayUnderTheRoot) {
  Tree t;
  std::vector<std::string> asked;
  t.files["/etc/dovecot/dovecot.conf"] =
      "!include ../../../../etc/hostname\nsecret-line-contents\npassdb {\n  driver = shadow\n}\n";
  Sources s = t.sources();
  auto inner = s.read;
  s.read = [&](const std::string& p) {
    asked.push_back(p);
    return inner(p);
  };
  const Result r = migrate(s, dovecot_opts());
  for (const auto& p : asked) EXPECT_EQ(p.find(".."), std::string::npos) << p;
  EXPECT_EQ(all_text(r).find("secret-line-contents"), std::string::npos) << all_text(r);
}

TEST(MigrateDovecot, SecretValuesAreNotPrinted) {
  Tree t = dovecot_passwd_tree("  driver = shadow\n");
  t.files["/etc/dovecot/dovecot.conf"] +=
      "auth_policy_server_api_header = Authorization: Basic c2VjcmV0\n";
  const Result r = migrate(t.sources(), dovecot_opts());
  EXPECT_EQ(all_text(r).find("c2VjcmV0"), std::string::npos) << all_text(r);
  EXPECT_TRUE(has_kind(r, Note::Kind::Unsupported, "auth_policy_server_api_header"));
}

TEST(MigrateDovecot, CommentsCarryNoControlBytesOrInvalidUtf8) {
  Tree t;
  t.files["/etc/dovecot/dovecot.conf"] = "!include conf.d/a\x01\x1b\xff.conf\n";
  t.files["/etc/dovecot/conf.d/a\x01\x1b\xff.conf"] = "passdb {\n  driver = shadow\n}\n";
  const Result r = migrate(t.sources(), dovecot_opts());
  expect_loads(r);
  EXPECT_EQ(r.config.find_first_of("\x01\x1b\xff"), std::string::npos) << r.config;
}

TEST(MigrateControl, PamIncludesStayUnderTheRoot) {
  Tree t = saslauthd_tree("@include ../../../../x/common-auth\n");
  t.files["/x/common-auth"] = "auth required pam_unix.so\n";
  std::vector<std::string> asked;
  Sources s = t.sources();
  auto inner = s.read;
  s.read = [&](const std::string& p) {
    asked.push_back(p);
    return inner(p);
  };
  const Result r = migrate(s, Options{});
  for (const auto& p : asked) EXPECT_EQ(p.find(".."), std::string::npos) << p;
  expect_loads(r);  // resolved as inside the root: /x/common-auth
}

TEST(MigrateControl, UnknownArgumentValuesAreNotPrinted) {
  Tree t = saslauthd_tree(std::string("auth required pam_mysql.so") + kMysqlArgs +
                          " sslkey=PRIVATE-KEY-XYZ\n");
  const Result r = migrate(t.sources(), Options{});
  EXPECT_EQ(all_text(r).find("PRIVATE-KEY-XYZ"), std::string::npos) << all_text(r);
  EXPECT_TRUE(has_kind(r, Note::Kind::Unsupported, "sslkey"));
}

TEST(Migrate, TheFixtureTreesMigrate) {
  // The trees the integration test runs the old daemons on.
  const std::string base = std::string(MAILAUTH_TEST_DATA) + "/migrate/";
  for (const char* name : {"saslauthd-pam-system", "saslauthd-pam-mysql-users",
                           "saslauthd-pam-mysql-postfixadmin", "saslauthd-instance-pwdfile",
                           "dovecot-passwd-file", "dovecot-sql"}) {
    SCOPED_TRACE(name);
    Sources s;
    const std::string root = base + name;
    s.read = [&](const std::string& p) -> std::optional<std::string> {
      std::ifstream in(root + p);
      if (!in) return std::nullopt;
      std::ostringstream o;
      o << in.rdbuf();
      return o.str();
    };
    s.list = [&](const std::string& dir) {
      std::vector<std::string> out;
      if (DIR* d = ::opendir((root + dir).c_str())) {
        while (dirent* e = ::readdir(d))
          if (e->d_name[0] != '.') out.push_back(e->d_name);
        ::closedir(d);
      }
      std::sort(out.begin(), out.end());
      return out;
    };
    const Result r = migrate(s, Options{});
    expect_loads(r);
    EXPECT_FALSE(r.report.partial()) << all_text(r);
  }
}

}  // namespace
}  // namespace mailauth::migrate
