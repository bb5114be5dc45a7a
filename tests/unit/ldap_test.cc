// The LDAP backend's pure parts: RFC 4515/4514 escaping and templates.
#include <gtest/gtest.h>

#include <string>

#include "backends/ldap/ldap_template.h"

namespace mailauth::backend::ldap {
namespace {

using namespace std::string_literals;

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

TEST(LdapTemplate, DomainFallsBackToTheRealm) {
  auto v = Values::for_user("alice", "example.org");
  EXPECT_EQ(v.local, "alice");
  EXPECT_EQ(v.domain, "example.org");
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

}  // namespace
}  // namespace mailauth::backend::ldap
