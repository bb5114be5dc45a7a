#include "src/auth/authenticator.h"
#include "src/runtime/worker_pool.h"

#include <crypt.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cctype>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>

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
  EpollLoop loop;
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

// Where threads meet: workers check passwords against the cache while the
// loop thread swaps the services (cache on/off, policy on/off) and the chain
// under them, as reloads do; requests are cancelled while queued.  Run in
// the ThreadSanitizer build (make check-tsan) as well.
TEST(Authenticator, ReloadsWhileWorkersCheckAndRequestsDie) {
  TempDir dir;
  write_file(dir.file("a"), "alice:{PLAIN}pw\nbob:{PLAIN}bpw\n");
  EpollLoop loop;
  WorkerPool pool(loop, 4, 4096);
  auto metrics = std::make_shared<Metrics>();
  Services with{metrics, nullptr, nullptr};
  config::Config cfg;
  cfg.cache = config::CacheConfig{};
  cfg.policy.enabled = true;
  cfg.policy.max_in_flight = 1000;
  cfg.policy.trusted_networks.clear();
  cfg.policy.penalty = std::chrono::milliseconds(0);
  with = make_services(cfg, with, system_clock());
  Authenticator auth(loop, pool, chain_of({dir.file("a")}), with);
  constexpr int kRequests = 3000;
  int answered = 0, submitted = 0, wrong = 0;
  std::vector<std::shared_ptr<Liveness>> lives;
  std::function<void()> more = [&] {
    for (int i = 0; i < 50 && submitted < kRequests; ++i, ++submitted) {
      const bool right = submitted % 3 != 0;
      auto r = request(submitted % 2 ? "alice" : "bob",
                       right ? (submitted % 2 ? "pw" : "bpw") : "nope");
      r.client_addr = "192.0.2." + std::to_string(submitted % 7);
      auto life = std::make_shared<Liveness>();
      r.life = life;
      lives.push_back(life);
      auth.authenticate(std::move(r), [&, right](const AuthResult& res) {
        if ((res.outcome == Outcome::Ok) != right && res.outcome != Outcome::TempFail) ++wrong;
        ++answered;
      });
      if (submitted % 11 == 0) lives[static_cast<std::size_t>(submitted) / 2]->kill();
    }
    // A reload: a new cache or none, the policy on or off, a new chain.
    config::Config next = cfg;
    if (submitted % 100 == 0) next.cache.reset();
    next.policy.enabled = submitted % 150 != 0;
    auth.set_services(make_services(next, auth.services(), system_clock()));
    auth.set_chain(chain_of({dir.file("a")}));
    if (submitted < kRequests) loop.post(more);
  };
  loop.post(more);
  std::function<void()> check = [&] {
    if (auth.in_flight() == 0 && submitted == kRequests) return loop.stop();
    loop.add_timer(std::chrono::milliseconds(5), check);
  };
  loop.add_timer(std::chrono::milliseconds(5), check);
  loop.run();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(auth.in_flight(), 0u);
  EXPECT_EQ(answered + static_cast<int>(metrics->abandoned_count()), kRequests)
      << "every request is answered or, if it died, dropped and counted";
  EXPECT_GT(metrics->abandoned_count(), 0u);
  if (auth.services().policy) {
    EXPECT_EQ(auth.services().policy->in_flight(), 0u);
  }
}

}  // namespace
}  // namespace mailauth::auth

