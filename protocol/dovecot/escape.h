// Dovecot's tab-escaping (protocols.md B.2): 0x01 is the escape byte.
//   NUL -> \001 0   \001 -> \001 1   TAB -> \001 t   CR -> \001 r   LF -> \001 n
#pragma once

#include <string>
#include <string_view>

namespace mailauth::dovecot {

std::string tab_escape(std::string_view value);
// Any other byte after \001 stands for itself.
std::string tab_unescape(std::string_view value);

}  // namespace mailauth::dovecot
