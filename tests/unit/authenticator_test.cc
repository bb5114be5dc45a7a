#include "src/auth/authenticator.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "backends/pwdfile/pwdfile_backend.h"
#include "src/password/schemes.h"
#include "tests/unit/test_util.h"

namespace mailauth::auth {
namespace {

using mailauth::testing::TempDir;
using mailauth::testing::write_file;

AuthRequest request(std::string user, std::string password) {
  AuthRequest r;
  r.protocol = "test";
  r.user = std::move(user);
  r.service = "smtp";
  r.password = Secret(password);
  return r;
}

std::shared_ptr<BackendChain> chain_of(std::vector<std::string> paths) {
  std::vector<std::unique_ptr<backend::Backend>> v;
  int i = 0;
  for (auto& p : paths)
    v.push_back(std::make_unique<backend::PwdfileBackend>("file" + std::to_string(++i), p, "CRYPT"));
  return std::make_shared<BackendChain>(std::move(v));
}

TEST(BackendChain, FirstBackendThatKnowsTheUserDecides) {
  TempDir dir;
  write_file(dir.file("a"), "alice:" + password::hash("sha256-crypt", "in-a") + "\n");
  write_file(dir.file("b"), "alice:{PLAIN}in-b\nbob:{PLAIN}bob-pw\n");
  auto chain = chain_of({dir.file("a"), dir.file("b")});

  AuthResult r = chain->check_password(request("alice", "in-a"));
  EXPECT_EQ(r.outcome, Outcome::Ok);
  EXPECT_EQ(r.backend, "file1");
  // alice's password in the second file does not count: the first decided.
  r = chain->check_password(request("alice", "in-b"));
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_EQ(r.backend, "file1");
  EXPECT_EQ(r.reason, "wrong password");
  // bob is unknown to the first, so the second answers.
  r = chain->check_password(request("bob", "bob-pw"));
  EXPECT_EQ(r.outcome, Outcome::Ok);
  EXPECT_EQ(r.backend, "file2");
  r = chain->check_password(request("nobody", "x"));
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_EQ(r.reason, "unknown user");
}

TEST(BackendChain, TemporaryFailureEndsTheChain) {
  TempDir dir;
  write_file(dir.file("a"), "x:{PLAIN}x\n");
  write_file(dir.file("b"), "alice:{PLAIN}pw\n");
  auto chain = chain_of({dir.file("a"), dir.file("b")});
  std::filesystem::remove(dir.file("a"));
  AuthResult r = chain->check_password(request("alice", "pw"));
  EXPECT_EQ(r.outcome, Outcome::TempFail) << "must not fall through to a later backend";
  EXPECT_EQ(r.backend, "file1");
}

TEST(BackendChain, DisabledAndUnusableCredentialsNeverSucceed) {
  TempDir dir;
  write_file(dir.file("a"), "off:!{PLAIN}pw\nbroken:{NOSUCH}pw\nlocked:*\n");
  auto chain = chain_of({dir.file("a")});
  AuthResult r = chain->check_password(request("off", "pw"));
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_EQ(r.reason, "account disabled");
  r = chain->check_password(request("broken", "pw"));
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_EQ(r.reason, "unusable stored credential");
  r = chain->check_password(request("locked", "*"));
  EXPECT_EQ(r.outcome, Outcome::Fail);
}

TEST(Authenticator, RunsOnTheWorkerPoolAndAnswersOnTheLoop) {
  TempDir dir;
  write_file(dir.file("a"), "alice:{PLAIN}pw\n");
  EventLoop loop;
  WorkerPool pool(loop, 2, 16);
  Authenticator auth(loop, pool, chain_of({dir.file("a")}));
  std::vector<Outcome> got;
  auto done = [&](const AuthResult& r) {
    got.push_back(r.outcome);
    if (got.size() == 2) loop.stop();
  };
  auth.authenticate(request("alice", "pw"), done);
  auth.authenticate(request("alice", "nope"), done);
  EXPECT_EQ(auth.in_flight(), 2u);
  loop.run();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(std::count(got.begin(), got.end(), Outcome::Ok), 1);
  EXPECT_EQ(std::count(got.begin(), got.end(), Outcome::Fail), 1);
  EXPECT_EQ(auth.in_flight(), 0u);
}

}  // namespace
}  // namespace mailauth::auth
