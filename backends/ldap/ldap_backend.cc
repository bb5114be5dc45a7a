#include "backends/ldap/ldap_backend.h"

#include <fcntl.h>
#include <ldap.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include <fstream>
#include <sstream>

#include "backends/common/password_file.h"
#include "backends/ldap/saslauthd_conf.h"
#include "src/util/log.h"

namespace mailauth::backend {

using ldap::Clock;

namespace {

// A failed operation is retried once on a fresh connection only if it failed
// quickly (an idle connection the server closed); one that took this long
// was a timeout, and a retry would take the answer past Postfix's 10 s.
constexpr auto kRetryWindow = std::chrono::seconds(1);

// normalize = "lower": the one name of every spelling a directory's
// caseIgnoreMatch (RFC 4518 string preparation) takes for the same value --
// as far as it can be decided without the Unicode tables.  Runs of ASCII
// white space are one space and the ends are trimmed (insignificant space
// handling; tab, CR, LF, VT and FF are mapped to space), A-Z are lower-cased.
// Anything else outside printable ASCII makes the name nobody's here ("",
// unknown to this backend): slapd folds Unicode case and compatibility forms
// (U+FF41, U+1D41A, U+017F), maps controls and zero-width characters to
// nothing and NBSP to space, so "ａlice" or "ali\u200bce" would find alice
// under a name of its own -- a per-user brute-force counter of its own.
std::string fold_lower(std::string_view user) {
  std::string out;
  out.reserve(user.size());
  bool space = false;
  for (const char ch : user) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == ' ' || (c >= '\t' && c <= '\r')) {
      space = !out.empty();
      continue;
    }
    if (c < 0x20 || c > 0x7e) return {};
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  return out;
}

// OpenLDAP's {ARGON2} (slapd's argon2 module) is the PHC string with the
// variant inside it; the registry names the variants.  Every other form
// OpenLDAP writes ({SSHA}, {CRYPT}, {SHA}, {MD5}, {SMD5}, {CLEARTEXT}) is a
// registry scheme already.
Secret registry_form(std::string_view value) {
  constexpr std::string_view kArgon2 = "{ARGON2}";
  if (value.size() > kArgon2.size()) {
    std::string head(value.substr(0, kArgon2.size()));
    for (char& c : head) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (head == kArgon2) {
      const std::string_view phc = value.substr(kArgon2.size());
      if (phc.rfind("$argon2id$", 0) == 0) return Secret("{ARGON2ID}" + std::string(phc));
      if (phc.rfind("$argon2i$", 0) == 0) return Secret("{ARGON2I}" + std::string(phc));
    }
  }
  return Secret(value);
}

// ldap://localhost, 127.0.0.0/8, [::1] or no host (libldap's default):
// traffic that never leaves the machine.
bool loopback_uri(const std::string& uri) {
  LDAPURLDesc* desc = nullptr;
  if (ldap_url_parse(uri.c_str(), &desc) != LDAP_URL_SUCCESS) return false;
  const std::string host = desc->lud_host ? desc->lud_host : "";
  ldap_free_urldesc(desc);
  return host.empty() || host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1" ||
         host == "[::1]";
}

ldap::Template parse_template(const config::Section& s, const char* key, std::string_view text,
                              ldap::Template::Kind kind) {
  try {
    return ldap::Template::parse(text, kind);
  } catch (const ldap::TemplateError& e) {
    s.fail(key, e.what());
  }
}

}  // namespace

