// The PAM backend against the real libpam, hermetic: a private PAM
// configuration directory (pam_start_confdir) with Debian's pam_pwdfile,
// pam_permit, pam_deny and pam_faildelay.  Nothing reads /etc/pam.d.
#include "backends/pam/pam_backend.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "src/auth/authenticator.h"
#include "src/auth/cache.h"
#include "src/config/config.h"
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
    // What su and runuser amount to for a root daemon (pam_rootok): any
    // password.  pam_exec leaves a mark if the stack is ever started.
    const std::string open_stack = "auth optional pam_exec.so /usr/bin/touch " + marker() +
                                   "\nauth required pam_permit.so\naccount required pam_permit.so\n";
    write_file(dir_.file("pam.d/su"), open_stack);
    write_file(dir_.file("pam.d/runuser"), open_stack);
    write_file(dir_.file("pam.d/submission"), pwdfile + "account required pam_permit.so\n");
  }

  std::string marker() const { return dir_.file("stack-ran"); }
  bool stack_ran() const { return std::filesystem::exists(marker()); }

  // The backend as a configuration file makes it: [[backend]] type = "pam"
  // with the private confdir and `keys`.
  std::unique_ptr<Backend> from_config(const std::string& keys) {
    config_ = config::load_string("[saslauthd]\nsocket = \"/tmp/x/mux\"\n[[backend]]\ntype = \"pam\"\n"
                                  "confdir = \"" + dir_.file("pam.d") + "\"\n" + keys,
                                  "test.conf");
    return create(config_.backends[0]);
  }
  std::string config_error(const std::string& keys) {
    try {
      from_config(keys);
    } catch (const config::ConfigError& e) {
      return e.what();
    }
    return "";
  }
  config::Config config_;

  VerifyResult verify(std::string service, std::string_view user, std::string_view password,
                      std::string configured_service = "") {
    // The test stacks, allow-listed (configured_service, when set, wins).
    PamBackend b("pam", configured_service, dir_.file("pam.d"), true, 2,
                 {"smtp", "imap", "pop3", "slow", "broken"});
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
  using std::chrono::steady_clock;
  // The same stack with the right password (no delay is asked for on
  // success) is the baseline: the bound is relative to what a PAM
  // conversation costs on this machine now, loaded or under ASan.
  auto t0 = steady_clock::now();
  EXPECT_EQ(verify("slow", "alice", "s3cret").verdict, Verdict::Ok);
  const auto baseline = steady_clock::now() - t0;
  t0 = steady_clock::now();
  auto r = verify("slow", "alice", "wrong");
  const auto elapsed = steady_clock::now() - t0;
  EXPECT_EQ(r.verdict, Verdict::Fail);
  // pam_faildelay asks for 3 s; the callback mailauthd installs ignores it.
  // Half the delay as slack: honouring it would overshoot by 1.5 s.
  EXPECT_LT(elapsed, 2 * baseline + std::chrono::milliseconds(1500));
}

TEST_F(PamTest, NulBytesAreRefusedBeforePam) {
  EXPECT_EQ(verify("smtp", std::string_view("alice\0x", 7), "s3cret").verdict, Verdict::Fail);
  EXPECT_EQ(verify("smtp", "alice", std::string_view("s3cret\0", 7)).verdict, Verdict::Fail);
}

TEST_F(PamTest, LookupIsNotSomethingPamCanDo) {
  PamBackend b("pam", "", dir_.file("pam.d"), true, 1);
  EXPECT_EQ(b.kind(), Backend::Kind::VerifyOnly);
  EXPECT_FALSE(b.needs_root().empty());  // the daemon may stay root for it
  EXPECT_EQ(b.lookup(Query{"alice", "", "smtp", ""}).status, Status::TempFail);
}

