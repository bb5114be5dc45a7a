// The backend interface: where mailauthd learns whether a user exists and
// what their credential is.  Every backend (pwdfile, mysql, pam, shadow)
// implements it; the authenticator walks an ordered chain of them.
//
// Two kinds exist, and each backend *instance* says which it is (a type
// may be either, by its settings: ldap with auth = "bind" or "lookup"):
//   - a *lookup* backend returns the stored credential (a hash, a plaintext
//     value or a SCRAM verifier) and the scheme registry (src/password)
//     checks it, so every SASL mechanism can use it: pwdfile, mysql, shadow;
//   - a *verify-only* backend takes the plaintext password and answers yes or
//     no itself, so it serves PLAIN and LOGIN only: pam.
//
// Everything the rest of mailauth needs to know about a backend is asked
// here, never by comparing type names: what an instance is (kind(),
// needs_root(), accounts()) on Backend, what a type offers before one is
// built (mailauth-user's choice of store, the saslauthd -a form) in its
// TypeInfo.  A new backend is its folder (backends/NAME/, with a
// backend.cmake that adds its sources and libraries) plus one line in the
// registry of backends/backend.cc.
//
// The error contract (every method, every backend):
//   - Found / Ok / Fail: the backend knows the user and has decided.
//   - Unknown: the backend does not know the user.  Not an error: the next
//     backend in the chain is asked.
//   - TempFail: the backend could not answer (database down, file unreadable,
//     timeout).  The chain stops with a temporary failure; it never falls
//     through to a later backend, which might hold a stale credential.
// A backend never throws from lookup()/verify(); `reason` says what happened,
// for the log, and never contains a password or a hash.
//
// User names: a store may take several spellings for one account (MariaDB's
// _ci collations ignore case and trailing spaces).  canonical_user() names
// the one spelling; the chain asks the backend for that name only, and uses
// it for everything that must be per account: the cache, the brute-force
// policy's per-user counter, the attempt's log line and the name returned to
// the client (Dovecot's OK user=…).
//
// Threads: lookup() and verify() are called concurrently from worker threads
// and may block (disk, network); lookup_now() is called on the event loop
// thread, concurrently with them, and never blocks.  Construction happens on the main thread and
// may throw config::ConfigError.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/config/config.h"
#include "src/util/secret.h"

namespace mailauth::backend {

// What a backend is asked about.
struct Query {
  std::string_view user;         // the name to look up: login, or login@realm with join_realm,
                                 // as canonical_user() made it (from the chain)
  std::string_view realm;        // as the client sent it (may be empty)
  std::string_view service;      // "smtp", "imap", … (PAM uses it as the service name)
  std::string_view client_addr;  // remote IP when known, else empty
};

struct Credential {
  Secret stored;                          // as stored: hash, {SCHEME}value, verifier
  std::string default_scheme = "CRYPT";   // how to read a value without {SCHEME}
  bool disabled = false;                  // the account exists but may not log in
  std::string disabled_reason;            // for the log: "account locked", "password expired", …
};

enum class Status { Found, Unknown, TempFail };

struct LookupResult {
  Status status = Status::Unknown;
  Credential credential;  // when Found
  std::string reason;     // when TempFail (or a note for Unknown)
};

enum class Verdict { Ok, Fail, Unknown, TempFail };

struct VerifyResult {
  Verdict verdict = Verdict::Unknown;
  std::string reason;
  // False for a Fail decided without the check a password costs (ldap: an
  // empty password, never sent to the server): the authenticator then pads
  // the answer to a real check's time, as for an unknown user, and does not
  // take its time as a sample of one.
  bool costed = true;
};

// What writable backends (pwdfile, mysql) offer mailauth-user.  Every call
// may block (file locks, SQL): never call it from the event loop.
class AccountStore {
 public:
  enum class Status {
    Done,
    NotFound,       // no such user
    Exists,         // add: the user exists already
    Refused,        // the store refused the values (too long, malformed, …)
    NotConfigured,  // this store has no statement/way for the operation
    TempFail,       // the store could not be reached or written
  };
  struct Result {
    Status status = Status::TempFail;
    std::string message;  // for the operator; never holds a credential
  };
  struct Account {
    std::string user;
    std::string name;
    bool enabled = true;
  };