std::unique_ptr<Backend> LdapBackend::create(const config::BackendSpec& spec) {
  const auto& s = spec.section;
  Settings st;

  st.connect.uris = s.get_string_list("uris", {});
  if (st.connect.uris.empty())
    s.fail("uris", "is required: a list of \"ldap://host\", \"ldaps://host:636\" or \"ldapi://…\"");
  for (const auto& u : st.connect.uris) {
    if (u.rfind("ldap://", 0) != 0 && u.rfind("ldaps://", 0) != 0 && u.rfind("ldapi://", 0) != 0)
      s.fail("uris", "\"" + u + "\": must start with ldap://, ldaps:// or ldapi://");
    if (!ldap_is_ldap_url(u.c_str()) && !ldap_is_ldaps_url(u.c_str()) && !ldap_is_ldapi_url(u.c_str()))
      s.fail("uris", "\"" + u + "\": not an LDAP URL");
    LDAPURLDesc* desc = nullptr;
    if (ldap_url_parse(u.c_str(), &desc) != LDAP_URL_SUCCESS)
      s.fail("uris", "\"" + u + "\": not an LDAP URL");
    const bool has_dn = desc->lud_dn && *desc->lud_dn;
    ldap_free_urldesc(desc);
    if (has_dn) s.fail("uris", "\"" + u + "\": give the search base as base = \"…\", not in the URL");
  }
  st.connect.starttls = s.get_bool("starttls", false);
  if (st.connect.starttls)
    for (const auto& u : st.connect.uris)
      if (u.rfind("ldaps://", 0) == 0)
        s.fail("starttls", "\"" + u + "\" is ldaps:// (TLS from the start): StartTLS is for ldap://");
  st.connect.tls_ca = s.get_string("tls_ca", "");
  st.connect.tls_cert = s.get_string("tls_cert", "");
  st.connect.tls_key = s.get_string("tls_key", "");
  st.connect.tls_check_peer = s.get_bool("tls_check_peer", true);
  if (st.connect.tls_cert.empty() != st.connect.tls_key.empty())
    s.fail(st.connect.tls_cert.empty() ? "tls_key" : "tls_cert",
           "tls_cert and tls_key go together (the client certificate and its key)");
  bool any_tls = st.connect.starttls;
  for (const auto& u : st.connect.uris) any_tls = any_tls || u.rfind("ldaps://", 0) == 0;
  for (const char* key : {"tls_ca", "tls_cert", "tls_key"}) {
    // Ignored without TLS: whoever wrote it believes the passwords travel
    // encrypted.
    if (!any_tls && s.has(key))
      s.fail(key, "no TLS to use it for: the URIs are ldap:// (or ldapi://) and starttls is "
                  "off; set starttls = true or use ldaps://");
    const std::string path = s.get_string(key, "");
    if (!path.empty() && ::access(path.c_str(), R_OK) != 0)
      s.fail(key, "cannot read " + path + ": " + std::strerror(errno));
  }
  const auto timeout = s.get_duration("timeout", std::chrono::seconds(5));
  if (timeout < std::chrono::milliseconds(100) || timeout > std::chrono::seconds(9))
    s.fail("timeout", "must be from 100ms to 9s (Postfix gives up on an answer after 10s)");
  st.connect.timeout = timeout;
  st.pool_size = static_cast<std::size_t>(s.get_int("pool_size", 4, 1, 64));

  st.connect.bind_dn = s.get_string("bind_dn", "");
  const auto password = s.opt_string("password");
  const auto password_file = s.opt_string("password_file");
  if (password && password_file) s.fail("password_file", "set either password or password_file, not both");
  if ((password || password_file) && st.connect.bind_dn.empty())
    s.fail(password ? "password" : "password_file", "needs bind_dn (the service identity)");
  if (password) st.connect.password = Secret(*password);
  if (password_file) st.connect.password = read_password_file(s, *password_file, "ldap " + spec.name);
  if (!st.connect.bind_dn.empty() && st.connect.password.empty())
    s.fail("bind_dn",
           "needs password or password_file (a bind with a DN and no password is an anonymous "
           "bind)");

  st.base = s.get_string("base", "");
  const std::string auth = s.get_string("auth", "bind");
  if (auth == "bind")
    st.auth = Auth::Bind;
  else if (auth == "lookup")
    st.auth = Auth::Lookup;
  else
    s.fail("auth", "must be \"bind\" (bind as the user) or \"lookup\" (read password_attribute)");

  const std::string scope = s.get_string("scope", "sub");
  if (scope == "sub" || scope == "subtree")
    st.scope = LDAP_SCOPE_SUBTREE;
  else if (scope == "one" || scope == "onelevel")
    st.scope = LDAP_SCOPE_ONELEVEL;
  else if (scope == "base")
    st.scope = LDAP_SCOPE_BASE;
  else
    s.fail("scope", "must be \"sub\", \"one\" or \"base\"");

  if (const auto t = s.opt_string("dn_template")) {
    if (st.auth != Auth::Bind)
      s.fail("dn_template", "only with auth = \"bind\" (lookup reads the entry with filter)");
    st.dn_template = parse_template(s, "dn_template", *t, ldap::Template::Kind::Dn);
    if (!st.dn_template.uses('u') && !st.dn_template.uses('n'))
      s.fail("dn_template", "must use %u or %n: without it every login binds as the same DN");
    if (s.has("filter"))
      s.fail("filter", "not with dn_template (the DN is built, not searched for)");
  } else {
    if (st.base.empty()) s.fail("base", "is required (the subtree the users are in)");
    st.filter = parse_template(s, "filter", s.get_string("filter", "(uid=%u)"),
                               ldap::Template::Kind::Filter);
    if (!st.filter.uses('u') && !st.filter.uses('n'))
      s.fail("filter", "must use %u or %n: without it every login finds the same entries");
  }
  if (const auto t = s.opt_string("enabled_filter"))
    st.enabled_filter = parse_template(s, "enabled_filter", *t, ldap::Template::Kind::Filter);

  st.password_attribute = s.get_string("password_attribute", "userPassword");
  if (st.password_attribute.empty() ||
      st.password_attribute.find_first_of(" ()=*,") != std::string::npos)
    s.fail("password_attribute", "must be an attribute name");
  if (st.auth == Auth::Bind && s.has("password_attribute"))
    s.fail("password_attribute", "only with auth = \"lookup\"");
  std::string scheme = s.get_string("default_scheme", "PLAIN");
  for (char& c : scheme) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (scheme != "CRYPT" && scheme != "PLAIN") s.fail("default_scheme", "must be \"PLAIN\" or \"CRYPT\"");
  st.default_scheme = scheme;
  const std::string normalize = s.get_string("normalize", "lower");
  if (normalize != "lower" && normalize != "none") s.fail("normalize", "must be \"lower\" or \"none\"");
  st.normalize_lower = normalize == "lower";

  // Users' passwords in clear text over the network: allowed (a directory
  // on a trusted segment), but said at every start.
  if (st.auth == Auth::Bind && !st.connect.starttls)
    for (const auto& u : st.connect.uris)
      if (u.rfind("ldap://", 0) == 0 && !loopback_uri(u))
        log::warning("ldap " + spec.name + ": " + u +
                     " without starttls: user passwords are sent to the directory in clear "
                     "text (set starttls = true or use ldaps://)");

  return std::make_unique<LdapBackend>(spec.name, std::move(st));
}

