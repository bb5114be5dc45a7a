#include "src/auth/policy.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <functional>

namespace mailauth::auth {

namespace {
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
  std::lock_guard lock(mutex_);
  return key_for(address);
}

std::string Policy::key_for(std::string_view address) const {
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

std::string Policy::user_key(std::string_view user) const {
  if (user.size() <= kMaxUserKeyLength) return "user:" + std::string(user);
  // Long names: a digest, so an entry's size stays bounded.
  unsigned char digest[16];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(user.data()),
                     user.size(), nullptr, 0);
  char hex[2 * sizeof digest + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return std::string("user#") + hex;
}

void Policy::erase(Table& t, Failures* f) {
  t.by_count[static_cast<std::size_t>(f->count)].remove(f);
  t.map.erase(t.map.find(*f->key));
}

// Each list is ordered by last failure: pop expired fronts.  O(lists +
// entries expired).
void Policy::expire(Table& t, TimePoint now) {
  for (int c = 1; c <= kMaxCount; ++c) {
    auto& list = t.by_count[static_cast<std::size_t>(c)];
    while (Failures* f = list.front()) {
      ++work_;
      if (now - f->last <= options_.window) break;
      erase(t, f);
    }
  }
}

std::chrono::milliseconds Policy::penalty_for(Table& t, const std::string& key,
                                              std::chrono::milliseconds cap) {
  auto it = t.map.find(key);
  if (it == t.map.end()) return std::chrono::milliseconds(0);
  if (clock_() - it->second.last > options_.window) {
    ++work_;
    erase(t, &it->second);
    return std::chrono::milliseconds(0);
  }
  const int shift = std::min(it->second.count - 1, 20);
  const std::chrono::milliseconds p(options_.base_penalty.count() * (1LL << shift));
  return std::min(p, cap);
}

void Policy::set_options(Options options) {
  std::lock_guard lock(mutex_);
  options_ = std::move(options);
}

std::size_t Policy::tracked() const {
  std::lock_guard lock(mutex_);
  return addresses_.size() + users_.size();
}
std::size_t Policy::tracked_addresses() const {
  std::lock_guard lock(mutex_);
  return addresses_.size();
}
std::size_t Policy::tracked_users() const {
  std::lock_guard lock(mutex_);
  return users_.size();
}
std::size_t Policy::good_users() const {
  std::lock_guard lock(mutex_);
  return good_.size();
}
std::size_t Policy::in_flight() const {
  std::lock_guard lock(mutex_);
  return in_flight_total_;
}
std::size_t Policy::work() const {
  std::lock_guard lock(mutex_);
  return work_;
}

Policy::Options Policy::options() const {
  std::lock_guard lock(mutex_);
  return options_;
}

Policy::Admission Policy::admit(std::string_view address, std::string_view user, bool no_penalty) {
  std::lock_guard lock(mutex_);
  Admission a;
  a.address_key = key_for(address);
  if (!a.address_key.empty()) {
    int& n = in_flight_[a.address_key];
    if (n >= options_.max_in_flight) {
      a.refused = true;
      if (n == 0) in_flight_.erase(a.address_key);
      return a;
    }
    ++n;
    ++in_flight_total_;
  }
  bool exempt = no_penalty;
  for (const auto& net : options_.trusted) exempt |= net.contains(address);
  if (!exempt) {
    const auto by_address = a.address_key.empty()
                                ? std::chrono::milliseconds(0)
                                : penalty_for(addresses_, a.address_key, options_.max_penalty);
    auto by_user = std::chrono::milliseconds(0);
    if (!user.empty()) {
      // Without an address (libsasl2 2.1.28 over the mux) there is no
      // "own address" to spare: the user-name penalty applies, capped at
      // max_user_penalty, and the user's next success clears it.
      const std::string ukey = user_key(user);
      if (a.address_key.empty() || !known_good(ukey, a.address_key))
        by_user = penalty_for(users_, ukey, options_.max_user_penalty);
    }
    a.delay = std::max(by_address, by_user);
  }
  return a;
}

void Policy::release(const std::string& key) {
  if (key.empty()) return;
  std::lock_guard lock(mutex_);
  auto it = in_flight_.find(key);
  if (it == in_flight_.end()) return;
  --in_flight_total_;
  if (--it->second <= 0) in_flight_.erase(it);
}

void Policy::count_failure(Table& t, const std::string& key, std::string_view tag, TimePoint now) {
  Failures* f = nullptr;
  if (auto it = t.map.find(key); it != t.map.end()) {
    f = &it->second;
    t.by_count[static_cast<std::size_t>(f->count)].remove(f);
  } else {
    if (t.size() >= t.cap) {
      // Full: the lowest count goes, the oldest among equals.
      for (int c = 1; c <= kMaxCount; ++c)
        if (Failures* victim = t.by_count[static_cast<std::size_t>(c)].front()) {
          ++work_;
          erase(t, victim);
          break;
        }
    }
    const auto ins = t.map.try_emplace(key).first;
    f = &ins->second;
    f->key = &ins->first;
  }
  if (now - f->last > options_.window) {
    f->count = 0;
    f->ntags = 0;
    f->next_tag = 0;
  }
  f->last = now;
  bool repeated = false;
  if (!tag.empty()) {
    const std::uint64_t h = std::hash<std::string_view>{}(tag);
    repeated = std::find(f->tags.begin(), f->tags.begin() + f->ntags, h) != f->tags.begin() + f->ntags;
    if (!repeated) {
      f->tags[f->next_tag] = h;
      f->next_tag = static_cast<std::uint8_t>((f->next_tag + 1) % kRecentTags);
      if (f->ntags < kRecentTags) ++f->ntags;
    }
  }
  if (!repeated && f->count < kMaxCount) ++f->count;
  t.by_count[static_cast<std::size_t>(f->count)].push_back(f);
}

void Policy::failed(std::string_view address, std::string_view user, std::string_view tag) {
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_();
  expire(addresses_, now);
  expire(users_, now);
  const std::string key = key_for(address);
  if (!key.empty()) count_failure(addresses_, key, tag, now);
  if (!user.empty()) count_failure(users_, user_key(user), tag, now);
}

bool Policy::known_good(const std::string& ukey, const std::string& key) {
  auto it = good_.find(ukey);
  if (it == good_.end()) return false;
  const TimePoint now = clock_();
  for (const auto& [k, when] : it->second.recent)
    if (k == key && now - when < kGoodFor) return true;
  return false;
}

void Policy::succeeded(std::string_view address, std::string_view user) {
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_();
  const std::string key = key_for(address);
  if (!key.empty())
    if (auto it = addresses_.map.find(key); it != addresses_.map.end()) erase(addresses_, &it->second);
  if (user.empty()) return;
  const std::string ukey = user_key(user);
  if (auto it = users_.map.find(ukey); it != users_.map.end()) erase(users_, &it->second);
  if (key.empty()) return;
  // Forget users whose last success is a day old; the list is ordered by it.
  while (Good* g = good_lru_.front()) {
    if (now - g->last < kGoodFor) break;
    ++work_;
    good_lru_.remove(g);
    good_.erase(good_.find(*g->user_key));
  }
  auto it = good_.find(ukey);
  if (it == good_.end()) {
    if (good_.size() >= kMaxGoodUsers) {  // the oldest last success goes
      Good* g = good_lru_.front();
      ++work_;
      good_lru_.remove(g);
      good_.erase(good_.find(*g->user_key));
    }
    it = good_.try_emplace(ukey).first;
    it->second.user_key = &it->first;
  } else {
    good_lru_.remove(&it->second);
  }
  Good& g = it->second;
  auto& list = g.recent;
  for (auto r = list.begin(); r != list.end(); ++r)
    if (r->first == key) {
      list.erase(r);
      break;
    }
  if (list.size() >= kGoodPerUser) list.erase(list.begin());
  list.emplace_back(key, now);
  g.last = now;
  good_lru_.push_back(&g);
}

}  // namespace mailauth::auth
