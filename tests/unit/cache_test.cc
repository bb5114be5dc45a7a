#include "src/auth/cache.h"

#include <gtest/gtest.h>

#include "src/auth/authenticator.h"
#include "backends/pwdfile/pwdfile_backend.h"
#include "src/password/schemes.h"
#include "tests/unit/test_util.h"

namespace mailauth::auth {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Hit = CredentialCache::Hit;

CredentialCache::Options opts(std::size_t cap = 1000, milliseconds ttl = seconds(60),
                              milliseconds neg = seconds(10), milliseconds stale = seconds(0)) {
  CredentialCache::Options o;
  o.capacity = cap;
  o.ttl = ttl;
  o.negative_ttl = neg;
  o.stale_ttl = stale;
  return o;
}

const CredentialCache::Scope kAlice{"pwdfile", "alice", "smtp", "$6$salt$hash1"};

TEST(CredentialCache, PositiveAndNegativeTtls) {
  ManualClock clock;
  CredentialCache c(opts(), clock.clock());
  EXPECT_EQ(c.lookup(kAlice, "pw"), Hit::Miss);
  c.store(kAlice, "pw", true);
  EXPECT_EQ(c.lookup(kAlice, "pw"), Hit::Positive);
  EXPECT_EQ(c.lookup(kAlice, "other"), Hit::Miss) << "another password is not answered";
  clock.advance(seconds(59));
  EXPECT_EQ(c.lookup(kAlice, "pw"), Hit::Positive);
  clock.advance(seconds(2));
  EXPECT_EQ(c.lookup(kAlice, "pw"), Hit::Miss) << "expired after ttl";

  c.store(kAlice, "bad", false);
  EXPECT_EQ(c.lookup(kAlice, "bad"), Hit::Negative);
  clock.advance(seconds(11));
  EXPECT_EQ(c.lookup(kAlice, "bad"), Hit::Miss) << "negative entries use negative_ttl";
}

TEST(CredentialCache, AChangedStoredCredentialMisses) {
  ManualClock clock;
  CredentialCache c(opts(), clock.clock());
  c.store(kAlice, "old-pw", true);
  CredentialCache::Scope changed = kAlice;
  changed.stored = "$6$salt$hash2";  // the admin set a new password
  EXPECT_EQ(c.lookup(changed, "old-pw"), Hit::Miss);
  CredentialCache::Scope other_service = kAlice;
  other_service.service = "imap";
  EXPECT_EQ(c.lookup(other_service, "old-pw"), Hit::Miss);
}

TEST(CredentialCache, FlushOneUserOrAll) {
  ManualClock clock;
  CredentialCache c(opts(), clock.clock());
  CredentialCache::Scope bob{"pwdfile", "bob", "smtp", "x"};
  c.store(kAlice, "pw", true);
  c.store(bob, "pw", true);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.flush(std::string_view("alice")), 1u);
  EXPECT_EQ(c.lookup(kAlice, "pw"), Hit::Miss);
  EXPECT_EQ(c.lookup(bob, "pw"), Hit::Positive);
  EXPECT_EQ(c.flush(std::nullopt), 1u);
  EXPECT_EQ(c.size(), 0u);
}

TEST(CredentialCache, BoundedByCapacity) {
  ManualClock clock;
  CredentialCache c(opts(160), clock.clock());
  for (int i = 0; i < 5000; ++i) {
    const std::string user = "user" + std::to_string(i);
    c.store({"b", user, "smtp", "s"}, "pw", true);
  }
  EXPECT_LE(c.size(), 160u + 16u);
  // The most recent entries are the ones kept.
  EXPECT_EQ(c.lookup({"b", "user4999", "smtp", "s"}, "pw"), Hit::Positive);
  EXPECT_EQ(c.lookup({"b", "user0", "smtp", "s"}, "pw"), Hit::Miss);
}

TEST(CredentialCache, StaleWindowIsOffByDefaultAndBoundedWhenOn) {
  ManualClock clock;
  CredentialCache off(opts(), clock.clock());
  off.store(kAlice, "pw", true);
  EXPECT_FALSE(off.stale_positive("alice", "smtp", "pw"));

  CredentialCache on(opts(1000, seconds(60), seconds(10), seconds(300)), clock.clock());
  on.store(kAlice, "pw", true);
  EXPECT_TRUE(on.stale_positive("alice", "smtp", "pw"));
  EXPECT_FALSE(on.stale_positive("alice", "smtp", "wrong"));
  EXPECT_FALSE(on.stale_positive("alice", "imap", "pw"));
  clock.advance(seconds(301));
  EXPECT_FALSE(on.stale_positive("alice", "smtp", "pw"));
}

