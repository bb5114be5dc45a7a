// libFuzzer target: the Dovecot auth protocol connection state machine, and
// the SASL mechanisms it drives, on arbitrary client bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "protocol/dovecot/connection.h"
#include "protocol/dovecot/escape.h"
#include "protocol/sasl/mechanism.h"
#include "src/password/schemes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mailauth;
  static bool init = (password::init(), true);
  (void)init;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  dovecot::ServerConnection c(1024);
  // A valid handshake first, so the interesting states are reached.
  c.feed("VERSION\t1\t2\nCPID\t1\n");
  for (std::size_t i = 0; i < in.size(); i += 17) {
    for (auto& e : c.feed(in.substr(i, 17))) {
      if (e.kind != dovecot::Event::Kind::Auth && e.kind != dovecot::Event::Kind::Cont) continue;
      auto mech = sasl::create(e.mechanism.empty() ? "PLAIN" : e.mechanism, {});
      if (!mech) mech = sasl::create("SCRAM-SHA-256", {});
      std::optional<std::string_view> initial;
      if (e.has_data) initial = e.data.view();
      sasl::Step s = mech->start(initial);
      if (s.kind == sasl::Step::Kind::NeedCredential)
        s = mech->credential(sasl::StoredCredential{"{PLAIN}pw", "CRYPT"});
      if (s.kind == sasl::Step::Kind::Challenge) (void)mech->step(e.data.view());
      c.finish(e.id);
    }
  }
  if (dovecot::tab_unescape(dovecot::tab_escape(in)) != in) __builtin_trap();
  return 0;
}
