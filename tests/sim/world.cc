// run_world(): the simulated daemon core, its clients, and the invariants.
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <sys/socket.h>

#include <deque>
#include <set>
#include <sstream>
#include <stdexcept>

#include "backends/backend.h"
#include "src/auth/authenticator.h"
#include "src/daemon/dovecot_server.h"
#include "src/daemon/mux_server.h"
#include "src/util/encoding.h"
#include "tests/sim/sim.h"

namespace mailauth::sim {
namespace {

// A broken invariant ends the world.
struct Violation : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------
// The accounts, with every password each one has had and when (in steps).
struct Account {
  struct Version {
    std::string password;
    std::uint64_t from = 0;
    std::uint64_t until = UINT64_MAX;
    std::chrono::steady_clock::time_point until_at = std::chrono::steady_clock::time_point::max();  // loop time of the change
  };
  std::vector<Version> versions;
  bool disabled = false;
  bool verify_only = false;  // served by the PAM-like backend
  const std::string& current() const { return versions.back().password; }
};

struct World;

// A lookup backend (like pwdfile or mysql) over the world's accounts.
class SimLookupBackend final : public backend::Backend {
 public:
  SimLookupBackend(World& w, std::string name) : Backend("sim", std::move(name)), world_(w) {}
  Kind kind() const override { return Kind::Lookup; }
  backend::LookupResult lookup(const backend::Query& q) override;

 private:
  World& world_;
};

// A verify-only backend (like PAM).
class SimVerifyBackend final : public backend::Backend {
 public:
  SimVerifyBackend(World& w, std::string name) : Backend("sim", std::move(name)), world_(w) {}
  Kind kind() const override { return Kind::VerifyOnly; }
  backend::LookupResult lookup(const backend::Query&) override { return {}; }
  backend::VerifyResult verify(const backend::Query& q, std::string_view password) override;

 private:
  World& world_;
};

// ---------------------------------------------------------------------------
// Clients.
struct DovecotReq {
  std::uint32_t id = 0;
  std::string user;
  std::string password;
  std::string mech;       // PLAIN, PLAIN-NOIR (PLAIN without initial response), LOGIN, CRAM-MD5
  int stage = 0;          // CONTs answered so far
  bool waiting = true;    // the client expects a final answer
  bool cancelled = false; // the client sent CANCEL: the server forgets it once read
  bool poisoned = false;  // the client sent junk for it: it can never be OK
  bool stray = false;     // a CONT for an id not in flight: expects FAIL "timed out"
  std::uint64_t sent = 0;
  std::chrono::steady_clock::time_point sent_at;
  std::uint32_t epoch = 0;  // which use of the id (see Client::epoch_now)
};

struct Client {
  enum class Kind { Mux, Dovecot };
  Kind kind = Kind::Dovecot;
  int number = 0;
  UniqueFd fd;
  std::string out;        // bytes still to write
  std::string in;         // bytes read and not yet parsed
  int script = 0;         // actions left before the client winds down
  bool slow = false;      // reads rarely (its socket buffer fills)
  bool eof = false;       // the server closed
  bool write_shut = false;
  // Dovecot
  bool handshake_done = false;
  std::uint32_t next_id = 1;
  std::map<std::uint32_t, std::deque<DovecotReq>> reqs;
  // Id reuse.  A reused id starts a new epoch; before its AUTH goes a marker
  // (a CONT for an unused id, answered by a FAIL at once).  Answers for the
  // id that arrive before the marker's FAIL belong to the old epoch (the
  // server sent them before it read the CANCEL), later ones to the new.
  std::map<std::uint32_t, std::uint32_t> epoch_now;   // epoch of new requests
  std::map<std::uint32_t, std::uint32_t> epoch_live;  // epoch answers now belong to
  std::map<std::uint32_t, std::pair<std::uint32_t, std::uint32_t>> markers;  // marker id -> (id, epoch)
  std::uint32_t next_marker = 1000000;
  // Mux
  std::string mux_user, mux_password;
  bool mux_expect = false;    // request bytes went out: a reply may come
  bool mux_complete = false;  // the whole request went out: a reply or a close must come
  bool mux_replied = false;
  std::uint64_t mux_sent = 0;
  std::chrono::steady_clock::time_point mux_sent_at;
  bool done = false;
};

const char* const kUsers[] = {"alice", "bob", "carol", "dave", "paula", "mallory", "", "al\tice"};

std::string counted(std::string_view v) {
  std::string s;
  s += static_cast<char>((v.size() >> 8) & 0xff);
  s += static_cast<char>(v.size() & 0xff);
  s.append(v);
  return s;
}

std::string hmac_md5_hex(std::string_view key, std::string_view msg) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_md5(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len);
  return hex_encode(std::string_view(reinterpret_cast<char*>(out), len));
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> f;
  std::size_t start = 0;
  for (;;) {
    const auto tab = line.find('\t', start);
    f.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) return f;
    start = tab + 1;
  }
}

