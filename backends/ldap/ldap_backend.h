// ldap: users in an LDAP directory (OpenLDAP, 389-DS, Active Directory),
// through OpenLDAP's libldap (saslauthd -a ldap, Dovecot's ldap passdb).
//
// Configuration ([[backend]] with type = "ldap"):
//
//   uris = ["ldap://ldap1", "ldaps://ldap2"]   tried in order (failover with
//                                 back-off, back to the first when it returns)
//   starttls = false              StartTLS on ldap:// URIs (required when set)
//   tls_ca, tls_cert, tls_key     CA file; client certificate and key
//   tls_check_peer = true         verify the server's certificate and name
//   timeout = "5s"                per request: the answer (a temporary failure
//                                 when the directory is slow) is due this long
//                                 after lookup()/verify() started, whatever
//                                 the steps and URIs; under Postfix's 10 s
//   pool_size = 4                 service connections, and as many for user binds
//   bind_dn, password | password_file   the service identity (none: anonymous)
//   base (required), scope = "sub" | "one" | "base"
//   filter = "(uid=%u)"           the user's entry (ldap_template.h escapes)
//   auth = "bind" | "lookup"
//     bind:   verify-only (PLAIN, LOGIN): the entry's DN is found with
//             `filter` (or built from dn_template, saslauthd's "fastbind")
//             and a simple bind as it with the password decides, on a
//             connection kept for user binds.  The password policy control
//             is asked for: expired and locked accounts fail with the
//             server's reason in the log.
//     lookup: the entry's password_attribute (userPassword) is read and the
//             scheme registry verifies it; a lookup backend (CRAM-MD5 and
//             SCRAM where the stored value allows).  OpenLDAP's forms:
//             {SSHA}, {CRYPT}…, {ARGON2}…, a value without a {SCHEME} is
//             clear text (default_scheme = "PLAIN").
//   dn_template = "uid=%n,ou=people,dc=example,dc=com"   (auth = "bind" only)
//   enabled_filter = "(mailEnabled=TRUE)"   an entry found but not matching it
//                                 is known and disabled: never Unknown, so the
//                                 chain does not fall through to an older store
//   password_attribute = "userPassword", default_scheme = "PLAIN"
//   normalize = "lower" | "none"  LDAP compares names ignoring case; "lower"
//                                 folds A-Z so that every spelling is one
//                                 account for the cache, policy and log
//
// What a request answers:
//   - no entry: Unknown (the next backend is asked).  With dn_template and
//     no enabled_filter nothing is searched: a wrong password and a missing
//     entry look the same to a bind (invalidCredentials), so every refusal
//     is a Fail -- put such a backend last;
//   - more than one entry: TempFail "ambiguous", logged once per user as a
//     configuration problem (as the mysql backend: never the first entry,
//     never the next backend, not counted against the user);
//   - the server down, timed out, the service bind refused, or any error
//     that is not invalidCredentials: TempFail, which ends the chain; logged
//     when the outage starts and when it ends;
//   - an empty password never reaches a bind (a simple bind without a
//     password is an anonymous bind that succeeds).
//
// mailauth-user: passwd through the Password Modify extended operation
// (RFC 3062) as the service DN (takes_plaintext(): the server hashes it);
// show and verify; add, del, enable, disable and list are refused: a
// directory is managed with its own tools.
//
// Threads: lookup(), verify() and the account operations are thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "backends/backend.h"
#include "backends/ldap/ldap_connection.h"
#include "backends/ldap/ldap_template.h"

namespace mailauth::backend {

class LdapBackend final : public Backend, public AccountStore {
 public:
  static std::unique_ptr<Backend> create(const config::BackendSpec& spec);
  static const TypeInfo kTypeInfo;
  // mailauthd -a ldap -O /etc/saslauthd.conf (saslauthd_conf.h).
  static config::SaslauthdBackends saslauthd_form(const std::string& option);

  enum class Auth { Bind, Lookup };
  struct Settings {
    ldap::ConnectOptions connect;
    std::size_t pool_size = 4;
    Auth auth = Auth::Bind;
    std::string base;
    int scope = 2;  // LDAP_SCOPE_SUBTREE
    ldap::Template filter;
    ldap::Template dn_template;
    ldap::Template enabled_filter;
    std::string password_attribute = "userPassword";
    std::string default_scheme = "PLAIN";
    bool normalize_lower = true;
  };

  LdapBackend(std::string name, Settings settings);
  ~LdapBackend() override;

  Kind kind() const override {
    return settings_.auth == Auth::Bind ? Kind::VerifyOnly : Kind::Lookup;
  }
  std::string canonical_user(std::string_view user) const override;
  LookupResult lookup(const Query& query) override;
  VerifyResult verify(const Query& query, std::string_view password) override;
  std::string check() override { return health().problem; }
  Health health() override;

  // --- AccountStore ----------------------------------------------------------------
  AccountStore* accounts() override { return this; }
  Result add(std::string_view user, std::string_view stored, std::string_view name,
             bool enabled) override;
  // `stored` is the plaintext here (takes_plaintext()): Password Modify.
  Result set_password(std::string_view user, std::string_view stored) override;
  Result remove(std::string_view user) override;
  Result set_enabled(std::string_view user, bool enabled) override;
  Result list(std::string_view domain, std::vector<Account>* out) override;
  bool wants_scheme_prefix() const override { return true; }
  bool takes_plaintext() const override { return true; }
  bool stores_names() const override { return false; }

  const Settings& settings() const { return settings_; }

 private:
  struct Found {
    backend::Status status = backend::Status::Unknown;  // Found, Unknown, TempFail
    std::string dn;
    bool disabled = false;
    Secret stored;          // lookup mode: the password attribute's first value
    bool has_stored = false;
    std::string reason;
    std::string matched;    // for show: which searches matched
  };
  Found find(const Query& query, bool want_password, ldap::Deadline deadline);
  // Runs `op` on a service connection, once more on a fresh one when the
  // connection turned out dead quickly (and `deadline` has not passed).
  // False with `error` set.
  template <typename Op>
  bool with_service(Op&& op, ldap::Deadline deadline, ldap::LdapError* error);
  // A request's deadline: `timeout` from now.
  ldap::Deadline deadline_from_now() const { return ldap::Clock::now() + settings_.connect.timeout; }
  // `reason`, saying the request timed out when `deadline` has passed.
  std::string timed_out(std::string what, ldap::Deadline deadline,
                        const ldap::LdapError& error) const;
  // The outage log: one line when it starts, one when it ends.  An answer
  // to an operation that started before the outage was noted (in flight
  // while the server went away) does not end it.
  void note_failure(const std::string& reason);
  void note_success(ldap::Clock::time_point started);
  void warn_once(std::set<std::string, std::less<>>* seen, std::string_view user,
                 const std::string& message);

  const Settings settings_;
  ldap::HostSelector hosts_;
  ldap::Pool service_;
  ldap::Pool users_;
  std::atomic<bool> failing_{false};
  ldap::Clock::time_point failing_since_{};
  std::mutex state_mutex_;
  std::set<std::string, std::less<>> ambiguous_;
  std::set<std::string, std::less<>> no_password_;
};

}  // namespace mailauth::backend
