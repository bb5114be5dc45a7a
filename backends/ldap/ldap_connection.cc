#include "backends/ldap/ldap_connection.h"

#include <ldap.h>
#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>

#include "src/util/log.h"

namespace mailauth::backend::ldap {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

// The server's own words for the last error on `ld`, if any.
std::string diagnostic(LDAP* ld) {
  char* msg = nullptr;
  std::string out;
  if (ld && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg) == LDAP_OPT_SUCCESS && msg) {
    out = msg;
    ldap_memfree(msg);
  }
  return out;
}

LdapError make_error(LDAP* ld, int code) {
  LdapError e;
  e.code = code;
  e.message = ldap_err2string(code);
  const std::string diag = diagnostic(ld);
  if (!diag.empty() && diag != e.message) e.message += ": " + diag;
  return e;
}

// The request's deadline passed before an operation was sent.
LdapError deadline_passed() {
  LdapError e;
  e.code = LDAP_TIMEOUT;
  e.message = ldap_err2string(LDAP_TIMEOUT);
  e.not_started = true;
  return e;
}

// Frees an LDAPMessage chain when it goes out of scope.
struct MessageGuard {
  LDAPMessage* msg = nullptr;
  ~MessageGuard() {
    if (msg) ldap_msgfree(msg);
  }
};

}  // namespace

std::chrono::milliseconds time_left(Deadline deadline, std::chrono::milliseconds cap) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left < std::chrono::milliseconds(1)) return std::chrono::milliseconds(0);
  return std::min(left, cap);
}

void library_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    int version = LDAP_VERSION3;
    ldap_set_option(nullptr, LDAP_OPT_PROTOCOL_VERSION, &version);
  });
}

bool LdapError::unreachable() const {
  switch (code) {
    case LDAP_SERVER_DOWN:
    case LDAP_TIMEOUT:
    case LDAP_BUSY:
    case LDAP_UNAVAILABLE:
      return true;
    case LDAP_CONNECT_ERROR:
      // StartTLS or certificate trouble is our settings, not an outage.
      return message.find("TLS") == std::string::npos && message.find("certificate") == std::string::npos;
    default: return false;
  }
}

bool LdapError::connection_lost() const {
  if (not_started) return false;
  // libldap's own errors are negative: the session's state is unknown.
  return code < 0 || code == LDAP_UNAVAILABLE || code == LDAP_BUSY;
}

std::string LdapError::text() const {
  return (message.empty() ? std::string("unknown error") : message) + " (" +
         std::to_string(code) + ")";
}

const std::vector<Secret>* Entry::values(std::string_view attribute) const {
  for (const auto& [name, vals] : attributes) {
    if (name.size() != attribute.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(name[i])) ==
             std::tolower(static_cast<unsigned char>(attribute[i]));
    if (same) return &vals;
  }
  return nullptr;
}

// --- Connection -------------------------------------------------------------------

std::unique_ptr<Connection> Connection::open(const ConnectOptions& o, std::size_t index,
                                             bool service_bind, Deadline deadline,
                                             LdapError* error) {
  library_init();
  const std::string& uri = o.uris.at(index);
  LDAP* ld = nullptr;
  int rc = ldap_initialize(&ld, uri.c_str());
  if (rc != LDAP_SUCCESS || ld == nullptr) {
    *error = make_error(nullptr, rc != LDAP_SUCCESS ? rc : LDAP_NO_MEMORY);
    return nullptr;
  }
  auto conn = std::unique_ptr<Connection>(new Connection(ld, index, o.timeout));
  int version = LDAP_VERSION3;
  ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
  ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
  int deref = LDAP_DEREF_NEVER;  // whatever /etc/ldap/ldap.conf's DEREF says
  ldap_set_option(ld, LDAP_OPT_DEREF, &deref);
  ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_ON);
  // The server-side limit of a search: the whole timeout (what is left of
  // the request is the client's wait, set per call).
  int limit = static_cast<int>(std::max<long long>(1, o.timeout.count() / 1000));
  ldap_set_option(ld, LDAP_OPT_TIMELIMIT, &limit);
  // Dead peers (a crashed host, a dropped NAT mapping) are noticed by TCP
  // keepalive on the connections kept open, not by the next login's timeout.