// ---------------------------------------------------------------------------
struct World {
  World(Rng& r, const Options& o) : rng(r), opt(o), executor(loop, 64) {}

  Rng& rng;
  Options opt;
  Report report;
  std::uint64_t step = 0;
  std::map<std::string, Account> accounts;
  unsigned fault_percent = 0;  // backend temporary failures / exceptions
  SimLoop loop;
  SimExecutor executor;
  auth::Services services;
  std::vector<std::weak_ptr<auth::Policy>> policies;
  std::unique_ptr<auth::Authenticator> authenticator;
  std::unique_ptr<MuxServer> mux;
  std::unique_ptr<DovecotServer> dovecot;
  std::vector<std::unique_ptr<Client>> clients;
  int started = 0;

  void trace(const std::string& what) {
    if (opt.trace) std::fprintf(stderr, "[%llu] %s\n", static_cast<unsigned long long>(step), what.c_str());
  }

  [[noreturn]] void violation(const Client& c, const std::string& what) {
    std::ostringstream o;
    o << "step " << step << ", client " << c.number << " ("
      << (c.kind == Client::Kind::Mux ? "mux" : "dovecot") << "): " << what;
    throw Violation(o.str());
  }

  // Whether an OK for `password` is allowed for a request sent at step
  // `from` (loop time `sent_at`) and answered at step `to`: the password was
  // the user's enabled password at some moment in [from, to].  For a
  // verify-only (PAM) account the cache may also serve a success stored up
  // to verify_only_ttl before: a password that stopped being right less
  // than kMaxVerifyOnlyTtl before the request was sent (issue 12 item 1).
  bool was_right(const std::string& user, const std::string& password, std::uint64_t from,
                 std::uint64_t to, std::chrono::steady_clock::time_point sent_at) const {
    auto it = accounts.find(user);
    if (it == accounts.end() || it->second.disabled) return false;
    for (const auto& v : it->second.versions) {
      if (v.password != password || v.from > to) continue;
      if (v.until >= from) return true;
      if (it->second.verify_only && v.until_at + kMaxVerifyOnlyTtl >= sent_at) return true;
    }
    return false;
  }
  static constexpr std::chrono::milliseconds kMaxVerifyOnlyTtl{500};
  std::optional<config::CacheConfig> cache_config;

  // -- backends -------------------------------------------------------------
  // A fault drawn for one backend call: temporary failure, or an exception
  // (standard ones are caught by the chain; others reach the executor).
  void maybe_fault(backend::Verdict* verdict, std::string* reason) {
    if (fault_percent == 0 || !rng.chance(fault_percent)) return;
    switch (rng.below(4)) {
      case 0: throw std::runtime_error("simulated backend exception");
      case 1: throw 42;  // not a std::exception: only the executor's catch sees it
      default:
        *verdict = backend::Verdict::TempFail;
        *reason = "simulated outage";
    }
  }

  std::shared_ptr<const auth::BackendChain> make_chain() {
    std::vector<std::unique_ptr<backend::Backend>> v;
    v.push_back(std::make_unique<SimVerifyBackend>(*this, "pam"));
    v.push_back(std::make_unique<SimLookupBackend>(*this, "file"));
    // A cheap decoy: the simulator checks lifetimes, not hash costs.
    return std::make_shared<auth::BackendChain>(std::move(v), Secret("{PLAIN}decoy"), "PLAIN");
  }