  virtual ~AccountStore() = default;
  // `stored` is the credential exactly as it is to be stored (see
  // wants_scheme_prefix()).
  virtual Result add(std::string_view user, std::string_view stored, std::string_view name,
                     bool enabled) = 0;
  virtual Result set_password(std::string_view user, std::string_view stored) = 0;
  // Compare-and-swap, for rehash-on-login: replace the credential only if it
  // is still `expected` (as lookup() returned it).  NotFound if it changed.
  virtual Result replace_password(std::string_view user, std::string_view expected,
                                  std::string_view stored) {
    (void)user, (void)expected, (void)stored;
    return {Status::NotConfigured, "this store cannot replace a credential conditionally"};
  }
  virtual Result remove(std::string_view user) = 0;
  virtual Result set_enabled(std::string_view user, bool enabled) = 0;
  // All accounts, or those whose domain (after '@') is `domain`.
  virtual Result list(std::string_view domain, std::vector<Account>* out) = 0;

  // Bulk load (mailauth-user import): each entry is added, or with `update`
  // an existing user's credential is replaced.  `results` gets one Result per
  // entry (Exists for an existing user without `update`; Done with message
  // "updated" for one whose credential was replaced).  The default runs
  // add()/set_password() one by one; stores override it to write once.
  struct NewAccount {
    std::string user;
    std::string stored;
  };
  virtual Result import(const std::vector<NewAccount>& entries, bool update,
                        std::vector<Result>* results);
  // Whether add()'s `name` (a display name) is kept; false: mailauth-user
  // says it was not stored.
  virtual bool stores_names() const { return true; }
  // True where the store hashes a new password itself (ldap: the Password
  // Modify extended operation, RFC 3062, and the directory's own hash
  // policy): set_password() then gets the plaintext, and --scheme does not
  // apply.  mailauth-user keeps it in a Secret and never prints it.
  virtual bool takes_plaintext() const { return false; }
  // True where the store is shared with Dovecot/PostfixAdmin, which expect a
  // {SCHEME} prefix on every hash; false where bare crypt strings are read
  // (pam_pwdfile, shadow-style files).
  virtual bool wants_scheme_prefix() const = 0;
};

class Backend {
 public:
  enum class Kind { Lookup, VerifyOnly };

  Backend(std::string type, std::string name) : type_(std::move(type)), name_(std::move(name)) {}
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const std::string& type() const { return type_; }
  const std::string& name() const { return name_; }
  virtual Kind kind() const = 0;

  // The name this backend's store knows `user` by: a deterministic rule that
  // folds every spelling the store does not tell apart into one (mysql with
  // normalize = "lower": trailing spaces dropped, A-Z lower-cased).  The chain
  // calls it before lookup()/verify() and passes the result as Query::user;
  // it is known before any lookup, so the policy can admit a request under
  // it too.  Empty: no account can have this name here, and the backend is
  // not asked (the user is unknown to it).  The default, for exact-match
  // stores (pwdfile, shadow, pam), is `user` unchanged.  Any thread; cheap,
  // never blocks, never throws.
  virtual std::string canonical_user(std::string_view user) const { return std::string(user); }

  // Lookup backends: the stored credential of `query.user`.
  virtual LookupResult lookup(const Query& query) = 0;

  // The same answer as lookup(), when it can be given at once from memory:
  // called on the event loop thread, so it must not block (no disk read, no
  // network, no lock held by a blocking call).  nullopt: ask lookup() on a
  // worker.  The default, for backends whose lookup blocks (mysql, shadow),
  // is always nullopt.
  virtual std::optional<LookupResult> lookup_now(const Query& query) {
    (void)query;
    return std::nullopt;
  }

  // Verify-only backends override this.  The default, for lookup backends,
  // is never called by the chain.
  virtual VerifyResult verify(const Query& query, std::string_view password);

