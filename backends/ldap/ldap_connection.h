// OpenLDAP's libldap behind a small interface: one connection (RAII over
// LDAP*), the failover bookkeeping across the configured URIs, and a pool
// of connections the worker threads share.
//
//   Pool::acquire() ──► an idle Connection (moved to a better server when
//                       one is due again), or a new one: HostSelector::plan()
//                       says which URIs to try, in order; a service pool's
//                       connections are bound as bind_dn (or anonymous), a
//                       user-bind pool's are left unbound
//   Connection::search() / bind_user() / modify_password()
//   Lease goes out of scope ──► back to the pool (or closed, after discard())
//
// Two pools per backend, sharing one HostSelector: searches run on service
// connections; user binds (auth = "bind") run on connections kept for them,
// so a user's identity never lingers on a connection that searches for
// others (cyrus-sasl #550: a bound connection that kept accepting an old
// password).
//
// No BER is written here: every protocol element is libldap's.  No libldap
// header leaks out of this file (LDAP is forward-declared).
//
// Time: every call takes the request's Deadline -- `timeout` from the
// moment lookup()/verify() started -- and each libldap call waits at most
// what is left of it (the TCP connect, StartTLS, the TLS handshake, the
// service bind, the pool wait, the search, the user bind), so a slow server
// cannot charge each step, or each URI, the whole timeout again.
//
// Threads: Pool and HostSelector are thread-safe.  A Connection is used by one
// thread at a time (the one holding its Lease); libldap 2.5 is thread-safe
// across handles.
#pragma once

#include "backends/common/host_selector.h"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "src/util/secret.h"

struct ldap;
struct timeval;

namespace mailauth::backend::ldap {

using Clock = std::chrono::steady_clock;

// When a request must have its answer: a temporary failure once it has
// passed, never another step or another URI.
using Deadline = Clock::time_point;

// What is left until `deadline`, at most `cap`; zero once less than a
// millisecond is left (libldap takes no shorter wait).
std::chrono::milliseconds time_left(Deadline deadline, std::chrono::milliseconds cap);

struct ConnectOptions {
  std::vector<std::string> uris;  // ldap://, ldaps:// or ldapi://, tried in order
  bool starttls = false;          // StartTLS on ldap:// (required: no clear-text fallback)
  std::string tls_ca;             // CA file; empty: the system's (/etc/ldap/ldap.conf)
  std::string tls_cert;           // client certificate and key
  std::string tls_key;
  bool tls_check_peer = true;     // verify the server certificate and name
  std::chrono::milliseconds timeout{5000};  // a request's deadline (and the bound of each step)
  std::string bind_dn;            // empty: anonymous
  Secret password;

  ConnectOptions copy() const {
    return {uris, starttls, tls_ca, tls_cert, tls_key, tls_check_peer, timeout, bind_dn,
            password.clone()};
  }
};

// An LDAP result code (or a negative libldap API error) with the text.
struct LdapError {
  int code = 0;
  std::string message;  // ldap_err2string, plus the server's diagnostic message
  // Every pooled connection stayed busy (ours, not the server's): not an
  // outage -- the directory answers, there is just more load than pool_size.
  bool pool_busy = false;
  // The deadline had passed before the operation was sent: the connection
  // was not touched and is as good as before.
  bool not_started = false;
  // The server could not be reached or could not serve now (down, timed out,
  // refused the connection, busy, unavailable) -- as opposed to refusing
  // our settings (service credentials, TLS, base).
  bool unreachable() const;
  // The connection cannot be used again: close it.
  bool connection_lost() const;
  std::string text() const;  // "message (code)"
};

// One entry of a search result: its DN and the values of the attributes
// asked for (as Secrets: a password attribute's values are credentials).
struct Entry {
  std::string dn;
  std::vector<std::pair<std::string, std::vector<Secret>>> attributes;
  const std::vector<Secret>* values(std::string_view attribute) const;  // any case; null if none
};

// What a user bind said, with the password policy control's answer when the
// server sent one (draft-behera-ldap-password-policy).
struct BindResult {
  // LDAP_SUCCESS, LDAP_INVALID_CREDENTIALS, …; LDAP_OTHER until a server
  // said otherwise (0 would be LDAP_SUCCESS: a login, by default).
  int code = 0x50;          // LDAP_OTHER (no libldap header here)
  std::string message;      // for the log
  std::string policy;       // "password expired", "account locked", "" …
  int policy_error = -1;    // LDAPPasswordPolicyError, or -1 when none was sent
  int expires_in = -1;      // seconds until the password expires (a warning), or -1
  int grace_left = -1;      // grace logins left after expiry, or -1
};

// Failover among the URIs: the same policy as mysql's hosts.
using HostSelector = backend::HostSelector;

class Connection {
 public:
  // Connect to options.uris[index] (StartTLS when configured) and, when
  // `service_bind`, bind as options.bind_dn (or stay anonymous without one),
  // all before `deadline`.  nullptr with `error` set.  (ldaps://: the TCP
  // connect and the TLS handshake are one libldap call, each bounded by
  // what was left when it started.)
  static std::unique_ptr<Connection> open(const ConnectOptions& options, std::size_t index,
                                          bool service_bind, Deadline deadline, LdapError* error);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  std::size_t server() const { return server_; }