  // A configuration the daemon could reload into.
  void reload() {
    config::Config cfg;
    if (cache_config && rng.chance(50)) {
      cfg.cache = cache_config;  // unchanged settings: make_services keeps the cache and its entries
    } else if (rng.chance(60)) {
      config::CacheConfig cc;
      cc.size = 1 + rng.below(32);
      cc.ttl = std::chrono::milliseconds(100 + rng.below(5000));
      cc.negative_ttl = std::chrono::milliseconds(rng.below(3000));
      cc.verify_only_ttl =
          std::chrono::milliseconds(rng.below(static_cast<std::uint64_t>(kMaxVerifyOnlyTtl.count()) + 1));
      cfg.cache = cc;
    }
    cache_config = cfg.cache;
    cfg.policy.enabled = rng.chance(60);
    cfg.policy.penalty = std::chrono::milliseconds(rng.below(300));
    cfg.policy.max_penalty = std::chrono::milliseconds(1000);
    cfg.policy.max_user_penalty = std::chrono::milliseconds(500);
    cfg.policy.max_in_flight = 1 + static_cast<int>(rng.below(6));
    auth::Services next = auth::make_services(cfg, services, [this] { return loop.now(); });
    if (next.policy && next.policy != services.policy) policies.push_back(next.policy);
    services = std::move(next);
    fault_percent = rng.chance(70) ? 0 : static_cast<unsigned>(rng.below(30));
    if (authenticator) {
      authenticator->set_services(services);
      authenticator->set_chain(make_chain());
    }
    config::DovecotConfig dc;
    dc.mechanisms = {"PLAIN", "LOGIN", "CRAM-MD5"};
    dc.failure_delay = std::chrono::milliseconds(rng.chance(50) ? 0 : rng.below(500));
    dc.temp_failure_disconnect = rng.chance(50);
    dc.request_timeout = std::chrono::milliseconds(200 + rng.below(3000));
    dc.idle_timeout = std::chrono::milliseconds(300 + rng.below(5000));
    config::MuxConfig mc;
    mc.request_timeout = std::chrono::milliseconds(200 + rng.below(3000));
    mc.failure_delay = std::chrono::milliseconds(rng.chance(50) ? 0 : rng.below(300));
    mc.max_field = 64 + rng.below(64);
    if (dovecot) dovecot->set_options(dc);
    if (mux) mux->set_options(mc);
    dovecot_config = dc;
    mux_config = mc;
    trace("reload");
  }
  config::DovecotConfig dovecot_config;
  config::MuxConfig mux_config;

  void change_password() {
    // paula is served by the verify-only backend: her cache entries are not
    // keyed on a credential, so was_right allows her old password for up to
    // verify_only_ttl after the change, and no longer.
    const char* names[] = {"alice", "bob", "carol", "paula"};
    Account& a = accounts[names[rng.below(4)]];
    a.versions.back().until = step;
    a.versions.back().until_at = loop.now();
    a.versions.push_back({"pw" + std::to_string(rng.below(4)), step, UINT64_MAX});
    trace("password change");
  }

  void build() {
    accounts["alice"].versions = {{"pw0"}};
    accounts["bob"].versions = {{"pw1"}};
    accounts["carol"].versions = {{"pw2"}};
    accounts["dave"].versions = {{"pw3"}};
    accounts["dave"].disabled = true;
    accounts["paula"].versions = {{"pw4"}};
    accounts["paula"].verify_only = true;
    services.metrics = std::make_shared<Metrics>();
    reload();
    authenticator = std::make_unique<auth::Authenticator>(loop, executor, make_chain(), services);
    if (opt.mux) mux = std::make_unique<MuxServer>(loop, *authenticator, mux_config, nullptr);
    if (opt.dovecot)
      dovecot = std::make_unique<DovecotServer>(loop, *authenticator, dovecot_config, nullptr);
  }

