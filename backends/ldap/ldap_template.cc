#include "backends/ldap/ldap_template.h"

namespace mailauth::backend::ldap {

namespace {

constexpr char kHex[] = "0123456789abcdef";

void hex_escape(std::string& out, unsigned char c) {
  out += '\\';
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

bool printable(unsigned char c) { return c >= 0x20 && c < 0x7f; }

}  // namespace

std::string escape_filter_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (!printable(c) || c == '*' || c == '(' || c == ')' || c == '\\')
      hex_escape(out, c);
    else
      out += ch;
  }
  return out;
}

std::string escape_dn_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    const bool special = c == '"' || c == '+' || c == ',' || c == ';' || c == '<' || c == '>' ||
                         c == '\\' || c == '=';
    const bool edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.size() && c == ' ');
    if (!printable(c) || special || edge)
      hex_escape(out, c);
    else
      out += value[i];
  }
  return out;
}

Values Values::for_user(std::string_view user, std::string_view realm) {
  Values v;
  v.user = user;
  v.realm = realm;
  const auto at = user.rfind('@');
  if (at == std::string_view::npos) {
    v.local = user;
  } else {
    v.local = user.substr(0, at);
    v.domain = user.substr(at + 1);
  }
  return v;
}

std::string_view Values::operator[](char escape) const {
  switch (escape) {
    case 'u': return user;
    case 'n': return local;
    case 'd': return domain;
    case 'r': return realm;
    case 's': return service;
    default: return {};
  }
}

Template Template::parse(std::string_view text, Kind kind) {
  Template t;
  t.source_ = std::string(text);
  t.kind_ = kind;
  std::string literal;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      literal += text[i];
      continue;
    }
    if (i + 1 == text.size()) throw TemplateError("ends with a lone '%' (write %% for a percent sign)");
    const char e = text[++i];
    if (e == '%') {
      literal += '%';
      continue;
    }
    if (e != 'u' && e != 'n' && e != 'd' && e != 'r' && e != 's')
      throw TemplateError(std::string("unknown escape %") + e +
                          " (known: %u user, %n local part, %d domain, %r realm, %s service, %% "
                          "a percent sign)");
    if (!literal.empty()) t.pieces_.push_back({std::move(literal), 0});
    literal.clear();
    t.pieces_.push_back({{}, e});
  }
  if (!literal.empty()) t.pieces_.push_back({std::move(literal), 0});

  if (kind == Kind::Filter) {
    if (text.empty() || text.front() != '(' || text.back() != ')')
      throw TemplateError("a filter must be enclosed in parentheses, e.g. \"(mail=%u)\"");
    int depth = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\\') {
        ++i;  // an escaped byte of the operator's own text
        continue;
      }
      if (text[i] == '(') ++depth;
      if (text[i] == ')' && --depth < 0) break;
      if (depth == 0 && i + 1 < text.size())
        throw TemplateError("a filter must be one parenthesised expression, e.g. \"(&(a=1)(b=2))\"");
    }
    if (depth != 0) throw TemplateError("unbalanced parentheses");
  } else if (text.find('=') == std::string_view::npos) {
    throw TemplateError("a DN template must name an entry, e.g. \"uid=%n,ou=people,dc=example,dc=com\"");
  }
  return t;
}

std::string Template::expand(const Values& values) const {
  std::string out;
  for (const auto& p : pieces_) {
    if (p.escape == 0)
      out += p.text;
    else if (kind_ == Kind::Filter)
      out += escape_filter_value(values[p.escape]);
    else
      out += escape_dn_value(values[p.escape]);
  }
  return out;
}

bool Template::uses(char escape) const {
  for (const auto& p : pieces_)
    if (p.escape == escape) return true;
  return false;
}

}  // namespace mailauth::backend::ldap
