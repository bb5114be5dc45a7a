#include "src/config/config.h"

#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <toml++/toml.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "src/util/duration.h"

namespace mailauth::config {

namespace {
int line_of(const toml::node* n, int fallback) {
  if (n == nullptr) return fallback;
  const auto& src = n->source();
  return src.begin.line > 0 ? static_cast<int>(src.begin.line) : fallback;
}
}  // namespace

Section::Section(std::shared_ptr<const toml::table> doc, const toml::table* table,
                 std::string file, std::string path, int line)
    : doc_(std::move(doc)), table_(table), file_(std::move(file)), path_(std::move(path)),
      line_(line) {}

const toml::node* Section::node(std::string_view key) const {
  used_.emplace(key);
  if (table_ == nullptr) return nullptr;
  return table_->get(key);
}

bool Section::has(std::string_view key) const { return table_ && table_->contains(key); }

void Section::fail(std::string_view key, std::string_view message) const {
  const toml::node* n = table_ ? table_->get(key) : nullptr;
  std::ostringstream out;
  out << file_ << ":" << line_of(n, line_) << ": key '";
  if (!path_.empty()) out << path_ << ".";
  out << key << "': " << message;
  throw ConfigError(out.str());
}

std::optional<std::string> Section::opt_string(std::string_view key) const {
  const toml::node* n = node(key);
  if (n == nullptr) return std::nullopt;
  if (!n->is_string()) fail(key, "must be a string");
  return std::string(*n->value<std::string_view>());
}

std::string Section::get_string(std::string_view key, std::string_view def) const {
  auto v = opt_string(key);
  return v ? *v : std::string(def);
}

std::string Section::require_string(std::string_view key) const {
  auto v = opt_string(key);
  if (!v) fail(key, "is required");
  if (v->empty()) fail(key, "must not be empty");
  return *v;
}

long long Section::get_int(std::string_view key, long long def, long long min,
                           long long max) const {
  const toml::node* n = node(key);
  if (n == nullptr) return def;
  if (!n->is_integer()) fail(key, "must be an integer");
  long long v = *n->value<long long>();
  if (v < min || v > max)
    fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  return v;
}

bool Section::get_bool(std::string_view key, bool def) const {
  const toml::node* n = node(key);
  if (n == nullptr) return def;
  if (!n->is_boolean()) fail(key, "must be true or false");
  return *n->value<bool>();
}

std::chrono::milliseconds Section::get_duration(std::string_view key,
                                                std::chrono::milliseconds def) const {
  const toml::node* n = node(key);
  if (n == nullptr) return def;
  if (n->is_integer()) {
    long long v = *n->value<long long>();
    if (v < 0) fail(key, "must not be negative");
    return std::chrono::seconds(v);
  }
  if (!n->is_string()) fail(key, "must be a duration such as \"2s\" or \"500ms\"");
  auto d = parse_duration(*n->value<std::string_view>());
  if (!d) fail(key, "must be a duration such as \"2s\" or \"500ms\"");
  return *d;
}

std::vector<std::string> Section::get_string_list(std::string_view key,
                                                  const std::vector<std::string>& def) const {
  const toml::node* n = node(key);
  if (n == nullptr) return def;
  if (n->is_string()) return {std::string(*n->value<std::string_view>())};
  const toml::array* arr = n->as_array();
  if (arr == nullptr) fail(key, "must be a list of strings");
  std::vector<std::string> out;
  for (const auto& item : *arr) {
    if (!item.is_string()) fail(key, "must be a list of strings");
    out.emplace_back(*item.value<std::string_view>());
  }
  return out;
}

mode_t Section::get_mode(std::string_view key, mode_t def) const {
  const toml::node* n = node(key);
  if (n == nullptr) return def;
  long long v = -1;
  if (n->is_integer()) {
    v = *n->value<long long>();
  } else if (n->is_string()) {
    std::string_view s = *n->value<std::string_view>();
    if (s.empty() || s.size() > 4) fail(key, "must be an octal mode such as \"0660\"");
    v = 0;
    for (char c : s) {
      if (c < '0' || c > '7') fail(key, "must be an octal mode such as \"0660\"");
      v = v * 8 + (c - '0');
    }
  } else {
    fail(key, "must be an octal mode such as \"0660\"");
  }
  if (v < 0 || v > 07777) fail(key, "must be an octal mode such as \"0660\"");
  return static_cast<mode_t>(v);
}

void Section::reject_unknown_keys() const {
  if (table_ == nullptr) return;
  for (const auto& [k, v] : *table_) {
    if (used_.find(k.str()) == used_.end()) {
      std::ostringstream out;
      out << file_ << ":" << line_of(&v, line_) << ": key '";
      if (!path_.empty()) out << path_ << ".";
      out << k.str() << "': unknown key";
      throw ConfigError(out.str());
    }
  }
}

namespace {

bool valid_network(const std::string& text) {
  std::string addr = text;
  if (auto slash = addr.find('/'); slash != std::string::npos) {
    const std::string p = addr.substr(slash + 1);
    if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos)
      return false;
    addr.resize(slash);
  }
  unsigned char buf[16];
  return inet_pton(AF_INET, addr.c_str(), buf) == 1 || inet_pton(AF_INET6, addr.c_str(), buf) == 1;
}

SocketConfig read_socket(const Section& s) {
  SocketConfig c;
  c.path = s.require_string("socket");
  if (c.path.size() >= 108) s.fail("socket", "path is longer than a UNIX socket path may be (107 bytes)");
  c.mode = s.get_mode("mode", 0660);
  c.owner = s.get_string("owner", "");
  c.group = s.get_string("group", "");
  return c;
}

Section section_for(const Config& cfg, const toml::node* n, std::string path) {
  const toml::table* t = n ? n->as_table() : nullptr;
  return Section(cfg.doc, t, cfg.file, std::move(path), line_of(n, 1));
}

Config build(std::shared_ptr<const toml::table> doc, const std::string& file, Reader reader) {
  Config cfg;
  cfg.file = file;
  cfg.doc = doc;
  Section root(doc, doc.get(), file, "", 1);

  for (const auto& [k, v] : *doc) {
    std::string_view key = k.str();
    if ((key == "daemon" || key == "saslauthd" || key == "dovecot" || key == "cache" ||
         key == "policy") &&
        !v.is_table())
      root.fail(key, "must be a table ([" + std::string(key) + "])");
  }

  // [daemon]
  {
    Section s = section_for(cfg, doc->get("daemon"), "daemon");
    cfg.daemon.user = s.get_string("user", "");
    cfg.daemon.group = s.get_string("group", "");
    cfg.daemon.workers = static_cast<int>(s.get_int("workers", 4, 1, 256));
    cfg.daemon.loops = static_cast<int>(s.get_int("loops", 0, 0, 64));
    cfg.daemon.queue_size = static_cast<int>(s.get_int("queue_size", 1024, 1, 1'000'000));
    cfg.daemon.max_connections =
        static_cast<std::size_t>(s.get_int("max_connections", 4096, 1, 1'000'000));
    if (auto target = s.opt_string("log")) {
      if (*target == "syslog") cfg.daemon.log_target = log::Target::Syslog;
      else if (*target == "stderr") cfg.daemon.log_target = log::Target::Stderr;
      else s.fail("log", "must be \"syslog\" or \"stderr\"");
    }
    std::string lvl = s.get_string("log_level", "info");
    if (!log::parse_level(lvl, &cfg.daemon.log_level))
      s.fail("log_level", "must be \"error\", \"warning\", \"info\" or \"debug\"");
    cfg.daemon.control_socket = s.get_string("control_socket", "");
    cfg.daemon.control_mode = s.get_mode("control_mode", 0600);
    cfg.daemon.control_group = s.get_string("control_group", "");
    s.reject_unknown_keys();
  }

  // [saslauthd]: the mux protocol
  if (const toml::node* n = doc->get("saslauthd")) {
    Section s = section_for(cfg, n, "saslauthd");
    MuxConfig m;
    m.socket = read_socket(s);
    m.join_realm = s.get_bool("join_realm", false);
    m.request_timeout = s.get_duration("request_timeout", std::chrono::seconds(10));
    if (m.request_timeout.count() == 0) s.fail("request_timeout", "must be more than 0");
    m.max_field = static_cast<std::size_t>(s.get_int("max_field", 1024, 256, 8192));
    m.failure_delay = s.get_duration("failure_delay", std::chrono::seconds(0));
    if (m.failure_delay > std::chrono::seconds(8))
      s.fail("failure_delay", "must be at most 8s");
    s.reject_unknown_keys();
    cfg.mux = std::move(m);
  }

  // [dovecot]: the Dovecot auth client protocol
  if (const toml::node* n = doc->get("dovecot")) {
    Section s = section_for(cfg, n, "dovecot");
    DovecotConfig d;
    d.socket = read_socket(s);
    d.mechanisms.clear();
    for (std::string m : s.get_string_list("mechanisms", {"PLAIN", "LOGIN"})) {
      for (char& c : m) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (m != "PLAIN" && m != "LOGIN" && m != "CRAM-MD5" && m != "SCRAM-SHA-1" &&
          m != "SCRAM-SHA-256")
        s.fail("mechanisms", "unknown mechanism \"" + m +
                                 "\" (known: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256)");
      for (const auto& other : d.mechanisms)
        if (other == m) s.fail("mechanisms", "\"" + m + "\" is listed twice");
      d.mechanisms.push_back(m);
    }
    if (d.mechanisms.empty()) s.fail("mechanisms", "must list at least one mechanism");
    d.failure_delay = s.get_duration("failure_delay", std::chrono::seconds(2));
    if (d.failure_delay > std::chrono::seconds(8))
      s.fail("failure_delay", "must be at most 8s (Postfix gives up on the reply after 10s)");
    d.request_timeout = s.get_duration("request_timeout", std::chrono::seconds(150));
    if (d.request_timeout.count() == 0) s.fail("request_timeout", "must be more than 0");
    d.idle_timeout = s.get_duration("idle_timeout", std::chrono::minutes(5));
    if (d.idle_timeout < std::chrono::seconds(1)) s.fail("idle_timeout", "must be at least 1s");
    const std::string temp = s.get_string("temp_failure", "disconnect");
    if (temp == "disconnect") d.temp_failure_disconnect = true;
    else if (temp == "fail") d.temp_failure_disconnect = false;
    else s.fail("temp_failure", "must be \"disconnect\" or \"fail\"");
    s.reject_unknown_keys();
    if (cfg.mux && cfg.mux->socket.path == d.socket.path)
      s.fail("socket", "is the same as [saslauthd] socket");
    cfg.dovecot = std::move(d);
  }

  // [cache]
  if (const toml::node* n = doc->get("cache")) {
    Section s = section_for(cfg, n, "cache");
    CacheConfig c;
    c.ttl = s.get_duration("ttl", std::chrono::seconds(60));
    c.negative_ttl = s.get_duration("negative_ttl", std::chrono::seconds(10));
    c.stale_ttl = s.get_duration("stale_ttl", std::chrono::seconds(0));
    c.verify_only_ttl = s.get_duration("verify_only_ttl", std::chrono::seconds(30));
    if (c.verify_only_ttl > std::chrono::seconds(60))
      s.fail("verify_only_ttl", "must be at most 60s: PAM cannot tell the cache a password changed");
    c.size = static_cast<std::size_t>(s.get_int("size", 10000, 16, 10'000'000));
    s.reject_unknown_keys();
    cfg.cache = c;
  }

  // [policy]
  if (const toml::node* n = doc->get("policy")) {
    Section s = section_for(cfg, n, "policy");
    PolicyConfig& p = cfg.policy;
    p.enabled = s.get_bool("enabled", true);
    p.trusted_networks = s.get_string_list("trusted_networks", p.trusted_networks);
    for (const auto& net : p.trusted_networks)
      if (!valid_network(net))
        s.fail("trusted_networks", "\"" + net + "\" is not an address or network (192.0.2.0/24, 2001:db8::/32)");
    p.ipv4_prefix = static_cast<int>(s.get_int("ipv4_prefix", 32, 8, 32));
    p.ipv6_prefix = static_cast<int>(s.get_int("ipv6_prefix", 64, 16, 128));
    p.penalty = s.get_duration("penalty", std::chrono::milliseconds(500));
    p.max_penalty = s.get_duration("max_penalty", std::chrono::seconds(5));
    p.max_user_penalty = s.get_duration("max_user_penalty", std::chrono::seconds(2));
    p.window = s.get_duration("window", std::chrono::minutes(15));
    p.max_in_flight = static_cast<int>(s.get_int("max_in_flight", 16, 1, 100000));
    if (p.max_penalty > std::chrono::seconds(8))
      s.fail("max_penalty", "must be at most 8s (Postfix gives up on the reply after 10s)");
    s.reject_unknown_keys();
  }
  if (cfg.dovecot && cfg.policy.enabled &&
      cfg.dovecot->failure_delay + cfg.policy.max_penalty > std::chrono::seconds(9)) {
    Section s = section_for(cfg, doc->get("policy"), "policy");
    s.fail("max_penalty",
           "plus [dovecot] failure_delay must stay under 9s (Postfix waits 10s for a reply)");
  }

  // [[backend]]
  if (const toml::node* n = doc->get("backend")) {
    const toml::array* arr = n->as_array();
    if (arr == nullptr || !arr->is_array_of_tables())
      root.fail("backend", "must be an array of tables ([[backend]])");
    int index = 0;
    for (const auto& item : *arr) {
      ++index;
      Section s = section_for(cfg, &item, "backend[" + std::to_string(index) + "]");
      std::string type = s.require_string("type");
      std::string name = s.get_string("name", type);
      for (const auto& other : cfg.backends)
        if (other.name == name)
          s.fail("name", "\"" + name + "\" is used by another backend; give each a unique name");
      cfg.backends.push_back(BackendSpec{type, name, s});
    }
  }

  for (const auto& [k, v] : *doc) {
    std::string_view key = k.str();
    if (key != "daemon" && key != "saslauthd" && key != "dovecot" && key != "cache" &&
        key != "policy" && key != "backend") {
      std::ostringstream out;
      out << file << ":" << line_of(&v, 1) << ": key '" << key << "': unknown table or key";
      throw ConfigError(out.str());
    }
  }

  if (cfg.backends.empty())
    throw ConfigError(file + ": no [[backend]] is configured; add at least one");
  if (reader == Reader::Daemon && !cfg.mux && !cfg.dovecot)
    throw ConfigError(file + ": no listener is configured; add a [saslauthd] or [dovecot] table");
  return cfg;
}

Config parse(std::string_view text, const std::string& file, Reader reader) {
  try {
    auto doc = std::make_shared<toml::table>(toml::parse(text, file));
    return build(std::move(doc), file, reader);
  } catch (const toml::parse_error& e) {
    std::ostringstream out;
    out << file << ":" << e.source().begin.line << ": syntax error: " << e.description();
    throw ConfigError(out.str());
  }
}

}  // namespace

