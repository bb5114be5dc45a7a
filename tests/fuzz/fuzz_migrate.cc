// libFuzzer target: mailauth-migrate's parsers and translation.  The input is
// split at NUL bytes into the files of a machine (/etc/default/saslauthd, a
// PAM stack, Postfix's files, Dovecot's files); every parser runs on every
// piece and migrate() on the whole tree, both ways.  Must never crash, hang
// or read out of bounds, and whatever configuration it writes must be valid
// TOML (a quoted value, a comment, a commented-out table never breaks the
// file).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "src/migrate/migrate.h"
#include "src/migrate/parse.h"

namespace {

constexpr const char* kPaths[] = {
    "/etc/default/saslauthd",       "/etc/pam.d/smtp",
    "/etc/pam.d/common-auth",       "/etc/postfix/main.cf",
    "/etc/postfix/master.cf",       "/etc/postfix/sasl/smtpd.conf",
    "/etc/dovecot/dovecot.conf",    "/etc/dovecot/conf.d/10-auth.conf",
    "/etc/dovecot/dovecot-sql.conf.ext", "/etc/default/saslauthd-postfix",
    "/etc/group",
};

void check(const mailauth::migrate::Result& r) {
  if (r.config.empty()) return;
  try {
    (void)toml::parse(r.config);
  } catch (const toml::parse_error&) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mailauth::migrate;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> files;
  std::size_t k = 0, start = 0;
  for (std::size_t i = 0; i <= in.size() && k < std::size(kPaths); ++i) {
    if (i == in.size() || in[i] == '\0') {
      files[kPaths[k++]] = std::string(in.substr(start, i - start));
      start = i + 1;
    }
  }
  for (const auto& [path, text] : files) {
    (void)shell_words(text);
    (void)parse_shell_assignments(text);
    (void)parse_saslauthd_options(shell_words(text));
    for (const auto& l : parse_pam(text)) {
      (void)pam_module_name(l.module);
      (void)pam_args(l.args);
    }
    (void)parse_postfix_main_cf(text);
    (void)parse_postfix_master_cf(text);
    (void)parse_sasl_conf(text);
    std::vector<Value> problems;
    (void)parse_dovecot_conf(text, path, &problems);
    (void)parse_connect_string(text);
    (void)toml_quote(text);
  }
  Sources src;
  src.read = [&](const std::string& p) -> std::optional<std::string> {
    auto it = files.find(p);
    if (it == files.end()) return std::nullopt;
    return it->second;
  };
  src.list = [&](const std::string& dir) {
    std::vector<std::string> out;
    const std::string prefix = dir + "/";
    for (const auto& [p, _] : files)
      if (p.rfind(prefix, 0) == 0 && p.find('/', prefix.size()) == std::string::npos)
        out.push_back(p.substr(prefix.size()));
    return out;
  };
  for (const char* from : {"saslauthd", "dovecot"}) {
    Options o;
    o.from = from;
    check(migrate(src, o));
  }
  Options o;
  o.from = "dovecot";
  o.doveconf = files["/etc/dovecot/dovecot.conf"];
  check(migrate(src, o));
  return 0;
}
