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
//     saved, outdated password are not attackers); the last kRecentTags
//     password tags per key are remembered, as 64-bit hashes.
//   - A success from an address clears that address's and that user's
//     failures.
//   - At most `max_in_flight` requests per address prefix are processed at
//     once; more are refused as a temporary failure.
//   - Requests without an address (libsasl2 2.1.28 sends none over the mux
//     protocol) get the user-name penalty only; with no address there is no
//     "own address" to spare, so a user being guessed for waits at most
//     `max_user_penalty` until their next success clears the counter.
//     (Sparing a user's recent successes there would leave exactly the
//     active accounts unthrottled.)
//   - Trusted networks (loopback by default) and Dovecot requests carrying
//     `no-penalty` are exempt from penalties (not from counting).
//
// Bounded, and cheap per event (an attacker must not be able to slow the
// event loop or grow memory by failing with random user names or addresses):
//
//   - Address keys and user-name keys are kept in two separate tables of at
//     most kMaxAddressKeys and kMaxUserKeys entries, so a flood of one kind
//     can never evict the other.  A user name longer than kMaxUserKeyLength
//     bytes is counted under a BLAKE2b digest of it, so an entry's size is
//     bounded too.
//   - Eviction rule: a new key in a full table evicts the entry with the
//     LOWEST failure count, the oldest last failure among equal counts.  A
//     flood of fresh keys (one failure each) therefore only ever evicts
//     one-failure keys: a counter with two or more failures in the window (a
//     repeat offender, or a user being guessed for) survives any number of
//     them.  To evict a counter with c failures an attacker must hold a
//     table's worth of other keys with at least c failures each inside the
//     window (c × 100,000 failures per window).  The price: while that
//     holds, new keys only last until the next insertion.  Rejected
//     alternatives: "oldest first" lets every flood erase the victim's
//     counter; "never evict penalised keys" lets a flood of penalised keys
//     stop all counting.
//   - Internally each table keeps one list per failure count (saturated at
//     kMaxCount, where the penalty no longer grows), each ordered by last
//     failure: a failure moves its entry to the back of its count's list,
//     eviction takes the front of the lowest non-empty list, and expiry after
//     `window` pops expired fronts — O(1) per event, never a scan.
//   - Recent successes (for sparing a user's own addresses) are kept for at
//     most kMaxGoodUsers users, kGoodPerUser addresses each, for a day; the
//     user whose last success is oldest is forgotten first (only successes
//     add users, so an attacker needs that many working accounts).
//   - Requests in flight are tracked per address only while admitted; their
//     number is bounded by the daemon's connection and per-connection limits.
//
// Thread-safe: every loop thread of the daemon shares one policy, so that a
// guesser counts once whichever loop accepted the connection.  Each call
// holds one mutex for the O(1) work above; time comes from an injectable
// clock.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
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

  // The bounds (see above).
  static constexpr std::size_t kMaxAddressKeys = 100'000;
  static constexpr std::size_t kMaxUserKeys = 100'000;
  static constexpr std::size_t kMaxTracked = kMaxAddressKeys + kMaxUserKeys;
  static constexpr std::size_t kMaxUserKeyLength = 256;
  static constexpr std::size_t kMaxGoodUsers = 100'000;
  static constexpr std::size_t kGoodPerUser = 4;
  static constexpr std::size_t kRecentTags = 8;
  // Failure counts saturate here: base × 2^20 is past any sane cap.
  static constexpr int kMaxCount = 21;

  Policy(Options options, Clock clock);
  Policy(const Policy&) = delete;  // the tables hold pointers into themselves
  Policy& operator=(const Policy&) = delete;
  // Reload: new limits, the counters stay.
  void set_options(Options options);

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
  // Failure counters held: at most kMaxTracked.
  std::size_t tracked() const;
  std::size_t tracked_addresses() const;
  std::size_t tracked_users() const;
  // Users with recent successes remembered: at most kMaxGoodUsers.
  std::size_t good_users() const;
  // Admitted requests not yet released, over all addresses.
  std::size_t in_flight() const;
  // Entries touched by expiry and eviction so far (for tests: it must grow
  // by a small constant per event, whatever the tables hold).
  std::size_t work() const;
  // A copy: another thread may set_options() meanwhile.
  Options options() const;

 private:
  // An intrusive doubly-linked list of T (which has `T* prev, *next`);
  // the elements live in an unordered_map, whose nodes never move.
  template <class T>
  class List {
   public:
    T* front() const { return head_; }
    void push_back(T* e) {
      e->prev = tail_;
      e->next = nullptr;
      (tail_ != nullptr ? tail_->next : head_) = e;
      tail_ = e;
    }
    void remove(T* e) {
      (e->prev != nullptr ? e->prev->next : head_) = e->next;
      (e->next != nullptr ? e->next->prev : tail_) = e->prev;
      e->prev = e->next = nullptr;
    }

   private:
    T* head_ = nullptr;
    T* tail_ = nullptr;
  };

  struct Failures {
    const std::string* key = nullptr;  // the map's key
    int count = 0;                     // 1..kMaxCount while in the table
    TimePoint last{};
    std::array<std::uint64_t, kRecentTags> tags{};  // hashes of recent wrong passwords
    std::uint8_t ntags = 0;
    std::uint8_t next_tag = 0;
    Failures* prev = nullptr;  // in Table::by_count[count], ordered by `last`
    Failures* next = nullptr;
  };
  struct Table {
    explicit Table(std::size_t limit) : cap(limit) {}
    std::size_t size() const { return map.size(); }
    std::size_t cap;
    std::unordered_map<std::string, Failures> map;
    std::array<List<Failures>, kMaxCount + 1> by_count;  // [0] unused
  };

  struct Good {
    const std::string* user_key = nullptr;
    std::vector<std::pair<std::string, TimePoint>> recent;  // address keys, newest last
    TimePoint last{};
    Good* prev = nullptr;  // in good_lru_, ordered by `last`
    Good* next = nullptr;
  };

  std::string key_for(std::string_view address) const;  // address_key(), mutex held
  std::string user_key(std::string_view user) const;
  std::chrono::milliseconds penalty_for(Table& t, const std::string& key,
                                        std::chrono::milliseconds cap);
  void count_failure(Table& t, const std::string& key, std::string_view tag, TimePoint now);
  void erase(Table& t, Failures* f);
  void expire(Table& t, TimePoint now);
  bool known_good(const std::string& user_key, const std::string& address_key);

  mutable std::mutex mutex_;  // guards everything below
  Options options_;
  Clock clock_;
  Table addresses_{kMaxAddressKeys};
  Table users_{kMaxUserKeys};
  std::unordered_map<std::string, Good> good_;  // by user key
  List<Good> good_lru_;
  std::unordered_map<std::string, int> in_flight_;
  std::size_t in_flight_total_ = 0;
  std::size_t work_ = 0;
};

}  // namespace mailauth::auth
