// The server side of Dovecot's authentication client protocol (protocols.md
// part B) as a pure state machine: bytes in, events out; replies encoded by
// the functions below.  No sockets, no threads, no backends.
//
//   S: VERSION 1 2, MECH …, SPID, CUID, COOKIE, DONE   (handshake(), sent on accept)
//   C: VERSION 1 <minor>, CPID <pid>
//   C: AUTH <id> <MECH> service=… [params] [resp=<base64>]  -> Event::Auth
//   C: CONT <id> <base64>                                  -> Event::Cont
//   C: CANCEL <id>                                         -> Event::Cancel
//   S: CONT / OK user=… / FAIL                             (cont_line, ok_line, fail_line)
//
// A protocol violation produces one Event::Fatal with the reason; the caller
// logs it and closes the connection.  Several requests may be in flight; the
// caller reports the end of each with finish().
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/util/secret.h"

namespace mailauth::dovecot {

inline constexpr std::size_t kMaxLineLength = 16384;

struct Mechanism {
  std::string name;   // upper case: "PLAIN", "SCRAM-SHA-256"
  std::string flags;  // tab-separated: "plaintext", "dictionary\tactive", "mutual-auth"
};

// The security flags Dovecot advertises for a mechanism (Postfix filters on
// them, so they must be truthful).
std::string mechanism_flags(std::string_view name);

struct AuthParams {
  std::string service;  // service= (2.3) or protocol= (2.4)
  std::string rip, lip, rport, lport, session;
  bool secured = false;
  bool no_penalty = false;
  bool final_resp_ok = false;
  bool nologin = false;
};

struct Event {
  enum class Kind { Auth, Cont, Cancel, Fatal };
  Kind kind = Kind::Fatal;
  std::uint32_t id = 0;
  std::string mechanism;           // Auth: upper-cased
  AuthParams params;               // Auth
  bool has_data = false;           // Auth: an initial response was given; Cont: always
  bool bad_base64 = false;         // the data was not valid base64
  bool unknown_id = false;         // Cont: no request with that id is in flight
  Secret data;                     // decoded initial response / continuation
  std::string error;               // Fatal: what the client did wrong
};

class ServerConnection {
 public:
  explicit ServerConnection(std::size_t max_line = kMaxLineLength) : max_line_(max_line) {}

  // The server's greeting, sent at once on accept (Dovecot 2.3 order: MECH
  // lines before SPID, which Postfix relies on).
  static std::string handshake(const std::vector<Mechanism>& mechanisms, std::uint32_t pid,
                               std::uint64_t cuid, std::string_view cookie_hex);

  // Append bytes from the socket; then take the events one at a time with
  // next().  A line is parsed only when next() reaches it, so everything the
  // caller did with the events before it (finish() of an id, a CANCEL) is
  // already known: the set of ids in flight never runs ahead of the caller.
  // After a Fatal event, further input is ignored.
  void append(std::string_view bytes);
  // The event of the next complete line that has one, or nothing.
  std::optional<Event> next();
  // append() and every next(): for callers that do not finish() ids
  // between events (tests, fuzzing).
  std::vector<Event> feed(std::string_view bytes);

  // The request is over (OK, FAIL or dropped): its id may be reused.
  void finish(std::uint32_t id) { pending_.erase(id); }
  bool pending(std::uint32_t id) const { return pending_.count(id) > 0; }
  std::size_t pending_count() const { return pending_.size(); }
  unsigned minor_version() const { return minor_; }
  bool dead() const { return state_ == State::Dead; }
  bool handshake_done() const { return state_ == State::Ready; }

 private:
  enum class State { AwaitVersion, AwaitCpid, Ready, Dead };
  void line(std::string_view l, std::vector<Event>& out);
  void fatal(std::string reason, std::vector<Event>& out);
  void auth(const std::vector<std::string_view>& args, std::vector<Event>& out);
  void cont(const std::vector<std::string_view>& args, std::vector<Event>& out);

  std::size_t max_line_;
  std::string buffer_;
  State state_ = State::AwaitVersion;
  unsigned minor_ = 0;
  std::set<std::uint32_t> pending_;
};

// Replies.  Values are tab-escaped; lines end in a bare LF.
std::string cont_line(std::uint32_t id, std::string_view challenge);  // challenge: raw bytes
std::string ok_line(std::uint32_t id, std::string_view user,
                    const std::vector<std::pair<std::string, std::string>>& extra = {});
struct FailFields {
  std::string user;    // omitted when empty
  std::string code;    // "temp_fail", "invalid_base64", …; omitted when empty
  std::string reason;  // omitted when empty
  bool temp = false;   // the pre-2.3 bare "temp" flag, for old clients
};
std::string fail_line(std::uint32_t id, const FailFields& fields);

}  // namespace mailauth::dovecot