LdapBackend::LdapBackend(std::string name, Settings settings)
    : Backend("ldap", std::move(name)),
      settings_(std::move(settings)),
      hosts_(settings_.connect.uris.size(), ldap::HostSelector::Policy{}),
      service_("ldap " + this->name(), settings_.connect, settings_.pool_size, true, &hosts_),
      users_("ldap " + this->name() + " (user binds)", settings_.connect, settings_.pool_size,
             false, &hosts_) {}

LdapBackend::~LdapBackend() = default;

std::string LdapBackend::canonical_user(std::string_view user) const {
  return settings_.normalize_lower ? fold_lower(user) : std::string(user);
}

void LdapBackend::note_failure(const std::string& reason) {
  std::lock_guard lock(state_mutex_);
  if (failing_.load()) return;
  failing_ = true;
  failing_since_ = Clock::now();
  log::error("ldap " + name() + ": directory unavailable: " + log::sanitize(reason, 1024) +
             "; logins get a temporary failure until it is back");
}

void LdapBackend::note_success(Clock::time_point started) {
  if (!failing_.load(std::memory_order_relaxed)) return;
  std::lock_guard lock(state_mutex_);
  if (!failing_.load() || started < failing_since_) return;
  failing_ = false;
  log::info("ldap " + name() + ": directory reachable again");
}

void LdapBackend::warn_once(std::set<std::string, std::less<>>* seen, std::string_view user,
                            const std::string& message) {
  {
    std::lock_guard lock(state_mutex_);
    if (seen->size() >= 10000 || !seen->emplace(user).second) return;
  }
  log::error("config problem: ldap " + name() + ": " + message);
}

