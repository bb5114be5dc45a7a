#include "protocol/dovecot/connection.h"

#include <charconv>

#include "protocol/dovecot/escape.h"
#include "src/util/encoding.h"

namespace mailauth::dovecot {

namespace {

std::vector<std::string_view> split_tabs(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const auto tab = line.find('\t', start);
    out.push_back(line.substr(start, tab == std::string_view::npos ? std::string_view::npos
                                                                   : tab - start));
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
  return out;
}

bool parse_uint(std::string_view s, std::uint32_t* out) {
  if (s.empty() || s.size() > 10 || s[0] == '+' || s[0] == '-') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

// Decode base64 as Dovecot 2.3 does: padding required; embedded whitespace
// would be ignored there, but no real client sends any, so it is refused.
bool decode_b64(std::string_view text, Secret* out) {
  auto d = base64_decode(text);
  if (!d) return false;
  *out = Secret(*d);
  wipe(d->data(), d->size());
  return true;
}

}  // namespace

std::string mechanism_flags(std::string_view name) {
  const std::string n = upper(name);
  if (n == "PLAIN" || n == "LOGIN") return "plaintext";
  if (n == "CRAM-MD5") return "dictionary\tactive";
  if (n == "SCRAM-SHA-1" || n == "SCRAM-SHA-256") return "mutual-auth";
  return "";
}

std::string ServerConnection::handshake(const std::vector<Mechanism>& mechanisms,
                                        std::uint32_t pid, std::uint64_t cuid,
                                        std::string_view cookie_hex) {
  std::string out = "VERSION\t1\t2\n";
  for (const auto& m : mechanisms) {
    out += "MECH\t" + m.name;
    if (!m.flags.empty()) out += "\t" + m.flags;
    out += "\n";
  }
  out += "SPID\t" + std::to_string(pid) + "\n";
  out += "CUID\t" + std::to_string(cuid) + "\n";
  out += "COOKIE\t" + std::string(cookie_hex) + "\n";
  out += "DONE\n";
  return out;
}

void ServerConnection::append(std::string_view bytes) {
  if (state_ != State::Dead) buffer_.append(bytes);
}

std::optional<Event> ServerConnection::next() {
  std::vector<Event> out;
  while (out.empty() && state_ != State::Dead) {
    const auto nl = buffer_.find('\n');
    if (nl == std::string::npos) {
      if (buffer_.size() > max_line_)
        fatal("line longer than " + std::to_string(max_line_) + " bytes", out);
      break;
    }
    std::string_view l(buffer_.data(), nl);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (l.size() > max_line_) {
      fatal("line longer than " + std::to_string(max_line_) + " bytes", out);
      break;
    }
    line(l, out);
    if (state_ == State::Dead) break;  // fatal() wiped the buffer already
    wipe(buffer_.data(), nl + 1);
    buffer_.erase(0, nl + 1);
  }
  if (out.empty()) return std::nullopt;
  return std::move(out.front());
}

std::vector<Event> ServerConnection::feed(std::string_view bytes) {
  append(bytes);
  std::vector<Event> out;
  while (auto e = next()) out.push_back(std::move(*e));
  return out;
}

void ServerConnection::fatal(std::string reason, std::vector<Event>& out) {
  state_ = State::Dead;
  wipe(buffer_.data(), buffer_.size());
  buffer_.clear();
  Event e;
  e.kind = Event::Kind::Fatal;
  e.error = std::move(reason);
  out.push_back(std::move(e));
}

void ServerConnection::line(std::string_view l, std::vector<Event>& out) {
  const auto args = split_tabs(l);
  const std::string_view cmd = args[0];
  switch (state_) {
    case State::AwaitVersion: {
      std::uint32_t major = 0, minor = 0;
      if (cmd != "VERSION" || args.size() < 3 || !parse_uint(args[1], &major) ||
          !parse_uint(args[2], &minor))
        return fatal("invalid VERSION line (not a Dovecot auth client?)", out);
      if (major != 1)
        return fatal("unsupported protocol major version " + std::to_string(major), out);
      minor_ = minor;
      state_ = State::AwaitCpid;
      return;
    }
    case State::AwaitCpid: {
      std::uint32_t pid = 0;
      if (cmd != "CPID" || args.size() < 2 || !parse_uint(args[1], &pid) || pid == 0)
        return fatal("expected CPID after VERSION", out);
      state_ = State::Ready;
      return;
    }
    case State::Ready:
      if (cmd == "AUTH") return auth(args, out);
      if (cmd == "CONT") return cont(args, out);
      if (cmd == "CANCEL") {
        std::uint32_t id = 0;
        if (args.size() < 2 || !parse_uint(args[1], &id) || id == 0)
          return fatal("broken CANCEL line", out);
        Event e;
        e.kind = Event::Kind::Cancel;
        e.id = id;
        pending_.erase(id);
        out.push_back(std::move(e));
        return;
      }
      // Named only when it is a word of this protocol (a client that talks
      // server lines, say): anything else may be a client's credentials.
      for (std::string_view word : {"VERSION", "CPID", "MECH", "SPID", "CUID", "COOKIE", "DONE",
                                    "OK", "FAIL", "CONT", "AUTH", "CANCEL"})
        if (cmd == word) return fatal("unexpected command '" + std::string(cmd) + "'", out);
      return fatal("unknown command (a line of " + std::to_string(l.size()) + " bytes)", out);
    case State::Dead: return;
  }
}

void ServerConnection::auth(const std::vector<std::string_view>& args, std::vector<Event>& out) {
  std::uint32_t id = 0;
  if (args.size() < 3 || !parse_uint(args[1], &id) || id == 0 || args[2].empty())
    return fatal("broken AUTH request", out);
  if (pending_.count(id)) return fatal("AUTH id " + std::to_string(id) + " is already in use", out);
  Event e;
  e.kind = Event::Kind::Auth;
  e.id = id;
  e.mechanism = upper(args[2]);
  bool have_service = false;
  for (std::size_t i = 3; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a.rfind("resp=", 0) == 0) {
      if (i + 1 != args.size()) return fatal("AUTH parameter after resp=", out);
      const std::string_view v = a.substr(5);
      if (v.empty() && minor_ < 2) break;  // Exim's empty resp= means "none"
      e.has_data = true;
      if (v == "=") break;  // an empty initial response (SMTP "AUTH PLAIN =")
      if (!decode_b64(v, &e.data)) e.bad_base64 = true;
      break;
    }
    const auto eq = a.find('=');
    const std::string_view key = a.substr(0, eq);
    const std::string value =
        eq == std::string_view::npos ? std::string() : tab_unescape(a.substr(eq + 1));
    if (key == "service" || key == "protocol") {
      e.params.service = value;
      have_service = true;
    } else if (key == "rip") e.params.rip = value;
    else if (key == "lip") e.params.lip = value;
    else if (key == "rport") e.params.rport = value;
    else if (key == "lport") e.params.lport = value;
    else if (key == "session") e.params.session = value;
    else if (key == "secured") e.params.secured = true;
    else if (key == "no-penalty") e.params.no_penalty = true;
    else if (key == "final-resp-ok") e.params.final_resp_ok = true;
    else if (key == "nologin") e.params.nologin = true;
    // Anything else is an optional parameter we do not use: ignored, as Dovecot does.
  }
  if (!have_service) return fatal("AUTH without service= or protocol=", out);
  pending_.insert(id);
  out.push_back(std::move(e));
}

void ServerConnection::cont(const std::vector<std::string_view>& args, std::vector<Event>& out) {
  std::uint32_t id = 0;
  if (args.size() < 3 || !parse_uint(args[1], &id) || id == 0) return fatal("broken CONT line", out);
  Event e;
  e.kind = Event::Kind::Cont;
  e.id = id;
  e.has_data = true;
  e.unknown_id = pending_.count(id) == 0;
  if (!e.unknown_id && !args[2].empty() && !decode_b64(args[2], &e.data)) e.bad_base64 = true;
  out.push_back(std::move(e));
}

std::string cont_line(std::uint32_t id, std::string_view challenge) {
  return "CONT\t" + std::to_string(id) + "\t" + base64_encode(challenge) + "\n";
}

std::string ok_line(std::uint32_t id, std::string_view user,
                    const std::vector<std::pair<std::string, std::string>>& extra) {
  std::string out = "OK\t" + std::to_string(id) + "\tuser=" + tab_escape(user);
  for (const auto& [k, v] : extra) out += "\t" + k + "=" + tab_escape(v);
  return out + "\n";
}

std::string fail_line(std::uint32_t id, const FailFields& f) {
  std::string out = "FAIL\t" + std::to_string(id);
  if (!f.user.empty()) out += "\tuser=" + tab_escape(f.user);
  if (!f.code.empty()) out += "\tcode=" + f.code;
  if (f.temp) out += "\ttemp";
  if (!f.reason.empty()) out += "\treason=" + tab_escape(f.reason);
  return out + "\n";
}

}  // namespace mailauth::dovecot
