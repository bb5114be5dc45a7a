// The PAM backend against the real libpam, hermetic: a private PAM
// configuration directory (pam_start_confdir) with Debian's pam_pwdfile,
// pam_permit, pam_deny and pam_faildelay.  Nothing reads /etc/pam.d.
#include "backends/pam/pam_backend.h"

#include <gtest/gtest.h>

#include <chrono>

#include "src/password/schemes.h"
#include "tests/unit/test_util.h"

namespace mailauth::backend {
namespace {

using mailauth::testing::TempDir;
using mailauth::testing::write_file;

class PamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directory(dir_.file("pam.d"));
    write_file(dir_.file("users"), "alice:" + password::hash("sha512-crypt", "s3cret") + "\n" +
                                       "bob:" + password::hash("yescrypt", "bob-pw") + "\n");
    const std::string pwdfile = "auth required pam_pwdfile.so pwdfile=" + dir_.file("users") + "\n";
    write_file(dir_.file("pam.d/smtp"), pwdfile + "account required pam_permit.so\n");
    write_file(dir_.file("pam.d/imap"), pwdfile + "account required pam_deny.so\n");
    // PAM's own delay: 3 s after a failure, unless the application overrides it.
    write_file(dir_.file("pam.d/slow"), "auth optional pam_faildelay.so delay=3000000\n" + pwdfile +
                                            "account required pam_permit.so\n");
    write_file(dir_.file("pam.d/broken"), "auth required pam_no_such_module.so\n");
    write_file(dir_.file("pam.d/other"), "auth required pam_deny.so\naccount required pam_deny.so\n");
  }

  VerifyResult verify(std::string service, std::string_view user, std::string_view password,
                      std::string configured_service = "") {
    PamBackend b("pam", configured_service, dir_.file("pam.d"), true, 2);
    return b.verify(Query{user, "", service, "192.0.2.7"}, password);
  }

  TempDir dir_;
};

TEST_F(PamTest, RightAndWrongPasswordsThroughPamPwdfile) {
  EXPECT_EQ(verify("smtp", "alice", "s3cret").verdict, Verdict::Ok);
  EXPECT_EQ(verify("smtp", "bob", "bob-pw").verdict, Verdict::Ok);
  auto r = verify("smtp", "alice", "wrong");
  EXPECT_EQ(r.verdict, Verdict::Fail);
  EXPECT_NE(r.reason.find("pam_authenticate"), std::string::npos);
  EXPECT_NE(verify("smtp", "alice", "").verdict, Verdict::Ok);
  EXPECT_NE(verify("smtp", "nobody", "s3cret").verdict, Verdict::Ok);
}

TEST_F(PamTest, TheServiceComesFromTheClientUnlessConfigured) {
  // "imap" denies in the account stack: the right password still fails.
  auto r = verify("imap", "alice", "s3cret");
  EXPECT_EQ(r.verdict, Verdict::Fail);
  EXPECT_NE(r.reason.find("pam_acct_mgmt"), std::string::npos);
  // A configured service wins over what the client sent.
  EXPECT_EQ(verify("imap", "alice", "s3cret", "smtp").verdict, Verdict::Ok);
  // A service without a file falls back to "other" (deny here).
  EXPECT_EQ(verify("pop3", "alice", "s3cret").verdict, Verdict::Fail);
}

TEST_F(PamTest, AccountCheckCanBeTurnedOff) {
  PamBackend b("pam", "", dir_.file("pam.d"), false, 1);
  EXPECT_EQ(b.verify(Query{"alice", "", "imap", ""}, "s3cret").verdict, Verdict::Ok);
}

TEST_F(PamTest, ABrokenStackIsATemporaryFailureNeverAnAccept) {
  auto r = verify("broken", "alice", "s3cret");
  EXPECT_EQ(r.verdict, Verdict::TempFail) << r.reason;
}

TEST_F(PamTest, PamsOwnFailureDelayDoesNotSleepInTheWorker) {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = verify("slow", "alice", "wrong");
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.verdict, Verdict::Fail);
  // pam_faildelay asks for 3 s; the callback mailauthd installs ignores it.
  EXPECT_LT(elapsed, std::chrono::milliseconds(1500));
  EXPECT_EQ(verify("slow", "alice", "s3cret").verdict, Verdict::Ok);
}

TEST_F(PamTest, NulBytesAreRefusedBeforePam) {
  EXPECT_EQ(verify("smtp", std::string_view("alice\0x", 7), "s3cret").verdict, Verdict::Fail);
  EXPECT_EQ(verify("smtp", "alice", std::string_view("s3cret\0", 7)).verdict, Verdict::Fail);
}

TEST_F(PamTest, LookupIsNotSomethingPamCanDo) {
  PamBackend b("pam", "", dir_.file("pam.d"), true, 1);
  EXPECT_EQ(b.kind(), Backend::Kind::VerifyOnly);
  EXPECT_EQ(b.lookup(Query{"alice", "", "smtp", ""}).status, Status::TempFail);
}

}  // namespace
}  // namespace mailauth::backend
