#include "src/auth/policy.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace mailauth::auth {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

Policy::Options opts() {
  Policy::Options o;
  o.trusted.push_back(*Network::parse("127.0.0.0/8"));
  o.trusted.push_back(*Network::parse("10.1.0.0/16"));
  return o;  // base 500 ms, max 5 s, user max 2 s, window 15 min, 16 in flight
}

milliseconds delay(Policy& p, std::string_view addr, std::string_view user = "someone",
                   bool no_penalty = false) {
  auto a = p.admit(addr, user, no_penalty);
  p.release(a.address_key);
  return a.delay;
}

TEST(Policy, PenaltyEscalatesPerAddressAndIsCapped) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  EXPECT_EQ(delay(p, "192.0.2.7"), milliseconds(0));
  const milliseconds expected[] = {milliseconds(500), seconds(1), seconds(2), seconds(4),
                                   seconds(5), seconds(5)};
  int i = 0;
  for (auto want : expected) {
    p.failed("192.0.2.7", "", "tag" + std::to_string(i++));
    EXPECT_EQ(delay(p, "192.0.2.7", ""), want) << "after " << i << " failures";
  }
  // Another address is not affected.
  EXPECT_EQ(delay(p, "192.0.2.8", ""), milliseconds(0));
}

TEST(Policy, RepeatedIdenticalWrongPasswordsDoNotEscalate) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  for (int i = 0; i < 10; ++i) p.failed("192.0.2.7", "", "same-old-password");
  EXPECT_EQ(delay(p, "192.0.2.7", ""), milliseconds(500));
  p.failed("192.0.2.7", "", "another");
  EXPECT_EQ(delay(p, "192.0.2.7", ""), seconds(1));
}

TEST(Policy, FailuresAgeOutAfterTheWindow) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  for (int i = 0; i < 4; ++i) p.failed("192.0.2.7", "", std::to_string(i));
  EXPECT_EQ(delay(p, "192.0.2.7", ""), seconds(4));
  clock.advance(std::chrono::minutes(14));
  EXPECT_EQ(delay(p, "192.0.2.7", ""), seconds(4));
  clock.advance(std::chrono::minutes(2));
  EXPECT_EQ(delay(p, "192.0.2.7", ""), milliseconds(0));
}

TEST(Policy, SuccessClearsTheAddressAndTheUser) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  for (int i = 0; i < 3; ++i) p.failed("192.0.2.7", "alice", std::to_string(i));
  EXPECT_EQ(delay(p, "192.0.2.7", "alice"), seconds(2));
  p.succeeded("192.0.2.7", "alice");
  EXPECT_EQ(delay(p, "192.0.2.7", "alice"), milliseconds(0));
}

TEST(Policy, Ipv6CountsPerSlash64AndIpv4MappedIsIpv4) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  p.failed("2001:db8:1:2::1", "", "a");
  EXPECT_EQ(delay(p, "2001:db8:1:2:ffff::9", ""), milliseconds(500)) << "same /64";
  EXPECT_EQ(delay(p, "2001:db8:1:3::1", ""), milliseconds(0)) << "another /64";
  p.failed("::ffff:198.51.100.1", "", "a");
  EXPECT_EQ(delay(p, "198.51.100.1", ""), milliseconds(500));
  EXPECT_EQ(p.address_key("2001:db8:1:2:3:4:5:6"), "v6:2001:db8:1:2::/64");
  EXPECT_EQ(p.address_key("192.0.2.7"), "v4:192.0.2.7/32");
  EXPECT_EQ(p.address_key("not an address"), "");
}

