#include "src/migrate/parse.h"

#include <cctype>
#include <charconv>

namespace mailauth::migrate {

namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Splits into lines, numbering from 1.
std::vector<std::pair<int, std::string_view>> lines_of(std::string_view text) {
  std::vector<std::pair<int, std::string_view>> out;
  int n = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    out.emplace_back(++n, text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

long to_long(std::string_view s, bool* ok) {
  long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  *ok = ec == std::errc() && p == s.data() + s.size();
  return v;
}

// Joins lines ending in '\' with the next one (Dovecot, PAM).  Each logical
// line keeps the number of its first physical line.
std::vector<std::pair<int, std::string>> logical_lines(std::string_view text) {
  std::vector<std::pair<int, std::string>> out;
  std::string cur;
  int start = 0;
  bool continuing = false;
  for (auto [n, l] : lines_of(text)) {
    std::string_view s = l;
    while (!s.empty() && s.back() == '\r') s.remove_suffix(1);
    if (!continuing) start = n;
    if (!s.empty() && s.back() == '\\') {
      s.remove_suffix(1);
      cur.append(s);
      cur += ' ';
      continuing = true;
      continue;
    }
    cur.append(s);
    out.emplace_back(start, std::move(cur));
    cur.clear();
    continuing = false;
  }
  if (continuing) out.emplace_back(start, std::move(cur));
  return out;
}

}  // namespace

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (blank(s.front()) || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (blank(s.back()) || s.back() == '\n')) s.remove_suffix(1);
  return std::string(s);
}

std::vector<std::string> shell_words(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (blank(c) || c == '\n') {
      if (in_word) out.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else if (c == '\'') {
      in_word = true;
      const std::size_t end = text.find('\'', i + 1);
      cur.append(text.substr(i + 1, end == std::string_view::npos ? std::string_view::npos
                                                                   : end - i - 1));
      i = end == std::string_view::npos ? text.size() : end;
    } else if (c == '"') {
      in_word = true;
      for (++i; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\' && i + 1 < text.size() &&
            (text[i + 1] == '"' || text[i + 1] == '\\' || text[i + 1] == '$' || text[i + 1] == '`'))
          ++i;
        cur += text[i];
      }
    } else if (c == '\\' && i + 1 < text.size()) {
      in_word = true;
      cur += text[++i];
    } else if (c == '#' && !in_word) {
      const std::size_t nl = text.find('\n', i);
      if (nl == std::string_view::npos) break;
      i = nl - 1;
    } else {
      in_word = true;
      cur += c;
    }
  }
  if (in_word) out.push_back(std::move(cur));
  return out;
}

std::map<std::string, Value> parse_shell_assignments(std::string_view text,
                                                     std::vector<Value>* other) {
  std::map<std::string, Value> out;
  for (auto [n, raw] : lines_of(text)) {
    std::string l = trim(raw);
    if (l.empty() || l[0] == '#') continue;
    if (l.rfind("export ", 0) == 0) l = trim(std::string_view(l).substr(7));
    std::size_t k = 0;
    while (k < l.size() && (std::isalnum(static_cast<unsigned char>(l[k])) || l[k] == '_')) ++k;
    if (k == 0 || k >= l.size() || l[k] != '=' || std::isdigit(static_cast<unsigned char>(l[0]))) {
      if (other) other->push_back(Value{l, n});
      continue;
    }
    const auto words = shell_words(std::string_view(l).substr(k + 1));
    std::string v;
    // VAR="a b" is one word; VAR=a b would run b: keep the first word.
    if (!words.empty() && l.size() > k + 1 && !blank(l[k + 1])) v = words[0];
    out[l.substr(0, k)] = Value{v, n};
  }
  return out;
}