#ifdef LDAP_OPT_X_KEEPALIVE_IDLE
  int keepalive_idle = kKeepaliveIdle, keepalive_probes = kKeepaliveProbes,
      keepalive_interval = kKeepaliveInterval;
  ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_IDLE, &keepalive_idle);
  ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_PROBES, &keepalive_probes);
  ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_INTERVAL, &keepalive_interval);
#endif

  const bool ldaps = uri.rfind("ldaps://", 0) == 0;
  if (ldaps || o.starttls) {
    int require = o.tls_check_peer ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER;
    ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &require);
    if (!o.tls_ca.empty()) ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, o.tls_ca.c_str());
    if (!o.tls_cert.empty()) ldap_set_option(ld, LDAP_OPT_X_TLS_CERTFILE, o.tls_cert.c_str());
    if (!o.tls_key.empty()) ldap_set_option(ld, LDAP_OPT_X_TLS_KEYFILE, o.tls_key.c_str());
    int is_server = 0;
    rc = ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &is_server);
    if (rc != LDAP_OPT_SUCCESS) {
      *error = make_error(ld, rc);
      error->message = "TLS settings refused: " + error->message;
      return nullptr;
    }
  }
  timeval tv{};
  // The TCP connect (and for ldaps:// the TLS handshake).
  if (!conn->arm(deadline, &tv, error)) return nullptr;  // not_started: nothing sent
  // Each later step waits what is left; once nothing is, the server was
  // too slow (not_started is false: it was asked and did not answer).
  auto arm_again = [&] {
    if (conn->arm(deadline, &tv, error)) return true;
    error->not_started = false;
    return false;
  };
  rc = ldap_connect(ld);
  if (rc != LDAP_SUCCESS) {
    *error = make_error(ld, rc);
    return nullptr;
  }
  if (o.starttls && !ldaps) {
    // As ldap_start_tls_s, in two steps so that the extended operation's
    // answer and the TLS handshake after it share what is left, instead of
    // waiting that long each.
    auto starttls_failed = [&](int code) {
      *error = make_error(ld, code);
      if (code != LDAP_SERVER_DOWN && code != LDAP_TIMEOUT)
        error->message = "StartTLS failed: " + error->message;
      return nullptr;
    };
    if (!arm_again()) return nullptr;
    int msgid = -1;
    rc = ldap_start_tls(ld, nullptr, nullptr, &msgid);
    if (rc != LDAP_SUCCESS) return starttls_failed(rc);
    LDAPMessage* res = nullptr;
    rc = ldap_result(ld, msgid, LDAP_MSG_ALL, &tv, &res);
    if (rc <= 0) {
      if (res) ldap_msgfree(res);
      return starttls_failed(rc == 0 ? LDAP_TIMEOUT : LDAP_SERVER_DOWN);
    }
    int code = LDAP_OTHER;
    rc = ldap_parse_result(ld, res, &code, nullptr, nullptr, nullptr, nullptr, 1);
    if (rc != LDAP_SUCCESS) return starttls_failed(rc);
    if (code != LDAP_SUCCESS) return starttls_failed(code);
    if (!arm_again()) return nullptr;
    rc = ldap_install_tls(ld);
    if (rc != LDAP_SUCCESS) return starttls_failed(rc);
  }
  if (service_bind && !o.bind_dn.empty()) {
    berval cred{};
    cred.bv_val = const_cast<char*>(o.password.empty() ? "" : o.password.data());
    cred.bv_len = o.password.size();
    // Synchronous: its wait is LDAP_OPT_TIMEOUT, which arm() sets.
    if (!arm_again()) return nullptr;
    rc = ldap_sasl_bind_s(ld, o.bind_dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr,
                          nullptr);
    if (rc != LDAP_SUCCESS) {
      *error = make_error(ld, rc);
      error->message = "bind as " + o.bind_dn + " failed: " + error->message;
      return nullptr;
    }
  }
  conn->last_used = Clock::now();
  return conn;
}

Connection::~Connection() { ldap_unbind_ext(ld_, nullptr, nullptr); }

LdapError Connection::error_of(int code) const { return make_error(ld_, code); }

