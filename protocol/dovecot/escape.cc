#include "protocol/dovecot/escape.h"

namespace mailauth::dovecot {

std::string tab_escape(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\0': out += "\x01" "0"; break;
      case '\x01': out += "\x01" "1"; break;
      case '\t': out += "\x01" "t"; break;
      case '\r': out += "\x01" "r"; break;
      case '\n': out += "\x01" "n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string tab_unescape(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c != '\x01' || i + 1 == value.size()) {
      out += c;
      continue;
    }
    char e = value[++i];
    switch (e) {
      case '0': out += '\0'; break;
      case '1': out += '\x01'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case 'n': out += '\n'; break;
      default: out += e;
    }
  }
  return out;
}

}  // namespace mailauth::dovecot
