#include "backends/mysql/query_template.h"

#include <cstdio>
#include <vector>

namespace mailauth::backend::mysql {

namespace {

std::string show_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7f) return std::string(1, c);
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02X", u);
  return buf;
}

std::string escape_list(std::string_view allowed) {
  std::string out;
  for (char c : kAllEscapes)
    if (allowed.find(c) != std::string_view::npos)
      out += (out.empty() ? "%" : " %") + std::string(1, c);
  return out.empty() ? "no escapes" : out;
}

class Translator {
 public:
  Translator(std::string_view text, std::string_view allowed) : text_(text), allowed_(allowed) {}

  Template run() {
    Template t;
    t.source = std::string(text_);
    while (i_ < text_.size()) {
      const char c = text_[i_];
      if (c == '%') {
        char e = escape_at(i_);
        i_ += 2;
        if (e == '%') {
          out_ += '%';
        } else {
          out_ += '?';
          params_ += e;
        }
      } else if (c == '\'' || c == '"') {
        string_literal(c);
      } else if (c == '`') {
        quoted_identifier();
      } else if (c == '?') {
        fail("contains a '?' parameter marker; write an escape such as %u instead");
      } else if (c == '\0') {
        fail("contains a NUL byte");
      } else if (comment_starts()) {
        comment();
      } else {
        out_ += c;
        ++i_;
      }
    }
    t.sql = std::move(out_);
    t.params = std::move(params_);
    return t;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const { throw TemplateError(message); }

  // The escape letter at text_[pos] == '%': a letter from kAllEscapes, or
  // '%' for "%%".  Throws for anything else.
  char escape_at(std::size_t pos) const {
    if (pos + 1 >= text_.size()) fail("ends with a lone '%' (write %% for a literal percent sign)");
    const char e = text_[pos + 1];
    if (e == '%') return e;
    if (kAllEscapes.find(e) == std::string_view::npos)
      fail("unknown escape %" + show_char(e) + " (this statement takes " + escape_list(allowed_) +
           "; write %% for a literal percent sign)");
    if (allowed_.find(e) == std::string_view::npos)
      fail("%" + std::string(1, e) + " cannot be used in this statement (it takes " +
           escape_list(allowed_) + ")");
    return e;
  }

  // A '…' or "…" literal.  Escapes inside it become markers: the literal
  // becomes `?` when it is exactly one escape, CONCAT('a', ?, 'b') when it
  // mixes text and escapes, and stays as it is (with %% made %) otherwise.
  void string_literal(char quote) {
    const std::size_t start = i_;
    ++i_;
    struct Piece {
      bool escape;
      std::string text;  // raw literal text (SQL escapes kept), or the escape letter
    };
    std::vector<Piece> pieces;
    std::string raw;
    bool closed = false;
    while (i_ < text_.size()) {
      const char c = text_[i_];
      if (c == '\\') {
        if (i_ + 1 < text_.size() && text_[i_ + 1] == '%' && i_ + 2 < text_.size() &&
            text_[i_ + 2] != '%')
          fail("an escape right after a backslash inside a string literal cannot be translated");
        if (i_ + 1 >= text_.size()) break;
        raw += c;
        raw += text_[i_ + 1];
        i_ += 2;
      } else if (c == quote) {
        if (i_ + 1 < text_.size() && text_[i_ + 1] == quote) {
          raw += c;
          raw += c;
          i_ += 2;
        } else {
          ++i_;
          closed = true;
          break;
        }
      } else if (c == '%') {
        const char e = escape_at(i_);
        i_ += 2;
        if (e == '%') {
          raw += '%';
        } else {
          if (!raw.empty()) pieces.push_back({false, std::move(raw)});
          raw.clear();
          pieces.push_back({true, std::string(1, e)});
        }
      } else if (c == '\0') {
        fail("contains a NUL byte");
      } else {
        raw += c;
        ++i_;
      }
    }
    if (!closed)
      fail("has an unterminated string literal starting at character " + std::to_string(start + 1));
    if (!raw.empty()) pieces.push_back({false, std::move(raw)});
    std::size_t escapes = 0;
    for (const auto& p : pieces) escapes += p.escape;
    const std::string q(1, quote);
    if (escapes == 0) {
      out_ += q + (pieces.empty() ? std::string() : pieces.front().text) + q;
      return;
    }
    if (pieces.size() == 1) {
      out_ += '?';
      params_ += pieces.front().text;
      return;
    }
    out_ += "CONCAT(";
    for (std::size_t k = 0; k < pieces.size(); ++k) {
      if (k) out_ += ", ";
      if (pieces[k].escape) {
        out_ += '?';
        params_ += pieces[k].text;
      } else {
        out_ += q + pieces[k].text + q;
      }
    }
    out_ += ')';
  }

  void quoted_identifier() {
    const std::size_t start = i_;
    out_ += '`';
    ++i_;
    while (i_ < text_.size()) {
      const char c = text_[i_];
      if (c == '`') {
        out_ += c;
        ++i_;
        if (i_ < text_.size() && text_[i_] == '`') {
          out_ += c;
          ++i_;
          continue;
        }
        return;
      }
      if (c == '%') {
        const char e = escape_at(i_);
        if (e != '%')
          fail("%" + std::string(1, e) +
               " inside a `quoted identifier`: escapes are values, not table or column names");
        out_ += '%';
        i_ += 2;
        continue;
      }
      out_ += c;
      ++i_;
    }
    fail("has an unterminated `quoted identifier` starting at character " +
         std::to_string(start + 1));
  }

  // "-- " (a space or control character after the dashes), "#" and "/* */"
  // comments are copied verbatim.  MariaDB executes "/*! … */" and
  // "/*M! … */", so those are not comments here: their content is translated.
  bool comment_starts() const {
    const std::string_view rest = text_.substr(i_);
    if (rest.starts_with("#")) return true;
    if (rest.starts_with("--") && (rest.size() == 2 || static_cast<unsigned char>(rest[2]) <= ' '))
      return true;
    return rest.starts_with("/*") && !rest.starts_with("/*!") && !rest.starts_with("/*M!");
  }

  void comment() {
    const std::string_view rest = text_.substr(i_);
    std::size_t len;
    if (rest.starts_with("/*")) {
      const auto end = rest.find("*/", 2);
      len = end == std::string_view::npos ? rest.size() : end + 2;
    } else {
      const auto end = rest.find('\n');
      len = end == std::string_view::npos ? rest.size() : end + 1;
    }
    out_.append(rest.substr(0, len));
    i_ += len;
  }

  std::string_view text_;
  std::string_view allowed_;
  std::size_t i_ = 0;
  std::string out_;
  std::string params_;
};

}  // namespace

Template translate(std::string_view text, std::string_view allowed) {
  return Translator(text, allowed).run();
}

Values Values::for_user(std::string_view user) {
  Values v;
  v.user = user;
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
    case 'h': return stored;
    case 'N': return name;
    case 'e': return enabled ? "1" : "0";
    case 'o': return old;
    default: return {};
  }
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n;
    char32_t cp;
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // the last continuation byte is s[i + n]
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

}  // namespace mailauth::backend::mysql
