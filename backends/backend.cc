#include "backends/backend.h"

#include "backends/pam/pam_backend.h"
#include "backends/mysql/mysql_backend.h"
#include "backends/pwdfile/pwdfile_backend.h"
#include "backends/shadow/shadow_backend.h"

namespace mailauth::backend {

namespace {
using Factory = std::unique_ptr<Backend> (*)(const config::BackendSpec&);

struct Registration {
  const char* type;
  Factory factory;
};

// One line per backend type.
const Registration kBackends[] = {
    {"pwdfile", &PwdfileBackend::create},
    {"mysql", &MysqlBackend::create},
    {"pam", &PamBackend::create},
    {"shadow", &ShadowBackend::create},
};
}  // namespace

AccountStore::Result AccountStore::import(const std::vector<NewAccount>& entries, bool update,
                                          std::vector<Result>* results) {
  Result last{Status::Done, {}};
  for (const auto& e : entries) {
    Result r = add(e.user, e.stored, "", true);
    if (r.status == Status::Exists && update) {
      r = set_password(e.user, e.stored);
      // What mailauth-user import counts as "updated" (as the pwdfile's own
      // import() reports it), not "added".
      if (r.status == Status::Done) r.message = "updated";
    }
    if (r.status == Status::TempFail) last = r;
    results->push_back(std::move(r));
  }
  return last;
}

VerifyResult Backend::verify(const Query&, std::string_view) {
  return {Verdict::TempFail, "backend '" + name_ + "' cannot verify passwords itself"};
}

std::unique_ptr<Backend> create(const config::BackendSpec& spec) {
  for (const auto& r : kBackends)
    if (spec.type == r.type) {
      auto b = r.factory(spec);
      spec.section.reject_unknown_keys();
      return b;
    }
  std::string known;
  for (const auto& r : kBackends) known += (known.empty() ? "" : ", ") + std::string(r.type);
  spec.section.fail("type", "unknown backend type \"" + spec.type + "\" (this build knows: " +
                                known + ")");
}

std::vector<std::string> types() {
  std::vector<std::string> out;
  for (const auto& r : kBackends) out.emplace_back(r.type);
  return out;
}

}  // namespace mailauth::backend