std::string key_message(const Config& cfg, std::string_view table, std::string_view key,
                        std::string_view message) {
  const toml::node* n = cfg.doc ? cfg.doc->get(table) : nullptr;
  try {
    section_for(cfg, n, std::string(table)).fail(key, message);
  } catch (const ConfigError& e) {
    return e.what();
  }
}

std::string saslauthd_group() {
  if (::geteuid() != 0) return {};
  std::vector<char> buf(16384);
  group gr{};
  group* found = nullptr;
  if (getgrnam_r("sasl", &gr, buf.data(), buf.size(), &found) == 0 && found != nullptr)
    return "sasl";
  passwd pw{};
  passwd* root = nullptr;
  if (getpwuid_r(0, &pw, buf.data(), buf.size(), &root) == 0 && root != nullptr)
    return std::to_string(root->pw_gid);
  return "0";
}

Config from_saslauthd_args(const SaslauthdArgs& a, const SaslauthdBackends& b) {
  const std::string where = "saslauthd command line";
  if (a.dir.empty() || a.dir.front() != '/')
    throw ConfigError(where + ": -m needs an absolute directory (saslauthd's rule), got '" + a.dir +
                      "'");
  auto doc = std::make_shared<toml::table>();
  toml::table daemon;
  daemon.insert("workers", static_cast<int64_t>(a.threads < 1 ? 1 : a.threads));
  if (a.debug) {
    daemon.insert("log", "stderr");
    daemon.insert("log_level", "debug");
  }
  doc->insert("daemon", std::move(daemon));
  toml::table mux;
  mux.insert("socket", a.dir + "/mux");
  // Not saslauthd's 0777: mailauthd stays root here, and DIR may be one it
  // created itself (see from_saslauthd_args in config.h).
  mux.insert("mode", "0660");
  if (const std::string g = saslauthd_group(); !g.empty()) mux.insert("group", g);
  mux.insert("join_realm", a.join_realm);
  doc->insert("saslauthd", std::move(mux));
  if (a.cache) {
    // saslauthd's -t is seconds (default 8 h); -s is the cache size in KiB,
    // roughly 100 bytes an entry there.
    toml::table cache;
    cache.insert("ttl", std::to_string(a.cache_ttl) + "s");
    if (a.cache_kb > 0)
      cache.insert("size", static_cast<int64_t>(std::max(16L, a.cache_kb * 1024 / 100)));
    doc->insert("cache", std::move(cache));
  }

  toml::table file;
  try {
    file = toml::parse(b.toml, b.origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream out;
    out << b.origin << ":" << e.source().begin.line << ": syntax error: " << e.description();
    throw ConfigError(out.str());
  }
  const toml::array* arr = file["backend"].as_array();
  if (arr == nullptr || arr->empty())
    throw ConfigError(b.origin + ": no [[backend]] table for -a " + a.mech);
  toml::array backends = *arr;
  doc->insert("backend", std::move(backends));
  Config cfg = build(std::move(doc), where, Reader::Daemon);
  cfg.mux->socket.dir_mode = 0710;
  return cfg;
}

std::string toml_quote(std::string_view value) {
  std::ostringstream out;
  out << toml::value<std::string>(std::string(value));
  return out.str();
}

Config load_file(const std::string& path, Reader reader) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open configuration file: " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  return parse(buf.str(), path, reader);
}

Config load_string(std::string_view text, const std::string& file_name, Reader reader) {
  return parse(text, file_name, reader);
}

}  // namespace mailauth::config
