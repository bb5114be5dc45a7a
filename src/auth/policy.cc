#include "src/auth/policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace mailauth::auth {

namespace {
constexpr std::size_t kMaxTracked = 100'000;
constexpr std::size_t kRecentTags = 8;
constexpr std::size_t kGoodPerUser = 4;
constexpr std::chrono::hours kGoodFor{24};

// Parse an address the way clients send it: "192.0.2.7", "2001:db8::1",
// "::ffff:192.0.2.7" (IPv4-mapped: treated as IPv4), "[2001:db8::1]".
bool parse_address(std::string_view text, bool* v6, unsigned char out[16]) {
  if (text.size() > 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), out) == 1) {
    *v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), out) == 1) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(out, mapped, 12) == 0) {
      std::memmove(out, out + 12, 4);
      *v6 = false;
      return true;
    }
    *v6 = true;
    return true;
  }
  return false;
}

bool prefix_equal(const unsigned char* a, const unsigned char* b, int bits) {
  const int full = bits / 8;
  if (std::memcmp(a, b, static_cast<std::size_t>(full)) != 0) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}
}  // namespace

std::optional<Network> Network::parse(std::string_view text) {
  Network n;
  std::string_view addr = text;
  int prefix = -1;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    std::string_view p = text.substr(slash + 1);
    if (std::from_chars(p.data(), p.data() + p.size(), prefix).ptr != p.data() + p.size())
      return std::nullopt;
  }
  if (!parse_address(addr, &n.v6, n.bytes.data())) return std::nullopt;
  const int max = n.v6 ? 128 : 32;
  if (prefix < 0) prefix = max;
  if (prefix > max) return std::nullopt;
  n.prefix = prefix;
  return n;
}

bool Network::contains(std::string_view address) const {
  bool is_v6 = false;
  unsigned char a[16];
  if (!parse_address(address, &is_v6, a) || is_v6 != v6) return false;
  return prefix_equal(a, bytes.data(), prefix);
}

Policy::Policy(Options options, Clock clock) : options_(std::move(options)), clock_(std::move(clock)) {}

std::string Policy::address_key(std::string_view address) const {
  bool v6 = false;
  unsigned char a[16] = {};
  if (address.empty() || !parse_address(address, &v6, a)) return {};
  const int bits = v6 ? options_.ipv6_prefix : options_.ipv4_prefix;
  // Zero the host part, then print.
  for (int i = 0; i < (v6 ? 16 : 4); ++i) {
    const int keep = std::clamp(bits - i * 8, 0, 8);
    a[i] = static_cast<unsigned char>(a[i] & (keep == 8 ? 0xff : (0xff << (8 - keep)) & 0xff));
  }
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(v6 ? AF_INET6 : AF_INET, a, buf, sizeof buf);
  return std::string(v6 ? "v6:" : "v4:") + buf + "/" + std::to_string(bits);
}

void Policy::expire(TimePoint now) {
  if (now - last_sweep_ < std::chrono::seconds(60) && failures_.size() < kMaxTracked) return;
  last_sweep_ = now;
  for (auto it = failures_.begin(); it != failures_.end();) {
    if (now - it->second.last > options_.window) it = failures_.erase(it);
    else ++it;
  }
  // Still too many (an attack from very many addresses): forget the oldest.
  while (failures_.size() > kMaxTracked) {
    auto oldest = std::min_element(failures_.begin(), failures_.end(), [](auto& a, auto& b) {
      return a.second.last < b.second.last;
    });
    failures_.erase(oldest);
  }
}

std::chrono::milliseconds Policy::penalty_for(const std::string& key,
                                              std::chrono::milliseconds cap) {
  auto it = failures_.find(key);
  if (it == failures_.end() || it->second.count <= 0) return std::chrono::milliseconds(0);
  if (clock_() - it->second.last > options_.window) {
    failures_.erase(it);
    return std::chrono::milliseconds(0);
  }
  const int shift = std::min(it->second.count - 1, 20);
  const std::chrono::milliseconds p(options_.base_penalty.count() * (1LL << shift));
  return std::min(p, cap);
}

Policy::Admission Policy::admit(std::string_view address, std::string_view user, bool no_penalty) {
  Admission a;
  a.address_key = address_key(address);
  if (!a.address_key.empty()) {
    int& n = in_flight_[a.address_key];
    if (n >= options_.max_in_flight) {
      a.refused = true;
      if (n == 0) in_flight_.erase(a.address_key);
      return a;
    }
    ++n;
  }
  bool exempt = no_penalty || a.address_key.empty();
  for (const auto& net : options_.trusted) exempt |= net.contains(address);
  if (!exempt) {
    const auto by_address = penalty_for(a.address_key, options_.max_penalty);
    auto by_user = std::chrono::milliseconds(0);
    if (!user.empty() && !known_good(user, a.address_key))
      by_user = penalty_for("user:" + std::string(user), options_.max_user_penalty);
    a.delay = std::max(by_address, by_user);
  }
  return a;
}

void Policy::release(const std::string& key) {
  if (key.empty()) return;
  auto it = in_flight_.find(key);
  if (it == in_flight_.end()) return;
  if (--it->second <= 0) in_flight_.erase(it);
}

void Policy::count_failure(const std::string& key, std::string_view tag, TimePoint now) {
  Failures& f = failures_[key];
  if (now - f.last > options_.window) {
    f.count = 0;
    f.recent_tags.clear();
  }
  f.last = now;
  if (!tag.empty()) {
    if (std::find(f.recent_tags.begin(), f.recent_tags.end(), tag) != f.recent_tags.end()) return;
    f.recent_tags.emplace_back(tag);
    if (f.recent_tags.size() > kRecentTags) f.recent_tags.pop_front();
  }
  ++f.count;
}

void Policy::failed(std::string_view address, std::string_view user, std::string_view tag) {
  const TimePoint now = clock_();
  expire(now);
  const std::string key = address_key(address);
  if (!key.empty()) count_failure(key, tag, now);
  if (!user.empty()) count_failure("user:" + std::string(user), tag, now);
}

bool Policy::known_good(std::string_view user, const std::string& key) {
  auto it = good_.find(std::string(user));
  if (it == good_.end()) return false;
  const TimePoint now = clock_();
  for (const auto& [k, when] : it->second)
    if (k == key && now - when < kGoodFor) return true;
  return false;
}

void Policy::succeeded(std::string_view address, std::string_view user) {
  const std::string key = address_key(address);
  if (!key.empty()) failures_.erase(key);
  if (user.empty()) return;
  failures_.erase("user:" + std::string(user));
  if (key.empty()) return;
  auto& list = good_[std::string(user)];
  for (auto it = list.begin(); it != list.end(); ++it)
    if (it->first == key) {
      list.erase(it);
      break;
    }
  list.emplace_back(key, clock_());
  if (list.size() > kGoodPerUser) list.pop_front();
  if (good_.size() > kMaxTracked) good_.erase(good_.begin());  // bounded; any victim will do
}

}  // namespace mailauth::auth
