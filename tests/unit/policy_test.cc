#include "src/auth/policy.h"

#include <gtest/gtest.h>

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

TEST(Policy, TrustedNetworksNoPenaltyAndNoAddressAreExempt) {
  ManualClock clock;
  Policy p(opts(), clock.clock());
  for (const char* a : {"127.0.0.1", "10.1.2.3", "192.0.2.7"})
    for (int i = 0; i < 5; ++i) p.failed(a, "", std::to_string(i));
  EXPECT_EQ(delay(p, "127.0.0.1", ""), milliseconds(0));
  EXPECT_EQ(delay(p, "10.1.2.3", ""), milliseconds(0));
  EXPECT_EQ(delay(p, "192.0.2.7", "", true), milliseconds(0)) << "no-penalty";
  EXPECT_GT(delay(p, "192.0.2.7", ""), milliseconds(0));
  for (int i = 0; i < 5; ++i) p.failed("", "bob", std::to_string(i));
  EXPECT_EQ(delay(p, "", "bob"), milliseconds(0)) << "no address: no penalty";
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
