#include "backends/pwdfile/pwdfile_backend.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

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

// A read error (the file opens but read(2) fails: EIO from a failing disk,
// EISDIR here) is not an end of file.  A table read up to the error would
// lack the users after it, and "unknown" sends the chain to the next backend.

// The file is replaced by one that opens but cannot be read: the last
// complete table stays in force until a complete read succeeds.
TEST(PwdfileReadError, AReloadThatFailsToReadKeepsTheLastCompleteTable) {
  TempDir dir;
  const std::string path = dir.file("passwd");
  write_file(path, "alice:{PLAIN}a\nbob:{PLAIN}b\n");
  PwdfileBackend b("p", path, "CRYPT");
  ASSERT_EQ(find(b, "bob").status, Status::Found);
  std::filesystem::remove(path);
  std::filesystem::create_directory(path);  // open(O_RDONLY) works, read() fails
  for (const char* user : {"alice", "bob"}) {
    auto r = find(b, user);
    EXPECT_EQ(r.status, Status::Found) << user << ": " << r.reason;
  }
  EXPECT_EQ(find(b, "carol").status, Status::Unknown);  // unknown in the complete table
  std::filesystem::remove(path);
  write_file(path, "alice:{PLAIN}a2\n");  // readable again: the new table
  EXPECT_EQ(find(b, "alice").credential.stored.view(), "{PLAIN}a2");
  EXPECT_EQ(find(b, "bob").status, Status::Unknown);
}

// Never read completely: every lookup is a temporary failure, never "unknown".
TEST(PwdfileReadError, NoCompleteTableYetIsATemporaryFailureNotUnknown) {
  TempDir dir;
  const std::string path = dir.file("passwd");
  std::filesystem::create_directory(path);
  PwdfileBackend b("p", path, "CRYPT");
  for (const char* user : {"alice", "nobody"}) {
    auto r = find(b, user);
    EXPECT_EQ(r.status, Status::TempFail) << user;
    EXPECT_NE(r.reason.find("error reading"), std::string::npos) << r.reason;
  }
  EXPECT_NE(b.check(), "");
}

// A write (mailauth-user, rehash) that cannot read the whole file writes
// nothing and says so: a temporary failure, not "no such user" and never a
// file cut short at the error.
TEST(PwdfileReadError, AWriteThatCannotReadTheFileIsATemporaryFailure) {
  TempDir dir;
  const std::string path = dir.file("passwd");
  std::filesystem::create_directory(path);
  PwdfileBackend b("p", path, "CRYPT");
  auto r = b.set_password("alice", "{PLAIN}new");
  EXPECT_EQ(r.status, AccountStore::Status::TempFail) << r.message;
  // (A directory is refused before it is read; the injected read errors
  // below are the read path.)
  EXPECT_NE(r.message.find("nothing written"), std::string::npos) << r.message;
  r = b.replace_password("alice", "{PLAIN}a", "{PLAIN}new");
  EXPECT_EQ(r.status, AccountStore::Status::TempFail) << r.message;
  std::vector<AccountStore::Account> accounts;
  EXPECT_EQ(b.list("", &accounts).status, AccountStore::Status::TempFail);
  EXPECT_TRUE(std::filesystem::is_directory(path));
}

// read(2) that hands out the first `good` bytes of the file, then fails
// with EIO: a disk error in the middle of the file.
PwdfileBackend::ReadFunction failing_after(std::size_t good) {
  auto done = std::make_shared<std::size_t>(0);
  return [done, good](int fd, void* buf, std::size_t count) -> ssize_t {
    if (*done >= good) {
      errno = EIO;
      return -1;
    }
    const ssize_t n = ::read(fd, buf, std::min(count, good - *done));
    if (n > 0) *done += static_cast<std::size_t>(n);
    return n;
  };
}

TEST(PwdfileReadError, AnErrorMidFileIsNeverATableCutShort) {
  TempDir dir;
  const std::string path = dir.file("passwd");
  const std::string first = "alice:{PLAIN}a\n";
  write_file(path, first + "bob:{PLAIN}b\n");
  PwdfileBackend b("p", path, "CRYPT");
  b.set_read_function(failing_after(first.size()));
  // Never read completely: bob is not "unknown", nor is alice "found".
  for (const char* user : {"alice", "bob", "carol"}) {
    auto r = find(b, user);
    EXPECT_EQ(r.status, Status::TempFail) << user;
    EXPECT_NE(r.reason.find("Input/output error"), std::string::npos) << r.reason;
  }
  b.set_read_function(nullptr);
  ASSERT_EQ(find(b, "bob").status, Status::Found);
  // A changed file that fails mid-way: the last complete table, bob included.
  write_file(path, first + "bob:{PLAIN}b2\ncarol:{PLAIN}c\n");
  b.set_read_function(failing_after(first.size()));
  EXPECT_EQ(find(b, "bob").credential.stored.view(), "{PLAIN}b");
  EXPECT_EQ(find(b, "carol").status, Status::Unknown);
  // Removed meanwhile: no stale table for a file that is gone.
  std::filesystem::rename(path, path + ".away");
  EXPECT_EQ(find(b, "bob").status, Status::TempFail);
  std::filesystem::rename(path + ".away", path);
  EXPECT_EQ(find(b, "bob").status, Status::TempFail);  // no complete table now
  b.set_read_function(nullptr);
  EXPECT_EQ(find(b, "bob").credential.stored.view(), "{PLAIN}b2");
  EXPECT_EQ(find(b, "carol").status, Status::Found);
}