template <typename Op>
bool LdapBackend::with_service(Op&& op, ldap::Deadline deadline, ldap::LdapError* error) {
  const auto start = Clock::now();
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto lease = service_.acquire(deadline, error, attempt > 0);
    if (!lease) return false;
    if (op(*lease.operator->(), error)) return true;
    if (!error->connection_lost()) return false;
    lease.discard();
    if (Clock::now() - start > kRetryWindow || Clock::now() >= deadline) return false;
  }
  return false;
}

std::string LdapBackend::timed_out(std::string what, ldap::Deadline deadline,
                                   const ldap::LdapError& error) const {
  if (Clock::now() < deadline) return what + ": " + error.text();
  const auto ms = settings_.connect.timeout.count();
  std::string secs = std::to_string(ms / 1000);
  if (ms % 1000 != 0) {
    std::string frac = std::to_string(1000 + ms % 1000).substr(1);
    while (frac.back() == '0') frac.pop_back();
    secs += "." + frac;
  }
  return what + ": timed out after " + secs + "s (" + error.text() + ")";
}

LdapBackend::Found LdapBackend::find(const Query& query, bool want_password,
                                     ldap::Deadline deadline) {
  Found f;
  const auto started = Clock::now();
  ldap::Values values = ldap::Values::for_user(query.user, query.realm);
  values.service = query.service;
  std::vector<std::string> attrs;
  if (want_password) attrs.push_back(settings_.password_attribute);
  ldap::LdapError error;
  std::vector<ldap::Entry> entries;
  bool more = false;

  auto fail = [&](const std::string& what) {
    f.status = backend::Status::TempFail;
    f.reason = timed_out(what, deadline, error);
    // Our pool's connections all busy is load, not the directory gone.
    if (!error.pool_busy) note_failure(f.reason);
    return std::move(f);
  };
  // The DN was built from (or found for) the user's name: a name that
  // makes no valid DN (invalidDNSyntax: not UTF-8, …) or a DN with nothing
  // there (noSuchObject) is nobody's -- never an outage.
  auto no_entry_at_dn = [&] {
    return error.code == LDAP_INVALID_DN_SYNTAX || error.code == LDAP_NO_SUCH_OBJECT;
  };

  if (!settings_.dn_template.empty()) {
    // An empty value would make an empty RDN value ("uid=,ou=…"): nobody's.
    for (const char e : std::string_view("undrs"))
      if (settings_.dn_template.uses(e) && values[e].empty()) return f;
    f.dn = settings_.dn_template.expand(values);
    f.status = backend::Status::Found;
    f.matched = "dn_template";
    if (settings_.enabled_filter.empty()) return f;
    // Known but disabled, or not there at all: the entry itself says.
    const std::string enabled = settings_.enabled_filter.expand(values);
    bool exists = false, matches = false;
    if (!with_service(
            [&](ldap::Connection& c, ldap::LdapError* e) {
              if (!c.search(f.dn, LDAP_SCOPE_BASE, enabled, {}, 1, deadline, &entries, &more, e))
                return false;
              matches = !entries.empty();
              if (matches) return exists = true;
              if (!c.search(f.dn, LDAP_SCOPE_BASE, "(objectClass=*)", {}, 1, deadline, &entries,
                            &more, e))
                return false;
              exists = !entries.empty();
              return true;
            },
            deadline, &error)) {
      if (no_entry_at_dn()) {
        note_success(started);
        f.status = backend::Status::Unknown;
        f.dn.clear();
        return f;
      }
      return fail("search");
    }
    note_success(started);
    if (!exists) {
      f.status = backend::Status::Unknown;
      return f;
    }
    f.disabled = !matches;
    if (matches) f.matched += ", enabled_filter";
    return f;
  }

  const std::string filter = settings_.filter.expand(values);
  if (!with_service(
          [&](ldap::Connection& c, ldap::LdapError* e) {
            return c.search(settings_.base, settings_.scope, filter, attrs, 2, deadline, &entries,
                            &more, e);
          },
          deadline, &error)) {
    // The configured base is not there (renamed, a typo, hidden by an ACL):
    // every user would look unknown and the chain would fall through to an
    // older store.  A temporary failure, logged as the problem it is.
    if (error.code == LDAP_NO_SUCH_OBJECT)
      return fail("search base " + settings_.base + " is missing (check base and bind_dn's ACL)");
    return fail("search");
  }
  note_success(started);
  if (entries.empty()) return f;  // Unknown
  if (entries.size() > 1 || more) {
    warn_once(&ambiguous_, query.user,
              "the search for user " + log::sanitize(query.user) +
                  " is ambiguous: more than one entry matches " + log::sanitize(filter, 512) +
                  " under " + log::sanitize(settings_.base, 256) +
                  "; this user gets a temporary failure until the filter selects one entry "
                  "(use %u, or %n and %d) or the duplicate is removed");
    f.status = backend::Status::TempFail;
    f.reason = "ambiguous: more than one entry matches the filter for this user";
    return f;
  }
  if (entries.front().dn.empty()) {
    f.status = backend::Status::TempFail;
    f.reason = "the entry found has no readable DN";
    return f;
  }
  f.status = backend::Status::Found;
  f.dn = entries.front().dn;
  f.matched = "filter " + filter;
  if (want_password) {
    if (const auto* v = entries.front().values(settings_.password_attribute); v && !v->empty()) {
      f.stored = registry_form(v->front().view());
      f.has_stored = !f.stored.empty();
    }
  }
  if (!settings_.enabled_filter.empty()) {
    const std::string enabled = settings_.enabled_filter.expand(values);
    std::vector<ldap::Entry> check;
    if (!with_service(
            [&](ldap::Connection& c, ldap::LdapError* e) {
              return c.search(f.dn, LDAP_SCOPE_BASE, enabled, {}, 1, deadline, &check, &more, e);
            },
            deadline, &error)) {
      if (no_entry_at_dn()) {  // deleted since the search found it
        f.status = backend::Status::Unknown;
        return f;
      }
      return fail("search");
    }
    f.disabled = check.empty();
    if (!f.disabled) f.matched += ", enabled_filter " + enabled;
  }
  return f;
}

