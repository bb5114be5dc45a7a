// The brute-force policy: slows down whoever keeps failing, never the
// people who log in right.
//
//   - Failures are counted per client address prefix (IPv4 /32, IPv6 /64 by
//     default) and per user name, over `window`.
//   - A request from an address (or for a user) with failures waits before
//     it is processed: penalty = base × 2^(failures-1), capped at
//     `max_penalty` (address) and `max_user_penalty` (user name; lower,
//     because anyone can fail for someone else's name).  The wait is a timer
//     on the event loop, never a worker.
//   - The user-name penalty spares addresses the user logged in from
//     successfully in the last day, so an attacker who fails for alice from
//     elsewhere does not slow alice down.
//   - The same wrong password again does not count again (clients retrying a
//     saved, outdated password are not attackers).
//   - A success from an address clears that address's and that user's
//     failures.
//   - At most `max_in_flight` requests per address prefix are processed at
//     once; more are refused as a temporary failure.
//   - Trusted networks (loopback by default), requests without an address
//     (libsasl2 2.1.28 sends none over the mux protocol) and Dovecot requests
//     carrying `no-penalty` are exempt from penalties (not from counting).
//
// Loop thread only; time comes from an injectable clock.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "src/auth/clock.h"

namespace mailauth::auth {

// An IPv4 or IPv6 network, "192.0.2.0/24", "2001:db8::/32", or an address.
struct Network {
  bool v6 = false;
  std::array<unsigned char, 16> bytes{};
  int prefix = 0;
  static std::optional<Network> parse(std::string_view text);
  bool contains(std::string_view address) const;
};

class Policy {
 public:
  struct Options {
    std::vector<Network> trusted;
    int ipv4_prefix = 32;
    int ipv6_prefix = 64;
    std::chrono::milliseconds base_penalty{500};
    std::chrono::milliseconds max_penalty{5000};
    std::chrono::milliseconds max_user_penalty{2000};
    std::chrono::milliseconds window{15 * 60 * 1000};
    int max_in_flight = 16;
  };

  Policy(Options options, Clock clock);
  // Reload: new limits, the counters stay.
  void set_options(Options options) { options_ = std::move(options); }

  struct Admission {
    bool refused = false;                 // too many in flight from this address
    std::chrono::milliseconds delay{0};   // penalty to wait before processing
    std::string address_key;              // for release()
  };
  // Before a request is processed.
  Admission admit(std::string_view address, std::string_view user, bool no_penalty);
  // When it is over (always, after an admitted admit()).
  void release(const std::string& address_key);
  // Its outcome.  `password_tag` identifies the password tried (a keyed hash;
  // empty when unknown, e.g. CRAM-MD5), so a repeated wrong password counts once.
  void failed(std::string_view address, std::string_view user, std::string_view password_tag);
  void succeeded(std::string_view address, std::string_view user);

  // The key an address is counted under ("v4:192.0.2.7", "v6:2001:db8:0:1::/64").
  std::string address_key(std::string_view address) const;
  std::size_t tracked() const { return failures_.size(); }
  // Admitted requests not yet released, over all addresses.
  std::size_t in_flight() const {
    std::size_t n = 0;
    for (const auto& [key, count] : in_flight_) n += static_cast<std::size_t>(count);
    return n;
  }
  const Options& options() const { return options_; }

 private:
  struct Failures {
    int count = 0;
    TimePoint last{};
    std::deque<std::string> recent_tags;  // last few wrong-password tags
  };
  std::chrono::milliseconds penalty_for(const std::string& key, std::chrono::milliseconds cap);
  void count_failure(const std::string& key, std::string_view tag, TimePoint now);
  void expire(TimePoint now);
  bool known_good(std::string_view user, const std::string& address_key);

  Options options_;
  Clock clock_;
  std::unordered_map<std::string, Failures> failures_;
  // Per user: address keys of recent successes, newest last.
  std::unordered_map<std::string, std::deque<std::pair<std::string, TimePoint>>> good_;
  std::unordered_map<std::string, int> in_flight_;
  TimePoint last_sweep_{};
};

}  // namespace mailauth::auth