  // -- clients ---------------------------------------------------------------
  void connect() {
    auto c = std::make_unique<Client>();
    c->number = started++;
    if (opt.mux && opt.dovecot) c->kind = rng.chance(50) ? Client::Kind::Mux : Client::Kind::Dovecot;
    else c->kind = opt.mux ? Client::Kind::Mux : Client::Kind::Dovecot;
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
      throw std::runtime_error("socketpair failed");
    c->fd.reset(sv[0]);
    c->slow = rng.chance(10);
    if (c->slow) {
      const int small = 2048;
      ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
      ::setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    c->script = 1 + static_cast<int>(rng.below(c->kind == Client::Kind::Mux ? 2 : 12));
    ++report.sessions;
    trace("connect client " + std::to_string(c->number));
    if (c->kind == Client::Kind::Dovecot) c->out = "VERSION\t1\t2\nCPID\t" + std::to_string(c->number) + "\n";
    Client& ref = *c;
    clients.push_back(std::move(c));
    net::Server& server = ref.kind == Client::Kind::Mux ? mux->server() : dovecot->server();
    server.adopt(UniqueFd(sv[1]));
  }

  std::string pick_user() { return kUsers[rng.below(sizeof kUsers / sizeof kUsers[0])]; }

  std::string pick_password(const std::string& user) {
    auto it = accounts.find(user);
    if (it != accounts.end() && rng.chance(60)) return it->second.current();
    if (it != accounts.end() && rng.chance(30) && it->second.versions.size() > 1)
      return it->second.versions[rng.below(it->second.versions.size())].password;
    return "pw" + std::to_string(rng.below(6));
  }

  std::string junk(std::size_t max) {
    std::string s(rng.below(max + 1), '\0');
    for (auto& ch : s) ch = static_cast<char>(rng.below(256));
    return s;
  }

  bool client_readable(const Client& c) const {
    pollfd p{c.fd.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR));
  }

  std::size_t waiting(const Client& c) const {
    std::size_t n = 0;
    for (const auto& [id, q] : c.reqs)
      for (const auto& r : q) n += r.waiting ? 1 : 0;
    return n;
  }

  // Whether the client has anything to do now.
  bool client_runnable(const Client& c) const {
    if (c.done) return false;
    if (!c.out.empty() && !c.eof && !c.write_shut) return true;
    if (client_readable(c)) return true;
    if (c.eof) return true;  // will close
    if (c.kind == Client::Kind::Dovecot) return c.script > 0 || waiting(c) == 0;
    return c.script > 0 || !c.mux_complete || c.mux_replied || !c.write_shut;
  }

  void close_client(Client& c, const char* why) {
    trace("client " + std::to_string(c.number) + " closes: " + why);
    if (c.kind == Client::Kind::Dovecot)
      for (auto& [id, q] : c.reqs)
        for (auto& r : q) r.waiting = false;
    c.fd.reset();
    c.done = true;
  }

  void client_write(Client& c) {
    if (c.out.empty()) return;
    const std::size_t n = 1 + rng.below(c.out.size());
    const ssize_t w = ::send(c.fd.get(), c.out.data(), n, MSG_NOSIGNAL);
    if (w > 0) {
      c.out.erase(0, static_cast<std::size_t>(w));
      return;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    c.eof = true;  // the server is gone
  }

  void client_read(Client& c) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
      if (n > 0) {
        c.in.append(buf, static_cast<std::size_t>(n));
        if (c.slow) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      c.eof = true;
      break;
    }
    if (c.kind == Client::Kind::Dovecot) {
      std::size_t nl;
      while (!c.done && (nl = c.in.find('\n')) != std::string::npos) {
        std::string line = c.in.substr(0, nl);
        c.in.erase(0, nl + 1);
        dovecot_line(c, line);
      }
    } else {
      mux_reply(c);
    }
  }

