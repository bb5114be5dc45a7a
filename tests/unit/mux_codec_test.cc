#include "protocol/mux/codec.h"

#include <gtest/gtest.h>

namespace mailauth::mux {
namespace {

std::string counted(std::string_view s) {
  std::string out;
  out += static_cast<char>(s.size() >> 8);
  out += static_cast<char>(s.size() & 0xff);
  out += s;
  return out;
}

TEST(MuxCodec, DecodesFourFieldRequestLikeTheProtocolsExample) {
  // protocols.md A.3: alice / s3cret / smtp / example.com, byte for byte.
  const std::string wire =
      std::string("\x00\x05" "alice" "\x00\x06" "s3cret" "\x00\x04" "smtp"
                  "\x00\x0b" "example.com", 2 + 5 + 2 + 6 + 2 + 4 + 2 + 11);
  Decoder d;
  ASSERT_EQ(d.feed(wire), Decoder::Status::Done);
  EXPECT_EQ(d.request().login, "alice");
  EXPECT_EQ(d.request().password.view(), "s3cret");
  EXPECT_EQ(d.request().service, "smtp");
  EXPECT_EQ(d.request().realm, "example.com");
  EXPECT_EQ(d.request().client_addr, "");
  EXPECT_EQ(d.request().fields, 4);
  EXPECT_EQ(encode_request("alice", "s3cret", "smtp", "example.com"), wire);
}

TEST(MuxCodec, DecodesFiveFieldRequestWithClientAddress) {
  const std::string wire = encode_request("alice", "pw", "smtp", "", "192.0.2.1;1234");
  Decoder d;
  ASSERT_EQ(d.feed(wire), Decoder::Status::Done);
  EXPECT_EQ(d.request().fields, 5);
  EXPECT_EQ(d.request().client_addr, "192.0.2.1;1234");
  EXPECT_EQ(d.request().realm, "");
}

TEST(MuxCodec, ByteByByteFeedingNeedsMoreUntilTheLastByte) {
  const std::string wire = encode_request("bob", "hunter2", "imap", "realm");
  Decoder d;
  for (std::size_t i = 0; i + 1 < wire.size(); ++i)
    ASSERT_EQ(d.feed(wire.substr(i, 1)), Decoder::Status::NeedMore) << "at byte " << i;
  ASSERT_EQ(d.feed(wire.substr(wire.size() - 1)), Decoder::Status::Done);
  EXPECT_EQ(d.request().login, "bob");
  EXPECT_EQ(d.request().password.view(), "hunter2");
  EXPECT_EQ(d.request().fields, 4);
}

TEST(MuxCodec, TruncatedRequestFailsAsTruncatedOnEof) {
  const std::string wire = encode_request("bob", "hunter2", "imap", "realm");
  for (std::size_t cut : {1u, 2u, 5u, 7u, 12u}) {
    Decoder d;
    ASSERT_EQ(d.feed(wire.substr(0, cut)), Decoder::Status::NeedMore);
    EXPECT_EQ(d.finish(), Decoder::Status::Failed);
    EXPECT_EQ(d.error(), Error::Truncated) << "cut at " << cut;
  }
}

TEST(MuxCodec, PartialFifthFieldThenEofIsTruncated) {
  std::string wire = encode_request("bob", "pw", "imap", "") + std::string("\x00\x0e" "192.0", 7);
  Decoder d;
  ASSERT_EQ(d.feed(wire), Decoder::Status::NeedMore);
  EXPECT_EQ(d.finish(), Decoder::Status::Failed);
  EXPECT_EQ(d.error(), Error::Truncated);
  EXPECT_EQ(d.error_field(), 5);
}

TEST(MuxCodec, EmptyConnectionIsEmptyNotTruncated) {
  Decoder d;
  EXPECT_EQ(d.finish(), Decoder::Status::Failed);
  EXPECT_EQ(d.error(), Error::Empty);
}

TEST(MuxCodec, OversizedFieldIsSkippedAndTheRestOfTheRequestStillRead) {
  Decoder d(256);
  // Login of 256 bytes is allowed (saslauthd's own limit is inclusive) ...
  std::string ok = counted(std::string(256, 'a'));
  EXPECT_EQ(d.feed(ok), Decoder::Status::NeedMore);
  // ... a 257-byte password is refused: its bytes are skipped, never kept,
  // and the fields after it are read, so that the attempt can be logged with
  // the client's address (fail2ban).
  EXPECT_EQ(d.feed(std::string("\x01\x01", 2)), Decoder::Status::NeedMore);
  for (int i = 0; i < 257; ++i) EXPECT_EQ(d.feed("p"), Decoder::Status::NeedMore);
  EXPECT_EQ(d.buffered(), 0u) << "the skipped field's bytes are not buffered";
  EXPECT_EQ(d.feed(counted("smtp") + counted("example.com") + counted("192.0.2.1;25")),
            Decoder::Status::Failed);
  EXPECT_EQ(d.error(), Error::FieldTooLong);
  EXPECT_EQ(d.error_field(), 2);
  EXPECT_EQ(d.request().login, std::string(256, 'a'));
  EXPECT_TRUE(d.request().password.empty());
  EXPECT_EQ(d.request().service, "smtp");
  EXPECT_EQ(d.request().realm, "example.com");
  EXPECT_EQ(d.request().client_addr, "192.0.2.1;25");
}

TEST(MuxCodec, OversizedFieldInAFourFieldRequestAndAtEof) {
  {
    Decoder d(16);
    EXPECT_EQ(d.feed(counted(std::string(17, 'u')) + counted("pw") + counted("smtp") + counted("")),
              Decoder::Status::Failed);
    EXPECT_EQ(d.error(), Error::FieldTooLong);
    EXPECT_EQ(d.error_field(), 1);
    EXPECT_EQ(d.request().login, "");
    EXPECT_EQ(d.request().service, "smtp");
    EXPECT_EQ(d.request().client_addr, "");
  }
  {
    // Two oversized fields: the first one is reported.
    Decoder d(16);
    EXPECT_EQ(d.feed(counted("alice") + counted(std::string(17, 'p')) + counted(std::string(20, 's')) +
                     counted("") + counted(std::string(17, '9'))),
              Decoder::Status::Failed);
    EXPECT_EQ(d.error_field(), 2);
    EXPECT_EQ(d.request().login, "alice");
    EXPECT_EQ(d.request().client_addr, "");
  }
  {
    // The peer hangs up inside the skipped bytes: still refused as too long.
    Decoder d(16);
    EXPECT_EQ(d.feed(counted("alice") + std::string("\xff\xff", 2) + "ppp"), Decoder::Status::NeedMore);
    EXPECT_EQ(d.finish(), Decoder::Status::Failed);
    EXPECT_EQ(d.error(), Error::FieldTooLong);
    EXPECT_EQ(d.error_field(), 2);
    EXPECT_EQ(d.request().login, "alice");
  }
}

TEST(MuxCodec, MaximumLengthFieldIsRefusedAtDefaultLimit) {
  Decoder d;  // default 1024
  EXPECT_EQ(d.feed(std::string("\xff\xff", 2)), Decoder::Status::NeedMore);
  EXPECT_EQ(d.feed(std::string(0xffff, 'x')), Decoder::Status::NeedMore);
  EXPECT_EQ(d.buffered(), 0u);
  EXPECT_EQ(d.finish(), Decoder::Status::Failed);
  EXPECT_EQ(d.error(), Error::FieldTooLong);
  EXPECT_EQ(d.error_field(), 1);
}

TEST(MuxCodec, ZeroLengthFieldsDecodeAndAreRefusedByCheck) {
  {
    Decoder d;
    ASSERT_EQ(d.feed(encode_request("", "pw", "smtp", "")), Decoder::Status::Done);
    EXPECT_EQ(check_request(d.request()), "NO NULL login received");
  }
  {
    Decoder d;
    ASSERT_EQ(d.feed(encode_request("alice", "", "smtp", "")), Decoder::Status::Done);
    EXPECT_EQ(check_request(d.request()), "NO NULL password received");
  }
  {
    Decoder d;
    ASSERT_EQ(d.feed(encode_request("alice", "pw", "", "")), Decoder::Status::Done);
    EXPECT_EQ(check_request(d.request()), std::nullopt);
    EXPECT_EQ(d.request().service, "");
  }
  {
    // All four lengths zero: the smallest well-formed frame.
    Decoder d;
    ASSERT_EQ(d.feed(std::string(8, '\0')), Decoder::Status::Done);
    EXPECT_EQ(check_request(d.request()), "NO NULL login received");
  }
}

TEST(MuxCodec, BytesAfterTheFifthFieldAreLeftBuffered) {
  std::string wire = encode_request("a", "b", "c", "d", "e") + "junk";
  Decoder d;
  ASSERT_EQ(d.feed(wire), Decoder::Status::Done);
  EXPECT_EQ(d.buffered(), 4u);
  EXPECT_EQ(d.request().client_addr, "e");
}

TEST(MuxCodec, FeedAfterDoneIsIgnored) {
  Decoder d;
  ASSERT_EQ(d.feed(encode_request("a", "b", "c", "d", "e")), Decoder::Status::Done);
  EXPECT_EQ(d.feed("more"), Decoder::Status::Done);
  EXPECT_EQ(d.request().login, "a");
}

TEST(MuxCodec, EffectiveUserJoinsRealmOnlyWhenAskedAndNonEmpty) {
  Decoder d;
  ASSERT_EQ(d.feed(encode_request("john", "pw", "smtp", "example.com")), Decoder::Status::Done);
  EXPECT_EQ(effective_user(d.request(), false), "john");
  EXPECT_EQ(effective_user(d.request(), true), "john@example.com");
  Decoder e;
  ASSERT_EQ(e.feed(encode_request("john", "pw", "smtp", "")), Decoder::Status::Done);
  EXPECT_EQ(effective_user(e.request(), true), "john");
}

TEST(MuxCodec, RepliesAreCountedStrings) {
  EXPECT_EQ(encode_reply("OK"), std::string("\x00\x02OK", 4));
  EXPECT_EQ(encode_reply("NO "), std::string("\x00\x03NO ", 5));
  EXPECT_EQ(encode_reply(std::string(5000, 'x')).size(), 2u + 1023u);
  EXPECT_EQ(decode_reply(std::string("\x00\x02OK", 4)), "OK");
  EXPECT_EQ(decode_reply(std::string("\x00\x05NO", 4)), std::nullopt);
  EXPECT_EQ(decode_reply(std::string("\x00", 1)), std::nullopt);
}

}  // namespace
}  // namespace mailauth::mux
