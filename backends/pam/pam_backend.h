// pam: a verify-only backend through PAM (saslauthd -a pam).
//
// PAM answers yes or no to a plaintext password, so it serves PLAIN and
// LOGIN; CRAM-MD5 and SCRAM need a stored credential and skip this backend
// (their log line says so).  Per attempt: pam_start (with `service`, or the
// service the client sent, as saslauthd does: Postfix logins use
// /etc/pam.d/smtp), PAM_RHOST from the client address when known,
// pam_authenticate, then pam_acct_mgmt (expired or locked accounts fail).
//
// The client's service is only used when it is on the allow-list
// (`services`, default smtp, submission, imap, pop3, sieve); anything else
// fails with "service 'X' not allowed" and never reaches pam_start.  A
// client must not pick the stack: mailauthd often runs as root, where su's
// and runuser's pam_rootok accept any password.  Linux-PAM lower-cases the
// name and keeps what follows the last '/', so the name is lower-cased
// here, compared exactly, and only allow-listed names (letters, digits,
// '.', '_', '-') are ever passed on.
//
// PAM's own failure delay (pam_unix, pam_faildelay) would sleep inside a
// worker thread; mailauthd installs a PAM_FAIL_DELAY callback that does
// nothing and applies its own delay as a timer instead.
//
// Threads: PAM modules are not all thread-safe (pam_mysql is not; modules
// that call crypt() share its static buffer), so at most `max_concurrent`
// PAM transactions run at once (default 1: one at a time, as safe as
// saslauthd's one-process-per-request model).  Raise it only for modules
// known to be thread-safe (pam_unix uses crypt_r).
//
// Config keys: service (default: the client's), services (the allow-list
// for the client's service; not with `service`), confdir (default: the
// system's /etc/pam.d; a private directory for tests and chroots),
// account_check (default true), max_concurrent (default 1).
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends/backend.h"

namespace mailauth::backend {

class PamBackend final : public Backend {
 public:
  // What the type offers (registered in backends/backend.cc).
  static const TypeInfo kTypeInfo;
  static std::unique_ptr<Backend> create(const config::BackendSpec& spec);
  // saslauthd's -a pam -O OPTION (TypeInfo::saslauthd).
  static config::SaslauthdBackends saslauthd_form(const std::string& option);

  // The services a client may name when `service` is not set.
  static const std::vector<std::string>& default_services();

  // `services`: the allow-list, lower case (empty: default_services()).
  PamBackend(std::string name, std::string service, std::string confdir, bool account_check,
             int max_concurrent, std::vector<std::string> services = {});

  Kind kind() const override { return Kind::VerifyOnly; }
  LookupResult lookup(const Query& query) override;
  VerifyResult verify(const Query& query, std::string_view password) override;
  std::string refusal(const Query& query) const override;
  std::string check() override;
  std::string needs_root() const override {
    return "pam_unix reads /etc/shadow, and checks other users' passwords, only as root";
  }

 private:
  // The PAM service for this query: `service`, or the client's (smtp when
  // it sent none) lower-cased if allow-listed; nullopt if not.
  std::optional<std::string> service_for(const Query& query) const;

  const std::string service_;
  const std::vector<std::string> services_;
  const std::string confdir_;
  const bool account_check_;
  const int max_concurrent_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int running_ = 0;
};

}  // namespace mailauth::backend