  // -- Dovecot client --------------------------------------------------------
  void dovecot_line(Client& c, const std::string& line) {
    const auto f = split_tabs(line);
    if (opt.trace && c.handshake_done) trace("client " + std::to_string(c.number) + " reads " + line);
    if (!c.handshake_done) {
      static const std::set<std::string> handshake = {"VERSION", "MECH", "SPID", "CUID", "COOKIE", "DONE"};
      if (!handshake.count(f[0])) violation(c, "unexpected line in the handshake: " + line);
      if (f[0] == "DONE") c.handshake_done = true;
      return;
    }
    if (f.size() < 2) violation(c, "malformed line: " + line);
    const auto id = static_cast<std::uint32_t>(std::stoul(f[1]));
    std::string user;
    bool has_user = false;
    for (std::size_t i = 2; i < f.size(); ++i)
      if (f[i].rfind("user=", 0) == 0) {
        user = f[i].substr(5);
        has_user = true;
      }
    if (auto m = c.markers.find(id); m != c.markers.end()) {
      if (f[0] != "FAIL" || has_user) violation(c, "unexpected answer to a marker: " + line);
      const auto [rid, epoch] = m->second;
      c.markers.erase(m);
      auto& old = c.reqs[rid];
      for (auto it = old.begin(); it != old.end();) it = it->epoch < epoch ? old.erase(it) : it + 1;
      c.epoch_live[rid] = std::max(c.epoch_live[rid], epoch);
      return;
    }
    auto& q = c.reqs[id];
    const std::uint32_t live = c.epoch_live[id];
    if (f[0] == "CONT") {
      // For a request of this id that has not had its final answer.
      // Ids are reused only after requests that never get a CONT (PLAIN with
      // an initial response), so at most one request of an id can get one.
      DovecotReq* r = nullptr;
      for (auto& x : q)
        if (!x.stray && x.mech != "PLAIN" && x.epoch == live) r = &x;
      if (r == nullptr) violation(c, "CONT for no request that can be continued: " + line + describe(q));
      answer_cont(c, *r, f.size() > 2 ? f[2] : "");
      return;
    }
    if (f[0] != "OK" && f[0] != "FAIL") violation(c, "unknown reply: " + line);
    // The first request of this id that the answer can belong to; the ones
    // before it are over (a later request's answer means they were dropped).
    for (auto it = q.begin(); it != q.end(); ++it) {
      if (it->epoch != live) continue;
      bool fits;
      if (f[0] == "OK") {
        fits = !it->stray && has_user && user == it->user &&
               was_right(it->user, it->password, it->sent, step, it->sent_at);
      } else {
        if (it->stray) fits = !has_user;
        else fits = it->poisoned || !has_user || user == it->user;
      }
      if (!fits) continue;
      if (f[0] == "OK") ++report.ok_answers;
      trace("client " + std::to_string(c.number) + " got " + f[0] + " " + f[1] + " for " + it->user);
      q.erase(q.begin(), it + 1);
      return;
    }
    if (f[0] == "OK")
      violation(c, "OK for no request that proved this user's password: " + line + describe(q));
    violation(c, "FAIL for no request that asked: " + line + describe(q));
  }

  static std::string describe(const std::deque<DovecotReq>& q) {
    std::string s = " (requests with this id:";
    for (const auto& r : q)
      s += " [" + std::to_string(r.id) + " " + r.mech + " user=" + r.user + " pw=" + r.password +
           (r.waiting ? "" : " no-answer-expected") + (r.poisoned ? " poisoned" : "") +
           (r.stray ? " stray" : "") + "]";
    return s + ")";
  }

  // Every CONT may arrive after its request ended (the server answered
  // meanwhile): then it earns a user-less FAIL, which the client may see.
  void send_cont(Client& c, std::uint32_t id, std::string_view data) {
    c.out += "CONT\t" + std::to_string(id) + "\t" + base64_encode(data) + "\n";
    trace("client " + std::to_string(c.number) + " sends CONT " + std::to_string(id));
    DovecotReq s;
    s.id = id;
    s.stray = true;
    s.waiting = false;
    s.sent = step;
    s.sent_at = loop.now();
    s.epoch = c.epoch_now[id];
    c.reqs[id].push_back(s);
  }

  void answer_cont(Client& c, DovecotReq& r, const std::string& challenge_b64) {
    if (!r.waiting) return;  // cancelled or abandoned: the client stays silent
    if (rng.chance(5)) {
      // Give up without a word (Postfix does this): the server expires it.
      r.waiting = false;
      return;
    }
    if (r.poisoned) return send_cont(c, r.id, junk(20));
    const int stage = r.stage++;
    if (r.mech == "PLAIN-NOIR") return send_cont(c, r.id, std::string("\0", 1) + r.user + std::string("\0", 1) + r.password);
    if (r.mech == "LOGIN") return send_cont(c, r.id, stage == 0 ? r.user : r.password);
    if (r.mech == "CRAM-MD5") {
      const auto challenge = base64_decode(challenge_b64).value_or("");
      return send_cont(c, r.id, r.user + " " + hmac_md5_hex(r.password, challenge));
    }
    violation(c, "CONT for a request of mechanism " + r.mech);
  }

