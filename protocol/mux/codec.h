// The saslauthd "mux" protocol (protocols.md, part A) as a pure codec:
// bytes in, a request or an error out; a reply text in, bytes out.  No
// sockets here, so every framing rule is unit-tested and fuzzable.
//
// Request: counted strings, each a 2-byte big-endian length and that many
// bytes: login, password, service, realm, and, from newer libsasl2 clients,
// a fifth field with the client address ("ADDR;PORT").  Reply: one counted
// string starting with "OK" or "NO".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "src/util/secret.h"

namespace mailauth::mux {

struct Request {
  std::string login;
  Secret password;
  std::string service;
  std::string realm;
  std::string client_addr;  // field 5, empty when absent
  int fields = 0;           // 4 or 5
};

// Why a request could not be decoded.
enum class Error {
  None,
  FieldTooLong,  // a length above the limit: reply "NO " and close (saslauthd does the same),
                 // once the rest of the request is read (the field's bytes skipped)
  Truncated,     // the peer closed in the middle of a request: close without a reply
  Empty,         // the peer closed before sending anything: close quietly
};

class Decoder {
 public:
  enum class Status { NeedMore, Done, Failed };

  explicit Decoder(std::size_t max_field = 1024) : max_field_(max_field) {}
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;
  ~Decoder();

  // Append bytes read from the socket.  Done once four fields are complete and
  // nothing more is buffered, or once the fifth field is complete as well: a
  // fifth field is read only when its bytes are already here, never waited
  // for (a 2.1.28 client sends four fields and waits for the reply).
  Status feed(std::string_view bytes);
  // The peer closed its side.  Done if the buffered bytes make a request.
  Status finish();

  Status status() const { return status_; }
  Error error() const { return error_; }
  // Which field (1-based) the error concerns, for the log line.
  int error_field() const { return error_field_; }
  // Bytes buffered beyond a completed request (ignored by the server).
  std::size_t buffered() const { return buffer_.size() - pos_; }

  // The decoded request; valid once status() is Done.  After FieldTooLong,
  // the fields that were within the limit (the others empty), for the log.
  Request& request() { return request_; }

 private:
  Status parse();
  std::size_t max_field_;
  std::string buffer_;
  std::size_t pos_ = 0;
  int next_field_ = 0;
  std::size_t skip_ = 0;  // bytes of an oversized field still to drop
  Status status_ = Status::NeedMore;
  Error error_ = Error::None;
  int error_field_ = 0;
  Request request_;
};

// The reply to send for a decoded request that the backends need not see:
// "NO NULL login received" / "NO NULL password received", as saslauthd does,
// or nullopt when the request is well-formed.
std::optional<std::string> check_request(const Request& request);

// "login@realm" when join_realm is set and the realm is non-empty (saslauthd -r).
std::string effective_user(const Request& request, bool join_realm);

// Encode a reply ("OK", "NO reason") as a counted string.  Text is cut to
// 1023 bytes, the most a libsasl2 client reads.
std::string encode_reply(std::string_view text);

// Client side: encode a request, decode a reply.
std::string encode_request(std::string_view login, std::string_view password,
                           std::string_view service, std::string_view realm,
                           std::optional<std::string_view> client_addr = std::nullopt);
// Decodes one counted string; nullopt if `bytes` does not hold one complete
// reply.
std::optional<std::string> decode_reply(std::string_view bytes);

}  // namespace mailauth::mux