bool Connection::arm(Deadline deadline, timeval* tv, LdapError* error) const {
  const auto left = time_left(deadline, timeout_);
  if (left.count() == 0) {
    *error = deadline_passed();
    return false;
  }
  *tv = to_timeval(left);
  ldap_set_option(ld_, LDAP_OPT_NETWORK_TIMEOUT, tv);
  ldap_set_option(ld_, LDAP_OPT_TIMEOUT, tv);
  return true;
}

bool Connection::search(const std::string& base, int scope, const std::string& filter,
                        const std::vector<std::string>& attributes, int size_limit,
                        Deadline deadline, std::vector<Entry>* out, bool* more,
                        LdapError* error) {
  out->clear();
  *more = false;
  std::vector<char*> attrs;
  static char kNoAttributes[] = "1.1";
  if (attributes.empty()) attrs.push_back(kNoAttributes);
  for (const auto& a : attributes) attrs.push_back(const_cast<char*>(a.c_str()));
  attrs.push_back(nullptr);
  timeval tv{};
  if (!arm(deadline, &tv, error)) return false;
  MessageGuard res;
  const int rc = ldap_search_ext_s(ld_, base.c_str(), scope, filter.c_str(), attrs.data(), 0,
                                   nullptr, nullptr, &tv, size_limit, &res.msg);
  // noSuchObject is an error here, not an empty result: the caller knows
  // whether the base was the configured one (missing: a configuration or
  // directory problem) or a DN built from the user's name (nobody's).
  if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
    *error = error_of(rc);
    return false;
  }
  if (rc == LDAP_SIZELIMIT_EXCEEDED) *more = true;
  if (res.msg == nullptr) return true;
  for (LDAPMessage* e = ldap_first_entry(ld_, res.msg); e; e = ldap_next_entry(ld_, e)) {
    Entry entry;
    // A DN that cannot be read stays "": callers treat an entry without a
    // DN as a temporary failure (a bind as "" would be anonymous).
    if (char* dn = ldap_get_dn(ld_, e)) {
      entry.dn = dn;
      ldap_memfree(dn);
    }
    BerElement* ber = nullptr;
    for (char* a = ldap_first_attribute(ld_, e, &ber); a; a = ldap_next_attribute(ld_, e, ber)) {
      std::vector<Secret> vals;
      if (berval** bv = ldap_get_values_len(ld_, e, a)) {
        for (int i = 0; bv[i]; ++i) vals.emplace_back(std::string_view(bv[i]->bv_val, bv[i]->bv_len));
        ldap_value_free_len(bv);
      }
      entry.attributes.emplace_back(a, std::move(vals));
      ldap_memfree(a);
    }
    if (ber) ber_free(ber, 0);
    out->push_back(std::move(entry));
  }
  return true;
}