  void dovecot_action(Client& c) {
    const auto what = rng.below(100);
    if (what < 55) {  // a new request
      DovecotReq r;
      // Reuse an id whose requests are all over or given up on: the case a
      // completion must never confuse.
      std::vector<std::uint32_t> reusable;
      for (auto& [id, q] : c.reqs) {
        // Only answered or cancelled requests free an id: one the client
        // just stopped waiting for may still be in flight in the server
        // (reusing its id is the client's protocol error, not a test).
        bool busy = id >= 100000;
        for (auto& x : q) busy |= !x.stray && !x.cancelled;
        if (!busy) reusable.push_back(id);
      }
      if (!reusable.empty() && rng.chance(50)) {
        r.id = reusable[rng.below(reusable.size())];
        r.epoch = ++c.epoch_now[r.id];
        const std::uint32_t marker = c.next_marker++;
        c.markers[marker] = {r.id, r.epoch};
        c.out += "CONT\t" + std::to_string(marker) + "\tx\n";
        trace("client " + std::to_string(c.number) + " sends marker " + std::to_string(marker));
      } else {
        r.id = c.next_id++;
      }
      r.user = pick_user();
      r.password = pick_password(r.user);
      static const char* mechs[] = {"PLAIN", "PLAIN-NOIR", "LOGIN", "CRAM-MD5"};
      r.mech = mechs[rng.below(4)];
      r.sent = step;
      r.sent_at = loop.now();
      std::string line = "AUTH\t" + std::to_string(r.id) + "\t" +
                         (r.mech == "PLAIN-NOIR" ? std::string("PLAIN") : r.mech) + "\tservice=smtp";
      if (rng.chance(70)) line += "\trip=10.0.0." + std::to_string(rng.below(3));
      if (rng.chance(10)) line += "\tno-penalty";
      if (r.mech == "PLAIN")
        line += "\tresp=" + base64_encode(std::string("\0", 1) + r.user + std::string("\0", 1) + r.password);
      c.out += line + "\n";
      trace("client " + std::to_string(c.number) + " sends " + line);
      if (r.user.find('\t') != std::string::npos) r.poisoned = true;  // escaped differently
      c.reqs[r.id].push_back(r);
      ++report.requests;
      --c.script;
      return;
    }
    if (what < 70) {  // CANCEL one in flight
      std::vector<DovecotReq*> live;
      for (auto& [id, q] : c.reqs)
        for (auto& x : q)
          if (x.waiting && !x.stray) live.push_back(&x);
      if (live.empty()) return;
      DovecotReq& r = *live[rng.below(live.size())];
      c.out += "CANCEL\t" + std::to_string(r.id) + "\n";
      trace("client " + std::to_string(c.number) + " cancels " + std::to_string(r.id));
      r.waiting = false;
      r.cancelled = true;
      --c.script;
      return;
    }
    if (what < 78) {  // a CONT nobody asked for
      std::vector<DovecotReq*> live;
      for (auto& [id, q] : c.reqs)
        for (auto& x : q)
          if (x.waiting && !x.stray) live.push_back(&x);
      if (!live.empty() && rng.chance(60)) {
        DovecotReq& r = *live[rng.below(live.size())];
        r.poisoned = true;
        send_cont(c, r.id, junk(16));
      } else {
        send_cont(c, 100000 + static_cast<std::uint32_t>(rng.below(5)), "x");
      }
      --c.script;
      return;
    }
    if (what < 82) {  // garbage: the server closes the connection
      c.out += junk(40) + "\n";
      c.script = 0;
      return;
    }
    if (what < 88) {  // reset now, whatever is unsent or unanswered
      close_client(c, "reset");
      return;
    }
    --c.script;  // idle
  }