namespace mailauth::auth {
namespace {

TEST(Rehash, ALegacyHashIsUpgradedAtTheNextSuccessfulLogin) {
  TempDir dir;
  const std::string legacy = password::hash("sha256-crypt", "pw");
  write_file(dir.file("a"), "# users\nalice:" + legacy + ":extra\nbob:!" +
                                password::hash("sha256-crypt", "bpw") + "\n");
  auto b = std::make_unique<backend::PwdfileBackend>("file", dir.file("a"), "CRYPT");
  b->set_rehash_scheme("yescrypt");
  std::vector<std::unique_ptr<backend::Backend>> v;
  v.push_back(std::move(b));
  BackendChain chain(std::move(v));

  // A wrong password changes nothing.
  EXPECT_EQ(chain.check_password(request("alice", "nope")).outcome, Outcome::Fail);
  std::ifstream before(dir.file("a"));
  std::string text((std::istreambuf_iterator<char>(before)), {});
  EXPECT_NE(text.find(legacy), std::string::npos);

  AuthResult r = chain.check_password(request("alice", "pw"));
  EXPECT_EQ(r.outcome, Outcome::Ok);
  EXPECT_EQ(r.reason, "rehashed SHA256-CRYPT to yescrypt");
  std::ifstream after(dir.file("a"));
  text.assign((std::istreambuf_iterator<char>(after)), {});
  EXPECT_EQ(text.find(legacy), std::string::npos);
  EXPECT_NE(text.find("alice:$y$"), std::string::npos);
  EXPECT_NE(text.find(":extra\n"), std::string::npos) << "other fields are kept";
  EXPECT_NE(text.find("# users\n"), std::string::npos);
  // Now current: no second rewrite, and the new hash works.
  r = chain.check_password(request("alice", "pw"));
  EXPECT_EQ(r.outcome, Outcome::Ok);
  EXPECT_EQ(r.reason, "");
  // A disabled account is never rehashed (its login fails).
  EXPECT_EQ(chain.check_password(request("bob", "bpw")).outcome, Outcome::Fail);
}

// Issue 12, item 2: the "already the target" check compared the salt too,
// so sha512-crypt and sha256-crypt targets were rewritten on every login.
TEST(Rehash, EveryTargetSchemeIsRewrittenOnceOnly) {
  for (const char* target : {"sha512-crypt", "sha256-crypt", "yescrypt", "bcrypt", "argon2id"}) {
    SCOPED_TRACE(target);
    TempDir dir;
    write_file(dir.file("a"), std::string("alice:") + ::crypt("pw", "$1$saltsalt$") + "\n");
    auto b = std::make_unique<backend::PwdfileBackend>("file", dir.file("a"), "CRYPT");
    b->set_rehash_scheme(target);
    std::vector<std::unique_ptr<backend::Backend>> v;
    v.push_back(std::move(b));
    BackendChain chain(std::move(v));
    AuthResult r = chain.check_password(request("alice", "pw"));
    EXPECT_EQ(r.outcome, Outcome::Ok);
    EXPECT_EQ(r.reason.rfind("rehashed MD5-CRYPT to ", 0), 0u) << r.reason;
    for (int i = 0; i < 3; ++i) {
      r = chain.check_password(request("alice", "pw"));
      EXPECT_EQ(r.outcome, Outcome::Ok);
      EXPECT_EQ(r.reason, "") << "login " << i + 2 << " rewrote the hash again";
    }
  }
}

// Issue 11, item 7: DES reads 8 bytes, bcrypt 72.  A longer typed password
// verifies, but storing all of it under the target would lock the user out
// of the password they really have.
TEST(Rehash, NeverFromASchemeThatReadPartOfThePassword) {
  struct Case {
    std::string stored, typed, real;
  };
  const std::string long_real(72, 'b');
  for (const Case& c : {Case{::crypt("password", "ab"), "password-XYZ", "password"},
                        Case{password::hash("bcrypt", long_real), long_real + "tail", long_real}}) {
    TempDir dir;
    write_file(dir.file("a"), "alice:" + c.stored + "\n");
    auto b = std::make_unique<backend::PwdfileBackend>("file", dir.file("a"), "CRYPT");
    b->set_rehash_scheme("yescrypt");
    std::vector<std::unique_ptr<backend::Backend>> v;
    v.push_back(std::move(b));
    BackendChain chain(std::move(v));
    AuthResult r = chain.check_password(request("alice", c.typed));
    EXPECT_EQ(r.outcome, Outcome::Ok) << "the scheme itself accepts the longer string";
    EXPECT_EQ(r.reason.rfind("not rehashed", 0), 0u) << r.reason;
    EXPECT_EQ(chain.check_password(request("alice", c.real)).outcome, Outcome::Ok)
        << "the real password still works";
    // Typed within the scheme's length: rehashed as usual.
    r = chain.check_password(request("alice", c.real));
    EXPECT_EQ(r.outcome, Outcome::Ok);
  }
}

TEST(Rehash, CompareAndSwapLeavesAChangedCredentialAlone) {
  TempDir dir;
  write_file(dir.file("a"), "alice:" + password::hash("sha256-crypt", "old") + "\n");
  backend::PwdfileBackend b("file", dir.file("a"), "CRYPT");
  const std::string seen(b.lookup({"alice", "", "smtp", ""}).credential.stored.view());
  // Meanwhile the admin sets a new password.
  ASSERT_EQ(b.set_password("alice", password::hash("sha256-crypt", "new")).status,
            backend::AccountStore::Status::Done);
  auto r = b.replace_password("alice", seen, password::hash("yescrypt", "old"));
  EXPECT_EQ(r.status, backend::AccountStore::Status::NotFound);
  EXPECT_EQ(password::verify(b.lookup({"alice", "", "smtp", ""}).credential.stored.view(), "new"),
            password::Verdict::Match);
}

}  // namespace
}  // namespace mailauth::auth

