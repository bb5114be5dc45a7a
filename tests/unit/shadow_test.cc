#include "backends/shadow/shadow_backend.h"

#include <gtest/gtest.h>

#include "src/auth/authenticator.h"
#include "src/password/schemes.h"
#include "tests/unit/test_util.h"

namespace mailauth::backend {
namespace {

using mailauth::testing::TempDir;
using mailauth::testing::write_file;

constexpr long kToday = 20000;  // 2024-10-04

class ShadowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    yescrypt_ = password::hash("yescrypt", "yes-pw");
    sha512_ = password::hash("sha512-crypt", "sha-pw");
    write_file(dir_.file("shadow"),
               "root:*:19000:0:99999:7:::\n"
               "yes:" + yescrypt_ + ":19990:0:99999:7:::\n"
               "sha:" + sha512_ + ":19990::::::\n"
               "locked:!" + sha512_ + ":19990:0:99999:7:::\n"
               "star:*:19990:0:99999:7:::\n"
               "empty::19990:0:99999:7:::\n"
               "expired:" + sha512_ + ":19990:0:99999:7::19999:\n"
               "notyet:" + sha512_ + ":19990:0:99999:7::20001:\n"
               "oldpw:" + sha512_ + ":19000:0:90:7:::\n"
               "mustchange:" + sha512_ + ":0:0:99999:7:::\n");
    backend_ = std::make_unique<ShadowBackend>("shadow", dir_.file("shadow"), [] { return kToday; });
  }

  LookupResult find(std::string_view user) { return backend_->lookup(Query{user, "", "smtp", ""}); }

  auth::AuthResult login(std::string user, std::string password) {
    std::vector<std::unique_ptr<Backend>> v;
    v.push_back(std::make_unique<ShadowBackend>("shadow", dir_.file("shadow"), [] { return kToday; }));
    auth::BackendChain chain(std::move(v));
    auth::AuthRequest r;
    r.user = std::move(user);
    r.password = Secret(password);
    return chain.check_password(r);
  }

  TempDir dir_;
  std::string yescrypt_, sha512_;
  std::unique_ptr<ShadowBackend> backend_;
};

TEST_F(ShadowTest, YescryptAndSha512CryptVerify) {
  EXPECT_EQ(login("yes", "yes-pw").outcome, auth::Outcome::Ok);
  EXPECT_EQ(login("yes", "sha-pw").outcome, auth::Outcome::Fail);
  EXPECT_EQ(login("sha", "sha-pw").outcome, auth::Outcome::Ok);
  EXPECT_EQ(login("sha", "").outcome, auth::Outcome::Fail);
  EXPECT_EQ(find("yes").credential.stored.view(), yescrypt_);
}

TEST_F(ShadowTest, LockedEmptyExpiredAccountsFailWithTheirReason) {
  struct Case {
    const char* user;
    const char* reason;
  };
  for (const Case& c : {Case{"locked", "account locked"}, Case{"star", "account locked"},
                        Case{"empty", "empty password field"}, Case{"expired", "account expired"},
                        Case{"oldpw", "password expired"},
                        Case{"mustchange", "password must be changed"}}) {
    auto r = find(c.user);
    ASSERT_EQ(r.status, Status::Found) << c.user;
    EXPECT_TRUE(r.credential.disabled) << c.user;
    EXPECT_EQ(r.credential.disabled_reason, c.reason) << c.user;
    // Even the right password does not log in.
    auth::AuthResult a = login(c.user, "sha-pw");
    EXPECT_EQ(a.outcome, auth::Outcome::Fail) << c.user;
    EXPECT_EQ(a.reason, c.reason) << c.user;
  }
  // An empty password never matches an empty field.
  EXPECT_EQ(login("empty", "").outcome, auth::Outcome::Fail);
  EXPECT_EQ(login("notyet", "sha-pw").outcome, auth::Outcome::Ok);
}

TEST_F(ShadowTest, UnknownAndOddNamesAreUnknown) {
  EXPECT_EQ(find("nobody").status, Status::Unknown);
  EXPECT_EQ(find("").status, Status::Unknown);
  EXPECT_EQ(find("yes:x").status, Status::Unknown);
  EXPECT_EQ(find(std::string_view("yes\0", 4)).status, Status::Unknown);
  EXPECT_EQ(find("ye").status, Status::Unknown);
}

TEST_F(ShadowTest, UnreadableFileIsATemporaryFailure) {
  std::filesystem::remove(dir_.file("shadow"));
  EXPECT_EQ(find("yes").status, Status::TempFail);
  EXPECT_NE(backend_->check().find("cannot read"), std::string::npos);
}

}  // namespace
}  // namespace mailauth::backend
