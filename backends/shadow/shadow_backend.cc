#include "backends/shadow/shadow_backend.h"

#include <shadow.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "src/util/log.h"

namespace mailauth::backend {

namespace {
constexpr const char* kSystemShadow = "/etc/shadow";

long days_since_epoch() { return static_cast<long>(std::time(nullptr) / 86400); }

// Copies what we need out of a struct spwd, whose strings live in a buffer
// that goes away.
struct Entry {
  std::string hash;
  long lastchg = -1, max = -1, inact = -1, expire = -1;
};

Entry to_entry(const spwd& sp) {
  Entry e;
  e.hash = sp.sp_pwdp ? sp.sp_pwdp : "";
  e.lastchg = sp.sp_lstchg;
  e.max = sp.sp_max;
  e.inact = sp.sp_inact;
  e.expire = sp.sp_expire;
  return e;
}
}  // namespace

std::unique_ptr<Backend> ShadowBackend::create(const config::BackendSpec& spec) {
  auto b = std::make_unique<ShadowBackend>(spec.name, spec.section.get_string("path", kSystemShadow));
  if (std::string problem = b->check(); !problem.empty()) spec.section.fail("path", problem);
  return b;
}

ShadowBackend::ShadowBackend(std::string name, std::string path, std::function<long()> today)
    : Backend("shadow", std::move(name)), path_(std::move(path)),
      today_(today ? std::move(today) : days_since_epoch) {}

std::string ShadowBackend::check() {
  std::FILE* f = std::fopen(path_.c_str(), "re");
  if (f == nullptr) {
    std::string why = std::strerror(errno);
    if (errno == EACCES)
      why += " (run as root, or add the daemon's user to the 'shadow' group)";
    return "cannot read " + path_ + ": " + why;
  }
  std::fclose(f);
  return {};
}

LookupResult ShadowBackend::lookup(const Query& query) {
  // A name with ':' or a newline cannot be in the file; the NSS and file
  // parsers would otherwise be handed something they do not expect.
  if (query.user.empty() ||
      query.user.find_first_of(std::string_view(":\n\0", 3)) != std::string_view::npos)
    return {Status::Unknown, {}, {}};
  const std::string user(query.user);
  std::vector<char> buf(16384);
  spwd sp{};
  spwd* found = nullptr;
  Entry entry;
  if (path_ == kSystemShadow) {
    errno = 0;  // whatever an earlier call left there is not this lookup's
    const int rc = getspnam_r(user.c_str(), &sp, buf.data(), buf.size(), &found);
    if (rc != 0 && rc != ENOENT) {
      return {Status::TempFail, {}, "getspnam_r: " + std::string(std::strerror(rc))};
    }
    if (found == nullptr) {
      // "Not found" is only an answer if the file could be read.  Neither
      // the return code nor errno says so: with "shadow: files systemd" the
      // files module fails (EACCES), the systemd module says not found, and
      // glibc then returns 0 and sets errno to 0.  So look for ourselves.
      const int err = errno;
      if (std::FILE* f = std::fopen(kSystemShadow, "re")) {
        std::fclose(f);
        return {Status::Unknown, {}, {}};
      }
      const int open_err = errno;
      return {Status::TempFail, {},
              std::string("cannot read ") + kSystemShadow + ": " +
                  std::strerror(open_err ? open_err : err)};
    }
    entry = to_entry(sp);
  } else {
    std::FILE* f = std::fopen(path_.c_str(), "re");
    if (f == nullptr)
      return {Status::TempFail, {}, "cannot read " + path_ + ": " + std::strerror(errno)};
    for (;;) {
      const int rc = fgetspent_r(f, &sp, buf.data(), buf.size(), &found);
      if (rc != 0 || found == nullptr) break;
      if (user == sp.sp_namp) {
        entry = to_entry(sp);
        break;
      }
      found = nullptr;
    }
    std::fclose(f);
    if (found == nullptr) return {Status::Unknown, {}, {}};
  }
  wipe(buf.data(), buf.size());

  LookupResult r;
  r.status = Status::Found;
  Credential& c = r.credential;
  const long today = today_();
  std::string_view hash = entry.hash;
  if (hash.empty()) {
    c.disabled = true;
    c.disabled_reason = "empty password field";
  } else if (hash.front() == '!' || hash.front() == '*') {
    c.disabled = true;
    c.disabled_reason = "account locked";
    hash.remove_prefix(1);
  } else if (entry.expire >= 0 && today >= entry.expire) {
    c.disabled = true;
    c.disabled_reason = "account expired";
  } else if (entry.lastchg == 0) {
    c.disabled = true;
    c.disabled_reason = "password must be changed";
  } else if (entry.lastchg > 0 && entry.max >= 0 && today > entry.lastchg + entry.max) {
    c.disabled = true;
    c.disabled_reason = "password expired";
  }
  c.stored = Secret(hash);
  wipe(entry.hash.data(), entry.hash.size());
  return r;
}

config::SaslauthdBackends ShadowBackend::saslauthd_form(const std::string& option) {
  std::string toml = "[[backend]]\ntype = \"shadow\"\n";
  if (!option.empty()) toml += "path = " + config::toml_quote(option) + "\n";
  return {toml, "saslauthd -a shadow"};
}

const TypeInfo ShadowBackend::kTypeInfo{
    .type = "shadow",
    .create = &ShadowBackend::create,
    .accounts_hint = "manage system accounts with passwd, useradd and usermod",
    .saslauthd = &ShadowBackend::saslauthd_form,
};

}  // namespace mailauth::backend
