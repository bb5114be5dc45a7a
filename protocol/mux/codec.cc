#include "protocol/mux/codec.h"

#include <algorithm>
#include <stdexcept>

namespace mailauth::mux {

namespace {
void append_counted(std::string& out, std::string_view field) {
  if (field.size() > 0xffff) throw std::length_error("mux field longer than 65535 bytes");
  out += static_cast<char>((field.size() >> 8) & 0xff);
  out += static_cast<char>(field.size() & 0xff);
  out.append(field);
}
}  // namespace

Decoder::~Decoder() { wipe(buffer_.data(), buffer_.size()); }

Decoder::Status Decoder::feed(std::string_view bytes) {
  if (status_ != Status::NeedMore) return status_;
  buffer_.append(bytes);
  return parse();
}

Decoder::Status Decoder::parse() {
  // A complete request: Done, or Failed if a field was too long.
  const auto complete = [this] {
    status_ = error_ == Error::FieldTooLong ? Status::Failed : Status::Done;
  };
  while (status_ == Status::NeedMore) {
    if (skip_ > 0) {
      // Inside an oversized field: its bytes are dropped as they come.
      const std::size_t n = std::min(skip_, buffer_.size() - pos_);
      pos_ += n;
      skip_ -= n;
      if (skip_ > 0) break;
      if (++next_field_ == 5) {
        request_.fields = 5;
        complete();
      }
      continue;
    }
    const std::size_t avail = buffer_.size() - pos_;
    if (next_field_ == 4 && avail == 0) {
      // Four fields and nothing more waiting: a 2.1.28-style request.
      request_.fields = 4;
      complete();
      break;
    }
    if (avail < 2) break;
    const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + pos_);
    const std::size_t len = (static_cast<std::size_t>(p[0]) << 8) | p[1];
    if (len > max_field_) {
      // Refused, but the rest of the request is still read (the field itself
      // skipped, never buffered: at most 64 KiB per field), so that the
      // attempt can be logged with the client's address from field 5.
      if (error_ == Error::None) {
        error_ = Error::FieldTooLong;
        error_field_ = next_field_ + 1;
      }
      pos_ += 2;
      skip_ = len;
      continue;
    }
    if (avail < 2 + len) break;
    std::string_view value(buffer_.data() + pos_ + 2, len);
    switch (next_field_) {
      case 0: request_.login.assign(value); break;
      case 1: request_.password = Secret(value); break;
      case 2: request_.service.assign(value); break;
      case 3: request_.realm.assign(value); break;
      case 4: request_.client_addr.assign(value); break;
    }
    pos_ += 2 + len;
    ++next_field_;
    if (next_field_ == 5) {
      request_.fields = 5;
      complete();
    }
  }
  if (status_ != Status::NeedMore || pos_ > 0) {
    // Wipe consumed bytes (they held the password).
    wipe(buffer_.data(), pos_);
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
  return status_;
}

Decoder::Status Decoder::finish() {
  if (status_ != Status::NeedMore) return status_;
  if (error_ == Error::FieldTooLong) {
    // The peer hung up after (or inside) an oversized field: refused as that.
    status_ = Status::Failed;
    return status_;
  }
  if (next_field_ == 4) {
    // A partial fifth field followed by EOF: the four fields still stand, but a
    // half-sent field means the client is broken; refuse it.
    status_ = Status::Failed;
    error_ = Error::Truncated;
    error_field_ = 5;
    return status_;
  }
  status_ = Status::Failed;
  error_ = (next_field_ == 0 && buffer_.empty()) ? Error::Empty : Error::Truncated;
  error_field_ = next_field_ + 1;
  return status_;
}

std::optional<std::string> check_request(const Request& request) {
  if (request.login.empty()) return std::string("NO NULL login received");
  if (request.password.empty()) return std::string("NO NULL password received");
  return std::nullopt;
}

std::string effective_user(const Request& request, bool join_realm) {
  if (join_realm && !request.realm.empty()) return request.login + "@" + request.realm;
  return request.login;
}

std::string encode_reply(std::string_view text) {
  if (text.size() > 1023) text = text.substr(0, 1023);
  std::string out;
  append_counted(out, text);
  return out;
}

std::string encode_request(std::string_view login, std::string_view password,
                           std::string_view service, std::string_view realm,
                           std::optional<std::string_view> client_addr) {
  std::string out;
  append_counted(out, login);
  append_counted(out, password);
  append_counted(out, service);
  append_counted(out, realm);
  if (client_addr) append_counted(out, *client_addr);
  return out;
}

std::optional<std::string> decode_reply(std::string_view bytes) {
  if (bytes.size() < 2) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t len = (static_cast<std::size_t>(p[0]) << 8) | p[1];
  if (bytes.size() < 2 + len) return std::nullopt;
  return std::string(bytes.substr(2, len));
}

}  // namespace mailauth::mux
