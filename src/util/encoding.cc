#include "src/util/encoding.h"

#include <sodium.h>

namespace mailauth {

namespace {
std::optional<std::string> decode64(std::string_view text, int variant) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, &end, variant) != 0)
    return std::nullopt;
  if (end != text.data() + text.size()) return std::nullopt;
  out.resize(len);
  return out;
}
}  // namespace

std::string base64_encode(std::string_view bytes) {
  const size_t n = sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  std::string out(n, '\0');
  sodium_bin2base64(out.data(), n, reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(n - 1);  // drop the NUL terminator
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  return decode64(text, sodium_base64_VARIANT_ORIGINAL);
}

std::optional<std::string> base64_decode_unpadded(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  return decode64(text, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

std::string hex_encode(std::string_view bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                 bytes.size());
  out.pop_back();
  return out;
}

std::optional<std::string> hex_decode(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  std::string out(text.size() / 2, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                     text.size(), nullptr, &len, &end) != 0 ||
      end != text.data() + text.size() || len != out.size())
    return std::nullopt;
  return out;
}

}  // namespace mailauth
