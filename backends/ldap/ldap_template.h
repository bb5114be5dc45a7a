// LDAP filter and DN templates, and the escaping that keeps a user name data.
//
// A template is text with escapes that stand for request values:
//
//   %u  the user as the chain asks for it (login, or login@realm)
//   %n  its local part (before the last '@'; the whole name without one)
//   %d  its domain (after the last '@'; empty without one), as in the
//       mysql backend's templates and saslauthd's %d (with saslauthd -r, or
//       join_realm, the realm is part of the name)
//   %r  the realm the client sent       %s  the service ("smtp", "imap", …)
//   %%  a literal percent sign
//
// Every value is escaped for where it goes, when the template is expanded:
// in a search filter per RFC 4515 (escape_filter_value), in a DN per RFC 4514
// (escape_dn_value).  A name such as `*)(uid=*`, `\`, a NUL byte or
// `alice,ou=admins` is then one attribute value: it cannot widen a search,
// add a filter term or build another DN.  The template's own text is the
// operator's and is used as written.
//
// Pure code: no libldap.  Thread-safe (no state).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mailauth::backend::ldap {

// RFC 4515 section 3: '*', '(', ')', '\' and NUL must be written as \XX.
// Every other byte outside printable ASCII is escaped too, so any byte string
// (also one that is not UTF-8) is a well-formed assertion value.
std::string escape_filter_value(std::string_view value);

// RFC 4514 section 2.4: '"', '+', ',', ';', '<', '>', '\', NUL, a leading
// space or '#' and a trailing space are escaped; so are '=' and every byte
// outside printable ASCII (as \XX, which RFC 4514 allows for any byte).
std::string escape_dn_value(std::string_view value);

// The values escapes stand for in one expansion.
struct Values {
  std::string_view user;     // %u
  std::string_view local;    // %n
  std::string_view domain;   // %d
  std::string_view realm;    // %r
  std::string_view service;  // %s

  // %u, %n and %d from a name, and %r: split at the last '@'; without one,
  // %n is the whole name and %d is empty.
  static Values for_user(std::string_view user, std::string_view realm);
  std::string_view operator[](char escape) const;
};

class TemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Template {
 public:
  enum class Kind { Filter, Dn };

  Template() = default;
  // Parse `text`.  An escape other than %u %n %d %r %s %%, or a lone '%' at the
  // end, is a TemplateError (the message names it).  A filter must start with
  // '(' and have balanced parentheses; a DN template must name an attribute
  // value (contain '=').
  static Template parse(std::string_view text, Kind kind);

  std::string expand(const Values& values) const;
  bool uses(char escape) const;
  bool empty() const { return source_.empty(); }
  const std::string& source() const { return source_; }
  Kind kind() const { return kind_; }

 private:
  struct Piece {
    std::string text;  // literal text, when escape == 0
    char escape = 0;
  };
  std::string source_;
  Kind kind_ = Kind::Filter;
  std::vector<Piece> pieces_;
};

}  // namespace mailauth::backend::ldap