TEST(Policy, TrustedNetworksAndNoPenaltyAreExempt) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  for (const char* a : {"127.0.0.1", "10.1.2.3", "192.0.2.7"})
    for (int i = 0; i < 5; ++i) p.failed(a, "", std::to_string(i));
  EXPECT_EQ(delay(p, "127.0.0.1", ""), milliseconds(0));
  EXPECT_EQ(delay(p, "10.1.2.3", ""), milliseconds(0));
  EXPECT_EQ(delay(p, "192.0.2.7", "", true), milliseconds(0)) << "no-penalty";
  EXPECT_GT(delay(p, "192.0.2.7", ""), milliseconds(0));
}

// Issue 11, finding 6: the mux protocol (libsasl2 2.1.28) sends no address;
// the user-name penalty still applies there, and a success clears it.
TEST(Policy, WithoutAnAddressTheUserNamePenaltyApplies) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  for (int i = 0; i < 5; ++i) p.failed("", "bob", std::to_string(i));
  EXPECT_EQ(delay(p, "", "bob"), opts().max_user_penalty) << "no address: the user's penalty";
  EXPECT_EQ(delay(p, "", "carol"), milliseconds(0)) << "other users are not slowed";
  EXPECT_EQ(delay(p, "", ""), milliseconds(0));
  EXPECT_EQ(delay(p, "", "bob", true), milliseconds(0)) << "no-penalty";
  p.succeeded("", "bob");
  EXPECT_EQ(delay(p, "", "bob"), milliseconds(0)) << "bob's own success clears it";
}

TEST(Policy, UserPenaltyIsLowerAndSparesTheUsersOwnAddresses) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  p.succeeded("198.51.100.20", "alice");  // alice's usual address
  // An attacker fails for alice from many addresses, once each.
  for (int i = 1; i <= 10; ++i)
    p.failed("203.0.113." + std::to_string(i), "alice", "guess" + std::to_string(i));
  EXPECT_EQ(delay(p, "203.0.113.99", "alice"), seconds(2)) << "user penalty, capped at 2 s";
  EXPECT_EQ(delay(p, "203.0.113.99", "bob"), milliseconds(0));
  EXPECT_EQ(delay(p, "198.51.100.20", "alice"), milliseconds(0)) << "alice is not slowed down";
}

TEST(Policy, InFlightCapPerAddress) {
  ManualClock clock;
  auto o = opts();
  o.max_in_flight = 3;
  Policy p(o, clock.clock());
  std::vector<Policy::Admission> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(p.admit("192.0.2.7", "x", false));
    EXPECT_FALSE(held.back().refused);
  }
  EXPECT_TRUE(p.admit("192.0.2.7", "x", false).refused);
  EXPECT_FALSE(p.admit("192.0.2.8", "x", false).refused) << "per address";
  p.release(held[0].address_key);
  EXPECT_FALSE(p.admit("192.0.2.7", "x", false).refused);
}

// --- Bounded work and memory under floods (issue 11) ------------------------

// A fresh IPv6 /64 per i, so each failure makes a new address key.
std::string fresh_address(int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "2001:db8:%x:%x::1", (i >> 16) & 0xffff, i & 0xffff);
  return buf;
}

constexpr int kFlood = 200'000;
constexpr int kBatch = 1000;

// Once the tables are full every failure evicts: the work per failure must
// stay a small constant (the old code swept and min-scanned the whole
// table, ~200,000 entries touched per failure).
TEST(Policy, FloodsCostBoundedWorkPerFailure) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  constexpr std::size_t kMaxWorkPerFailure = 8;
  // Fresh user names without an address (the mux protocol), then fresh
  // addresses, each with a fresh user name too.
  for (int phase = 0; phase < 2; ++phase) {
    for (int i = 0; i < kFlood; i += kBatch) {
      const std::size_t before = p.work();
      for (int j = i; j < i + kBatch; ++j) {
        clock.advance(milliseconds(1));
        const std::string user = "flood" + std::to_string(phase) + "-" + std::to_string(j);
        p.failed(phase == 0 ? "" : fresh_address(j), user, "");
      }
      ASSERT_LE(p.work() - before, kBatch * kMaxWorkPerFailure)
          << "phase " << phase << ", after " << i + kBatch << " failures, " << p.tracked()
          << " keys tracked";
    }
  }
  EXPECT_EQ(p.tracked_users(), Policy::kMaxUserKeys);
  EXPECT_EQ(p.tracked_addresses(), Policy::kMaxAddressKeys);
}

