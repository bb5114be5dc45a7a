// Durations in configuration files: "2s", "500ms", "1m", "1h", or a bare
// number of seconds.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace mailauth {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace mailauth