bool Connection::bind_user(const std::string& dn, std::string_view password, Deadline deadline,
                           BindResult* result, LdapError* error) {
  *result = {};
  if (dn.empty()) {
    result->code = LDAP_PARAM_ERROR;
    result->message = "no DN to bind as (an empty DN is an anonymous bind)";
    return true;
  }
  timeval tv{};
  if (!arm(deadline, &tv, error)) return false;
  LDAPControl* request = nullptr;
  LDAPControl* sctrls[2] = {nullptr, nullptr};
  if (ldap_create_passwordpolicy_control(ld_, &request) == LDAP_SUCCESS && request) {
    request->ldctl_iscritical = 0;  // servers without ppolicy ignore it
    sctrls[0] = request;
  }
  berval cred{};
  cred.bv_val = const_cast<char*>(password.empty() ? "" : password.data());
  cred.bv_len = password.size();
  int msgid = -1;
  int rc = ldap_sasl_bind(ld_, dn.c_str(), LDAP_SASL_SIMPLE, &cred, sctrls, nullptr, &msgid);
  if (request) ldap_control_free(request);
  if (rc != LDAP_SUCCESS) {
    *error = error_of(rc);
    return false;
  }
  if (!arm(deadline, &tv, error)) {  // sending took what was left: the bind is out
    error->not_started = false;
    return false;
  }
  MessageGuard res;
  rc = ldap_result(ld_, msgid, LDAP_MSG_ALL, &tv, &res.msg);
  if (rc <= 0) {
    *error = error_of(rc == 0 ? LDAP_TIMEOUT : LDAP_SERVER_DOWN);
    if (rc < 0) {
      int code = 0;
      ldap_get_option(ld_, LDAP_OPT_RESULT_CODE, &code);
      if (code != 0) *error = error_of(code);
    }
    if (error->code >= 0) error->code = LDAP_SERVER_DOWN;
    return false;
  }
  int code = 0;
  char* msg = nullptr;
  LDAPControl** ctrls = nullptr;
  rc = ldap_parse_result(ld_, res.msg, &code, nullptr, &msg, nullptr, &ctrls, 0);
  if (rc != LDAP_SUCCESS) {
    *error = error_of(rc);
    return false;
  }
  result->code = code;
  result->message = ldap_err2string(code);
  if (msg) {
    if (*msg) result->message += std::string(": ") + msg;
    ldap_memfree(msg);
  }
  if (ctrls) {
    if (LDAPControl* c = ldap_control_find(LDAP_CONTROL_PASSWORDPOLICYRESPONSE, ctrls, nullptr)) {
      ber_int_t expire = -1, grace = -1;
      LDAPPasswordPolicyError pp = PP_noError;
      if (ldap_parse_passwordpolicy_control(ld_, c, &expire, &grace, &pp) == LDAP_SUCCESS) {
        result->expires_in = expire;
        result->grace_left = grace;
        if (pp != PP_noError) {
          result->policy_error = pp;
          result->policy = ldap_passwordpolicy_err2txt(pp);
          for (char& ch : result->policy) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
      }
    }
    ldap_controls_free(ctrls);
  }
  return true;
}

bool Connection::modify_password(const std::string& dn, std::string_view password,
                                 Deadline deadline, LdapError* error) {
  timeval tv{};
  if (!arm(deadline, &tv, error)) return false;  // ldap_passwd_s waits LDAP_OPT_TIMEOUT
  berval user{};
  user.bv_val = const_cast<char*>(dn.c_str());
  user.bv_len = dn.size();
  berval newpw{};
  newpw.bv_val = const_cast<char*>(password.empty() ? "" : password.data());
  newpw.bv_len = password.size();
  berval generated{};
  const int rc = ldap_passwd_s(ld_, &user, nullptr, &newpw, &generated, nullptr, nullptr);
  if (generated.bv_val) {
    wipe(generated.bv_val, generated.bv_len);
    ber_memfree(generated.bv_val);
  }
  if (rc != LDAP_SUCCESS) {
    *error = error_of(rc);
    return false;
  }
  return true;
}

// --- Pool ---------------------------------------------------------------------------

Pool::Pool(std::string log_name, const ConnectOptions& options, std::size_t size,
           bool service_bind, HostSelector* hosts)
    : log_name_(std::move(log_name)),
      options_(options.copy()),
      size_(size),
      service_bind_(service_bind),
      hosts_(hosts) {
  library_init();
}

Pool::~Pool() {
  std::lock_guard lock(mutex_);
  idle_.clear();
}

Pool::Lease::~Lease() {
  if (pool_ && conn_) pool_->give_back(std::move(conn_), false);
}

void Pool::Lease::discard() {
  if (pool_ && conn_) pool_->give_back(std::move(conn_), true);
}

void Pool::give_back(std::unique_ptr<Connection> conn, bool broken) {
  if (broken) {
    conn.reset();  // unbind outside the lock: it writes to the socket
    std::lock_guard lock(mutex_);
    --open_;
  } else {
    conn->last_used = Clock::now();
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(conn));
  }
  cv_.notify_one();
}

