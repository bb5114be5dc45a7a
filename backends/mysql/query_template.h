// Query templates (interface.md) turned into prepared statements.
//
// A template is SQL with escapes that stand for request values:
//
//   %u  the user as given (after realm joining)      %h  the new stored credential (writes)
//   %n  its local part (before the last '@')         %N  the display name (writes)
//   %d  its domain part (after the last '@'; empty)  %e  1 or 0: enabled (writes)
//   %r  the realm the client sent                    %o  the old stored credential, as the
//   %s  the service ("smtp", "imap", …)                  lookup returned it (rehash only)
//   %%  a literal percent sign
//
// Every escape becomes one `?` parameter marker of a prepared statement and
// its value is bound, never pasted into the SQL text.  Templates written for
// saslauthd, pam_mysql, Dovecot or Postfix quote their escapes, because
// those paste values into the text: `WHERE id = '%u'`.  The quotes are part of
// the template's meaning there, not of ours, so a string literal that is just
// one escape becomes a bare marker (`'%u'` → `?`), and a literal that mixes
// text and escapes becomes a CONCAT of its pieces (`'%n@%d'` →
// `CONCAT(?, '@', ?)`), which is what pasting would have produced.
//
// Pure code: no database, no MariaDB headers.  Thread-safe (no state).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace mailauth::backend::mysql {

// A translated template: the statement text and, for each `?` in order, the
// escape letter whose value is bound there.
struct Template {
  std::string source;  // the template as configured (for messages)
  std::string sql;     // the statement to prepare
  std::string params;  // one escape letter per marker: "u", "nd", …
  bool uses(char escape) const { return params.find(escape) != std::string::npos; }
};

// Thrown by translate(); the message says what is wrong but not which
// configuration key (the caller knows that and adds it).
class TemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// All escapes a template may contain, in the order of the table above.
inline constexpr std::string_view kAllEscapes = "undrshNeo";

// Translate `text`.  `allowed` lists the escape letters this statement may
// use (e.g. "undrs" for a lookup); any other escape, a lone '%' at the end,
// a '?' marker written by hand, an escape inside a `quoted identifier` or an
// unterminated string literal is a TemplateError.
Template translate(std::string_view text, std::string_view allowed);

// The values escapes stand for in one execution.
struct Values {
  std::string_view user;     // %u
  std::string_view local;    // %n
  std::string_view domain;   // %d
  std::string_view realm;    // %r
  std::string_view service;  // %s
  std::string_view stored;   // %h
  std::string_view name;     // %N
  bool enabled = true;       // %e
  std::string_view old;      // %o

  // %u, %n and %d from a user name: split at the last '@' (a domain never
  // contains one); without '@', %n is the whole name and %d is empty.
  static Values for_user(std::string_view user);
  std::string_view operator[](char escape) const;
};

// True when `s` is well-formed UTF-8 (NUL bytes are well-formed).
bool valid_utf8(std::string_view s);

}  // namespace mailauth::backend::mysql