// --- user names a store does not tell apart (issue 11, finding 10) -----------------

namespace mailauth::auth {
namespace {

// A lookup backend over a store that compares names as MariaDB's _ci
// collations do: its canonical_user() drops trailing spaces and lower-cases.
class FoldingBackend final : public backend::Backend {
 public:
  FoldingBackend() : Backend("fake", "folding") {}
  Kind kind() const override { return Kind::Lookup; }
  std::string canonical_user(std::string_view user) const override {
    while (!user.empty() && user.back() == ' ') user.remove_suffix(1);
    std::string out(user);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  }
  backend::LookupResult lookup(const backend::Query& q) override {
    std::lock_guard lock(mutex);
    asked.emplace_back(q.user);
    backend::LookupResult r;
    if (q.user != "alice@example.com") return r;
    r.status = backend::Status::Found;
    // A real hash: cheap schemes are never cached.
    static const std::string hashed = password::hash("sha256-crypt", "alice-pw");
    r.credential.stored = Secret(hashed);
    return r;
  }
  std::mutex mutex;
  std::vector<std::string> asked;  // the names lookup() saw
};

std::shared_ptr<BackendChain> folding_chain(FoldingBackend** out, std::string pwdfile = "") {
  std::vector<std::unique_ptr<backend::Backend>> v;
  if (!pwdfile.empty())
    v.push_back(std::make_unique<backend::PwdfileBackend>("file", pwdfile, "CRYPT"));
  auto b = std::make_unique<FoldingBackend>();
  *out = b.get();
  v.push_back(std::move(b));
  return std::make_shared<BackendChain>(std::move(v));
}

const std::vector<std::string> kSpellings = {"alice@example.com", "ALICE@EXAMPLE.COM",
                                             "alice@example.com   ", "Alice@Example.com "};

TEST(CanonicalUser, TheChainAsksCachesAndAnswersUnderTheBackendsName) {
  FoldingBackend* b = nullptr;
  auto chain = folding_chain(&b);
  CredentialCache cache({}, system_clock());
  for (std::size_t i = 0; i < kSpellings.size(); ++i) {
    AuthResult r = chain->check_password(request(kSpellings[i], "alice-pw"), &cache);
    EXPECT_EQ(r.outcome, Outcome::Ok) << kSpellings[i];
    EXPECT_EQ(r.user, "alice@example.com") << kSpellings[i];
    EXPECT_EQ(r.cached, i > 0) << "one cache entry for every spelling: " << kSpellings[i];
  }
  EXPECT_EQ(cache.size(), 1u);
  AuthResult r = chain->check_password(request("ALICE@example.com", "wrong"), &cache);
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_EQ(r.user, "alice@example.com");
  r = chain->check_password(request("alice@example.com ", "wrong"), &cache);
  EXPECT_TRUE(r.cached) << "the negative entry is shared too";
  // The backend was only ever asked for the canonical name.
  for (const auto& name : b->asked) EXPECT_EQ(name, "alice@example.com");

  // A stored-credential lookup (CRAM-MD5, SCRAM) names the user the same way.
  BackendChain::CredentialLookup l = chain->lookup_credential(request("ALICE@EXAMPLE.COM  ", ""));
  EXPECT_EQ(l.outcome, Outcome::Ok);
  EXPECT_EQ(l.user, "alice@example.com");

  // Unknown: nobody decided, no canonical name.
  r = chain->check_password(request("BOB@example.com", "x"));
  EXPECT_EQ(r.reason, "unknown user");
  EXPECT_EQ(r.user, "");
}

TEST(CanonicalUser, ANameThatFoldsToNothingIsNobodysAndTheBackendIsNotAsked) {
  FoldingBackend* b = nullptr;
  auto chain = folding_chain(&b);
  for (const char* name : {"", " ", "     "}) {
    AuthResult r = chain->check_password(request(name, "alice-pw"));
    EXPECT_EQ(r.outcome, Outcome::Fail) << '"' << name << '"';
    EXPECT_EQ(r.reason, "unknown user");
    EXPECT_EQ(chain->lookup_credential(request(name, "")).unknown, true);
  }
  EXPECT_TRUE(b->asked.empty());
  EXPECT_EQ(chain->policy_user("   "), "");
}

TEST(CanonicalUser, AnExactBackendKeepsItsSpellingAndThePolicyFoldsForEveryBackend) {
  TempDir dir;
  write_file(dir.file("p"), "Carol:{PLAIN}carol-pw\n");
  FoldingBackend* b = nullptr;
  auto chain = folding_chain(&b, dir.file("p"));
  // pwdfile compares exactly: Carol is Carol, and carol is not in it.
  AuthResult r = chain->check_password(request("Carol", "carol-pw"));
  EXPECT_EQ(r.outcome, Outcome::Ok);
  EXPECT_EQ(r.user, "Carol");
  EXPECT_EQ(chain->check_password(request("carol", "carol-pw")).reason, "unknown user");
  // Unknown to the pwdfile, alice's spellings reach the folding backend.
  r = chain->check_password(request("ALICE@EXAMPLE.COM ", "alice-pw"));
  EXPECT_EQ(r.outcome, Outcome::Ok);
  EXPECT_EQ(r.backend, "folding");
  EXPECT_EQ(r.user, "alice@example.com");
  // The policy's name is known before any lookup, and folds what any
  // backend folds.
  for (const auto& name : kSpellings) EXPECT_EQ(chain->policy_user(name), "alice@example.com");
  EXPECT_EQ(chain->policy_user("Carol"), "carol");
  EXPECT_EQ(chain_of({dir.file("p")})->policy_user("Carol  "), "Carol  ");
}

TEST(CanonicalUser, FailuresUnderEverySpellingCountAgainstOnePolicyCounter) {
  FoldingBackend* b = nullptr;
  EpollLoop loop;
  WorkerPool pool(loop, 2, 16);
  config::Config cfg;
  cfg.cache = config::CacheConfig{};
  cfg.policy.trusted_networks.clear();
  cfg.policy.penalty = std::chrono::milliseconds(1);  // counted, hardly waited for
  Services services = make_services(cfg, Services{std::make_shared<Metrics>(), nullptr, nullptr},
                                    system_clock());
  Authenticator auth(loop, pool, folding_chain(&b), services);
  int answered = 0;
  std::vector<std::string> logged;
  // One wrong password per spelling, each from its own address: only the
  // per-user counter can join them.
  for (std::size_t i = 0; i < kSpellings.size(); ++i) {
    AuthRequest r = request(kSpellings[i], "wrong-" + std::to_string(i));
    r.client_addr = "198.51.100." + std::to_string(i + 1);
    auth.authenticate(std::move(r), [&](const AuthResult& res) {
      EXPECT_EQ(res.outcome, Outcome::Fail);
      EXPECT_EQ(res.user, "alice@example.com");
      if (++answered == static_cast<int>(kSpellings.size())) loop.stop();
    });
  }
  loop.run();
  Policy& policy = *services.policy;
  EXPECT_EQ(policy.tracked_users(), 1u) << "one counter for alice, not one per spelling";
  EXPECT_EQ(policy.tracked_addresses(), kSpellings.size());
  // Four failures: a fifth spelling from a fresh address waits base × 2^3.
  Policy::Admission a =
      policy.admit("198.51.100.99", auth.chain()->policy_user("aLiCe@example.com  "), false);
  EXPECT_EQ(a.delay, std::chrono::milliseconds(8));
  policy.release(a.address_key);
  // A success under any spelling clears it.
  AuthRequest ok = request("ALICE@example.com", "alice-pw");
  ok.client_addr = "198.51.100.50";
  auth.authenticate(std::move(ok), [&](const AuthResult& res) {
    EXPECT_EQ(res.outcome, Outcome::Ok);
    loop.stop();
  });
  loop.run();
  EXPECT_EQ(policy.tracked_users(), 0u);
}


// --- The loop-thread path (issue 13) ---------------------------------------

// A lookup backend over a map that can answer from memory, counting how it
// was asked.
class MemoryBackend final : public backend::Backend {
 public:
  explicit MemoryBackend(std::map<std::string, std::string> users, bool immediate = true)
      : Backend("memory", "memory"), users_(std::move(users)), immediate_(immediate) {}
  Kind kind() const override { return Kind::Lookup; }
  backend::LookupResult lookup(const backend::Query& q) override {
    ++lookups;
    return find(q);
  }
  std::optional<backend::LookupResult> lookup_now(const backend::Query& q) override {
    if (!immediate_) return std::nullopt;
    ++lookups_now;
    return find(q);
  }
  std::atomic<int> lookups{0};
  int lookups_now = 0;

