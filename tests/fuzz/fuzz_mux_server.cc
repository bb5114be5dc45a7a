// libFuzzer target: whole MuxServer connections (cut requests, half-closes,
// oversized fields, resets) with the authenticator, cache and policy behind
// them, scheduled by the fuzzer's bytes.
#include "tests/fuzz/fuzz_server.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mailauth::fuzz::run_server_world(data, size, /*mux=*/true, /*dovecot=*/false);
}
