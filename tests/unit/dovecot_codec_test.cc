#include "protocol/dovecot/connection.h"

#include <gtest/gtest.h>

#include <ostream>

#include "protocol/dovecot/escape.h"

namespace mailauth::dovecot {
namespace {

using Kind = Event::Kind;

std::vector<Event> ready(ServerConnection& c, std::string_view version = "VERSION\t1\t0\n") {
  auto ev = c.feed(std::string(version) + "CPID\t4242\n");
  EXPECT_TRUE(c.handshake_done());
  return ev;
}

TEST(DovecotCodec, HandshakeHasMechBeforeSpidAndEndsWithDone) {
  const std::string h = ServerConnection::handshake(
      {{"PLAIN", mechanism_flags("PLAIN")}, {"SCRAM-SHA-256", mechanism_flags("SCRAM-SHA-256")}},
      77, 3, "00112233445566778899aabbccddeeff");
  EXPECT_EQ(h,
            "VERSION\t1\t2\n"
            "MECH\tPLAIN\tplaintext\n"
            "MECH\tSCRAM-SHA-256\tmutual-auth\n"
            "SPID\t77\n"
            "CUID\t3\n"
            "COOKIE\t00112233445566778899aabbccddeeff\n"
            "DONE\n");
  EXPECT_EQ(mechanism_flags("login"), "plaintext");
  EXPECT_EQ(mechanism_flags("CRAM-MD5"), "dictionary\tactive");
}

// The server finishes a request while later lines of the same read are
// still unparsed: the id is free again for the next AUTH, and an id in
// flight stays refused.  (With all lines parsed up front, finishing the
// first request freed the id the codec had already given to the second.)
TEST(DovecotCodec, NextParsesOneLineAtATimeSoFinishBeforeTheNextLineCounts) {
  ServerConnection c;
  ready(c);
  c.append("AUTH\t1\tPLAIN\tservice=smtp\nAUTH\t1\tPLAIN\tservice=smtp\n"
           "AUTH\t1\tPLAIN\tservice=smtp\n");
  auto first = c.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->kind, Event::Kind::Auth);
  c.finish(1);  // answered before the next line is read
  auto second = c.next();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->kind, Event::Kind::Auth);
  EXPECT_TRUE(c.pending(1));
  auto third = c.next();  // id 1 is in flight again: a protocol violation
  ASSERT_TRUE(third);
  EXPECT_EQ(third->kind, Event::Kind::Fatal);
  EXPECT_FALSE(c.next());
}

TEST(DovecotCodec, PostfixAuthLineParses) {
  // protocols.md B.9.4, byte for byte.
  ServerConnection c;
  EXPECT_TRUE(ready(c).empty());
  auto ev = c.feed(
      "AUTH\t3\tplain\tservice=smtp\tnologin\tlip=192.0.2.10\trip=203.0.113.9\tsecured\t"
      "resp=AGFsaWNlAHMzY3JldA==\n");
  ASSERT_EQ(ev.size(), 1u);
  const Event& e = ev[0];
  EXPECT_EQ(e.kind, Kind::Auth);
  EXPECT_EQ(e.id, 3u);
  EXPECT_EQ(e.mechanism, "PLAIN");  // case-insensitive
  EXPECT_EQ(e.params.service, "smtp");
  EXPECT_EQ(e.params.lip, "192.0.2.10");
  EXPECT_EQ(e.params.rip, "203.0.113.9");
  EXPECT_TRUE(e.params.secured);
  EXPECT_TRUE(e.params.nologin);
  EXPECT_TRUE(e.has_data);
  EXPECT_FALSE(e.bad_base64);
  EXPECT_EQ(e.data.view(), std::string_view("\0alice\0s3cret", 13));
  EXPECT_TRUE(c.pending(3));
  c.finish(3);
  EXPECT_FALSE(c.pending(3));
}

TEST(DovecotCodec, Dovecot24ProtocolParameterAndCrLf) {
  ServerConnection c;
  ready(c, "VERSION\t1\t3\r\n");
  auto ev = c.feed("AUTH\t1\tPLAIN\tprotocol=imap\tfinal-resp-ok\tno-penalty\tresp=AGEAYg==\r\n");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].params.service, "imap");
  EXPECT_TRUE(ev[0].params.final_resp_ok);
  EXPECT_TRUE(ev[0].params.no_penalty);
  EXPECT_EQ(c.minor_version(), 3u);
}

TEST(DovecotCodec, InitialResponseRules) {
  // minor < 2: empty resp= means "no initial response" (Exim); resp== is empty.
  ServerConnection old;
  ready(old, "VERSION\t1\t0\n");
  auto ev = old.feed("AUTH\t1\tPLAIN\tservice=smtp\tresp=\nAUTH\t2\tPLAIN\tservice=smtp\tresp==\n");
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_FALSE(ev[0].has_data);
  EXPECT_TRUE(ev[1].has_data);
  EXPECT_TRUE(ev[1].data.empty());
  // minor >= 2: empty resp= is an empty initial response.
  ServerConnection neu;
  ready(neu, "VERSION\t1\t2\n");
  ev = neu.feed("AUTH\t1\tPLAIN\tservice=smtp\tresp=\n");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_TRUE(ev[0].has_data);
  // Invalid base64 is not fatal: the request fails with invalid_base64.
  ev = neu.feed("AUTH\t2\tPLAIN\tservice=smtp\tresp=!!!\n");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, Kind::Auth);
  EXPECT_TRUE(ev[0].bad_base64);
}