// Issue 11: a client must not pick the PAM service.  The saslauthd form
// runs as root, where su's pam_rootok accepts any password.
TEST_F(PamTest, ServicesOutsideTheDefaultAllowListNeverReachPam) {
  auto b = from_config("");
  for (const char* service : {"su", "runuser", "SU", "Su", "login", "sshd", "../su", "su/",
                              "other", "smtp ", "passwd"}) {
    auto r = b->verify(Query{"root", "", service, ""}, "wrong");
    EXPECT_EQ(r.verdict, Verdict::Fail) << service;
    EXPECT_EQ(r.reason, std::string("service '") + service + "' not allowed") << service;
  }
  EXPECT_FALSE(stack_ran()) << "a refused service was passed to pam_start";
  // The mail services: smtp, submission, imap, pop3, sieve.
  EXPECT_EQ(b->verify(Query{"alice", "", "smtp", ""}, "s3cret").verdict, Verdict::Ok);
  EXPECT_EQ(b->verify(Query{"alice", "", "submission", ""}, "s3cret").verdict, Verdict::Ok);
  EXPECT_EQ(b->verify(Query{"alice", "", "smtp", ""}, "wrong").verdict, Verdict::Fail);
  // imap is allowed; its account stack denies (a PAM answer, not a refusal).
  auto r = b->verify(Query{"alice", "", "imap", ""}, "s3cret");
  EXPECT_EQ(r.verdict, Verdict::Fail);
  EXPECT_NE(r.reason.find("pam_acct_mgmt"), std::string::npos) << r.reason;
  // pop3 and sieve have no file here: PAM's "other" (deny) decides.
  r = b->verify(Query{"alice", "", "pop3", ""}, "s3cret");
  EXPECT_NE(r.reason.find("pam_authenticate"), std::string::npos) << r.reason;
  r = b->verify(Query{"alice", "", "sieve", ""}, "s3cret");
  EXPECT_NE(r.reason.find("pam_authenticate"), std::string::npos) << r.reason;
  // No service sent: smtp, as before.
  EXPECT_EQ(b->verify(Query{"alice", "", "", ""}, "s3cret").verdict, Verdict::Ok);
}

TEST_F(PamTest, TheSaslauthdFormRefusesOtherServicesToo) {
  config::SaslauthdArgs a;
  a.mech = "pam";
  a.option = dir_.file("pam.d");
  a.dir = dir_.file("run");
  config::Config c = backend::from_saslauthd_args(a);
  auto b = create(c.backends[0]);
  EXPECT_EQ(b->verify(Query{"root", "", "su", ""}, "wrong").reason, "service 'su' not allowed");
  EXPECT_EQ(b->verify(Query{"alice", "", "smtp", ""}, "s3cret").verdict, Verdict::Ok);
  EXPECT_FALSE(stack_ran());
}

TEST_F(PamTest, TheAllowListIsConfigurable) {
  auto b = from_config("services = [\"submission\", \"runuser\"]\n");
  EXPECT_EQ(b->verify(Query{"alice", "", "submission", ""}, "s3cret").verdict, Verdict::Ok);
  EXPECT_EQ(b->verify(Query{"alice", "", "runuser", ""}, "anything").verdict, Verdict::Ok);
  EXPECT_TRUE(stack_ran());
  // Listing services replaces the default list.
  EXPECT_EQ(b->verify(Query{"alice", "", "smtp", ""}, "s3cret").reason, "service 'smtp' not allowed");
  EXPECT_EQ(b->verify(Query{"alice", "", "su", ""}, "s3cret").reason, "service 'su' not allowed");
  // No service sent means smtp, which this list leaves out.
  EXPECT_EQ(b->verify(Query{"alice", "", "", ""}, "s3cret").reason, "service 'smtp' not allowed");
}

TEST_F(PamTest, AConfiguredServiceIsAlwaysTheOneUsed) {
  // The client's service does not select a stack at all: su is not refused,
  // it is simply not what PAM is asked.
  auto b = from_config("service = \"smtp\"\n");
  EXPECT_NE(b->verify(Query{"root", "", "su", ""}, "wrong").verdict, Verdict::Ok);
  EXPECT_EQ(b->verify(Query{"alice", "", "su", ""}, "s3cret").verdict, Verdict::Ok);
  EXPECT_EQ(b->verify(Query{"alice", "", "imap", ""}, "s3cret").verdict, Verdict::Ok);
  EXPECT_FALSE(stack_ran());
}

TEST_F(PamTest, TheChainRefusesBeforeItsCache) {
  // A positive answer cached for su (by an older configuration that allowed
  // it) must not serve the request now: the refusal comes first.
  auth::CredentialCache cache({}, auth::system_clock());
  cache.store({"pam", "root", "su", ""}, "wrong", true);
  std::vector<std::unique_ptr<Backend>> v;
  v.push_back(std::make_unique<PamBackend>("pam", "", dir_.file("pam.d"), true, 1));
  auth::BackendChain chain(std::move(v));
  auth::AuthRequest r;
  r.protocol = "mux";
  r.user = "root";
  r.service = "su";
  r.password = Secret("wrong");
  auth::AuthResult result = chain.check_password(r, &cache);
  EXPECT_EQ(result.outcome, auth::Outcome::Fail);
  EXPECT_EQ(result.backend, "pam");
  EXPECT_EQ(result.reason, "service 'su' not allowed");
  EXPECT_FALSE(result.cached);
  EXPECT_FALSE(stack_ran());
}

