#include <gtest/gtest.h>

#include <map>
#include <set>

#include "protocol/sasl/cram_md5.h"
#include "protocol/sasl/login.h"
#include "protocol/sasl/mechanism.h"
#include "protocol/sasl/plain.h"
#include "protocol/sasl/scram.h"
#include "src/password/schemes.h"
#include "src/password/scram.h"
#include "src/util/encoding.h"

namespace mailauth::sasl {
namespace {

using K = Step::Kind;

TEST(Plain, WithAndWithoutInitialResponse) {
  Plain p;
  Step s = p.start(std::string_view("\0alice\0s3cret", 13));
  ASSERT_EQ(s.kind, K::VerifyPassword);
  EXPECT_EQ(s.user, "alice");
  EXPECT_EQ(s.password.view(), "s3cret");

  Plain q;
  s = q.start(std::nullopt);
  ASSERT_EQ(s.kind, K::Challenge);
  EXPECT_EQ(s.challenge, "");
  s = q.step(std::string_view("alice\0alice\0pw", 14));  // doveadm: authzid = authcid
  ASSERT_EQ(s.kind, K::VerifyPassword);
  EXPECT_EQ(s.user, "alice");
}

TEST(Plain, MalformedOrForeignAuthzidFails) {
  for (std::string_view bad : {std::string_view(""), std::string_view("alice"),
                               std::string_view("\0alice", 6), std::string_view("\0\0pw", 4),
                               std::string_view("\0alice\0", 7),
                               std::string_view("\0a\0b\0c", 6),
                               std::string_view("bob\0alice\0pw", 12)}) {
    Plain p;
    EXPECT_EQ(p.start(bad).kind, K::Failure) << std::string(bad);
  }
}

TEST(Login, ChallengesAreTheLiteralStrings) {
  Login l;
  Step s = l.start(std::nullopt);
  ASSERT_EQ(s.kind, K::Challenge);
  EXPECT_EQ(base64_encode(s.challenge), "VXNlcm5hbWU6");
  s = l.step("alice");
  ASSERT_EQ(s.kind, K::Challenge);
  EXPECT_EQ(base64_encode(s.challenge), "UGFzc3dvcmQ6");
  s = l.step("s3cret");
  ASSERT_EQ(s.kind, K::VerifyPassword);
  EXPECT_EQ(s.user, "alice");
  EXPECT_EQ(s.password.view(), "s3cret");
}

TEST(Login, InitialResponseIsTheUserNameAndNulsFail) {
  Login l;
  Step s = l.start(std::string_view("alice"));
  ASSERT_EQ(s.kind, K::Challenge);
  EXPECT_EQ(s.challenge, "Password:");
  EXPECT_EQ(l.step(std::string_view("pw\0x", 4)).kind, K::Failure);
  Login e;
  EXPECT_EQ(e.start(std::string_view("")).kind, K::Challenge);  // empty initial = ask
  EXPECT_EQ(e.step("").kind, K::Failure);
}

// RFC 2195, section 2: tim / tanstaaftanstaaf.
TEST(CramMd5, Rfc2195Example) {
  const std::string challenge = "<1896.697170952@postoffice.reston.mci.net>";
  EXPECT_EQ(cram_md5_client_response("tim", "tanstaaftanstaaf", challenge),
            "tim b913a602c7eda7a495b4e6e7334d3890");
  const std::vector<std::string> stored_forms = {"{PLAIN}tanstaaftanstaaf",
                                                 password::hash("cram-md5", "tanstaaftanstaaf")};
  for (const std::string& stored : stored_forms) {
    CramMd5 m("postoffice.reston.mci.net", challenge);
    Step s = m.start(std::nullopt);
    ASSERT_EQ(s.kind, K::Challenge);
    EXPECT_EQ(s.challenge, challenge);
    s = m.step("tim b913a602c7eda7a495b4e6e7334d3890");
    ASSERT_EQ(s.kind, K::NeedCredential);
    EXPECT_EQ(s.user, "tim");
    s = m.credential(StoredCredential{stored, "CRYPT"});
    EXPECT_EQ(s.kind, K::Success) << stored;
  }
}

TEST(CramMd5, DovecotStoredContextFromDoveadm) {
  // doveadm pw -s CRAM-MD5 -p s3cret (tests/data/password-vectors.tsv).
  const std::string stored =
      "{CRAM-MD5}f5ed572d28e21dc835df33e856b52ed7fa69d793810545332aa71e91b9ed7e06";
  const std::string challenge = "<5754640514297229.1795300768@vm>";
  CramMd5 m("vm", challenge);
  m.start(std::nullopt);
  // protocols.md C.3, observed against Dovecot: alice / s3cret.
  ASSERT_EQ(cram_md5_client_response("alice", "s3cret", challenge),
            "alice d5d4aa4ea08bf80b0007bddd23203e20");
  ASSERT_EQ(m.step("alice d5d4aa4ea08bf80b0007bddd23203e20").kind, K::NeedCredential);
  EXPECT_EQ(m.credential(StoredCredential{stored, "CRYPT"}).kind, K::Success);
}

TEST(CramMd5, WrongDigestHashedCredentialAndUnknownUserFail) {
  const std::string challenge = "<1.2@h>";
  {
    CramMd5 m("h", challenge);
    m.start(std::nullopt);
    m.step(cram_md5_client_response("u", "wrong", challenge));
    EXPECT_EQ(m.credential(StoredCredential{"{PLAIN}right", "CRYPT"}).kind, K::Failure);
  }
  {
    CramMd5 m("h", challenge);
    m.start(std::nullopt);
    m.step(cram_md5_client_response("u", "right", challenge));
    Step s = m.credential(StoredCredential{password::hash("sha512-crypt", "right"), "CRYPT"});
    EXPECT_EQ(s.kind, K::Failure);
    EXPECT_NE(s.reason.find("cannot serve CRAM-MD5"), std::string::npos);
  }
  {
    CramMd5 m("h", challenge);
    m.start(std::nullopt);
    m.step(cram_md5_client_response("u", "right", challenge));
    EXPECT_EQ(m.credential(std::nullopt).kind, K::Failure);
  }
  for (const char* bad : {"nospace", "u 123", "u zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"}) {
    CramMd5 m("h", challenge);
    m.start(std::nullopt);
    EXPECT_EQ(m.step(bad).kind, K::Failure) << bad;
  }
}

struct RfcScram {
  const char* algorithm;
  const char* client_nonce;
  const char* server_nonce;
  const char* salt_b64;
  const char* client_first;
  const char* server_first;
  const char* client_final;
  const char* server_final;
};

// RFC 5802 section 5 (SCRAM-SHA-1) and RFC 7677 section 3 (SCRAM-SHA-256):
// user "user", password "pencil", 4096 iterations.
const RfcScram kRfc[] = {
    {"SHA1", "fyko+d2lbbFgONRv9qkxdawL", "3rfcNHYJY1ZVvWVs7j", "QSXCR+Q6sek8bf92",
     "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
     "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
     "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
     "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="},
    {"SHA256", "rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", "W22ZaJ0SNY7soEsUEjb6gQ==",
     "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
     "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
     "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
     "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="},
};

std::string stored_verifier(const RfcScram& v) {
  auto keys = password::scram_derive(v.algorithm, "pencil", *base64_decode(v.salt_b64), 4096);
  return std::string(std::string_view(v.algorithm) == "SHA1" ? "{SCRAM-SHA-1}" : "{SCRAM-SHA-256}") +
         password::scram_format(keys);
}

TEST(Scram, RfcExchangeServerSide) {
  for (const auto& v : kRfc) {
    SCOPED_TRACE(v.algorithm);
    for (bool final_resp_ok : {false, true}) {
      Scram m(v.algorithm, final_resp_ok);
      m.set_server_nonce(v.server_nonce);
      Step s = m.start(std::string_view(v.client_first));
      ASSERT_EQ(s.kind, K::NeedCredential);
      EXPECT_EQ(s.user, "user");
      s = m.credential(StoredCredential{stored_verifier(v), "CRYPT"});
      ASSERT_EQ(s.kind, K::Challenge) << s.reason;
      EXPECT_EQ(s.challenge, v.server_first);
      s = m.step(v.client_final);
      if (final_resp_ok) {
        ASSERT_EQ(s.kind, K::Success) << s.reason;
        EXPECT_EQ(s.final_data, v.server_final);
      } else {
        ASSERT_EQ(s.kind, K::Challenge) << s.reason;
        EXPECT_EQ(s.challenge, v.server_final);
        s = m.step("");
        EXPECT_EQ(s.kind, K::Success);
        EXPECT_EQ(s.user, "user");
      }
    }
  }
}

TEST(Scram, RfcExchangeClientSide) {
  for (const auto& v : kRfc) {
    ScramClient c(v.algorithm, "user", "pencil", v.client_nonce);
    EXPECT_EQ(c.client_first(), v.client_first);
    EXPECT_EQ(c.client_final(v.server_first), v.client_final);
    EXPECT_TRUE(c.verify_server_final(v.server_final));
    EXPECT_FALSE(c.verify_server_final("v=AAAA"));
  }
}

TEST(Scram, WrongProofTamperingAndUnknownUserFail) {
  const auto& v = kRfc[1];
  auto run = [&](const std::string& client_final,
                 std::optional<StoredCredential> cred) {
    Scram m(v.algorithm, false);
    m.set_server_nonce(v.server_nonce);
    m.start(std::string_view(v.client_first));
    Step s = m.credential(cred);
    if (s.kind != K::Challenge) return s;
    return m.step(client_final);
  };
  const std::string stored = stored_verifier(v);
  StoredCredential cred{stored, "CRYPT"};
  std::string wrong = v.client_final;
  wrong[wrong.size() - 5] = wrong[wrong.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(run(wrong, cred).kind, K::Failure);
  std::string other_nonce = v.client_final;
  other_nonce.replace(other_nonce.find("r=") + 2, 3, "xxx");
  EXPECT_EQ(run(other_nonce, cred).kind, K::Failure);
  std::string cbind = v.client_final;
  cbind.replace(0, 6, "c=eSws");  // "y,," instead of "n,,"
  EXPECT_EQ(run(cbind, cred).kind, K::Failure);
  // Unknown user: the server still sends a plausible server-first (before
  // any real verifier is seen: kScramIterations) ...
  auto shared = std::make_shared<ScramShared>();
  Scram m(v.algorithm, false, shared);
  m.start(std::string_view(v.client_first));
  Step s = m.credential(std::nullopt);
  ASSERT_EQ(s.kind, K::Challenge);
  EXPECT_NE(s.challenge.find(",i=10000"), std::string::npos);
  // ... with the same salt every time for that name, and then fails.
  Scram m2(v.algorithm, false, shared);
  m2.start(std::string_view(v.client_first));
  Step s2 = m2.credential(std::nullopt);
  EXPECT_EQ(s.challenge.substr(s.challenge.find(",s=")), s2.challenge.substr(s2.challenge.find(",s=")));
  EXPECT_EQ(run(v.client_final, std::nullopt).kind, K::Failure);
  // A hashed credential cannot serve SCRAM.
  Step h = run(v.client_final, StoredCredential{"$6$abc$def", "CRYPT"});
  EXPECT_EQ(h.kind, K::Failure);
  EXPECT_NE(h.reason.find("cannot serve SCRAM-SHA-256"), std::string::npos);
}

TEST(Scram, MalformedClientFirstFails) {
  for (const char* bad : {"", "n,,", "p=tls-unique,,n=user,r=abc", "x,,n=user,r=abc",
                          "n,,m=ext,n=user,r=abc", "n,,n=us=er,r=abc", "n,,n=user",
                          "n,a=other,n=user,r=abc", "n,,n=,r=abc", "n,,n=user,r="}) {
    Scram m("SHA256", false);
    Step s = m.start(std::string_view(bad));
    EXPECT_TRUE(s.kind == K::Failure || (std::string_view(bad).empty() && s.kind == K::Challenge))
        << bad;
  }
  Scram ok("SHA256", false);
  EXPECT_EQ(ok.start(std::string_view("y,a=user,n=user,r=abc")).kind, K::NeedCredential);
}

TEST(Scram, PlaintextCredentialDerivesKeysAndVerifies) {
  Scram m("SHA256", true);
  ScramClient c("SHA256", "bob", "bobpw");
  ASSERT_EQ(m.start(std::string_view(c.client_first())).kind, K::NeedCredential);
  Step s = m.credential(StoredCredential{"bobpw", "PLAIN"});
  ASSERT_EQ(s.kind, K::Challenge);
  auto final_msg = c.client_final(s.challenge);
  ASSERT_TRUE(final_msg);
  s = m.step(*final_msg);
  ASSERT_EQ(s.kind, K::Success);
  EXPECT_TRUE(c.verify_server_final(s.final_data));
}

// The attributes of a server-first message: r, s (decoded), i.
std::map<char, std::string> server_first_attrs(const std::string& m) {
  std::map<char, std::string> out;
  std::size_t start = 0;
  while (start < m.size()) {
    const auto comma = std::min(m.find(',', start), m.size());
    out[m[start]] = m.substr(start + 2, comma - start - 2);
    start = comma + 1;
  }
  if (auto salt = base64_decode(out['s'])) out['s'] = *salt;
  else out['s'] = "(bad base64)";
  return out;
}

// Issue 11, finding 3: the server-first message does not tell whether the
// user exists or what is stored for it.
TEST(Scram, ServerFirstDoesNotTellWhatIsStored) {
  struct Attempt {
    Step first, last;
  };
  auto attempt = [](const std::string& user, const std::string& password,
                    const std::optional<StoredCredential>& cred) {
    Scram m("SHA256", true);
    ScramClient c("SHA256", user, password);
    EXPECT_EQ(m.start(std::string_view(c.client_first())).kind, K::NeedCredential);
    Attempt a{m.credential(cred), {}};
    if (a.first.kind != K::Challenge) return a;
    auto final_msg = c.client_final(a.first.challenge);
    EXPECT_TRUE(final_msg);
    a.last = m.step(final_msg.value_or(""));
    return a;
  };
  // A real verifier with doveadm's iteration count is seen first: from
  // then on it is the deployment's.
  const std::string verifier =
      "{SCRAM-SHA-256}" +
      password::scram_format(password::scram_derive("SHA256", "vera-pw", "0123456789abcdef", 4096));
  Attempt v = attempt("vera", "vera-pw", StoredCredential{verifier, "CRYPT"});
  ASSERT_EQ(v.first.kind, K::Challenge);
  EXPECT_EQ(v.last.kind, K::Success) << v.last.reason;
  EXPECT_EQ(server_first_attrs(v.first.challenge)['i'], "4096");

  const std::string sha1_verifier =
      "{SCRAM-SHA-1}" + password::scram_format(password::scram_derive("SHA1", "pw", "salt", 4096));
  const std::string crypt = password::hash("sha512-crypt", "right");
  const std::string argon = password::hash("argon2id", "right");
  struct Case {
    const char* user;
    std::optional<std::string> stored;  // nullopt: unknown
    const char* reason;                 // of the FAIL with the right password; null: OK
  };
  const Case cases[] = {
      {"nobody", std::nullopt, "unknown user"},
      {"plain", "{PLAIN}right", nullptr},
      {"crypt", crypt, "stored credential cannot serve SCRAM-SHA-256"},
      {"argon", argon, "stored credential cannot serve SCRAM-SHA-256"},
      {"sha1only", sha1_verifier, "stored credential cannot serve SCRAM-SHA-256"},
      {"broken", "{SCRAM-SHA-256}4096,xx", "stored credential cannot serve SCRAM-SHA-256"},
  };
  std::set<std::string> salts;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.user);
    std::optional<StoredCredential> cred;
    if (c.stored) cred = StoredCredential{*c.stored, "CRYPT"};
    Attempt a = attempt(c.user, "right", cred);
    Attempt b = attempt(c.user, "wrong", cred);
    ASSERT_EQ(a.first.kind, K::Challenge) << "no challenge: " << a.first.reason;
    ASSERT_EQ(b.first.kind, K::Challenge) << "no challenge: " << b.first.reason;
    auto fa = server_first_attrs(a.first.challenge);
    auto fb = server_first_attrs(b.first.challenge);
    EXPECT_EQ(fa['s'], fb['s']) << "the same salt on every attempt";
    EXPECT_EQ(fa['s'].size(), 16u);
    EXPECT_EQ(fa['i'], "4096") << "the real verifiers' iteration count";
    EXPECT_EQ(fb['i'], "4096");
    EXPECT_NE(fa['r'], fb['r']);
    salts.insert(fa['s']);
    EXPECT_EQ(b.last.kind, K::Failure);
    if (c.reason == nullptr) {
      EXPECT_EQ(a.last.kind, K::Success) << a.last.reason;
      EXPECT_EQ(b.last.reason, "wrong password");
    } else {
      EXPECT_EQ(a.last.kind, K::Failure);
      EXPECT_EQ(a.last.reason.rfind(c.reason, 0), 0u) << a.last.reason;
      EXPECT_EQ(b.last.reason.rfind(c.reason, 0), 0u) << b.last.reason;
    }
  }
  EXPECT_EQ(salts.size(), std::size(cases)) << "one salt per user";
}

// The salt of a user whose keys the server makes is a keyed MAC of the name:
// the same for the same key, unrelated for another key, user or algorithm.
TEST(Scram, DerivedSaltIsAKeyedMacOfTheUserName) {
  const std::string key(32, 'k');
  ScramShared a(key), b(key), other(std::string(32, 'o'));
  EXPECT_EQ(a.salt_for("SHA256", "alice", 16), b.salt_for("SHA256", "alice", 16));
  EXPECT_EQ(a.salt_for("SHA256", "alice", 16).size(), 16u);
  EXPECT_EQ(a.salt_for("SHA256", "alice", 64).size(), 64u);
  EXPECT_EQ(a.salt_for("SHA256", "alice", 100).size(), 64u);
  EXPECT_NE(a.salt_for("SHA256", "alice", 16), other.salt_for("SHA256", "alice", 16));
  EXPECT_NE(a.salt_for("SHA256", "alice", 16), a.salt_for("SHA256", "alice2", 16));
  EXPECT_NE(a.salt_for("SHA256", "alice", 16), a.salt_for("SHA1", "alice", 16));
  // The process's instance has a random key of its own.
  EXPECT_NE(ScramShared::process()->salt_for("SHA256", "alice", 16), a.salt_for("SHA256", "alice", 16));
  EXPECT_NE(ScramShared().salt_for("SHA256", "alice", 16), ScramShared().salt_for("SHA256", "alice", 16));
  EXPECT_THROW(ScramShared("short"), std::invalid_argument);
}

// Iterations and salt size follow the last real verifier seen, per
// algorithm; a plaintext credential derives its keys with them.
TEST(Scram, DerivedShapeFollowsTheLastVerifier) {
  auto shared = std::make_shared<ScramShared>();
  auto first = [&](const std::string& user, const std::optional<StoredCredential>& cred,
                   const char* algorithm = "SHA256") {
    Scram m(algorithm, true, shared);
    m.start(std::string_view("n,,n=" + user + ",r=abc"));
    Step s = m.credential(cred);
    EXPECT_EQ(s.kind, K::Challenge) << s.reason;
    return server_first_attrs(s.challenge);
  };
  EXPECT_EQ(shared->shape("SHA256").iterations, password::kScramIterations);
  EXPECT_TRUE(shared->decoy_derives("SHA256"));
  auto before = first("nobody", std::nullopt);
  EXPECT_EQ(before['i'], "10000");
  EXPECT_EQ(before['s'].size(), 16u);
  EXPECT_EQ(before['s'], shared->salt_for("SHA256", "nobody", 16));

  const std::string verifier =
      "{SCRAM-SHA-256}" + password::scram_format(password::scram_derive(
                              "SHA256", "pw", "a salt of 24 bytes......", 5000));
  auto real = first("vera", StoredCredential{verifier, "CRYPT"});
  EXPECT_EQ(real['i'], "5000");
  EXPECT_EQ(real['s'], "a salt of 24 bytes......");
  EXPECT_FALSE(shared->decoy_derives("SHA256"));
  auto after = first("nobody", std::nullopt);
  EXPECT_EQ(after['i'], "5000");
  EXPECT_EQ(after['s'].size(), 24u);
  EXPECT_EQ(after['s'].substr(0, 16), before['s']);
  // SCRAM-SHA-1 has its own.
  EXPECT_EQ(first("nobody", std::nullopt, "SHA1")['i'], "10000");

  // Plaintext: derived with that shape, and the client's proof verifies.
  Scram m("SHA256", true, shared);
  ScramClient c("SHA256", "paula", "paula-pw");
  m.start(std::string_view(c.client_first()));
  Step s = m.credential(StoredCredential{"{PLAIN}paula-pw", "CRYPT"});
  ASSERT_EQ(s.kind, K::Challenge);
  auto attrs = server_first_attrs(s.challenge);
  EXPECT_EQ(attrs['i'], "5000");
  EXPECT_EQ(attrs['s'], shared->salt_for("SHA256", "paula", 24));
  EXPECT_TRUE(shared->decoy_derives("SHA256"));
  auto final_msg = c.client_final(s.challenge);
  ASSERT_TRUE(final_msg);
  s = m.step(*final_msg);
  ASSERT_EQ(s.kind, K::Success) << s.reason;
  EXPECT_TRUE(c.verify_server_final(s.final_data));
}

TEST(Mechanisms, RegistryKnowsTheFive) {
  for (const auto& name : supported()) EXPECT_NE(create(name, {}), nullptr) << name;
  EXPECT_EQ(create("DIGEST-MD5", {}), nullptr);
  EXPECT_FALSE(create("PLAIN", {})->needs_credential());
  EXPECT_TRUE(create("SCRAM-SHA-1", {})->needs_credential());
}

}  // namespace
}  // namespace mailauth::sasl