TEST(PwdfileReadError, ARewriteWithAnErrorMidFileWritesNothing) {
  TempDir dir;
  const std::string path = dir.file("passwd");
  const std::string text = "# users\nalice:{PLAIN}a\nbob:{PLAIN}b\n";
  write_file(path, text);
  PwdfileBackend b("p", path, "CRYPT");
  b.set_read_function(failing_after(10));
  auto r = b.add("carol", "{PLAIN}c", "", true);
  EXPECT_EQ(r.status, AccountStore::Status::TempFail) << r.message;
  EXPECT_NE(r.message.find("nothing written"), std::string::npos) << r.message;
  r = b.replace_password("alice", "{PLAIN}a", "{PLAIN}new");
  EXPECT_EQ(r.status, AccountStore::Status::TempFail) << r.message;
  std::ifstream in(path, std::ios::binary);
  std::string now((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(now, text);
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_TRUE(e.path().filename() == "passwd" || e.path().filename() == "passwd.lock")
        << "left behind: " << e.path();
  // And the same writes once the file reads again.
  b.set_read_function(nullptr);
  EXPECT_EQ(b.add("carol", "{PLAIN}c", "", true).status, AccountStore::Status::Done);
  EXPECT_EQ(find(b, "bob").status, Status::Found);
  EXPECT_EQ(find(b, "carol").status, Status::Found);
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

// Review finding: the users file's directory is writable by the daemon's
// user (the rehash needs that).  When root (mailauth-user) rewrites the file,
// a symlink or hard link planted there must not make root chown or read
// another file.
TEST(PwdfileWrites, ALinkedLockOrUsersFileIsNeverFollowedByAWriter) {
  TempDir dir;
  write_file(dir.file("victim"), "precious\n");
  ::chmod(dir.file("victim").c_str(), 0600);
  write_file(dir.file("passwd"), "alice:{PLAIN}a\n");
  struct stat before {};
  ASSERT_EQ(::stat(dir.file("victim").c_str(), &before), 0);
  if (::geteuid() == 0) {
    // As the daemon's user would own it: root's old fchown of the lock to
    // the users file's owner then gave the victim away.
    ASSERT_EQ(::chown(dir.file("passwd").c_str(), 65534, 65534), 0);
  }
  PwdfileBackend b("pwdfile", dir.file("passwd"), "CRYPT");
  ASSERT_EQ(::symlink(dir.file("victim").c_str(), dir.file("passwd.lock").c_str()), 0);
  auto r = b.add("bob", "{PLAIN}b", "", true);
  EXPECT_EQ(r.status, AccountStore::Status::TempFail) << r.message;
  EXPECT_NE(r.message.find("passwd.lock"), std::string::npos) << r.message;
  struct stat after {};
  ASSERT_EQ(::stat(dir.file("victim").c_str(), &after), 0);
  EXPECT_EQ(after.st_uid, before.st_uid) << "the symlink's target was chowned";
  EXPECT_EQ(after.st_gid, before.st_gid);
  // A hard link is refused the same way.
  ::unlink(dir.file("passwd.lock").c_str());
  ASSERT_EQ(::link(dir.file("victim").c_str(), dir.file("passwd.lock").c_str()), 0);
  EXPECT_EQ(b.add("bob", "{PLAIN}b", "", true).status, AccountStore::Status::TempFail);
  ASSERT_EQ(::stat(dir.file("victim").c_str(), &after), 0);
  EXPECT_EQ(after.st_uid, before.st_uid) << "the hard link's file was chowned";
  // The users file itself replaced by a symlink: not read, not replaced.
  ::unlink(dir.file("passwd.lock").c_str());
  ::unlink(dir.file("passwd").c_str());
  ASSERT_EQ(::symlink(dir.file("victim").c_str(), dir.file("passwd").c_str()), 0);
  r = b.add("bob", "{PLAIN}b", "", true);
  EXPECT_EQ(r.status, AccountStore::Status::TempFail) << r.message;
  struct stat link {};
  ASSERT_EQ(::lstat(dir.file("passwd").c_str(), &link), 0);
  EXPECT_TRUE(S_ISLNK(link.st_mode)) << "the symlink was replaced by a file with its target's lines";
}

}  // namespace
}  // namespace mailauth::backend