LookupResult LdapBackend::lookup(const Query& query) {
  Found f = find(query, settings_.auth == Auth::Lookup, deadline_from_now());
  LookupResult out;
  out.status = f.status;
  out.reason = f.reason;
  if (f.status != backend::Status::Found) return out;
  out.credential.default_scheme = settings_.default_scheme;
  out.credential.disabled = f.disabled;
  if (f.disabled) out.credential.disabled_reason = "account disabled (enabled_filter)";
  // For mailauth-user show: where the user is, and what matched.
  out.reason = "dn: " + f.dn + "; matched: " + f.matched;
  if (settings_.auth == Auth::Lookup) {
    if (!f.has_stored) {
      warn_once(&no_password_, query.user,
                "user " + log::sanitize(query.user) + " (" + log::sanitize(f.dn, 512) + ") has no " +
                    settings_.password_attribute +
                    " that the service DN may read; this user cannot log in until one is set "
                    "(or the ACL lets bind_dn read it)");
      out.credential.disabled = true;
      if (out.credential.disabled_reason.empty())
        out.credential.disabled_reason = "no " + settings_.password_attribute;
    } else {
      out.credential.stored = std::move(f.stored);
    }
  }
  return out;
}

VerifyResult LdapBackend::verify(const Query& query, std::string_view password) {
  // One deadline for the search and the user bind: `timeout` is the
  // request's, not each step's.
  const ldap::Deadline deadline = deadline_from_now();
  Found f = find(query, false, deadline);
  if (f.status == backend::Status::Unknown) return {Verdict::Unknown, {}};
  if (f.status == backend::Status::TempFail) return {Verdict::TempFail, f.reason};
  // A simple bind with a DN and no password is an anonymous bind, which
  // succeeds (RFC 4513 5.1.2): never ask the server.  Answered without a
  // bind, so not costed: the authenticator holds it back to a real check's
  // time, and it never becomes a fast sample of one.
  if (password.empty())
    return {Verdict::Fail, f.disabled ? "account disabled (enabled_filter)" : "empty password",
            false};
  // f.dn is what the user bind is made as: an empty one would be an
  // anonymous bind, which succeeds whatever the password.
  if (f.dn.empty()) return {Verdict::TempFail, "no DN for the entry found"};

  const auto start = Clock::now();
  ldap::LdapError error;
  ldap::BindResult r;
  bool answered = false;
  for (int attempt = 0; attempt < 2 && !answered; ++attempt) {
    auto lease = users_.acquire(deadline, &error, attempt > 0);
    if (!lease) break;
    if (lease->bind_user(f.dn, password, deadline, &r, &error)) {
      answered = true;
      break;
    }
    if (!error.not_started) lease.discard();  // (not_started: untouched, as good as before)
    if (Clock::now() - start > kRetryWindow || Clock::now() >= deadline) break;
  }
  if (f.disabled) {
    // Refused whatever the password -- but only after the same bind any
    // other login makes, so that a disabled account costs what a wrong
    // password costs (the answer's time tells nothing, and the
    // authenticator's samples of real check times stay real).
    log::debug("ldap " + name() + ": user " + log::sanitize(query.user) +
               " is disabled (enabled_filter): bound with the password all the same, result "
               "ignored");
    if (answered) note_success(start);
    return {Verdict::Fail, "account disabled (enabled_filter)"};
  }
  if (!answered) {
    const std::string reason = timed_out("bind", deadline, error);
    if (!error.pool_busy) note_failure(reason);
    return {Verdict::TempFail, reason};
  }
  note_success(start);
  if (r.code == LDAP_SUCCESS) {
    if (r.policy_error == PP_changeAfterReset)
      return {Verdict::Fail, "password must be changed first (password policy: " + r.policy + ")"};
    if (r.expires_in >= 0 || r.grace_left >= 0)
      log::info("ldap " + name() + ": user " + log::sanitize(query.user) + ": password expires in " +
                std::to_string(r.expires_in) + " s, grace logins left " +
                std::to_string(r.grace_left));
    return {Verdict::Ok, {}};
  }
  if (r.code == LDAP_INVALID_CREDENTIALS) {
    if (!r.policy.empty()) return {Verdict::Fail, "password policy: " + r.policy};
    return {Verdict::Fail, settings_.dn_template.empty() ? "wrong password"
                                                          : "invalid credentials (wrong password, "
                                                            "or no entry at the DN)"};
  }
  // No entry can have this DN (a name that makes no valid DN, or an entry
  // that is not there, where the server says so).
  if (r.code == LDAP_INVALID_DN_SYNTAX || r.code == LDAP_NO_SUCH_OBJECT)
    return {Verdict::Unknown, "no entry " + log::sanitize(f.dn, 512)};
  // Anything else is not an answer about the password: unwillingToPerform,
  // busy, a server-side time limit, …
  return {Verdict::TempFail, "bind: " + log::sanitize(r.message, 512) + " (" +
                                 std::to_string(r.code) + ")"};
}

