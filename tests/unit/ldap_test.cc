// The LDAP backend's pure parts: RFC 4515/4514 escaping and templates.
#include <gtest/gtest.h>

#include <string>

#include "backends/ldap/ldap_connection.h"
#include "backends/ldap/ldap_template.h"
#include "backends/ldap/saslauthd_conf.h"
#include "src/config/config.h"

#include <toml++/toml.h>

namespace mailauth::backend::ldap {
namespace {

using namespace std::string_literals;

// A pooled connection idle past kMaxIdle is closed before use (a NAT box
// may have dropped it silently), never handed to a login to time out on.
TEST(LdapPool, IdleConnectionsAreTooOldAfterKMaxIdle) {
  const auto now = Clock::now();
  EXPECT_TRUE(fresh_enough(now, now));
  EXPECT_TRUE(fresh_enough(now - std::chrono::seconds(29), now));
  EXPECT_FALSE(fresh_enough(now - kMaxIdle - std::chrono::milliseconds(1), now));
  EXPECT_FALSE(fresh_enough(now - std::chrono::minutes(10), now));
  EXPECT_FALSE(fresh_enough(Clock::time_point{}, now));  // never stamped: not trusted
  static_assert(kMaxIdle <= std::chrono::seconds(60), "below common NAT idle limits");
}

// `timeout` is a request's: each step waits what is left of its deadline,
// never more than the timeout itself, and nothing once it has passed.
TEST(LdapDeadline, TimeLeftIsCappedAndZeroOncePassed) {
  using std::chrono::milliseconds;
  const auto now = Clock::now();
  EXPECT_EQ(time_left(now - milliseconds(1), milliseconds(5000)).count(), 0);
  EXPECT_EQ(time_left(now + std::chrono::minutes(1), milliseconds(5000)), milliseconds(5000));
  const auto left = time_left(now + milliseconds(2000), milliseconds(5000));
  EXPECT_GT(left, milliseconds(1500));
  EXPECT_LE(left, milliseconds(2000));
}

// Once the request's deadline has passed no URI is tried (the answer is
// due now), and the URIs are not marked down for it.
TEST(LdapDeadline, NoUriIsTriedOnceTheDeadlineHasPassed) {
  ConnectOptions o;
  o.uris = {"ldap://127.0.0.1:1", "ldap://127.0.0.1:2"};
  HostSelector hosts(o.uris.size(), {});
  Pool pool("ldap test", o, 2, true, &hosts);
  LdapError error;
  EXPECT_FALSE(pool.acquire(Clock::now() - std::chrono::milliseconds(1), &error));
  EXPECT_TRUE(error.not_started);
  EXPECT_FALSE(error.connection_lost());
  EXPECT_NE(error.message.find("not tried"), std::string::npos) << error.message;
  EXPECT_EQ(hosts.plan(Clock::now()), (std::vector<std::size_t>{0, 1}));  // none down
}

// A bind result nobody filled in must never read as success (0).
TEST(LdapBind, AnUnfilledResultIsNotSuccess) {
  EXPECT_EQ(BindResult{}.code, 0x50);  // LDAP_OTHER
  EXPECT_NE(BindResult{}.code, 0);
}

TEST(LdapEscape, FilterValueEscapesRfc4515Specials) {
  EXPECT_EQ(escape_filter_value("alice@example.com"), "alice@example.com");
  EXPECT_EQ(escape_filter_value("*"), "\\2a");
  EXPECT_EQ(escape_filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
  EXPECT_EQ(escape_filter_value("a\\b"), "a\\5cb");
  EXPECT_EQ(escape_filter_value("a\0b"s), "a\\00b");
  EXPECT_EQ(escape_filter_value("\xc3\xa9"), "\\c3\\a9");  // any byte can be \XX
  EXPECT_EQ(escape_filter_value(""), "");
}

TEST(LdapEscape, DnValueEscapesRfc4514Specials) {
  EXPECT_EQ(escape_dn_value("alice"), "alice");
  EXPECT_EQ(escape_dn_value("alice,ou=admins"), "alice\\2cou\\3dadmins");
  EXPECT_EQ(escape_dn_value("a+b"), "a\\2bb");
  EXPECT_EQ(escape_dn_value("\"x\";<y>"), "\\22x\\22\\3b\\3cy\\3e");
  EXPECT_EQ(escape_dn_value("a\\b"), "a\\5cb");
  EXPECT_EQ(escape_dn_value("a\0b"s), "a\\00b");
  EXPECT_EQ(escape_dn_value(" lead"), "\\20lead");
  EXPECT_EQ(escape_dn_value("#hash"), "\\23hash");
  EXPECT_EQ(escape_dn_value("mid #"), "mid #");
  EXPECT_EQ(escape_dn_value("trail "), "trail\\20");
  EXPECT_EQ(escape_dn_value(" "), "\\20");
  EXPECT_EQ(escape_dn_value("*)(uid=*"), "*)(uid\\3d*");  // no DN meaning, '=' escaped anyway
}

TEST(LdapTemplate, ExpandsEscapesInAFilter) {
  auto t = Template::parse("(&(objectClass=inetOrgPerson)(mail=%u)(uid=%n)(o=%d)(x=%r)(s=%s)(p=100%%))",
                           Template::Kind::Filter);
  Values v = Values::for_user("alice@example.com", "realm");
  v.service = "smtp";
  EXPECT_EQ(t.expand(v),
            "(&(objectClass=inetOrgPerson)(mail=alice@example.com)(uid=alice)(o=example.com)"
            "(x=realm)(s=smtp)(p=100%))");
  EXPECT_TRUE(t.uses('u'));
  EXPECT_TRUE(t.uses('s'));
}

TEST(LdapTemplate, DomainIsThePartAfterTheLastAt) {
  auto v = Values::for_user("alice", "example.org");
  EXPECT_EQ(v.local, "alice");
  EXPECT_EQ(v.domain, "");  // as saslauthd's %d: the realm is %r
  EXPECT_EQ(v.realm, "example.org");
  v = Values::for_user("a@b@example.com", "example.org");
  EXPECT_EQ(v.local, "a@b");
  EXPECT_EQ(v.domain, "example.com");
  v = Values::for_user("alice", "");
  EXPECT_EQ(v.domain, "");
}

TEST(LdapTemplate, InjectionNamesStayOneValue) {
  auto f = Template::parse("(&(mail=%u)(objectClass=posixAccount))", Template::Kind::Filter);
  EXPECT_EQ(f.expand(Values::for_user("*)(uid=*", "")),
            "(&(mail=\\2a\\29\\28uid=\\2a)(objectClass=posixAccount))");
  EXPECT_EQ(f.expand(Values::for_user("*", "")), "(&(mail=\\2a)(objectClass=posixAccount))");
  EXPECT_EQ(f.expand(Values::for_user("x)(|(uid=*", "")),
            "(&(mail=x\\29\\28|\\28uid=\\2a)(objectClass=posixAccount))");
  EXPECT_EQ(f.expand(Values::for_user("\\2a", "")), "(&(mail=\\5c2a)(objectClass=posixAccount))");
  EXPECT_EQ(f.expand(Values::for_user("a\0*"s, "")), "(&(mail=a\\00\\2a)(objectClass=posixAccount))");

  auto dn = Template::parse("uid=%n,ou=%d,dc=example,dc=com", Template::Kind::Dn);
  EXPECT_EQ(dn.expand(Values::for_user("alice@example.com", "")),
            "uid=alice,ou=example.com,dc=example,dc=com");
  EXPECT_EQ(dn.expand(Values::for_user("admin,ou=services@example.com", "")),
            "uid=admin\\2cou\\3dservices,ou=example.com,dc=example,dc=com");
  EXPECT_EQ(dn.expand(Values::for_user("x@y,dc=org", "")),
            "uid=x,ou=y\\2cdc\\3dorg,dc=example,dc=com");
  EXPECT_EQ(dn.expand(Values::for_user("a+cn=b", "")), "uid=a\\2bcn\\3db,ou=,dc=example,dc=com");
  EXPECT_EQ(dn.expand(Values::for_user("\\", "")), "uid=\\5c,ou=,dc=example,dc=com");
}

TEST(LdapTemplate, RejectsBadTemplates) {
  EXPECT_THROW(Template::parse("(uid=%x)", Template::Kind::Filter), TemplateError);
  EXPECT_THROW(Template::parse("(uid=%u)%", Template::Kind::Filter), TemplateError);
  EXPECT_THROW(Template::parse("uid=%u", Template::Kind::Filter), TemplateError);
  EXPECT_THROW(Template::parse("(uid=%u", Template::Kind::Filter), TemplateError);
  EXPECT_THROW(Template::parse("(uid=%u))", Template::Kind::Filter), TemplateError);
  EXPECT_THROW(Template::parse("(a=1)(b=2)", Template::Kind::Filter), TemplateError);
  EXPECT_THROW(Template::parse("%u", Template::Kind::Dn), TemplateError);
  EXPECT_NO_THROW(Template::parse("(cn=a\\29b)", Template::Kind::Filter));
  EXPECT_NO_THROW(Template::parse("(|(mail=%u)(uid=%u))", Template::Kind::Filter));
}

// The translated [[backend]] table, parsed back.
toml::table backend_of(const std::string& text) {
  toml::table doc = toml::parse(text);
  return *doc["backend"].as_array()->at(0).as_table();
}
std::string str(const toml::table& t, const char* key) { return t[key].value_or(std::string("(none)")); }

TEST(LdapSaslauthdConf, TranslatesTheKeysAndTokens) {
  const auto t = backend_of(saslauthd_conf_to_toml(
      "# saslauthd.conf\n"
      "ldap_servers: ldap://a.example ldaps://b.example:636/\n"
      "ldap_search_base: dc=example,dc=com\n"
      "LDAP_FILTER: (&(uid=%U)(o=%d)(x=%r)(s=%s)(m=%u)(p=%%))\n"
      "ldap_bind_dn: cn=svc,dc=example,dc=com\n"
      "ldap_password: se\"cret\\\n"
      "ldap_scope: one\n"
      "ldap_start_tls: yes\n"
      "ldap_tls_cacert_file: /etc/ssl/ca.pem\n"
      "ldap_timeout: 30\n"
      "ldap_time_limit: 5\n"
      "ldap_version: 3\n"
      "ldap_use_sasl: no\n",
      "/etc/saslauthd.conf"));
  EXPECT_EQ(str(t, "type"), "ldap");
  EXPECT_EQ(t["uris"][0].value_or(std::string()), "ldap://a.example");
  EXPECT_EQ(t["uris"].as_array()->size(), 2u);
  EXPECT_EQ(t["uris"][1].value_or(std::string()), "ldaps://b.example:636/");
  EXPECT_EQ(str(t, "filter"), "(&(uid=%n)(o=%d)(x=%r)(s=%s)(m=%u)(p=%%))");
  EXPECT_EQ(str(t, "auth"), "bind");
  EXPECT_EQ(str(t, "base"), "dc=example,dc=com");
  EXPECT_EQ(str(t, "scope"), "one");
  EXPECT_EQ(str(t, "bind_dn"), "cn=svc,dc=example,dc=com");
  EXPECT_EQ(str(t, "password"), "se\"cret\\");
  EXPECT_EQ(t["starttls"].value_or(false), true);
  EXPECT_EQ(str(t, "tls_ca"), "/etc/ssl/ca.pem");
  EXPECT_EQ(str(t, "timeout"), "9s");  // under Postfix's 10 s
}

TEST(LdapSaslauthdConf, DefaultsFastbindAndCustom) {
  auto t = backend_of(saslauthd_conf_to_toml("ldap_search_base: o=x\n", "f"));
  EXPECT_EQ(t["uris"][0].value_or(std::string()), "ldap://localhost/");
  EXPECT_EQ(str(t, "filter"), "(uid=%u)");
  t = backend_of(saslauthd_conf_to_toml("ldap_auth_method: fastbind\nldap_filter: uid=%U,ou=%d,o=x\n", "f"));
  EXPECT_EQ(str(t, "dn_template"), "uid=%n,ou=%d,o=x");
  EXPECT_EQ(str(t, "filter"), "(none)");
  t = backend_of(saslauthd_conf_to_toml("ldap_auth_method: custom\nldap_search_base: o=x\n"
                                        "ldap_password_attr: mailPassword\n", "f"));
  EXPECT_EQ(str(t, "auth"), "lookup");
  EXPECT_EQ(str(t, "password_attribute"), "mailPassword");
}

TEST(LdapSaslauthdConf, RefusesWhatItCannotDoWithFileAndLine) {
  auto message = [](const std::string& text) {
    try {
      saslauthd_conf_to_toml(text, "/etc/saslauthd.conf");
    } catch (const config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_EQ(message("ldap_search_base: o=x\nldap_use_sasl: yes\n").rfind("/etc/saslauthd.conf:2: key 'ldap_use_sasl': SASL binds", 0), 0u)
      << message("ldap_search_base: o=x\nldap_use_sasl: yes\n");
  EXPECT_NE(message("ldap_search_base: o=x\nldap_frobnicate: 1\n").find(":2: key 'ldap_frobnicate': unknown"), std::string::npos);
  EXPECT_NE(message("ldap_search_base: o=x\nldap_group_dn: cn=g\n").find("ldap_group"), std::string::npos);
  EXPECT_NE(message("ldap_search_base: o=x\nldap_filter: uid=%D\n").find("%D"), std::string::npos);
  EXPECT_NE(message("ldap_search_base: o=x\nldap_filter: uid=%1\n").find("%1"), std::string::npos);
  EXPECT_NE(message("ldap_search_base: o=x\nldap_version: 2\n").find("LDAPv3"), std::string::npos);
  EXPECT_NE(message("ldap_search_base: o=x\nldap_auth_method: sasl\n").find("bind, fastbind or custom"), std::string::npos);
  EXPECT_NE(message("ldap_search_base: o=x\nno colon here\n").find(":2: expected"), std::string::npos);
  EXPECT_NE(message("ldap_filter: uid=%u\n").find("ldap_search_base"), std::string::npos);
}

// saslauthd without ldap_tls_check_peer does not set
// LDAP_OPT_X_TLS_REQUIRE_CERT (lak.c: tls_check_peer = -1), so libldap's own
// default applies: TLS_REQCERT demand, the certificate is checked.
TEST(LdapSaslauthdConf, TlsCheckPeerDefaultsToCheckingAsLibldapDoes) {
  auto t = backend_of(saslauthd_conf_to_toml(
      "ldap_servers: ldaps://a.example\nldap_search_base: o=x\n", "f"));
  EXPECT_EQ(t["tls_check_peer"].value_or(false), true);
  t = backend_of(saslauthd_conf_to_toml(
      "ldap_servers: ldaps://a.example\nldap_search_base: o=x\nldap_tls_check_peer: no\n", "f"));
  EXPECT_EQ(t["tls_check_peer"].value_or(true), false);
  t = backend_of(saslauthd_conf_to_toml(
      "ldap_servers: ldaps://a.example\nldap_search_base: o=x\nldap_tls_check_peer: yes\n", "f"));
  EXPECT_EQ(t["tls_check_peer"].value_or(false), true);
}

// Referral chasing and alias dereferencing change which entries a search
// finds: only their defaults (off, never) are accepted.
TEST(LdapSaslauthdConf, ReferralsAndDerefOnlyAtTheirDefaults) {
  auto message = [](const std::string& text) {
    try {
      saslauthd_conf_to_toml(text, "/etc/saslauthd.conf");
    } catch (const config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_EQ(message("ldap_search_base: o=x\nldap_referrals: no\nldap_deref: never\n"), "(accepted)");
  EXPECT_NE(message("ldap_search_base: o=x\nldap_referrals: yes\n")
                .find("/etc/saslauthd.conf:2: key 'ldap_referrals'"), std::string::npos)
      << message("ldap_search_base: o=x\nldap_referrals: yes\n");
  for (const char* v : {"always", "search", "find", "bogus"})
    EXPECT_NE(message(std::string("ldap_search_base: o=x\n\nldap_deref: ") + v + "\n")
                  .find("/etc/saslauthd.conf:3: key 'ldap_deref'"), std::string::npos) << v;
}

// A TLS file with no TLS to use it for is refused, not silently ignored.
TEST(LdapSaslauthdConf, TlsFilesWithoutTlsAreRefused) {
  try {
    saslauthd_conf_to_toml("ldap_servers: ldap://a.example\nldap_search_base: o=x\n"
                           "ldap_tls_cacert_file: /etc/ssl/ca.pem\n", "/etc/saslauthd.conf");
    ADD_FAILURE() << "accepted";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/etc/saslauthd.conf:3: key 'ldap_tls_cacert_file'"),
              std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mailauth::backend::ldap
