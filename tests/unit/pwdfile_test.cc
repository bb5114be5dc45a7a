#include "backends/pwdfile/pwdfile_backend.h"

#include <gtest/gtest.h>

#include "src/password/schemes.h"
#include "tests/unit/test_util.h"

namespace mailauth::backend {
namespace {

using mailauth::testing::TempDir;
using mailauth::testing::write_file;

LookupResult find(PwdfileBackend& b, std::string_view user) {
  return b.lookup(Query{user, "", "smtp", ""});
}

TEST(Pwdfile, ReadsUserHashLinesCommentsAndExtraFields) {
  TempDir dir;
  write_file(dir.file("passwd"),
             "# users\n"
             "\n"
             "   # indented comment\n"
             "alice:$6$salt$hash\n"
             "bob:{PLAIN}pw:1000:1000::/home/bob:/bin/false\n"
             "carol:!$y$j9T$x$y\r\n");
  PwdfileBackend b("users", dir.file("passwd"), "CRYPT");
  auto a = find(b, "alice");
  ASSERT_EQ(a.status, Status::Found);
  EXPECT_EQ(a.credential.stored.view(), "$6$salt$hash");
  EXPECT_FALSE(a.credential.disabled);
  auto bob = find(b, "bob");
  ASSERT_EQ(bob.status, Status::Found);
  EXPECT_EQ(bob.credential.stored.view(), "{PLAIN}pw");
  auto carol = find(b, "carol");
  ASSERT_EQ(carol.status, Status::Found);
  EXPECT_TRUE(carol.credential.disabled);
  EXPECT_EQ(carol.credential.stored.view(), "$y$j9T$x$y");
  EXPECT_EQ(find(b, "dave").status, Status::Unknown);
  EXPECT_EQ(find(b, "").status, Status::Unknown);
  EXPECT_EQ(find(b, "# users").status, Status::Unknown);
}

TEST(Pwdfile, MalformedLinesAreSkippedAndTheRestServed) {
  TempDir dir;
  write_file(dir.file("passwd"),
             "no-colon-here\n"
             ":nouser\n"
             "emptyhash:\n"
             "emptyhash2::extra\n"
             "good:{PLAIN}ok\n");
  PwdfileBackend b("p", dir.file("passwd"), "CRYPT");
  EXPECT_EQ(find(b, "good").status, Status::Found);
  EXPECT_EQ(find(b, "no-colon-here").status, Status::Unknown);
  EXPECT_EQ(find(b, "emptyhash").status, Status::Unknown);
  EXPECT_EQ(find(b, "emptyhash2").status, Status::Unknown);
}

TEST(Pwdfile, FirstOfDuplicateUsersWins) {
  TempDir dir;
  write_file(dir.file("passwd"), "u:{PLAIN}first\nu:{PLAIN}second\n");
  PwdfileBackend b("p", dir.file("passwd"), "CRYPT");
  EXPECT_EQ(find(b, "u").credential.stored.view(), "{PLAIN}first");
}

TEST(Pwdfile, ReloadsWhenTheFileIsReplacedOrRewritten) {
  TempDir dir;
  write_file(dir.file("passwd"), "alice:{PLAIN}old\n");
  PwdfileBackend b("p", dir.file("passwd"), "CRYPT");
  EXPECT_EQ(find(b, "alice").credential.stored.view(), "{PLAIN}old");
  // Atomic replacement (new inode).
  write_file(dir.file("passwd"), "alice:{PLAIN}new\nbob:{PLAIN}b\n");
  EXPECT_EQ(find(b, "alice").credential.stored.view(), "{PLAIN}new");
  EXPECT_EQ(find(b, "bob").status, Status::Found);
  // In-place rewrite of the same length (same inode, same size): ctime/mtime change.
  {
    std::ofstream out(dir.file("passwd"), std::ios::binary | std::ios::in | std::ios::out);
    out << "alice:{PLAIN}NEW\n";
  }
  EXPECT_EQ(find(b, "alice").credential.stored.view(), "{PLAIN}NEW");
  // A removed user is gone at once.
  write_file(dir.file("passwd"), "bob:{PLAIN}b\n");
  EXPECT_EQ(find(b, "alice").status, Status::Unknown);
}

TEST(Pwdfile, UnreadableFileIsATemporaryFailureNotAStaleAnswer) {
  TempDir dir;
  write_file(dir.file("passwd"), "alice:{PLAIN}pw\n");
  PwdfileBackend b("p", dir.file("passwd"), "CRYPT");
  ASSERT_EQ(find(b, "alice").status, Status::Found);
  std::filesystem::remove(dir.file("passwd"));
  auto r = find(b, "alice");
  EXPECT_EQ(r.status, Status::TempFail);
  EXPECT_NE(r.reason.find("No such file"), std::string::npos) << r.reason;
  write_file(dir.file("passwd"), "alice:{PLAIN}pw\n");
  EXPECT_EQ(find(b, "alice").status, Status::Found);
}

TEST(Pwdfile, DefaultSchemeIsPassedOn) {
  TempDir dir;
  write_file(dir.file("passwd"), "alice:plaintext\n");
  PwdfileBackend b("p", dir.file("passwd"), "PLAIN");
  auto r = find(b, "alice");
  ASSERT_EQ(r.status, Status::Found);
  EXPECT_EQ(r.credential.default_scheme, "PLAIN");
  EXPECT_EQ(password::verify(r.credential.stored.view(), "plaintext", r.credential.default_scheme),
            password::Verdict::Match);
}

}  // namespace
}  // namespace mailauth::backend