// Not a request: every URI is probed with its own `timeout` (probe_all), and
// the base search has one more -- --check-config and the log at start and
// reload say about each server, not only about the first ones in time.
Backend::Health LdapBackend::health() {
  const auto errors = service_.probe_all();
  std::string all;
  bool all_unreachable = true, any_ok = false;
  std::vector<std::string> notes;
  for (std::size_t i = 0; i < errors.size(); ++i) {
    if (!errors[i]) {
      any_ok = true;
      continue;
    }
    const std::string what = settings_.connect.uris[i] + ": " + errors[i]->text();
    all += (all.empty() ? "" : "; ") + what;
    all_unreachable = all_unreachable && errors[i]->unreachable();
    if (errors.size() > 1) notes.push_back(what);
  }
  if (!any_ok) return {"cannot use the directory: " + all, all_unreachable, {}};
  // The base must exist (a typo there makes every user unknown).
  if (!settings_.base.empty()) {
    ldap::LdapError error;
    std::vector<ldap::Entry> entries;
    bool more = false;
    const ldap::Deadline deadline = deadline_from_now();
    bool ok = with_service(
        [&](ldap::Connection& c, ldap::LdapError* e) {
          return c.search(settings_.base, LDAP_SCOPE_BASE, "(objectClass=*)", {}, 1, deadline,
                          &entries, &more, e);
        },
        deadline, &error);
    if (!ok && error.code == LDAP_NO_SUCH_OBJECT)
      return {"base " + settings_.base + " does not exist (or bind_dn may not see it)"};
    if (!ok)
      return {"search of base " + settings_.base + ": " + error.text(), error.unreachable(), {}};
    if (entries.empty())
      return {"base " + settings_.base + " does not exist (or bind_dn may not see it)"};
  }
  return {{}, false, std::move(notes)};
}

