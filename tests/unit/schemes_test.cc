#include "src/password/schemes.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "src/password/scram.h"

namespace mailauth::password {
namespace {

struct Vector {
  std::string tool, stored, right;
  std::vector<std::string> wrong;
  int line = 0;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

std::vector<Vector> load_vectors() {
  std::ifstream in(MAILAUTH_TEST_DATA "/password-vectors.tsv");
  std::vector<Vector> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    auto cols = split(line, '\t');
    if (cols.size() != 4) ADD_FAILURE() << "password-vectors.tsv:" << n << ": expected 4 columns";
    if (cols.size() != 4) continue;
    out.push_back({cols[0], cols[1], cols[2], split(cols[3], '|'), n});
  }
  return out;
}

// Every stored value made by an independent tool (mkpasswd, doveadm pw,
// openssl passwd, the argon2 CLI, python3-argon2) verifies with its right
// password and with none of its wrong ones.
TEST(Schemes, IndependentToolVectorsVerify) {
  const auto vectors = load_vectors();
  ASSERT_GE(vectors.size(), 55u) << "tests/data/password-vectors.tsv is missing or short";
  for (const auto& v : vectors) {
    SCOPED_TRACE("line " + std::to_string(v.line) + ": " + v.tool);
    EXPECT_EQ(verify(v.stored, v.right), Verdict::Match);
    ASSERT_FALSE(v.wrong.empty());
    for (const auto& w : v.wrong) EXPECT_EQ(verify(v.stored, w), Verdict::Mismatch) << "'" << w << "'";
    EXPECT_NE(verify(v.stored, ""), Verdict::Match);
    EXPECT_NE(scheme_of(v.stored), "UNKNOWN");
  }
}

TEST(Schemes, EveryInterfaceSchemeHasAnIndependentVector) {
  const auto vectors = load_vectors();
  std::string all;
  for (const auto& v : vectors) all += v.stored + "\n";
  for (const char* prefix :
       {"$y$", "$gy$", "$7$", "$2b$", "$2y$", "$2a$", "$6$", "$5$", "$1$", "$argon2id$",
        "$argon2i$", "{PLAIN}", "{CLEAR}", "{CRYPT}", "{MD5-CRYPT}", "{SHA256-CRYPT}",
        "{SHA512-CRYPT}", "{BLF-CRYPT}", "{ARGON2I}", "{ARGON2ID}", "{SSHA}", "{SSHA256}",
        "{SSHA512}", "{SHA}", "{SHA256}", "{SHA512}", "{PLAIN-MD5}", "{MD5}", "{CRAM-MD5}",
        "{SCRAM-SHA-1}", "{SCRAM-SHA-256}", "{DES-CRYPT}", "_J9"})
    EXPECT_NE(all.find(prefix), std::string::npos) << prefix;
}

TEST(Schemes, SchemeNamesAndSuffixesAreCaseInsensitive) {
  EXPECT_EQ(verify("{plain}s3cret", "s3cret"), Verdict::Match);
  EXPECT_EQ(verify("{sha256.hex}1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0",
                   "s3cret"),
            Verdict::Match);
  EXPECT_EQ(verify("{Sha}/vNB+F2HQ559kaLUZbmHHvZrXpg=", "s3cret"), Verdict::Match);
}

TEST(Schemes, UnknownOrMalformedStoredValuesNeverMatch) {
  for (const char* stored :
       {"", "{NOPE}s3cret", "{SHA256.ZIP}abc", "{SHA256}not-base64!", "{SHA256}AAAA",
        "{SSHA}AAAA", "{CRAM-MD5}abcd", "{SCRAM-SHA-256}4096,abc", "{SCRAM-SHA-256}100,AAAA,AAAA,AAAA",
        "{PBKDF2}$1$salt$0$00", "$argon2id$v=19$m=65536$bad", "$9$whatever", "!", "*",
        "!$6$abc$def", "*LK*", "{CRYPT}", "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$AAAA"}) {
    EXPECT_EQ(verify(stored, "s3cret"), Verdict::Invalid) << stored;
    EXPECT_EQ(verify(stored, ""), Verdict::Invalid) << stored;
  }
  // Truncated crypt strings: libxcrypt computes something, which never equals
  // the stored value.
  for (const char* stored : {"$6$", "$5$abc", "$y$j9T$", "$2b$05$", "ab"})
    EXPECT_NE(verify(stored, "s3cret"), Verdict::Match) << stored;
}

TEST(Schemes, DefaultSchemePlainReadsBareValuesAsPasswords) {
  EXPECT_EQ(verify("s3cret", "s3cret", "PLAIN"), Verdict::Match);
  EXPECT_EQ(verify("s3cret", "s3creT", "PLAIN"), Verdict::Mismatch);
  // With the default CRYPT a bare word is not a crypt string, so never a match.
  EXPECT_NE(verify("s3cret", "s3cret"), Verdict::Match);
  // A {SCHEME} prefix still wins over the default.
  EXPECT_EQ(verify("{PLAIN}x", "x", "PLAIN"), Verdict::Match);
}

TEST(Schemes, PlainTruncMatchesOnTheStoredLength) {
  EXPECT_EQ(verify("{PLAIN-TRUNC}6-s3cret", "s3cret-and-more"), Verdict::Match);
  EXPECT_EQ(verify("{PLAIN-TRUNC}6-s3cret", "s3cre"), Verdict::Mismatch);
  EXPECT_EQ(verify("{PLAIN-TRUNC}s3cret", "s3cret"), Verdict::Match);
}

TEST(Schemes, PasswordsWithNulNeverMatchCryptStrings) {
  const std::string h = hash("sha512-crypt", "abc");
  EXPECT_EQ(verify(h, "abc"), Verdict::Match);
  EXPECT_EQ(verify(h, std::string("abc\0def", 7)), Verdict::Mismatch);
}

TEST(Schemes, EveryHashSchemeRoundTrips) {
  for (const auto& scheme : hash_schemes()) {
    SCOPED_TRACE(scheme);
    const std::string h = hash(scheme, "correct horse");
    EXPECT_EQ(verify(h, "correct horse"), Verdict::Match);
    EXPECT_EQ(verify(h, "correct horsE"), Verdict::Mismatch);
    if (scheme != "plain" && scheme != "cram-md5") {
      EXPECT_NE(hash(scheme, "correct horse"), h) << "salted schemes must differ each time";
    }
    // The Dovecot-prefixed form verifies too.
    EXPECT_EQ(verify(with_dovecot_prefix(h), "correct horse"), Verdict::Match);
  }
}

TEST(Schemes, HashSchemesNamedByTheInterfaceExist) {
  for (const char* s : {"argon2id", "yescrypt", "bcrypt", "sha512-crypt", "sha256-crypt",
                        "scram-sha-256"})
    EXPECT_NO_THROW(hash(s, "x")) << s;
  EXPECT_THROW(hash("rot13", "x"), std::invalid_argument);
  EXPECT_EQ(hash("argon2id", "x").rfind("$argon2id$v=19$", 0), 0u);
  EXPECT_EQ(hash("yescrypt", "x").rfind("$y$", 0), 0u);
  EXPECT_EQ(hash("bcrypt", "x").rfind("$2b$", 0), 0u);
  EXPECT_EQ(hash("scram-sha-256", "x").rfind("{SCRAM-SHA-256}10000,", 0), 0u);
}

TEST(Schemes, WithDovecotPrefix) {
  EXPECT_EQ(with_dovecot_prefix("$y$abc"), "{CRYPT}$y$abc");
  EXPECT_EQ(with_dovecot_prefix("$argon2id$v=19$x"), "{ARGON2ID}$argon2id$v=19$x");
  EXPECT_EQ(with_dovecot_prefix("{SSHA512}x"), "{SSHA512}x");
}

TEST(Schemes, PlaintextOnlyComesFromPlainForms) {
  EXPECT_EQ(plaintext_of("{PLAIN}s3cret")->view(), "s3cret");
  EXPECT_EQ(plaintext_of("{PLAIN.B64}czNjcmV0")->view(), "s3cret");
  EXPECT_EQ(plaintext_of("{CLEAR.HEX}733363726574")->view(), "s3cret");
  EXPECT_EQ(plaintext_of("s3cret", "PLAIN")->view(), "s3cret");
  EXPECT_FALSE(plaintext_of("s3cret"));
  EXPECT_FALSE(plaintext_of("{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg="));
  EXPECT_FALSE(plaintext_of("$6$abc$def"));
}

TEST(Schemes, SchemeOfNamesWithoutRevealingTheHash) {
  EXPECT_EQ(scheme_of("$y$j9T$abc$def"), "YESCRYPT");
  EXPECT_EQ(scheme_of("{SSHA512}abc"), "SSHA512");
  EXPECT_EQ(scheme_of("{WHAT}abc"), "UNKNOWN");
  EXPECT_EQ(scheme_of("abc", "PLAIN"), "PLAIN");
}

TEST(Schemes, ScramKeysMatchDovecotsStoredForm) {
  // doveadm pw -s SCRAM-SHA-256 -p s3cret (from the vectors file): deriving
  // with the same salt and count must give the same StoredKey and ServerKey.
  const auto vectors = load_vectors();
  std::string stored;
  for (const auto& v : vectors)
    if (v.tool == "doveadm pw -s SCRAM-SHA-256") stored = v.stored;
  ASSERT_EQ(stored.rfind("{SCRAM-SHA-256}4096,", 0), 0u);
  auto keys = scram_parse("SHA256", stored.substr(15));
  ASSERT_TRUE(keys);
  EXPECT_EQ(keys->iterations, 4096u);
  ScramKeys derived = scram_derive("SHA256", "s3cret", keys->salt, keys->iterations);
  EXPECT_EQ(scram_format(derived), stored.substr(15));
}

}  // namespace
}  // namespace mailauth::password
