#include "backends/pam/pam_backend.h"

#include <security/pam_appl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>

#include "src/util/log.h"

namespace mailauth::backend {

namespace {

struct ConvData {
  std::string_view password;
  bool asked = false;
};

// Answers every hidden prompt with the password; visible prompts (a module
// asking for the user name) get an empty answer; messages are ignored.
int conversation(int n, const pam_message** msgs, pam_response** out, void* data) {
  auto* conv = static_cast<ConvData*>(data);
  if (n <= 0 || n > PAM_MAX_NUM_MSG) return PAM_CONV_ERR;
  auto* replies = static_cast<pam_response*>(std::calloc(static_cast<std::size_t>(n), sizeof(pam_response)));
  if (replies == nullptr) return PAM_BUF_ERR;
  for (int i = 0; i < n; ++i) {
    replies[i].resp_retcode = 0;
    replies[i].resp = nullptr;
    if (msgs[i]->msg_style == PAM_PROMPT_ECHO_OFF) {
      char* copy = static_cast<char*>(std::malloc(conv->password.size() + 1));
      if (copy == nullptr) {
        for (int j = 0; j < i; ++j)
          if (replies[j].resp) {
            wipe(replies[j].resp, std::strlen(replies[j].resp));
            std::free(replies[j].resp);
          }
        std::free(replies);
        return PAM_BUF_ERR;
      }
      if (!conv->password.empty()) std::memcpy(copy, conv->password.data(), conv->password.size());
      copy[conv->password.size()] = '\0';
      replies[i].resp = copy;  // PAM frees it
      conv->asked = true;
    } else if (msgs[i]->msg_style == PAM_PROMPT_ECHO_ON) {
      replies[i].resp = strdup("");
    }
  }
  *out = replies;
  return PAM_SUCCESS;
}

// PAM_FAIL_DELAY callback: no sleep in a worker thread.
void no_delay(int, unsigned, void*) {}

class Transaction {
 public:
  Transaction(const std::string& service, const std::string& user, const std::string& confdir,
              ConvData* conv) {
    pam_conv c{conversation, conv};
    rc_ = confdir.empty() ? pam_start(service.c_str(), user.c_str(), &c, &pamh_)
                          : pam_start_confdir(service.c_str(), user.c_str(), &c, confdir.c_str(),
                                              &pamh_);
  }
  ~Transaction() {
    if (pamh_ != nullptr) pam_end(pamh_, last_);
  }
  int start_rc() const { return rc_; }
  pam_handle_t* get() { return pamh_; }
  int track(int rc) { return last_ = rc; }

 private:
  pam_handle_t* pamh_ = nullptr;
  int rc_ = PAM_SYSTEM_ERR;
  int last_ = PAM_SUCCESS;
};

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// What may name a file in a PAM directory: no '/', no leading '.'.
bool valid_service_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name[0])))
    return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      return false;
  return true;
}

}  // namespace

const std::vector<std::string>& PamBackend::default_services() {
  static const std::vector<std::string> services{"smtp", "submission", "imap", "pop3", "sieve"};
  return services;
}

