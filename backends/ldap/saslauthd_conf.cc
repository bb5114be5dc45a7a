#include "backends/ldap/saslauthd_conf.h"

#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "src/config/config.h"

namespace mailauth::backend::ldap {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// saslauthd's lak_config_switch: 0/n/off/f false, 1/y/on/t true.
bool switch_value(const std::string& v, bool* out) {
  const std::string l = lower(v);
  if (l == "1" || l == "y" || l == "yes" || l == "on" || l == "t" || l == "true") return *out = true, true;
  if (l == "0" || l == "n" || l == "no" || l == "off" || l == "f" || l == "false") return *out = false, true;
  return false;
}

struct Value {
  std::string text;
  int line = 0;
};

}  // namespace

std::string saslauthd_conf_to_toml(std::string_view text, const std::string& file) {
  std::map<std::string, Value> keys;
  std::istringstream in{std::string(text)};
  std::string raw;
  int n = 0;
  auto fail = [&](int line, const std::string& key, const std::string& message) {
    throw config::ConfigError(file + ":" + std::to_string(line) + ": key '" + key + "': " + message);
  };
  static const std::set<std::string> kAccepted = {
      "ldap_servers", "ldap_search_base", "ldap_filter", "ldap_scope", "ldap_bind_dn",
      "ldap_password", "ldap_bind_pw", "ldap_auth_method", "ldap_start_tls",
      "ldap_tls_cacert_file", "ldap_tls_cert", "ldap_tls_key", "ldap_tls_check_peer",
      "ldap_timeout", "ldap_version", "ldap_use_sasl", "ldap_password_attr", "ldap_referrals",
      "ldap_deref"};
  // Accepted and ignored: they change nothing about who is found or how.
  // (ldap_referrals and ldap_deref do: accepted below at their defaults only.)
  static const std::set<std::string> kHarmless = {
      "ldap_time_limit", "ldap_size_limit", "ldap_restart", "ldap_debug", "ldap_verbose",
      "ldap_cache_ttl", "ldap_cache_mem"};
  while (std::getline(in, raw)) {
    ++n;
    const std::string line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos)
      throw config::ConfigError(file + ":" + std::to_string(n) +
                                ": expected \"key: value\" (saslauthd.conf syntax)");
    const std::string key = lower(trim(line.substr(0, colon)));
    const std::string value = trim(line.substr(colon + 1));
    if (kHarmless.count(key)) continue;
    if (!kAccepted.count(key)) {
      if (key.rfind("ldap_group", 0) == 0)
        fail(n, key, "group checks (ldap_group_*) are not supported by mailauthd; express them "
                     "in ldap_filter, e.g. (&(uid=%u)(memberOf=cn=mail,ou=groups,dc=…))");
      if (key.rfind("ldap_sasl", 0) == 0 || key == "ldap_id" || key == "ldap_authz" ||
          key == "ldap_mech" || key == "ldap_realm")
        fail(n, key, "SASL binds to the directory are not supported by mailauthd (use "
                     "ldap_bind_dn and ldap_password)");
      fail(n, key, "unknown or unsupported saslauthd LDAP option");
    }
    keys[key == "ldap_bind_pw" ? "ldap_password" : key] = {value, n};
  }
  auto get = [&](const char* key, const char* def) -> std::string {
    auto it = keys.find(key);
    return it == keys.end() ? std::string(def) : it->second.text;
  };
  auto line_of = [&](const char* key) {
    auto it = keys.find(key);
    return it == keys.end() ? 0 : it->second.line;
  };
  auto flag = [&](const char* key, bool def) {
    auto it = keys.find(key);
    if (it == keys.end()) return def;
    bool v = false;
    if (!switch_value(it->second.text, &v)) fail(it->second.line, key, "must be yes or no");
    return v;
  };

  if (flag("ldap_use_sasl", false))
    fail(line_of("ldap_use_sasl"), "ldap_use_sasl",
         "SASL binds to the directory are not supported by mailauthd: set ldap_use_sasl: no "
         "and use ldap_bind_dn/ldap_password (simple binds, with ldap_start_tls or ldaps://)");
  // Chasing referrals (to servers not in ldap_servers) and dereferencing
  // aliases both change which entries a search finds: their defaults only
  // (saslauthd's and mailauthd's: off, never).
  if (flag("ldap_referrals", false))
    fail(line_of("ldap_referrals"), "ldap_referrals",
         "referrals are not followed by mailauthd (a search could find users on servers not "
         "in ldap_servers): remove the line or set it to no");
  if (const std::string v = lower(get("ldap_deref", "never")); v != "never")
    fail(line_of("ldap_deref"), "ldap_deref",
         "aliases are never dereferenced by mailauthd (it changes which entries a search finds): "
         "remove the line or set it to never");
  if (const std::string v = get("ldap_version", "3"); v != "3")
    fail(line_of("ldap_version"), "ldap_version", "only LDAPv3 is supported");

  std::ostringstream out;
  out << "[[backend]]\ntype = \"ldap\"\n";
  // Servers: a space-separated list.
  std::istringstream servers(get("ldap_servers", "ldap://localhost/"));
  std::vector<std::string> uris;
  for (std::string u; servers >> u;) uris.push_back(u);
  if (uris.empty()) fail(line_of("ldap_servers"), "ldap_servers", "is empty");
  out << "uris = [";
  for (std::size_t i = 0; i < uris.size(); ++i) out << (i ? ", " : "") << config::toml_quote(uris[i]);
  out << "]\n";

  // Tokens: saslauthd's into ours.
  auto translate = [&](const char* key, const std::string& pattern) {
    std::string t;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
      if (pattern[i] != '%') {
        t += pattern[i];
        continue;
      }
      if (i + 1 == pattern.size()) fail(line_of(key), key, "ends with a lone '%'");
      const char c = pattern[++i];
      switch (c) {
        case 'u': t += "%u"; break;
        case 'U': t += "%n"; break;
        case 'd': t += "%d"; break;
        case 'r': t += "%r"; break;
        case 's': t += "%s"; break;
        case '%': t += "%%"; break;
        case 'D':
          fail(line_of(key), key, "%D (the user's DN) is only for ldap_group_filter, which "
                                  "mailauthd does not support");
          break;
        default:
          fail(line_of(key), key, std::string("the token %") + c +
                                      " is not supported (use %u %U %d %r %s %%)");
      }
    }
    return t;
  };

  const std::string method = lower(get("ldap_auth_method", "bind"));
  std::string filter = get("ldap_filter", "uid=%u");
  if (method == "fastbind") {
    out << "dn_template = " << config::toml_quote(translate("ldap_filter", filter)) << "\n";
  } else if (method == "bind" || method == "custom") {
    if (filter.empty() || filter.front() != '(') filter = "(" + filter + ")";
    out << "filter = " << config::toml_quote(translate("ldap_filter", filter)) << "\n";
    out << "auth = \"" << (method == "bind" ? "bind" : "lookup") << "\"\n";
    if (method == "custom")
      out << "password_attribute = "
          << config::toml_quote(get("ldap_password_attr", "userPassword")) << "\n";
    const std::string base = get("ldap_search_base", "");
    if (base.find('%') != std::string::npos)
      fail(line_of("ldap_search_base"), "ldap_search_base",
           "tokens in the search base are not supported; search from the common base with a "
           "filter that uses %d");
    if (base.empty())
      fail(line_of("ldap_search_base"), "ldap_search_base", "is required for ldap_auth_method " + method);
    out << "base = " << config::toml_quote(base) << "\n";
    const std::string scope = lower(get("ldap_scope", "sub"));
    if (scope != "sub" && scope != "one" && scope != "base")
      fail(line_of("ldap_scope"), "ldap_scope", "must be sub, one or base");
    out << "scope = \"" << scope << "\"\n";
  } else {
    fail(line_of("ldap_auth_method"), "ldap_auth_method", "must be bind, fastbind or custom");
  }
  if (method != "fastbind") {
    // saslauthd ignores the service bind for fastbind.
    if (const std::string dn = get("ldap_bind_dn", ""); !dn.empty()) {
      out << "bind_dn = " << config::toml_quote(dn) << "\n";
      const std::string pw = get("ldap_password", "");
      if (pw.empty()) fail(line_of("ldap_bind_dn"), "ldap_bind_dn", "needs ldap_password");
      out << "password = " << config::toml_quote(pw) << "\n";
    }
  }
  const bool start_tls = flag("ldap_start_tls", false);
  if (start_tls) out << "starttls = true\n";
  bool any_tls = start_tls;
  for (const auto& u : uris) any_tls = any_tls || lower(u).rfind("ldaps://", 0) == 0;
  for (const auto& [from, to] : {std::pair{"ldap_tls_cacert_file", "tls_ca"},
                                 std::pair{"ldap_tls_cert", "tls_cert"},
                                 std::pair{"ldap_tls_key", "tls_key"}})
    if (const std::string v = get(from, ""); !v.empty()) {
      // saslauthd ignores it then, and the passwords go in clear text.
      if (!any_tls)
        fail(line_of(from), from, "no TLS to use it for: ldap_servers are ldap:// and "
                                  "ldap_start_tls is off (set ldap_start_tls: yes or use ldaps://)");
      out << to << " = " << config::toml_quote(v) << "\n";
    }
  // Without ldap_tls_check_peer saslauthd does not set
  // LDAP_OPT_X_TLS_REQUIRE_CERT (lak.c: tls_check_peer = -1), so libldap's
  // default applies -- TLS_REQCERT demand unless /etc/ldap/ldap.conf says
  // otherwise: the certificate is checked.  Written out either way.
  out << "tls_check_peer = " << (flag("ldap_tls_check_peer", true) ? "true" : "false") << "\n";
  const std::string timeout = get("ldap_timeout", "5");
  long seconds = 0;
  for (char c : timeout) {
    if (c < '0' || c > '9' || seconds > 1000)
      fail(line_of("ldap_timeout"), "ldap_timeout", "must be whole seconds");
    seconds = seconds * 10 + (c - '0');
  }
  if (seconds < 1) fail(line_of("ldap_timeout"), "ldap_timeout", "must be at least 1");
  // Postfix waits 10 s for an answer.
  out << "timeout = \"" << std::min<long>(seconds, 9) << "s\"\n";
  return out.str();
}

}  // namespace mailauth::backend::ldap