  // -- mux client ------------------------------------------------------------
  void mux_action(Client& c) {
    if (c.mux_expect || c.script <= 0) return;
    c.script = 0;
    c.mux_user = pick_user();
    c.mux_password = pick_password(c.mux_user);
    std::string frame;
    if (rng.chance(5)) frame = counted(std::string(200, 'x'));  // over max_field
    else frame = counted(c.mux_user);
    frame += counted(c.mux_password) + counted("smtp") + counted("");
    if (rng.chance(50)) frame += counted("10.0.0." + std::to_string(rng.below(3)) + ";25");
    c.mux_expect = true;
    c.mux_sent = step;
    c.mux_sent_at = loop.now();
    ++report.requests;
    if (rng.chance(10)) {
      // Cut anywhere; hang up once it is written.
      c.out = frame.substr(0, rng.below(frame.size()));
      return;
    }
    if (rng.chance(10)) frame += junk(10);
    c.out = frame;
    c.mux_complete = true;
  }

  void mux_reply(Client& c) {
    if (c.in.size() < 2) return;
    const std::size_t len = (static_cast<unsigned char>(c.in[0]) << 8) | static_cast<unsigned char>(c.in[1]);
    if (c.in.size() < 2 + len) return;
    const std::string text = c.in.substr(2, len);
    c.in.erase(0, 2 + len);
    if (c.mux_replied) violation(c, "a second reply on one mux connection: " + text);
    if (!c.mux_expect) violation(c, "a mux reply to no complete request: " + text);
    c.mux_replied = true;
    if (text == "OK") {
      if (!was_right(c.mux_user, c.mux_password, c.mux_sent, step, c.mux_sent_at))
        violation(c, "mux OK for user " + c.mux_user + " with password " + c.mux_password);
      ++report.ok_answers;
    } else if (text.rfind("NO", 0) != 0) {
      violation(c, "unknown mux reply: " + text);
    }
    trace("client " + std::to_string(c.number) + " got mux " + text);
  }

  void client_step(Client& c) {
    if (c.eof) {
      client_read(c);  // what came before the hang-up
      if (!c.done) close_client(c, "server closed");
      return;
    }
    const bool can_write = !c.out.empty() && !c.write_shut;
    const auto r = rng.below(100);
    if (can_write && r < 45) return client_write(c);
    if (client_readable(c) && (!c.slow || r < 55 || c.script <= 0)) return client_read(c);
    if (c.kind == Client::Kind::Dovecot) {
      if (c.script > 0 && c.handshake_done) return dovecot_action(c);
      if (c.script > 0 && rng.chance(30)) return dovecot_action(c);  // pipelined before DONE
      if (c.script <= 0 && c.out.empty() && waiting(c) == 0) return close_client(c, "finished");
      if (can_write) return client_write(c);
      return;
    }
    if (c.script > 0) return mux_action(c);
    if (can_write) return client_write(c);
    if (!c.mux_complete || c.mux_replied) return close_client(c, "finished");
    if (!c.write_shut && rng.chance(30)) {
      ::shutdown(c.fd.get(), SHUT_WR);  // testsaslauthd-style half-close
      c.write_shut = true;
    }
  }

  // -- the scheduler ---------------------------------------------------------
  std::size_t active() const {
    std::size_t n = 0;
    for (const auto& c : clients) n += c->done ? 0 : 1;
    return n;
  }