  // A search with at most `size_limit` entries (more: the server's
  // sizeLimitExceeded, reported as `*more` = true with the entries read).
  // `attributes` empty: no attributes ("1.1"), the DN only.  A base that
  // does not exist is an error (LDAP_NO_SUCH_OBJECT), not an empty result.
  bool search(const std::string& base, int scope, const std::string& filter,
              const std::vector<std::string>& attributes, int size_limit, Deadline deadline,
              std::vector<Entry>* out, bool* more, LdapError* error);

  // A simple bind as `dn` with `password`, asking for the password policy
  // control.  Returns false only when the connection failed (error set);
  // a refused bind is true with result->code set.  An empty `dn` is never
  // sent (a simple bind with no DN is anonymous and succeeds on some
  // servers): true with result->code = LDAP_PARAM_ERROR.
  bool bind_user(const std::string& dn, std::string_view password, Deadline deadline,
                 BindResult* result, LdapError* error);

  // RFC 3062 Password Modify for `dn` as the connection's identity.
  bool modify_password(const std::string& dn, std::string_view password, Deadline deadline,
                       LdapError* error);

  Clock::time_point last_used{};  // when it was last given back (Pool: kMaxIdle)

 private:
  Connection(::ldap* ld, std::size_t server, std::chrono::milliseconds timeout)
      : ld_(ld), server_(server), timeout_(timeout) {}
  LdapError error_of(int code) const;
  // Bounds libldap's own waits on this handle (LDAP_OPT_NETWORK_TIMEOUT for
  // a connect or TLS handshake, LDAP_OPT_TIMEOUT for synchronous calls) by
  // what is left of `deadline`, and fills `tv` with it.  False, with
  // `error` set (not_started), when nothing is left.
  bool arm(Deadline deadline, ::timeval* tv, LdapError* error) const;

  ::ldap* ld_;
  std::size_t server_;
  std::chrono::milliseconds timeout_;
};

// A pooled connection idle for longer than this is closed, not used: a
// NAT box or firewall drops idle TCP state silently (often after a few
// minutes), and the next login on such a connection would wait the whole
// timeout and get a temporary failure.  Well below the usual 5-minute idle
// limits; with TCP keepalive (kKeepaliveIdle) on as well, for the
// connections that stay busy.
inline constexpr auto kMaxIdle = std::chrono::seconds(30);
inline constexpr int kKeepaliveIdle = 60;      // s of silence before the first probe
inline constexpr int kKeepaliveProbes = 3;     // unanswered probes: the connection is dead
inline constexpr int kKeepaliveInterval = 10;  // s between probes

// Whether a connection last used at `last_used` may still be used at `now`.
inline bool fresh_enough(Clock::time_point last_used, Clock::time_point now) {
  return now - last_used <= kMaxIdle;
}

class Pool {
 public:
  Pool(std::string log_name, const ConnectOptions& options, std::size_t size, bool service_bind,
       HostSelector* hosts);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& o) noexcept : pool_(o.pool_), conn_(std::move(o.conn_)) { o.pool_ = nullptr; }
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    explicit operator bool() const { return conn_ != nullptr; }
    Connection* operator->() const { return conn_.get(); }
    void discard();  // the connection is broken: close it instead of returning it

   private:
    friend class Pool;
    Lease(Pool* pool, std::unique_ptr<Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
    Pool* pool_ = nullptr;
    std::unique_ptr<Connection> conn_;
  };

  // A connection, or an empty Lease with `error` set (no server reachable
  // before `deadline`, the service bind refused, or every connection busy
  // until `deadline`).  `fresh`: a new connection, never an idle one (the
  // retry after a connection turned out dead).  No URI is tried once the
  // deadline has passed.
  Lease acquire(Deadline deadline, LdapError* error, bool fresh = false);

  // For --check-config and health(): connect (and bind) to every URI once,
  // outside the pool, each with its own `timeout` (a per-server bound: the
  // probe says about every server, not just the first ones).  One entry per
  // URI: nullopt if it worked.
  std::vector<std::optional<LdapError>> probe_all();

 private:
  std::unique_ptr<Connection> connect(Deadline deadline, LdapError* error);
  void give_back(std::unique_ptr<Connection> conn, bool broken);

  const std::string log_name_;
  const ConnectOptions options_;
  const std::size_t size_;
  const bool service_bind_;
  HostSelector* hosts_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;
  std::size_t last_server_ = 0;
  LdapError last_error_;
};

// Call once on the main thread before connections are opened (idempotent):
// libldap's global state is initialised then, not racily by two workers.
void library_init();

}  // namespace mailauth::backend::ldap