TEST(DovecotCodec, ContinuationsAndCancel) {
  ServerConnection c;
  ready(c);
  c.feed("AUTH\t5\tLOGIN\tservice=smtp\n");
  auto ev = c.feed("CONT\t5\tYWxpY2U=\nCONT\t5\t\nCONT\t99\tAAAA\nCANCEL\t5\n");
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].kind, Kind::Cont);
  EXPECT_EQ(ev[0].data.view(), "alice");
  EXPECT_EQ(ev[1].kind, Kind::Cont);
  EXPECT_TRUE(ev[1].data.empty());
  EXPECT_FALSE(ev[1].unknown_id);
  EXPECT_TRUE(ev[2].unknown_id);
  EXPECT_EQ(ev[3].kind, Kind::Cancel);
  EXPECT_FALSE(c.pending(5));
}

TEST(DovecotCodec, SplitLinesAcrossReads) {
  ServerConnection c;
  EXPECT_TRUE(c.feed("VERS").empty());
  EXPECT_TRUE(c.feed("ION\t1\t0\nCP").empty());
  EXPECT_TRUE(c.feed("ID\t1\nAUTH\t1\tPLAIN\tserv").empty());
  auto ev = c.feed("ice=smtp\n");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, Kind::Auth);
}

struct FatalCase {
  const char* name;
  std::string input;
  const char* error_part;
};

// Printed in test names instead of the struct's raw bytes.
void PrintTo(const FatalCase& c, std::ostream* os) { *os << c.name; }

class DovecotFatal : public ::testing::TestWithParam<FatalCase> {};

TEST_P(DovecotFatal, ClosesWithAReason) {
  ServerConnection c;
  auto ev = c.feed(GetParam().input);
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.back().kind, Kind::Fatal);
  EXPECT_NE(ev.back().error.find(GetParam().error_part), std::string::npos) << ev.back().error;
  EXPECT_TRUE(c.dead());
  EXPECT_TRUE(c.feed("VERSION\t1\t0\n").empty()) << "a dead connection ignores input";
}

const std::string kHello = "VERSION\t1\t0\nCPID\t1\n";

INSTANTIATE_TEST_SUITE_P(
    BadInput, DovecotFatal,
    ::testing::Values(
        FatalCase{"garbage", "GET / HTTP/1.1\n", "invalid VERSION"},
        FatalCase{"major2", "VERSION\t2\t0\n", "major version 2"},
        FatalCase{"nocpid", "VERSION\t1\t0\nAUTH\t1\tPLAIN\tservice=smtp\n", "CPID"},
        FatalCase{"cpid0", "VERSION\t1\t0\nCPID\t0\n", "CPID"},
        FatalCase{"unknown", kHello + "HELLO\n", "unknown command"},
        FatalCase{"id0", kHello + "AUTH\t0\tPLAIN\tservice=smtp\n", "broken AUTH"},
        FatalCase{"idtext", kHello + "AUTH\tx\tPLAIN\tservice=smtp\n", "broken AUTH"},
        FatalCase{"nomech", kHello + "AUTH\t1\n", "broken AUTH"},
        FatalCase{"noservice", kHello + "AUTH\t1\tPLAIN\tresp=AA==\n", "without service"},
        FatalCase{"afterresp", kHello + "AUTH\t1\tPLAIN\tresp=AA==\tservice=smtp\n", "after resp"},
        FatalCase{"reused",
                  kHello + "AUTH\t1\tLOGIN\tservice=smtp\nAUTH\t1\tLOGIN\tservice=smtp\n",
                  "already in use"},
        FatalCase{"badcont", kHello + "CONT\tx\tAA==\n", "broken CONT"},
        FatalCase{"contnotab", kHello + "CONT\t1\n", "broken CONT"},
        FatalCase{"badcancel", kHello + "CANCEL\t0\n", "broken CANCEL"},
        FatalCase{"longline", kHello + "AUTH\t1\tPLAIN\tservice=smtp\tresp=" +
                                  std::string(1 << 20, 'A') + "\n",
                  "longer than 16384"},
        FatalCase{"longnolf", kHello + std::string(20000, 'x'), "longer than 16384"}),
    [](const ::testing::TestParamInfo<FatalCase>& i) { return std::string(i.param.name); });

TEST(DovecotCodec, RepliesAreEscapedAndKeepTheTabOfAnEmptyCont) {
  EXPECT_EQ(cont_line(3, ""), "CONT\t3\t\n");
  EXPECT_EQ(cont_line(5, "Username:"), "CONT\t5\tVXNlcm5hbWU6\n");
  EXPECT_EQ(ok_line(1, "alice"), "OK\t1\tuser=alice\n");
  EXPECT_EQ(ok_line(1, "a\tb", {{"resp", "dj0="}}), "OK\t1\tuser=a\x01tb\tresp=dj0=\n");
  EXPECT_EQ(fail_line(2, {"alice", "", "", false}), "FAIL\t2\tuser=alice\n");
  EXPECT_EQ(fail_line(2, {"alice", "temp_fail", "", true}), "FAIL\t2\tuser=alice\tcode=temp_fail\ttemp\n");
  EXPECT_EQ(fail_line(8, {"", "invalid_base64", "Invalid base64 data in initial response", false}),
            "FAIL\t8\tcode=invalid_base64\treason=Invalid base64 data in initial response\n");
}

TEST(DovecotEscape, RoundTripsEveryByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  const std::string esc = tab_escape(all);
  EXPECT_EQ(esc.find('\t'), std::string::npos);
  EXPECT_EQ(esc.find('\n'), std::string::npos);
  EXPECT_EQ(esc.find('\0'), std::string::npos);
  EXPECT_EQ(tab_unescape(esc), all);
  EXPECT_EQ(tab_unescape("a\x01xb"), "axb");
}

}  // namespace
}  // namespace mailauth::dovecot