std::unique_ptr<Backend> PamBackend::create(const config::BackendSpec& spec) {
  const auto& s = spec.section;
  std::string service = s.get_string("service", "");
  std::vector<std::string> services;
  if (s.has("services")) {
    if (!service.empty())
      s.fail("services", "has no effect with 'service' set (that service is always used, "
                         "whatever the client sends); remove one of them");
    for (const std::string& name : s.get_string_list("services", {})) {
      if (!valid_service_name(name))
        s.fail("services", "\"" + name +
                               "\" is not a PAM service name (up to 64 letters, digits, '.', '_', "
                               "'-'; the first a letter or digit)");
      std::string l = lower(name);
      if (std::find(services.begin(), services.end(), l) != services.end())
        s.fail("services", "\"" + l + "\" is listed twice");
      services.push_back(std::move(l));
    }
    if (services.empty()) s.fail("services", "must list at least one PAM service");
  }
  std::string confdir = s.get_string("confdir", "");
  bool account_check = s.get_bool("account_check", true);
  int max_concurrent = static_cast<int>(s.get_int("max_concurrent", 1, 1, 256));
  if (!confdir.empty()) {
    struct stat st {};
    if (::stat(confdir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      s.fail("confdir", "is not a directory: " + confdir);
  }
  return std::make_unique<PamBackend>(spec.name, service, confdir, account_check, max_concurrent,
                                      std::move(services));
}

PamBackend::PamBackend(std::string name, std::string service, std::string confdir,
                       bool account_check, int max_concurrent, std::vector<std::string> services)
    : Backend("pam", std::move(name)), service_(std::move(service)),
      services_(services.empty() ? default_services() : std::move(services)),
      confdir_(std::move(confdir)), account_check_(account_check),
      max_concurrent_(max_concurrent) {}

std::optional<std::string> PamBackend::service_for(const Query& query) const {
  if (!service_.empty()) return service_;
  std::string wanted = query.service.empty() ? std::string("smtp") : lower(query.service);
  if (std::find(services_.begin(), services_.end(), wanted) == services_.end()) return std::nullopt;
  return wanted;
}

std::string PamBackend::refusal(const Query& query) const {
  if (service_for(query)) return {};
  return "service '" + std::string(query.service.empty() ? "smtp" : query.service) +
         "' not allowed";
}

LookupResult PamBackend::lookup(const Query&) {
  return {Status::TempFail, {}, "pam cannot look up stored credentials"};
}

std::string PamBackend::check() {
  // pam_start reads the service's stack; a missing file falls back to
  // "other", so only report what pam_start itself refuses.
  ConvData conv{"", false};
  Transaction t(service_.empty() ? "smtp" : service_, "mailauth-check", confdir_, &conv);
  if (t.start_rc() != PAM_SUCCESS)
    return std::string("pam_start failed: ") + pam_strerror(t.get(), t.start_rc());
  return {};
}

VerifyResult PamBackend::verify(const Query& query, std::string_view password) {
  // The chain asks refusal() first; checked again so that no caller can
  // hand a client's arbitrary service to pam_start.
  const std::optional<std::string> allowed = service_for(query);
  if (!allowed) return {Verdict::Fail, refusal(query)};
  const std::string& service = *allowed;
  const std::string user(query.user);
  if (user.empty() || user.find('\0') != std::string::npos ||
      password.find('\0') != std::string_view::npos)
    return {Verdict::Fail, "user name or password contains a NUL byte"};

  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return running_ < max_concurrent_; });
  ++running_;
  lock.unlock();
  struct Release {
    PamBackend* self;
    ~Release() {
      {
        std::lock_guard g(self->mutex_);
        --self->running_;
      }
      self->cv_.notify_one();
    }
  } release{this};

  ConvData conv{password, false};
  Transaction t(service, user, confdir_, &conv);
  if (t.start_rc() != PAM_SUCCESS)
    return {Verdict::TempFail, std::string("pam_start(") + service + "): " +
                                   pam_strerror(t.get(), t.start_rc())};
  pam_set_item(t.get(), PAM_FAIL_DELAY, reinterpret_cast<const void*>(&no_delay));
  if (!query.client_addr.empty()) {
    const std::string rhost(query.client_addr);
    pam_set_item(t.get(), PAM_RHOST, rhost.c_str());
  }
  int rc = t.track(pam_authenticate(t.get(), PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK));
  switch (rc) {
    case PAM_SUCCESS: break;
    case PAM_USER_UNKNOWN: return {Verdict::Unknown, "unknown user"};
    case PAM_AUTH_ERR:
    case PAM_PERM_DENIED:
    case PAM_MAXTRIES:
    case PAM_CRED_INSUFFICIENT:
      return {Verdict::Fail, std::string("pam_authenticate: ") + pam_strerror(t.get(), rc)};
    default:
      // PAM_AUTHINFO_UNAVAIL (a module's server is down), PAM_SYSTEM_ERR,
      // PAM_ABORT, a broken stack: the backend cannot answer.
      return {Verdict::TempFail, std::string("pam_authenticate: ") + pam_strerror(t.get(), rc)};
  }
  if (!account_check_) return {Verdict::Ok, ""};
  rc = t.track(pam_acct_mgmt(t.get(), PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK));
  switch (rc) {
    case PAM_SUCCESS: return {Verdict::Ok, ""};
    case PAM_ACCT_EXPIRED: return {Verdict::Fail, "account expired"};
    case PAM_NEW_AUTHTOK_REQD: return {Verdict::Fail, "password expired"};
    case PAM_PERM_DENIED:
    case PAM_AUTH_ERR:
    case PAM_USER_UNKNOWN:
      return {Verdict::Fail, std::string("pam_acct_mgmt: ") + pam_strerror(t.get(), rc)};
    default:
      return {Verdict::TempFail, std::string("pam_acct_mgmt: ") + pam_strerror(t.get(), rc)};
  }
}

config::SaslauthdBackends PamBackend::saslauthd_form(const std::string& option) {
  std::string toml = "[[backend]]\ntype = \"pam\"\n";
  if (!option.empty()) toml += "confdir = " + config::toml_quote(option) + "\n";
  return {toml, "saslauthd -a pam"};
}

const TypeInfo PamBackend::kTypeInfo{
    .type = "pam",
    .create = &PamBackend::create,
    .accounts_hint = "manage system accounts with passwd, useradd and usermod",
    .saslauthd = &PamBackend::saslauthd_form,
};

}  // namespace mailauth::backend
