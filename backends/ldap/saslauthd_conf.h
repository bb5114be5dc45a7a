// saslauthd's LDAP configuration (/etc/saslauthd.conf, `saslauthd -a ldap
// -O FILE`) read as an ldap [[backend]], for `mailauthd -a ldap -O FILE`.
//
// The file is "key: value" lines ('#' comments).  Keys read (saslauthd's
// defaults where the key is absent):
//   ldap_servers (ldap://localhost/; several, space-separated: failover)
//   ldap_search_base, ldap_filter (uid=%u; parentheses added when missing)
//   ldap_scope (sub | one | base), ldap_bind_dn, ldap_password (ldap_bind_pw)
//   ldap_auth_method: bind (search, then bind as the entry), fastbind
//     (ldap_filter is the DN to bind as), custom (read ldap_password_attr,
//     userPassword, and compare: auth = "lookup")
//   ldap_start_tls, ldap_tls_cacert_file, ldap_tls_cert, ldap_tls_key,
//   ldap_tls_check_peer, ldap_timeout (seconds), ldap_version (3 only)
//   ldap_use_sasl: refused when on (mailauthd binds with simple binds only)
// Tokens in ldap_filter: %u (user), %U (its part before the '@'), %d (its
// domain: empty without '@', as in saslauthd), %r (realm), %s (service), %%
// ('%').  %D, %R, %1-%9, tokens in ldap_search_base and the group keys are
// saslauthd features mailauthd does not offer: refused with the line.
// Keys mailauthd has no use for but that change nothing it does
// (ldap_time_limit, ldap_size_limit, ldap_deref, ldap_restart, ldap_referrals,
// ldap_debug, ldap_verbose, ldap_cache_*) are accepted; every other key is
// an error naming the line, never silently ignored.
#pragma once

#include <string>
#include <string_view>

namespace mailauth::backend::ldap {

// The [[backend]] table `text` means, as TOML.  Throws config::ConfigError
// "FILE:LINE: key 'K': message".
std::string saslauthd_conf_to_toml(std::string_view text, const std::string& file);

}  // namespace mailauth::backend::ldap