  // A request this backend will not serve whatever the password (pam: a
  // service outside its allow-list): non-empty is the reason, and the chain
  // fails the attempt with it before the cache or the backend is asked.
  // Cheap and non-blocking; called from worker threads.
  virtual std::string refusal(const Query& query) const {
    (void)query;
    return {};
  }

  // A quick health check for `mailauthd --check-config`: empty if usable,
  // else what is wrong.
  virtual std::string check() { return {}; }

  // check(), with what kind of problem it found.  A backend that cannot be
  // reached now (its database server is down or not yet up) is not a
  // configuration error: mailauthd starts with it and answers temporary
  // failures until it is back, so --check-config only warns about it.
  struct Health {
    std::string problem;       // empty: usable
    bool unreachable = false;  // the server cannot be reached now; the settings may be right
    // Worth a warning even when usable (one of several servers is down).
    // health() itself never logs: --check-config prints these, the
    // daemon's start-up probe does not (its pool logs what it meets).
    std::vector<std::string> notes;

    Health() = default;
    Health(std::string p, bool u = false, std::vector<std::string> n = {})
        : problem(std::move(p)), unreachable(u), notes(std::move(n)) {}
  };
  virtual Health health() { return {check(), false}; }

  // Writable backends return their account operations; others nullptr.
  virtual AccountStore* accounts() { return nullptr; }

  // Non-empty: why this backend may need the daemon to keep running as root
  // (pam: pam_unix reads /etc/shadow only as root).  mailauthd refuses to
  // run as root unless a backend says this, the config insists, or it runs
  // in the saslauthd form.
  virtual std::string needs_root() const { return {}; }

  // Rehash-on-login: the scheme a successful login's credential is upgraded
  // to (key `rehash` of writable backends), or empty for none.
  const std::string& rehash_scheme() const { return rehash_scheme_; }
  void set_rehash_scheme(std::string scheme) { rehash_scheme_ = std::move(scheme); }

 private:
  std::string type_;
  std::string name_;
  std::string rehash_scheme_;
};

// What a backend type offers before any instance exists: one per type, in
// the registry (backends/backend.cc).
struct TypeInfo {
  const char* type;  // [[backend]] type = "…"
  // Builds an instance from its [[backend]] table; throws config::ConfigError.
  std::unique_ptr<Backend> (*create)(const config::BackendSpec& spec);
  // mailauth-user's default store (no --backend) is the first backend of a
  // type that keeps accounts; an instance's accounts() may still refuse
  // single operations (NotConfigured, with a message).
  bool keeps_accounts = false;
  // For a type that does not: how its accounts are managed instead.
  const char* accounts_hint = nullptr;
  // The saslauthd drop-in form `mailauthd -a TYPE -O OPTION`: the
  // [[backend]] tables it means, as TOML text.  nullptr: not an -a
  // mechanism.  Throws config::ConfigError ("FILE:LINE: …" where OPTION
  // names a file it reads).
  config::SaslauthdBackends (*saslauthd)(const std::string& option) = nullptr;
  // mailauth-user add on a store that does not exist yet (pwdfile: no file
  // yet): create it empty.  Returns a note for the operator, or empty.
  // nullptr: the store must exist.
  std::string (*create_empty_store)(const config::BackendSpec& spec) = nullptr;
};

// The registered type called `type`, or nullptr.
const TypeInfo* find_type(std::string_view type);

// Create a backend from its [[backend]] table.  Throws config::ConfigError
// naming the file, line and key of anything wrong, including unknown keys.
std::unique_ptr<Backend> create(const config::BackendSpec& spec);

// The backend types this build knows.
std::vector<std::string> types();

// The types offered as saslauthd -a mechanisms.
std::vector<std::string> saslauthd_mechanisms();

// The configuration `mailauthd -a MECH -O OPTION …` means: the backend
// tables from MECH's TypeInfo::saslauthd, into config::from_saslauthd_args.
// Throws config::ConfigError naming the mechanisms this build offers when
// MECH is not one.
config::Config from_saslauthd_args(const config::SaslauthdArgs& args);

}  // namespace mailauth::backend