// Through the chain: a rewritten pwdfile makes the old password fail on the
// very next login, cache or not.
TEST(CredentialCache, ChainNeverServesAnOldPassword) {
  mailauth::testing::TempDir dir;
  mailauth::testing::write_file(dir.file("pw"), "alice:" + password::hash("sha256-crypt", "old") + "\n");
  std::vector<std::unique_ptr<backend::Backend>> v;
  v.push_back(std::make_unique<backend::PwdfileBackend>("pwdfile", dir.file("pw"), "CRYPT"));
  BackendChain chain(std::move(v));
  ManualClock clock;
  CredentialCache cache(opts(), clock.clock());
  auto req = [](const char* pw) {
    AuthRequest r;
    r.user = "alice";
    r.service = "smtp";
    r.password = Secret(pw);
    return r;
  };
  AuthResult r = chain.check_password(req("old"), &cache);
  EXPECT_EQ(r.outcome, Outcome::Ok);
  EXPECT_FALSE(r.cached);
  r = chain.check_password(req("old"), &cache);
  EXPECT_EQ(r.outcome, Outcome::Ok);
  EXPECT_TRUE(r.cached) << "the second login is answered from the cache";
  mailauth::testing::write_file(dir.file("pw"), "alice:" + password::hash("sha256-crypt", "new") + "\n");
  r = chain.check_password(req("old"), &cache);
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_FALSE(r.cached);
  EXPECT_EQ(chain.check_password(req("new"), &cache).outcome, Outcome::Ok);
  // A repeated wrong password is answered from the negative cache.
  EXPECT_EQ(chain.check_password(req("guess"), &cache).outcome, Outcome::Fail);
  r = chain.check_password(req("guess"), &cache);
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_TRUE(r.cached);
}

TEST(CredentialCache, StaleWindowServesDuringAnOutageOnly) {
  mailauth::testing::TempDir dir;
  mailauth::testing::write_file(dir.file("pw"), "alice:" + password::hash("sha256-crypt", "pw") + "\n");
  std::vector<std::unique_ptr<backend::Backend>> v;
  v.push_back(std::make_unique<backend::PwdfileBackend>("pwdfile", dir.file("pw"), "CRYPT"));
  BackendChain chain(std::move(v));
  ManualClock clock;
  CredentialCache cache(opts(1000, seconds(60), seconds(10), seconds(120)), clock.clock());
  AuthRequest r;
  r.user = "alice";
  r.service = "smtp";
  r.password = Secret("pw");
  ASSERT_EQ(chain.check_password(r, &cache).outcome, Outcome::Ok);
  std::filesystem::remove(dir.file("pw"));  // the backend is down
  AuthResult a = chain.check_password(r, &cache);
  EXPECT_EQ(a.outcome, Outcome::Ok);
  EXPECT_NE(a.reason.find("stale_ttl"), std::string::npos);
  AuthRequest wrong;
  wrong.user = "alice";
  wrong.service = "smtp";
  wrong.password = Secret("nope");
  EXPECT_EQ(chain.check_password(wrong, &cache).outcome, Outcome::TempFail);
  clock.advance(seconds(121));
  EXPECT_EQ(chain.check_password(r, &cache).outcome, Outcome::TempFail);
}

// Review finding: the stale window must not keep an old PAM password
// working past verify_only_ttl either.
TEST(CredentialCache, AVerifyOnlySuccessIsNotStaleLongerThanVerifyOnlyTtl) {
  ManualClock clock;
  CredentialCache c(opts(1000, seconds(60), seconds(10), seconds(600)), clock.clock());
  CredentialCache::Scope pam{"pam", "alice", "smtp", "", true};
  c.store(pam, "pw", true);
  EXPECT_TRUE(c.stale_positive("alice", "smtp", "pw"));
  clock.advance(c.options().verify_only_ttl + seconds(1));
  EXPECT_FALSE(c.stale_positive("alice", "smtp", "pw"));
  c.store(kAlice, "pw", true);  // a lookup backend's success keeps the full window
  clock.advance(seconds(300));
  EXPECT_TRUE(c.stale_positive("alice", "smtp", "pw"));
}

}  // namespace
}  // namespace mailauth::auth
