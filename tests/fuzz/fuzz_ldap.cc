// libFuzzer target: the LDAP backend's parsers.  The first byte picks one:
//   - saslauthd.conf (what `mailauthd -a ldap -O FILE` reads): must never
//     crash, and what it writes must be TOML with exactly one [[backend]]
//     table whose type is "ldap" (no value escapes its quotes);
//   - a user name put through the filter and DN templates: the escaped
//     filter value never holds a raw '(', ')', '*' or NUL, nor a '\' not
//     followed by two hex digits; the DN value never a raw ',', '+', ';',
//     '"', '<', '>', '=' or NUL (parentheses are plain in a DN); and a DN
//     built from "uid=%u,dc=example,dc=com" that libldap parses is exactly
//     three RDNs whose first value is the user name itself.
#include <ldap.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "backends/ldap/ldap_template.h"
#include "backends/ldap/saslauthd_conf.h"

namespace {

using mailauth::backend::ldap::Template;
using mailauth::backend::ldap::Values;

[[noreturn]] void fail() { __builtin_trap(); }

bool hex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// Every '\' starts \XX; none of `forbidden` appears raw.
void check_escaped(std::string_view s, std::string_view forbidden) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\') {
      if (i + 2 >= s.size() || !hex(s[i + 1]) || !hex(s[i + 2])) fail();
      i += 2;
      continue;
    }
    if (c == '\0' || forbidden.find(c) != std::string_view::npos) fail();
  }
}

void saslauthd_conf(std::string_view text) {
  std::string toml_text;
  try {
    toml_text = mailauth::backend::ldap::saslauthd_conf_to_toml(text, "fuzz.conf");
  } catch (const std::exception&) {
    return;  // refused with a message: fine
  }
  try {
    toml::table doc = toml::parse(toml_text);
    const toml::array* arr = doc["backend"].as_array();
    if (arr == nullptr || arr->size() != 1) fail();
    const toml::table* b = arr->front().as_table();
    if (b == nullptr || b->get_as<std::string>("type") == nullptr ||
        b->get_as<std::string>("type")->get() != "ldap")
      fail();
  } catch (const toml::parse_error&) {
    fail();
  }
}

void names(std::string_view user) {
  const Values v = Values::for_user(user, "realm");
  const Template filter = Template::parse("(&(objectClass=person)(uid=%u))", Template::Kind::Filter);
  const std::string f = filter.expand(v);
  const std::string_view prefix = "(&(objectClass=person)(uid=";
  if (f.compare(0, prefix.size(), prefix) != 0 || f.size() < prefix.size() + 2 ||
      f.compare(f.size() - 2, 2, "))") != 0)
    fail();
  check_escaped(std::string_view(f).substr(prefix.size(), f.size() - prefix.size() - 2), "()*");

  const Template dn_t = Template::parse("uid=%u,dc=example,dc=com", Template::Kind::Dn);
  const std::string dn = dn_t.expand(v);
  if (dn.empty()) return;  // a name that cannot form a DN: unknown
  const std::string value = dn.substr(4, dn.size() - 4 - std::string(",dc=example,dc=com").size());
  check_escaped(value, ",+;\"<>=");
  LDAPDN parsed = nullptr;
  // libldap may refuse a value that is not UTF-8 (so would the server: the
  // user is then unknown); a DN it does parse must be the one intended.
  if (ldap_str2dn(dn.c_str(), &parsed, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS) return;
  int rdns = 0;
  while (parsed[rdns] != nullptr) ++rdns;
  const bool one_ava = rdns > 0 && parsed[0][0] != nullptr && parsed[0][1] == nullptr;
  const bool same = one_ava && parsed[0][0]->la_value.bv_len == user.size() &&
                    std::string_view(parsed[0][0]->la_value.bv_val, parsed[0][0]->la_value.bv_len) == user;
  ldap_dnfree(parsed);
  if (rdns != 3 || !same) fail();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 1)
    saslauthd_conf(rest);
  else
    names(rest);
  return 0;
}