 private:
  backend::LookupResult find(const backend::Query& q) const {
    backend::LookupResult r;
    auto it = users_.find(std::string(q.user));
    if (it == users_.end()) return r;
    r.status = backend::Status::Found;
    r.credential.stored = Secret(it->second.rfind("!", 0) == 0 ? it->second.substr(1) : it->second);
    r.credential.disabled = it->second.rfind("!", 0) == 0;
    return r;
  }
  std::map<std::string, std::string> users_;
  bool immediate_;
};

// The worker pool, counting what reaches it.
class CountingExecutor final : public Executor {
 public:
  explicit CountingExecutor(Executor& inner) : inner_(inner) {}
  bool submit(Job job, Continuation if_thrown) override {
    ++submitted;
    return inner_.submit(std::move(job), std::move(if_thrown));
  }
  int submitted = 0;

 private:
  Executor& inner_;
};

struct LoopPathFixture {
  explicit LoopPathFixture(std::vector<std::unique_ptr<backend::Backend>> backends,
                           bool cache = false)
      : pool(loop, 2, 64), counting(pool) {
    Services s;
    s.metrics = std::make_shared<Metrics>();
    if (cache) s.cache = std::make_shared<CredentialCache>(CredentialCache::Options{}, system_clock());
    auth = std::make_unique<Authenticator>(
        loop, counting, std::make_shared<BackendChain>(std::move(backends), Secret("{PLAIN}decoy"), "PLAIN"),
        s);
  }
  // One attempt, run to its answer; `sync` says whether done() ran inside
  // authenticate() (it must not).
  AuthResult run(const std::string& user, const std::string& password) {
    AuthResult got;
    bool answered = false;
    auth->authenticate(request(user, password), [&](const AuthResult& r) {
      got = r;
      answered = true;
      loop.stop();
    });
    EXPECT_FALSE(answered) << "done() ran inside authenticate()";
    loop.run();
    EXPECT_TRUE(answered);
    return got;
  }
  EpollLoop loop;
  WorkerPool pool;
  CountingExecutor counting;
  std::unique_ptr<Authenticator> auth;
};

TEST(LoopPath, CheapSchemesAndCacheHitsNeverReachAWorker) {
  std::vector<std::unique_ptr<backend::Backend>> v;
  auto* mem = new MemoryBackend(std::map<std::string, std::string>{
      {"alice", "{PLAIN}pw"}, {"carol", password::hash("sha256-crypt", "carol-pw")}});
  v.emplace_back(mem);
  LoopPathFixture f(std::move(v), /*cache=*/true);
  EXPECT_EQ(f.run("alice", "pw").outcome, Outcome::Ok);
  EXPECT_EQ(f.run("alice", "nope").outcome, Outcome::Fail);
  EXPECT_EQ(f.counting.submitted, 0) << "{PLAIN} went to a worker";
  // A real hash: the first check on a worker, the repeat from the cache on the loop.
  AuthResult r = f.run("carol", "carol-pw");
  EXPECT_EQ(r.outcome, Outcome::Ok);
  EXPECT_FALSE(r.cached);
  EXPECT_EQ(f.counting.submitted, 1);
  r = f.run("carol", "carol-pw");
  EXPECT_EQ(r.outcome, Outcome::Ok);
  EXPECT_TRUE(r.cached);
  EXPECT_EQ(f.counting.submitted, 1) << "a cache hit went to a worker";
  // A wrong password against the real hash: the worker, then the negative cache.
  EXPECT_EQ(f.run("carol", "guess").outcome, Outcome::Fail);
  EXPECT_EQ(f.counting.submitted, 2);
  r = f.run("carol", "guess");
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_TRUE(r.cached);
  EXPECT_EQ(f.counting.submitted, 2);
  EXPECT_EQ(mem->lookups.load(), 2) << "the worker is asked only when the loop cannot answer";
}

TEST(LoopPath, UnknownUsersGoToTheDecoyUntilARealCheckWasTimed) {
  std::vector<std::unique_ptr<backend::Backend>> v;
  v.push_back(std::make_unique<MemoryBackend>(std::map<std::string, std::string>{
      {"carol", password::hash("sha256-crypt", "carol-pw")}, {"dave", "!{PLAIN}dave-pw"},
      {"erin", "!" + password::hash("sha256-crypt", "erin-pw")}}));
  LoopPathFixture f(std::move(v));
  AuthResult r = f.run("nobody", "pw");
  EXPECT_TRUE(r.unknown_user);
  EXPECT_TRUE(r.costed) << "no sample yet: the decoy is checked on a worker";
  EXPECT_EQ(f.counting.submitted, 1);
  EXPECT_EQ(f.run("carol", "carol-pw").outcome, Outcome::Ok);  // a timed real check
  EXPECT_EQ(f.counting.submitted, 2);
  r = f.run("nobody", "pw");
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_TRUE(r.unknown_user);
  EXPECT_FALSE(r.costed) << "held back on a timer instead of a worker";
  EXPECT_EQ(f.counting.submitted, 2);
  // Disabled accounts: a cheap scheme is checked (same cost) on the loop,
  // a real hash on a worker like any wrong password, never on the loop.
  r = f.run("dave", "dave-pw");
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_TRUE(r.costed);
  EXPECT_EQ(f.counting.submitted, 2);
  r = f.run("erin", "erin-pw");
  EXPECT_EQ(r.outcome, Outcome::Fail);
  EXPECT_TRUE(r.costed);
  EXPECT_EQ(f.counting.submitted, 3);
}

TEST(LoopPath, ABackendThatWouldBlockSendsTheWholeCheckToAWorker) {
  std::vector<std::unique_ptr<backend::Backend>> v;
  using Users = std::map<std::string, std::string>;
  auto* first = new MemoryBackend(Users{{"alice", "{PLAIN}pw"}});
  auto* second = new MemoryBackend(Users{{"bob", "{PLAIN}bob-pw"}}, /*immediate=*/false);
  v.emplace_back(first);
  v.emplace_back(second);
  LoopPathFixture f(std::move(v));
  EXPECT_EQ(f.run("alice", "pw").outcome, Outcome::Ok);
  EXPECT_EQ(f.counting.submitted, 0);
  // bob is not in the first backend; the second cannot answer from memory.
  EXPECT_EQ(f.run("bob", "bob-pw").outcome, Outcome::Ok);
  EXPECT_EQ(f.counting.submitted, 1);
  EXPECT_EQ(second->lookups.load(), 1);
}

TEST(LoopPath, ARehashIsNeverDoneOnTheLoop) {
  TempDir dir;
  write_file(dir.file("a"), "alice:{PLAIN}pw\n");
  std::vector<std::unique_ptr<backend::Backend>> v;
  v.push_back(std::make_unique<backend::PwdfileBackend>("file", dir.file("a"), "CRYPT"));
  v.back()->set_rehash_scheme("sha256-crypt");
  LoopPathFixture f(std::move(v));
  EXPECT_EQ(f.run("alice", "pw").outcome, Outcome::Ok);
  EXPECT_EQ(f.counting.submitted, 1);
  std::ifstream in(dir.file("a"));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(password::scheme_of(line.substr(6)), "SHA256-CRYPT") << "rehashed on the worker";
}

TEST(LoopPath, APwdfileAnswersFromMemoryUntilTheFileChanges) {
  TempDir dir;
  write_file(dir.file("a"), "alice:{PLAIN}pw\n");
  std::vector<std::unique_ptr<backend::Backend>> v;
  v.push_back(std::make_unique<backend::PwdfileBackend>("file", dir.file("a"), "CRYPT"));
  LoopPathFixture f(std::move(v));
  // The first lookup reads the file: a worker.
  EXPECT_EQ(f.run("alice", "pw").outcome, Outcome::Ok);
  EXPECT_EQ(f.counting.submitted, 1);
  EXPECT_EQ(f.run("alice", "pw").outcome, Outcome::Ok);
  EXPECT_EQ(f.run("alice", "wrong").outcome, Outcome::Fail);
  EXPECT_EQ(f.counting.submitted, 1);
  // A rewritten file is read again on a worker, and takes effect at once.
  write_file(dir.file("a"), "alice:{PLAIN}new-pw\n");
  EXPECT_EQ(f.run("alice", "pw").outcome, Outcome::Fail);
  EXPECT_EQ(f.counting.submitted, 2);
  EXPECT_EQ(f.run("alice", "new-pw").outcome, Outcome::Ok);
  EXPECT_EQ(f.counting.submitted, 2);
  // A file that is gone is a temporary failure, from the worker.
  std::filesystem::remove(dir.file("a"));
  EXPECT_EQ(f.run("alice", "new-pw").outcome, Outcome::TempFail);
  EXPECT_EQ(f.counting.submitted, 3);
}

TEST(Schemes, OnlyMicrosecondSchemesAreCheap) {
  EXPECT_TRUE(password::is_cheap("{PLAIN}x"));
  EXPECT_TRUE(password::is_cheap("{CLEAR.B64}eA=="));
  EXPECT_TRUE(password::is_cheap(password::hash("ssha512", "x")));
  EXPECT_TRUE(password::is_cheap("{MD5}" "XrY7u+Ae7tCTyyK7j1rNww=="));
  EXPECT_TRUE(password::is_cheap("x", "PLAIN"));
  EXPECT_FALSE(password::is_cheap("{MD5}$1$salt$hash"));
  EXPECT_FALSE(password::is_cheap(password::hash("sha256-crypt", "x")));
  EXPECT_FALSE(password::is_cheap("{CRYPT}$5$abc$def"));
  EXPECT_FALSE(password::is_cheap(password::hash("scram-sha-256", "x")));
  EXPECT_FALSE(password::is_cheap("{NO-SUCH-SCHEME}x"));
  EXPECT_FALSE(password::is_cheap(""));
  EXPECT_FALSE(password::is_cheap("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"));
}

// Review finding: the padding's lateness correction must survive a stalled
// loop.  Unbounded, a few timers fired late by a stall pushed it above every
// real check's time; then no pad was set, the average never came down, and
// unknown users were answered at once for good.
TEST(LoopPath, AStalledLoopDoesNotSwitchThePaddingOff) {
  const std::string slow = password::hash("sha256-crypt", "carol-pw");
  std::vector<std::unique_ptr<backend::Backend>> v;
  v.push_back(std::make_unique<MemoryBackend>(std::map<std::string, std::string>{
      {"carol", "$5$rounds=100000$" + slow.substr(3)}}));  // tens of ms
  LoopPathFixture f(std::move(v));
  auto timed = [&](const std::string& user) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(f.run(user, "wrong").outcome, Outcome::Fail);
    return std::chrono::steady_clock::now() - t0;
  };
  auto fastest_real = timed("carol");
  for (int i = 0; i < 7; ++i) fastest_real = std::min(fastest_real, timed("carol"));
  ASSERT_LT(fastest_real, std::chrono::milliseconds(500));
  // Six unknown users whose padding timers fire about 600 ms late: a timer
  // due 1 ms after the request blocks the loop while the pad is pending.
  for (int i = 0; i < 6; ++i) {
    bool answered = false;
    f.auth->authenticate(request("nobody", "x"), [&](const AuthResult&) {
      answered = true;
      f.loop.stop();
    });
    f.loop.add_timer(std::chrono::milliseconds(1),
                     [] { std::this_thread::sleep_for(std::chrono::milliseconds(600)); });
    f.loop.run();
    ASSERT_TRUE(answered);
  }
  // Unknown users are still held back to about a real check's time.
  for (int i = 0; i < 5; ++i)
    EXPECT_GT(timed("nobody"), fastest_real / 2) << "answered at once: the padding is off";
}


// The daemon's shape with loops = 2: two event loops on their own threads,
// one worker pool whose results go back to the loop that asked, one chain,
// cache, policy and metrics shared by both, and reloads made on loop 0 and
// posted to loop 1.  Run under TSan by make check-tsan: the shared parts
// must be safe when loops meet, and no answer may reach another loop or
// another request.
TEST(Authenticator, TwoLoopsShareOnePoolPolicyCacheAndMetrics) {
  TempDir dir;
  // A cheap scheme (answered on the loop) and a real hash (on a worker).
  write_file(dir.file("a"), "alice:{PLAIN}pw\nbob:" +
                                password::hash("sha256-crypt", "bpw") + "\n");
  struct Side {
    EpollLoop loop;
    std::unique_ptr<WorkerPool::ForLoop> executor;
    std::unique_ptr<Authenticator> auth;
    std::thread::id thread;
    int answered = 0, wrong = 0, foreign = 0, submitted = 0;
  };
  Side sides[2];
  WorkerPool pool(sides[0].loop, 2, 4096);
  config::Config cfg;
  cfg.cache = config::CacheConfig{};
  cfg.policy.enabled = true;
  cfg.policy.max_in_flight = 1000;
  cfg.policy.trusted_networks.clear();
  cfg.policy.penalty = std::chrono::milliseconds(0);
  Services services = make_services(cfg, Services{std::make_shared<Metrics>(), nullptr, nullptr},
                                    system_clock());
  auto chain = chain_of({dir.file("a")});
  for (Side& s : sides) {
    s.executor = std::make_unique<WorkerPool::ForLoop>(pool, s.loop);
    s.auth = std::make_unique<Authenticator>(s.loop, *s.executor, chain, services);
  }
  constexpr int kRequests = 1500;
  std::atomic<int> finished{0};
  auto drive = [&](int k) {
    Side& s = sides[k];
    s.thread = std::this_thread::get_id();
    std::function<void()> more = [&, k] {
      for (int i = 0; i < 25 && s.submitted < kRequests; ++i, ++s.submitted) {
        const bool right = s.submitted % 3 != 0;
        const bool is_alice = (s.submitted + k) % 2 == 0;
        auto r = request(is_alice ? "alice" : "bob",
                         right ? (is_alice ? "pw" : "bpw") : "nope-" + std::to_string(k));
        r.client_addr = "192.0.2." + std::to_string(s.submitted % 5);
        s.auth->authenticate(std::move(r), [&, right](const AuthResult& res) {
          if (std::this_thread::get_id() != s.thread) ++s.foreign;
          if ((res.outcome == Outcome::Ok) != right && res.outcome != Outcome::TempFail) ++s.wrong;
          ++s.answered;
        });
      }
      if (k == 0 && s.submitted % 300 == 0) {
        // A reload on loop 0, handed to loop 1 as the daemon does.
        config::Config next = cfg;
        if (s.submitted % 600 == 0) next.cache.reset();
        Services fresh = make_services(next, s.auth->services(), system_clock());
        auto new_chain = chain_of({dir.file("a")});
        s.auth->set_services(fresh);
        s.auth->set_chain(new_chain);
        Side& other = sides[1];
        other.loop.post([&other, fresh, new_chain] {
          other.auth->set_services(fresh);
          other.auth->set_chain(new_chain);
        });
      }
      if (s.submitted < kRequests) s.loop.post(more);
    };
    s.loop.post(more);
    std::function<void()> check = [&] {
      if (s.auth->in_flight() == 0 && s.submitted == kRequests) {
        ++finished;
        return;  // the loop keeps running until both sides are done
      }
      s.loop.add_timer(std::chrono::milliseconds(2), check);
    };
    s.loop.add_timer(std::chrono::milliseconds(2), check);
    s.loop.run();
  };
  std::thread other([&] { drive(1); });
  std::thread watcher([&] {
    while (finished.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    sides[0].loop.stop();
    sides[1].loop.stop();
  });
  drive(0);
  other.join();
  watcher.join();
  pool.shutdown();
  for (const Side& s : sides) {
    EXPECT_EQ(s.wrong, 0) << "a verdict for another request";
    EXPECT_EQ(s.foreign, 0) << "an answer ran on another loop's thread";
    EXPECT_EQ(s.answered, kRequests);
    EXPECT_EQ(s.auth->in_flight(), 0u);
  }
  if (sides[0].auth->services().policy) {
    EXPECT_EQ(sides[0].auth->services().policy->in_flight(), 0u);
  }
}

}  // namespace
}  // namespace mailauth::auth
