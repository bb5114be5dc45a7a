#include "src/util/duration.h"

#include <charconv>

namespace mailauth {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  long long value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr == text.data() || value < 0) return std::nullopt;
  std::string_view unit(ptr, static_cast<std::size_t>(text.data() + text.size() - ptr));
  long long factor = 0;
  if (unit.empty() || unit == "s") factor = 1000;
  else if (unit == "ms") factor = 1;
  else if (unit == "m" || unit == "min") factor = 60'000;
  else if (unit == "h") factor = 3'600'000;
  else return std::nullopt;
  if (value > (1LL << 40) / factor) return std::nullopt;
  return std::chrono::milliseconds(value * factor);
}

}  // namespace mailauth
