#include "backends/backend.h"

#include "backends/ldap/ldap_backend.h"
#include "backends/pam/pam_backend.h"
#include "backends/mysql/mysql_backend.h"
#include "backends/pwdfile/pwdfile_backend.h"
#include "backends/shadow/shadow_backend.h"

namespace mailauth::backend {

namespace {
// One line per backend type: its TypeInfo, defined in its folder.
const TypeInfo* const kBackends[] = {
    &PwdfileBackend::kTypeInfo,
    &MysqlBackend::kTypeInfo,
    &PamBackend::kTypeInfo,
    &ShadowBackend::kTypeInfo,
    &LdapBackend::kTypeInfo,
};

// "a, b and c"
std::string spoken_list(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " and " : ", ";
    out += items[i];
  }
  return out;
}
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

const TypeInfo* find_type(std::string_view type) {
  for (const TypeInfo* t : kBackends)
    if (type == t->type) return t;
  return nullptr;
}

std::unique_ptr<Backend> create(const config::BackendSpec& spec) {
  if (const TypeInfo* t = find_type(spec.type)) {
    auto b = t->create(spec);
    spec.section.reject_unknown_keys();
    return b;
  }
  spec.section.fail("type", "unknown backend type \"" + spec.type + "\" (this build knows: " +
                                spoken_list(types()) + ")");
}

std::vector<std::string> types() {
  std::vector<std::string> out;
  for (const TypeInfo* t : kBackends) out.emplace_back(t->type);
  return out;
}

std::vector<std::string> saslauthd_mechanisms() {
  std::vector<std::string> out;
  for (const TypeInfo* t : kBackends)
    if (t->saslauthd != nullptr) out.emplace_back(t->type);
  return out;
}

config::Config from_saslauthd_args(const config::SaslauthdArgs& args) {
  const TypeInfo* t = find_type(args.mech);
  if (t == nullptr || t->saslauthd == nullptr)
    throw config::ConfigError("saslauthd command line: -a " +
                              (args.mech.empty() ? std::string("(missing)") : args.mech) +
                              ": mailauthd supports -a " + spoken_list(saslauthd_mechanisms()));
  return config::from_saslauthd_args(args, t->saslauthd(args.option));
}

}  // namespace mailauth::backend