// --- AccountStore ------------------------------------------------------------------------

namespace {
const char* kManagedElsewhere =
    "an LDAP directory is managed with its own tools (ldapadd, ldapmodify, ldapdelete, your "
    "directory's admin interface); mailauth-user only changes passwords there (passwd), shows "
    "and verifies; to add the user to another store, name it with --backend NAME";
}

AccountStore::Result LdapBackend::add(std::string_view, std::string_view, std::string_view, bool) {
  return {AccountStore::Status::NotConfigured, kManagedElsewhere};
}
AccountStore::Result LdapBackend::remove(std::string_view) {
  return {AccountStore::Status::NotConfigured, kManagedElsewhere};
}
AccountStore::Result LdapBackend::set_enabled(std::string_view, bool) {
  return {AccountStore::Status::NotConfigured, kManagedElsewhere};
}
AccountStore::Result LdapBackend::list(std::string_view, std::vector<Account>*) {
  return {AccountStore::Status::NotConfigured, kManagedElsewhere};
}

AccountStore::Result LdapBackend::set_password(std::string_view user, std::string_view plaintext) {
  const std::string name = canonical_user(user);
  // mailauth-user, not Postfix: the search and the Password Modify each
  // get the whole timeout.
  Found f = find(Query{name, "", "smtp", ""}, false, deadline_from_now());
  if (f.status == backend::Status::TempFail) return {AccountStore::Status::TempFail, f.reason};
  if (f.status == backend::Status::Unknown) return {AccountStore::Status::NotFound, "no such user"};
  if (settings_.connect.bind_dn.empty())
    return {AccountStore::Status::NotConfigured,
            "Password Modify needs bind_dn with the right to change userPassword"};
  ldap::LdapError error;
  const ldap::Deadline deadline = deadline_from_now();
  if (!with_service(
          [&](ldap::Connection& c, ldap::LdapError* e) {
            return c.modify_password(f.dn, plaintext, deadline, e);
          },
          deadline, &error)) {
    if (error.code == LDAP_INSUFFICIENT_ACCESS || error.code == LDAP_UNWILLING_TO_PERFORM ||
        error.code == LDAP_CONSTRAINT_VIOLATION)
      return {AccountStore::Status::Refused,
              "the directory refused the Password Modify operation for " + f.dn + ": " +
                  error.text()};
    return {AccountStore::Status::TempFail, error.text()};
  }
  return {AccountStore::Status::Done, "dn: " + f.dn};
}

config::SaslauthdBackends LdapBackend::saslauthd_form(const std::string& option) {
  const std::string path = option.empty() ? "/etc/saslauthd.conf" : option;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config::ConfigError(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return {ldap::saslauthd_conf_to_toml(text.str(), path), path + " (as mailauthd translated it)"};
}

const TypeInfo LdapBackend::kTypeInfo{
    .type = "ldap",
    .create = &LdapBackend::create,
    // Never mailauth-user's default store: with [ldap, pwdfile] a plain
    // `passwd carol` is about the file, not a silent change of her directory
    // password.  Named with --backend, the instance's accounts() serves
    // passwd (Password Modify), show and verify; add and del are refused
    // with a message that says why.
    .keeps_accounts = false,
    .accounts_hint =
        "a directory is managed with its own tools (ldapadd, ldapmodify, ldappasswd); "
        "mailauth-user --backend NAME can change a password there (passwd), show and verify",
    .saslauthd = &LdapBackend::saslauthd_form,
};

}  // namespace mailauth::backend