// Issue 12 item 1: PAM answers cannot be keyed on a stored credential, so a
// password change is invisible to the cache.  With saslauthd's `-c -t 28800`
// settings: only successes are kept, for verify_only_ttl (<= 60 s), and a
// success for one password is never an answer for another.
TEST_F(PamTest, TheCacheKeepsOnlyRecentSuccessesOfAVerifyOnlyBackend) {
  auth::ManualClock clock;
  auth::CredentialCache::Options o;
  o.ttl = std::chrono::seconds(28800);  // saslauthd -c -t 28800
  o.negative_ttl = std::chrono::seconds(28800);
  auth::CredentialCache cache(o, clock.clock());
  ASSERT_LE(cache.options().verify_only_ttl, std::chrono::seconds(60));
  std::vector<std::unique_ptr<Backend>> v;
  v.push_back(std::make_unique<PamBackend>("pam", "", dir_.file("pam.d"), true, 1));
  auth::BackendChain chain(std::move(v));
  auto login = [&](const char* pw) {
    auth::AuthRequest r;
    r.protocol = "mux";
    r.user = "alice";
    r.service = "smtp";
    r.password = Secret(pw);
    return chain.check_password(r, &cache);
  };
  EXPECT_EQ(login("s3cret").outcome, auth::Outcome::Ok);
  auto r = login("s3cret");
  EXPECT_EQ(r.outcome, auth::Outcome::Ok);
  EXPECT_TRUE(r.cached) << "a recent success is answered from the cache";
  // A wrong password, twice: PAM is asked both times (no negative entry),
  // so this password works the moment the admin sets it.
  EXPECT_EQ(login("n3w").outcome, auth::Outcome::Fail);
  r = login("n3w");
  EXPECT_EQ(r.outcome, auth::Outcome::Fail);
  EXPECT_FALSE(r.cached) << "failures of a verify-only backend are not cached";
  write_file(dir_.file("users"), "alice:" + password::hash("sha512-crypt", "n3w") + "\n");
  r = login("n3w");
  EXPECT_EQ(r.outcome, auth::Outcome::Ok) << r.reason;
  EXPECT_FALSE(r.cached);
  // The success for the new password replaced the old one's entry.
  r = login("s3cret");
  EXPECT_EQ(r.outcome, auth::Outcome::Fail);
  EXPECT_FALSE(r.cached);
  EXPECT_TRUE(login("n3w").cached);
  // And no success outlives verify_only_ttl, whatever ttl says.
  clock.advance(cache.options().verify_only_ttl + std::chrono::seconds(1));
  r = login("n3w");
  EXPECT_EQ(r.outcome, auth::Outcome::Ok);
  EXPECT_FALSE(r.cached) << "expired after verify_only_ttl";
}

TEST_F(PamTest, TheServicesKeyIsChecked) {
  EXPECT_EQ(config_error("services = \"smtp\"\n"), "");  // one string is a list of one
  EXPECT_EQ(config_error("services = [\"smtp\", \"IMAP\"]\n"), "");
  EXPECT_EQ(config_error("services = [\"smtp\", 3]\n"),
            "test.conf:6: key 'backend[1].services': must be a list of strings");
  EXPECT_EQ(config_error("services = []\n"),
            "test.conf:6: key 'backend[1].services': must list at least one PAM service");
  EXPECT_EQ(config_error("services = [\"smtp\", \"../su\"]\n"),
            "test.conf:6: key 'backend[1].services': \"../su\" is not a PAM service name "
            "(up to 64 letters, digits, '.', '_', '-'; the first a letter or digit)");
  EXPECT_EQ(config_error("services = [\"smtp\", \"\"]\n"),
            "test.conf:6: key 'backend[1].services': \"\" is not a PAM service name "
            "(up to 64 letters, digits, '.', '_', '-'; the first a letter or digit)");
  EXPECT_NE(config_error("services = [\".su\"]\n"), "");
  EXPECT_NE(config_error("services = [\"" + std::string(65, 'a') + "\"]\n"), "");
  EXPECT_EQ(config_error("services = [\"smtp\", \"SMTP\"]\n"),
            "test.conf:6: key 'backend[1].services': \"smtp\" is listed twice");
  EXPECT_EQ(config_error("service = \"smtp\"\nservices = [\"smtp\"]\n"),
            "test.conf:7: key 'backend[1].services': has no effect with 'service' set (that "
            "service is always used, whatever the client sends); remove one of them");
}

}  // namespace
}  // namespace mailauth::backend