SaslauthdOptions parse_saslauthd_options(const std::vector<std::string>& words) {
  SaslauthdOptions o;
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w.size() < 2 || w[0] != '-') {
      o.not_understood.push_back(w);
      continue;
    }
    // Flags may be bundled ("-cr") and a value may follow directly ("-n5").
    for (std::size_t j = 1; j < w.size(); ++j) {
      const char f = w[j];
      const bool takes_value = f == 'a' || f == 'O' || f == 'm' || f == 'n' || f == 't' ||
                               f == 's' || f == 'T';
      if (!takes_value) {
        switch (f) {
          case 'c': o.cache = true; break;
          case 'r': o.join_realm = true; break;
          case 'd': o.debug = true; break;
          default: o.not_understood.push_back(std::string("-") + f);
        }
        continue;
      }
      std::string v;
      if (j + 1 < w.size()) {
        v = w.substr(j + 1);
      } else if (i + 1 < words.size()) {
        v = words[++i];
      } else {
        o.not_understood.push_back(std::string("-") + f + " (without a value)");
        break;
      }
      bool ok = true;
      switch (f) {
        case 'a': o.mech = v; break;
        case 'O': o.option = v; break;
        case 'm': o.dir = v; break;
        case 'n': o.threads = to_long(v, &ok); break;
        case 't': o.cache_ttl = to_long(v, &ok); break;
        case 's': o.cache_kb = to_long(v, &ok); break;
        default: o.not_understood.push_back(std::string("-") + f + " " + v);
      }
      if (!ok || (f == 'n' && o.threads < 0) || (f == 't' && o.cache_ttl < 0) ||
          (f == 's' && o.cache_kb < 0)) {
        o.not_understood.push_back(std::string("-") + f + " " + v + " (not a number)");
        if (f == 'n') o.threads = -1;
        if (f == 't') o.cache_ttl = -1;
        if (f == 's') o.cache_kb = -1;
      }
      break;
    }
  }
  return o;
}

std::vector<PamLine> parse_pam(std::string_view text) {
  std::vector<PamLine> out;
  for (auto& [n, l] : logical_lines(text)) {
    std::string_view s = l;
    // Tokens: blanks separate; "[…]" is one token (a control or an
    // argument), with "\]" for a literal ']'.
    std::vector<std::string> tok;
    std::size_t i = 0;
    bool comment = false;
    while (i < s.size() && !comment) {
      while (i < s.size() && blank(s[i])) ++i;
      if (i >= s.size()) break;
      if (s[i] == '#') {
        comment = true;
        break;
      }
      std::string t;
      if (s[i] == '[') {
        ++i;
        while (i < s.size() && s[i] != ']') {
          if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == ']') ++i;
          t += s[i++];
        }
        if (i < s.size()) ++i;
        // A control "[a=b c=d]" keeps its brackets; an argument loses them.
        tok.push_back(tok.size() == 1 ? "[" + t + "]" : t);
        continue;
      }
      while (i < s.size() && !blank(s[i])) t += s[i++];
      tok.push_back(std::move(t));
    }
    if (tok.empty()) continue;
    PamLine p;
    p.line = n;
    if (tok[0] == "@include") {
      p.type = "@include";
      if (tok.size() > 1) p.module = tok[1];
      out.push_back(std::move(p));
      continue;
    }
    p.type = lower(tok[0]);
    if (!p.type.empty() && p.type[0] == '-') {
      p.quiet = true;
      p.type.erase(0, 1);
    }
    if (tok.size() > 1) p.control = tok[1];
    if (tok.size() > 2) p.module = tok[2];
    for (std::size_t k = 3; k < tok.size(); ++k) p.args.push_back(tok[k]);
    out.push_back(std::move(p));
  }
  return out;
}

std::string pam_module_name(std::string_view module) {
  if (const std::size_t slash = module.rfind('/'); slash != std::string_view::npos)
    module.remove_prefix(slash + 1);
  if (module.size() > 3 && module.substr(module.size() - 3) == ".so")
    module.remove_suffix(3);
  return std::string(module);
}

std::map<std::string, std::string> pam_args(const std::vector<std::string>& args) {
  std::map<std::string, std::string> out;
  for (const auto& a : args) {
    const std::size_t eq = a.find('=');
    if (eq == std::string::npos)
      out[a] = "";
    else
      out[a.substr(0, eq)] = a.substr(eq + 1);
  }
  return out;
}

std::map<std::string, Value> parse_postfix_main_cf(std::string_view text) {
  std::map<std::string, Value> out;
  std::string key;
  for (auto [n, l] : lines_of(text)) {
    const std::string t = trim(l);
    if (t.empty() || t[0] == '#') continue;
    if (blank(l.front())) {  // continuation
      if (!key.empty()) out[key].value += " " + t;
      continue;
    }
    const std::size_t eq = t.find('=');
    if (eq == std::string::npos) {
      key.clear();
      continue;
    }
    key = trim(std::string_view(t).substr(0, eq));
    out[key] = Value{trim(std::string_view(t).substr(eq + 1)), n};
  }
  return out;
}

std::vector<MasterService> parse_postfix_master_cf(std::string_view text) {
  std::vector<MasterService> out;
  for (auto [n, l] : lines_of(text)) {
    if (l.empty() || blank(l.front()) || l.front() == '#') continue;
    const auto w = shell_words(l);
    if (w.size() < 8) continue;
    out.push_back(MasterService{n, w[0], w[1], w[4], w[7]});
  }
  return out;
}

