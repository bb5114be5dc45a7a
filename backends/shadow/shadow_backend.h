// shadow: a lookup backend over /etc/shadow (saslauthd -a shadow), or over a
// file in shadow(5) format given by `path` (chroots, tests).
//
//   alice:$y$j9T$…:19700:0:99999:7:::
//
// The hash is checked by the scheme registry like any other.  These never
// log in, with the reason in the log line: a locked account ('!' or '*'
// first), an empty password field, an expired account (sp_expire), an
// expired password (sp_lstchg + sp_max in the past, or sp_lstchg = 0, which
// means "must change at next login").
//
// Reading /etc/shadow needs root or the `shadow` group: run mailauthd as its
// own user with `shadow` as a supplementary group (usermod -aG shadow
// mailauth); privileges are dropped with initgroups(), which keeps it.
//
// Config keys: path (default /etc/shadow).
#pragma once

#include <functional>
#include <string>

#include "backends/backend.h"

namespace mailauth::backend {

class ShadowBackend final : public Backend {
 public:
  // What the type offers (registered in backends/backend.cc).
  static const TypeInfo kTypeInfo;
  static std::unique_ptr<Backend> create(const config::BackendSpec& spec);
  // saslauthd's -a shadow -O OPTION (TypeInfo::saslauthd).
  static config::SaslauthdBackends saslauthd_form(const std::string& option);

  // `today` returns the current day number since the epoch (for tests).
  ShadowBackend(std::string name, std::string path, std::function<long()> today = nullptr);

  Kind kind() const override { return Kind::Lookup; }
  LookupResult lookup(const Query& query) override;
  std::string check() override;

 private:
  std::string path_;
  std::function<long()> today_;
};

}  // namespace mailauth::backend
