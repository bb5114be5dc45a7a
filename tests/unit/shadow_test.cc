#include "backends/shadow/shadow_backend.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

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

// The system file through getspnam_r: a not-found leaves errno as it was or
// sets it as it likes; a stale errno from before the call (EACCES from some
// earlier open) must not turn an unknown user into a temporary failure.
TEST(ShadowSystemTest, StaleErrnoBeforeTheLookupDoesNotMakeAnUnknownUserATempFail) {
  if (::access("/etc/shadow", R_OK) != 0) GTEST_SKIP() << "/etc/shadow is not readable here";
  ShadowBackend b("shadow", "/etc/shadow");
  for (int preset : {0, EACCES, ENOENT, EIO}) {
    errno = preset;
    const LookupResult r = b.lookup(Query{"mailauth-no-such-user-4711", "", "smtp", ""});
    EXPECT_EQ(r.status, Status::Unknown) << "errno preset to " << preset << ": " << r.reason;
  }
  // root is in every /etc/shadow: found, whatever errno was before.
  errno = EACCES;
  EXPECT_EQ(b.lookup(Query{"root", "", "smtp", ""}).status, Status::Found);
}

// Where the daemon's user cannot read /etc/shadow, getspnam_r finds nobody:
// glibc's "files" module is unavailable (EACCES), the next module in
// nsswitch.conf ("systemd") says not found, and glibc then sets errno to 0.
// Neither the return code nor errno tells; that is a temporary failure, not
// an unknown user who would fall through to the next backend.
TEST(ShadowSystemTest, UnreadableSystemShadowIsATemporaryFailureNotUnknown) {
  // Statuses as exit codes of a child that dropped to nobody.
  auto lookup_as_nobody = [](const char* user, int preset) -> int {
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(10);
      if (::access("/etc/shadow", R_OK) == 0) ::_exit(11);  // readable: nothing to test
      ShadowBackend b("shadow", "/etc/shadow");
      errno = preset;
      ::_exit(static_cast<int>(b.lookup(Query{user, "", "smtp", ""}).status));
    }
    int st = 0;
    if (pid < 0 || ::waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
  };
  const int first = lookup_as_nobody("mailauth-no-such-user-4711", 0);
  if (first == 10 || first == 11) GTEST_SKIP() << "cannot make /etc/shadow unreadable here";
  // "daemon" is in Debian's /etc/shadow; nss-systemd does not make it up (as
  // it does root and nobody), so the unreadable file hides it.
  for (const char* user : {"mailauth-no-such-user-4711", "daemon"})
    for (int preset : {0, EACCES, ENOENT})
      EXPECT_EQ(lookup_as_nobody(user, preset), static_cast<int>(Status::TempFail))
          << user << ", errno preset to " << preset;
}

}  // namespace
}  // namespace mailauth::backend