std::map<std::string, Value> parse_sasl_conf(std::string_view text) {
  std::map<std::string, Value> out;
  for (auto [n, l] : lines_of(text)) {
    const std::string t = trim(l);
    if (t.empty() || t[0] == '#') continue;
    const std::size_t colon = t.find(':');
    if (colon == std::string::npos) continue;
    out[trim(std::string_view(t).substr(0, colon))] =
        Value{trim(std::string_view(t).substr(colon + 1)), n};
  }
  return out;
}

std::vector<DovecotNode> parse_dovecot_conf(std::string_view text, const std::string& file,
                                            std::vector<Value>* problems) {
  std::vector<DovecotNode> root;
  std::vector<DovecotNode> stack;  // open sections
  auto add = [&](DovecotNode node) {
    (stack.empty() ? root : stack.back().children).push_back(std::move(node));
  };
  auto unquote = [](std::string v) {
    if (v.size() >= 2 && ((v.front() == '"' && v.back() == '"') ||
                          (v.front() == '\'' && v.back() == '\'')))
      v = v.substr(1, v.size() - 2);
    return v;
  };
  // Dovecot's parser ends a line at a '#' that follows a blank outside
  // quotes: "deny = yes # blocked" is "yes".
  auto strip_comment = [](const std::string& l) {
    char quote = 0;
    for (std::size_t i = 0; i < l.size(); ++i) {
      const char ch = l[i];
      if (quote) {
        if (ch == '\\' && i + 1 < l.size()) ++i;
        else if (ch == quote) quote = 0;
      } else if (ch == '"' || ch == '\'') {
        quote = ch;
      } else if (ch == '#' && (i == 0 || l[i - 1] == ' ' || l[i - 1] == '\t')) {
        return trim(std::string_view(l).substr(0, i));
      }
    }
    return l;
  };
  for (auto& [n, raw] : logical_lines(text)) {
    std::string l = strip_comment(trim(raw));
    if (l.empty() || l[0] == '#') continue;
    if (l == "}") {
      if (stack.empty()) {
        if (problems) problems->push_back(Value{"'}' without a section", n});
        continue;
      }
      DovecotNode done = std::move(stack.back());
      stack.pop_back();
      add(std::move(done));
      continue;
    }
    if (l[0] == '!') {
      DovecotNode inc;
      inc.kind = DovecotNode::Kind::Include;
      inc.file = file;
      inc.line = n;
      const std::size_t sp = l.find_first_of(" \t");
      const std::string directive = l.substr(0, sp);
      inc.include_try = directive == "!include_try";
      if (directive != "!include" && directive != "!include_try") {
        if (problems) problems->push_back(Value{"unknown '!' directive (line not shown)", n});
        continue;
      }
      inc.key = sp == std::string::npos ? "" : unquote(trim(std::string_view(l).substr(sp)));
      add(std::move(inc));
      continue;
    }
    const std::size_t eq = l.find('=');
    const std::size_t brace = l.find('{');
    if (brace != std::string::npos && (eq == std::string::npos || brace < eq) &&
        trim(std::string_view(l).substr(brace + 1)).empty()) {
      DovecotNode sec;
      sec.kind = DovecotNode::Kind::Section;
      sec.file = file;
      sec.line = n;
      const std::string head = trim(std::string_view(l).substr(0, brace));
      const std::size_t sp = head.find_first_of(" \t");
      sec.key = head.substr(0, sp);
      if (sp != std::string::npos) sec.value = unquote(trim(std::string_view(head).substr(sp)));
      stack.push_back(std::move(sec));
      continue;
    }
    if (eq == std::string::npos) {
      // The line itself is not echoed: under --root it may be any file's content.
      if (problems) problems->push_back(Value{"line not understood (not a setting)", n});
      continue;
    }
    DovecotNode set;
    set.file = file;
    set.line = n;
    set.key = trim(std::string_view(l).substr(0, eq));
    set.value = unquote(trim(std::string_view(l).substr(eq + 1)));
    add(std::move(set));
  }
  while (!stack.empty()) {
    if (problems) problems->push_back(Value{"section '" + stack.back().key + "' not closed",
                                            stack.back().line});
    DovecotNode done = std::move(stack.back());
    stack.pop_back();
    add(std::move(done));
  }
  return root;
}

std::map<std::string, std::string> parse_connect_string(std::string_view text) {
  std::map<std::string, std::string> out;
  for (const auto& w : shell_words(text)) {
    const std::size_t eq = w.find('=');
    if (eq == std::string::npos) continue;
    out[w.substr(0, eq)] = w.substr(eq + 1);
  }
  return out;
}

}  // namespace mailauth::migrate