TEST(Policy, MemoryIsBounded) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  for (int i = 0; i < 250'000; ++i) {
    p.failed(fresh_address(i), "flood" + std::to_string(i), "");
    // Some keys with more failures too, so eviction has several counts to pick from.
    if (i % 7 == 0) p.failed(fresh_address(i), "flood" + std::to_string(i), "second");
    if (i % kBatch == 0) {
      ASSERT_LE(p.tracked_addresses(), Policy::kMaxAddressKeys);
      ASSERT_LE(p.tracked_users(), Policy::kMaxUserKeys);
      ASSERT_LE(p.tracked(), Policy::kMaxTracked);
    }
  }
  EXPECT_EQ(p.tracked(), Policy::kMaxTracked);
  // A very long user name costs no more than a short one, and is still
  // counted under its own name.
  const std::string long_name(60'000, 'x');
  for (int i = 0; i < 3; ++i) p.failed("", long_name, std::to_string(i));
  EXPECT_EQ(delay(p, "192.0.2.1", long_name), seconds(2));
  EXPECT_EQ(delay(p, "192.0.2.1", long_name + "y"), milliseconds(0));
  EXPECT_LE(p.tracked(), Policy::kMaxTracked);
  // Recent successes: bounded, the oldest last success forgotten first.
  p.succeeded("198.51.100.20", "alice");
  for (int i = 0; i < 150'000; ++i) {
    clock.advance(milliseconds(1));
    p.succeeded(fresh_address(i), "user" + std::to_string(i));
    if (i % kBatch == 0) {
      ASSERT_LE(p.good_users(), Policy::kMaxGoodUsers);
    }
  }
  EXPECT_EQ(p.good_users(), Policy::kMaxGoodUsers);
  // alice's success was the oldest: she is no longer spared; the newest user is.
  for (int i = 0; i < 3; ++i) p.failed("203.0.113.1", "alice", std::to_string(i));
  EXPECT_EQ(delay(p, "198.51.100.20", "alice"), seconds(2));
  for (int i = 0; i < 3; ++i) p.failed("203.0.113.1", "user149999", std::to_string(i));
  EXPECT_EQ(delay(p, fresh_address(149'999), "user149999"), milliseconds(0));
}

// The eviction rule protects every counter with two or more failures in the
// window (an address or a user being penalised) from floods of fresh keys,
// and user-name keys can never evict address keys at all.
TEST(Policy, FloodsDoNotEraseAPenalisedVictim) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  // The victims: an address guessing passwords (3 failures: 2 s), a user
  // name someone guesses for from several addresses (2 s), and an address
  // with a single failure (500 ms).
  for (int i = 0; i < 3; ++i) p.failed("192.0.2.7", "", "v" + std::to_string(i));
  for (int i = 0; i < 3; ++i)
    p.failed("203.0.113." + std::to_string(i), "alice", "g" + std::to_string(i));
  p.failed("192.0.2.8", "", "once");
  ASSERT_EQ(delay(p, "192.0.2.7", ""), seconds(2));
  ASSERT_EQ(delay(p, "198.51.100.1", "alice"), seconds(2));
  ASSERT_EQ(delay(p, "192.0.2.8", ""), milliseconds(500));

  // 200,000 fresh user names over the mux (no address, so no penalty).
  for (int i = 0; i < kFlood; ++i) {
    clock.advance(milliseconds(1));
    p.failed("", "flood" + std::to_string(i), "");
    if (i % kBatch == kBatch - 1) {
      ASSERT_EQ(delay(p, "192.0.2.7", ""), seconds(2)) << "after " << i + 1 << " user names";
      ASSERT_EQ(delay(p, "198.51.100.1", "alice"), seconds(2)) << "after " << i + 1;
      ASSERT_EQ(delay(p, "192.0.2.8", ""), milliseconds(500))
          << "user names evicted an address, after " << i + 1;
    }
  }
  // 200,000 fresh addresses, each failing for a fresh user name.
  for (int i = 0; i < kFlood; ++i) {
    clock.advance(milliseconds(1));
    p.failed(fresh_address(i), "other" + std::to_string(i), "");
    if (i % kBatch == kBatch - 1) {
      ASSERT_EQ(delay(p, "192.0.2.7", ""), seconds(2)) << "after " << i + 1 << " addresses";
      ASSERT_EQ(delay(p, "198.51.100.1", "alice"), seconds(2)) << "after " << i + 1;
    }
  }
  EXPECT_LE(p.tracked(), Policy::kMaxTracked);
  // The victims still escalate.
  p.failed("192.0.2.7", "", "v3");
  EXPECT_EQ(delay(p, "192.0.2.7", ""), seconds(4));
}

TEST(Policy, ExpiryAfterTheWindowStillWorks) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  for (int i = 0; i < 1000; ++i) {
    const int times = i % 4 == 0 ? 30 : 1 + i % 3;  // counts 1, 2, 3 and saturated
    for (int k = 0; k < times; ++k)
      p.failed(fresh_address(i), "old" + std::to_string(i), std::to_string(k));
  }
  EXPECT_EQ(p.tracked(), 2000u);
  EXPECT_EQ(delay(p, fresh_address(0), ""), seconds(5)) << "saturated count, capped penalty";
  clock.advance(std::chrono::minutes(10));
  p.failed("192.0.2.9", "recent", "a");
  EXPECT_EQ(p.tracked(), 2002u);
  clock.advance(std::chrono::minutes(6));  // the first 1000 are 16 min old, the last 6
  const std::size_t before = p.work();
  p.failed("192.0.2.10", "", "a");
  EXPECT_EQ(p.tracked(), 3u) << "expired keys swept";
  EXPECT_LE(p.work() - before, 2000u + 2 * (Policy::kMaxCount + 1)) << "no more than expired + lists";
  EXPECT_EQ(delay(p, "192.0.2.9", "recent"), milliseconds(500));
  EXPECT_EQ(delay(p, fresh_address(0), ""), milliseconds(0));
  EXPECT_EQ(delay(p, fresh_address(1), ""), milliseconds(0));
  clock.advance(std::chrono::minutes(16));
  EXPECT_EQ(delay(p, "192.0.2.9", "recent"), milliseconds(0));
  EXPECT_EQ(delay(p, "192.0.2.10", ""), milliseconds(0));
  EXPECT_EQ(p.tracked(), 0u) << "looked-up expired keys are dropped at once";
  // Recent successes expire after a day.
  p.succeeded("198.51.100.20", "alice");
  clock.advance(std::chrono::hours(25));
  p.succeeded("198.51.100.21", "bob");
  EXPECT_EQ(p.good_users(), 1u);
  EXPECT_EQ(p.in_flight(), 0u);
}

TEST(Network, Parsing) {
  EXPECT_TRUE(Network::parse("192.0.2.0/24")->contains("192.0.2.200"));
  EXPECT_FALSE(Network::parse("192.0.2.0/24")->contains("192.0.3.1"));
  EXPECT_TRUE(Network::parse("2001:db8::/32")->contains("2001:db8:ffff::1"));
  EXPECT_FALSE(Network::parse("2001:db8::/32")->contains("192.0.2.1"));
  EXPECT_TRUE(Network::parse("::1")->contains("::1"));
  EXPECT_FALSE(Network::parse("300.1.1.1"));
  EXPECT_FALSE(Network::parse("10.0.0.0/33"));
}

}  // namespace
}  // namespace mailauth::auth
