// Base64 and hex codecs (thin wrappers over libsodium's constant-time ones).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mailauth {

// RFC 4648 standard alphabet with padding.
std::string base64_encode(std::string_view bytes);
// Strict decode: standard alphabet, correct padding required, no whitespace.
std::optional<std::string> base64_decode(std::string_view text);
// Same, but accepts missing padding (PHC strings, some stored hashes).
std::optional<std::string> base64_decode_unpadded(std::string_view text);

std::string hex_encode(std::string_view bytes);  // lower case
std::optional<std::string> hex_decode(std::string_view text);  // either case, even length

}  // namespace mailauth