Pool::Lease Pool::acquire(Deadline deadline, LdapError* error, bool fresh) {
  std::unique_ptr<Connection> conn;
  std::vector<std::unique_ptr<Connection>> stale;  // closed below, outside the lock
  {
    std::unique_lock lock(mutex_);
    while (true) {
      if (!idle_.empty() && !fresh) {
        conn = std::move(idle_.back());
        idle_.pop_back();
        // Idle too long: a middlebox may have dropped it without a word.
        // Close it and take a newer one, or open a new one in its slot.
        if (!fresh_enough(conn->last_used, Clock::now())) {
          stale.push_back(std::move(conn));
          --open_;
          continue;
        }
        break;
      }
      if (open_ < size_) {
        ++open_;
        break;
      }
      if (fresh && !idle_.empty()) {
        idle_.erase(idle_.begin());  // make room: close the oldest idle one
        --open_;                     // (its slot is reused below)
        continue;
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
          open_ >= size_) {
        *error = {LDAP_BUSY, "all " + std::to_string(size_) +
                                 " LDAP connections stayed busy (raise pool_size?)"};
        error->pool_busy = true;
        return {};
      }
    }
  }
  stale.clear();  // unbind (a write to the socket) outside the lock
  if (conn) {
    // Moving back to a better server may take half of what is left: the
    // request keeps time for its operation on the connection it has.
    const auto now = Clock::now();
    const Deadline half = now + (deadline - now) / 2;
    std::optional<std::size_t> better;
    if (time_left(half, options_.timeout).count() > 0)
      better = hosts_->claim_better(conn->server(), now);
    if (better) {
      LdapError e;
      const std::string& uri = options_.uris[*better];
      if (auto c = Connection::open(options_, *better, service_bind_, half, &e)) {
        if (hosts_->succeeded(*better)) log::info(log_name_ + ": " + uri + " is reachable again");
        {
          std::lock_guard lock(mutex_);
          if (last_server_ != *better) {
            last_server_ = *better;
            log::info(log_name_ + ": now using " + uri);
          }
        }
        conn = std::move(c);
      } else if (!e.not_started && hosts_->failed(*better, Clock::now())) {
        log::warning(log_name_ + ": cannot connect to " + uri + ": " +
                     log::sanitize(e.text(), 1024));
      }
    }
    return Lease(this, std::move(conn));
  }
  conn = connect(deadline, error);
  if (!conn) {
    {
      std::lock_guard lock(mutex_);
      --open_;
    }
    cv_.notify_one();
    return {};
  }
  return Lease(this, std::move(conn));
}

std::unique_ptr<Connection> Pool::connect(Deadline deadline, LdapError* error) {
  const auto order = hosts_->plan(Clock::now());
  if (order.empty()) {
    std::lock_guard lock(mutex_);
    *error = last_error_;
    if (error->code == 0) error->code = LDAP_SERVER_DOWN;
    error->message = "no LDAP server is reachable (" + last_error_.message +
                     "); the next attempt is due within a second";
    return nullptr;
  }
  std::string errors;
  LdapError last;
  for (std::size_t i : order) {
    LdapError e;
    const std::string& uri = options_.uris[i];
    // No further URI once the request's deadline has passed: its answer is
    // due now (a temporary failure), and the URI is not to blame.
    if (time_left(deadline, options_.timeout).count() == 0) {
      e = deadline_passed();
      errors += (errors.empty() ? "" : "; ") + uri + ": not tried (no time left)";
      if (last.code == 0) last = e;
      continue;
    }
    if (auto c = Connection::open(options_, i, service_bind_, deadline, &e)) {
      if (hosts_->succeeded(i)) log::info(log_name_ + ": " + uri + " is reachable again");
      std::lock_guard lock(mutex_);
      if (last_server_ != i) {
        last_server_ = i;
        if (options_.uris.size() > 1) {
          if (i == 0)
            log::info(log_name_ + ": now using " + uri);
          else
            log::warning(log_name_ + ": now using " + uri + " (failover)");
        }
      }
      return c;
    }
    // A server that answers but refuses our bind is up: failing over would
    // not help (the next one has the same directory), and it is not down.
    if (!e.not_started && (e.unreachable() || e.code < 0)) {
      if (hosts_->failed(i, Clock::now()))
        log::warning(log_name_ + ": cannot connect to " + uri + ": " +
                     log::sanitize(e.text(), 1024));
    }
    errors += (errors.empty() ? "" : "; ") + uri + ": " + e.message;
    last = e;
  }
  *error = last;
  error->message = errors;
  std::lock_guard lock(mutex_);
  last_error_ = *error;
  return nullptr;
}

std::vector<std::optional<LdapError>> Pool::probe_all() {
  std::vector<std::optional<LdapError>> out;
  for (std::size_t i = 0; i < options_.uris.size(); ++i) {
    LdapError e;
    auto c = Connection::open(options_, i, service_bind_, Clock::now() + options_.timeout, &e);
    out.push_back(c ? std::nullopt : std::optional<LdapError>(e));
  }
  return out;
}

}  // namespace mailauth::backend::ldap
