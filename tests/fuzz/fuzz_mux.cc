// libFuzzer target: the saslauthd mux request decoder, fed in random-sized
// chunks, then EOF.  Must never crash, hang or read out of bounds, and a
// decoded request must round-trip through the encoder.
#include <cstddef>
#include <cstdint>
#include <string>

#include "protocol/mux/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mailauth::mux;
  if (size == 0) return 0;
  const std::size_t max_field = 256 + data[0] % 1024;
  Decoder d(max_field);
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::size_t chunk = 1 + data[0] % 7;
  while (!in.empty() && d.status() == Decoder::Status::NeedMore) {
    d.feed(in.substr(0, chunk));
    in.remove_prefix(std::min(chunk, in.size()));
    chunk = chunk * 2 + 1;
  }
  if (d.status() == Decoder::Status::NeedMore) d.finish();
  if (d.status() == Decoder::Status::Done) {
    Request& r = d.request();
    (void)check_request(r);
    (void)effective_user(r, true);
    const std::string again = encode_request(r.login, r.password.view(), r.service, r.realm);
    Decoder d2(max_field);
    if (d2.feed(again) != Decoder::Status::Done || d2.request().login != r.login) __builtin_trap();
  }
  (void)decode_reply(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