  void run() {
    build();
    for (;;) {
      if (++step > opt.max_steps) throw Violation("the world did not settle within max_steps");
      enum Act { Connect, ClientAct, Fd, Posted, Job, Timer, Reload, Passwd, Tick };
      std::vector<Act> acts;
      std::vector<Client*> runnable;
      for (auto& c : clients)
        if (client_runnable(*c)) runnable.push_back(c.get());
      const auto ready = loop.ready();
      if (started < opt.sessions && active() < static_cast<std::size_t>(opt.max_concurrent)) acts.push_back(Connect);
      if (!runnable.empty()) acts.push_back(ClientAct);
      if (!ready.empty()) acts.push_back(Fd);
      if (loop.has_posted()) acts.push_back(Posted);
      if (executor.has_jobs()) acts.push_back(Job);
      if (loop.timer_due()) acts.push_back(Timer);
      if (acts.empty()) {
        // Quiet: let time pass to the next timer, or the world is done.
        if (loop.advance_to_next_timer()) continue;
        break;
      }
      if (rng.chance(1)) acts.push_back(Reload);
      if (rng.chance(1)) acts.push_back(Passwd);
      if (rng.chance(3)) acts.push_back(Tick);
      switch (acts[rng.below(acts.size())]) {
        case Connect: connect(); break;
        case ClientAct: client_step(*runnable[rng.below(runnable.size())]); break;
        case Fd: {
          const auto& [fd, ev] = ready[rng.below(ready.size())];
          loop.dispatch(fd, ev);
          break;
        }
        case Posted: loop.run_posted(rng); break;
        case Job: executor.run_one(rng); break;
        case Timer: loop.run_due_timer(); break;
        case Reload: reload(); break;
        case Passwd: change_password(); break;
        case Tick: loop.advance(std::chrono::milliseconds(rng.below(400))); break;
      }
    }
    // Quiet and every client gone?
    for (auto& c : clients) {
      if (c->done) continue;
      if (c->kind == Client::Kind::Dovecot && waiting(*c) > 0)
        violation(*c, "the world went quiet with requests unanswered" + [&] {
          std::string s;
          for (auto& [id, q] : c->reqs) s += describe(q);
          return s;
        }());
      if (c->kind == Client::Kind::Mux) violation(*c, "the world went quiet with a mux client waiting");
      violation(*c, "the world went quiet with a client still open");
    }
    const std::size_t conns = (mux ? mux->connections() : 0) + (dovecot ? dovecot->connections() : 0);
    if (conns != 0) throw Violation("connections left after every client went: " + std::to_string(conns));
    if (authenticator->in_flight() != 0)
      throw Violation("requests in flight after every client went: " +
                      std::to_string(authenticator->in_flight()));
    for (auto& w : policies)
      if (auto p = w.lock(); p && p->in_flight() != 0)
        throw Violation("policy slots held after every client went: " + std::to_string(p->in_flight()));
    if (loop.timer_count() != 0) throw Violation("timers left: " + std::to_string(loop.timer_count()));
    if (executor.has_jobs() || loop.has_posted()) throw Violation("work left after the world settled");
    if (loop.watched() != 0) throw Violation("descriptors still watched: " + std::to_string(loop.watched()));
  }
};

backend::LookupResult SimLookupBackend::lookup(const backend::Query& q) {
  backend::Verdict v = backend::Verdict::Ok;
  backend::LookupResult r;
  world_.maybe_fault(&v, &r.reason);
  if (v == backend::Verdict::TempFail) {
    r.status = backend::Status::TempFail;
    return r;
  }
  auto it = world_.accounts.find(std::string(q.user));
  if (it == world_.accounts.end() || it->second.verify_only) return r;
  r.status = backend::Status::Found;
  r.credential.stored = Secret("{PLAIN}" + it->second.current());
  r.credential.disabled = it->second.disabled;
  return r;
}

backend::VerifyResult SimVerifyBackend::verify(const backend::Query& q, std::string_view password) {
  backend::VerifyResult r;
  world_.maybe_fault(&r.verdict, &r.reason);
  if (r.verdict == backend::Verdict::TempFail) return r;
  auto it = world_.accounts.find(std::string(q.user));
  if (it == world_.accounts.end() || !it->second.verify_only) return {backend::Verdict::Unknown, ""};
  r.verdict = password == it->second.current() ? backend::Verdict::Ok : backend::Verdict::Fail;
  return r;
}

}  // namespace

Report run_world(Rng& rng, const Options& options) {
  reseed_randomness(rng.next());
  World w(rng, options);
  try {
    w.run();
  } catch (const Violation& v) {
    w.report.ok = false;
    w.report.failure = v.what();
  } catch (const std::exception& e) {
    w.report.ok = false;
    w.report.failure = "step " + std::to_string(w.step) + ": exception: " + e.what();
  }
  w.report.steps = w.step;
  // Tear down in the daemon's order: servers (their sessions kill requests),
  // then the authenticator, then the work still queued.
  w.mux.reset();
  w.dovecot.reset();
  w.authenticator.reset();
  w.clients.clear();
  return w.report;
}

}  // namespace mailauth::sim
