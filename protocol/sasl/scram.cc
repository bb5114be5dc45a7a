#include "protocol/sasl/scram.h"

#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "src/password/schemes.h"
#include "src/util/encoding.h"

namespace mailauth::sasl {

namespace {

// saslname: "=2C" is ',' and "=3D" is '='; any other '=' is an error.
std::optional<std::string> decode_saslname(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '=') {
      out += s[i];
      continue;
    }
    if (s.substr(i, 3) == "=2C") out += ',';
    else if (s.substr(i, 3) == "=3D") out += '=';
    else return std::nullopt;
    i += 2;
  }
  return out;
}

std::string encode_saslname(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ',') out += "=2C";
    else if (c == '=') out += "=3D";
    else out += c;
  }
  return out;
}

std::string xor_bytes(std::string_view a, std::string_view b) {
  std::string out(a.size(), '\0');
  for (std::size_t i = 0; i < a.size(); ++i) out[i] = static_cast<char>(a[i] ^ b[i]);
  return out;
}

// Printable nonce without ',' (RFC 5802: printable except ',').
std::string make_nonce() {
  unsigned char raw[24];
  randombytes_buf(raw, sizeof raw);
  return base64_encode(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
}

std::vector<std::string_view> split_commas(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const auto c = s.find(',', start);
    out.push_back(s.substr(start, c == std::string_view::npos ? std::string_view::npos : c - start));
    if (c == std::string_view::npos) break;
    start = c + 1;
  }
  return out;
}

}  // namespace

// ---- shared state -------------------------------------------------------------

namespace {
constexpr std::size_t kMaxSalt = crypto_generichash_BYTES_MAX;  // 64
std::uint64_t pack(unsigned iterations, std::size_t salt_size) {
  return (static_cast<std::uint64_t>(iterations) << 8) | salt_size;
}
}  // namespace

ScramShared::ScramShared() : key_(crypto_generichash_KEYBYTES, '\0') {
  randombytes_buf(key_.data(), key_.size());
}

ScramShared::ScramShared(std::string_view key) : key_(key) {
  if (key_.size() < crypto_generichash_KEYBYTES_MIN || key_.size() > crypto_generichash_KEYBYTES_MAX)
    throw std::invalid_argument("ScramShared: key size");
}

ScramShared::~ScramShared() { wipe(key_.data(), key_.size()); }

const std::shared_ptr<ScramShared>& ScramShared::process() {
  static const std::shared_ptr<ScramShared> instance = std::make_shared<ScramShared>();
  return instance;
}

ScramShared::PerAlgorithm& ScramShared::of(std::string_view algorithm) {
  return algorithms_[algorithm == "SHA1" ? 0 : 1];
}
const ScramShared::PerAlgorithm& ScramShared::of(std::string_view algorithm) const {
  return algorithms_[algorithm == "SHA1" ? 0 : 1];
}

ScramShared::Shape ScramShared::shape(std::string_view algorithm) const {
  Shape s;
  const std::uint64_t packed = of(algorithm).shape.load(std::memory_order_relaxed);
  if (packed != 0) {
    s.iterations = static_cast<unsigned>(packed >> 8);
    s.salt_size = static_cast<std::size_t>(packed & 0xff);
  }
  return s;
}

void ScramShared::saw_verifier(std::string_view algorithm, const password::ScramKeys& keys) {
  PerAlgorithm& a = of(algorithm);
  a.plaintext.store(false, std::memory_order_relaxed);
  // scram_parse bounds the iterations; a salt size we cannot imitate keeps
  // the previous shape.
  if (keys.salt.empty() || keys.salt.size() > kMaxSalt) return;
  a.shape.store(pack(keys.iterations, keys.salt.size()), std::memory_order_relaxed);
}

void ScramShared::saw_plaintext(std::string_view algorithm) {
  of(algorithm).plaintext.store(true, std::memory_order_relaxed);
}

bool ScramShared::decoy_derives(std::string_view algorithm) const {
  return of(algorithm).plaintext.load(std::memory_order_relaxed);
}

std::string ScramShared::salt_for(std::string_view algorithm, std::string_view user,
                                  std::size_t size) const {
  // BLAKE2b keyed with the process's key over "<algorithm>\0<user>".
  const std::string message = std::string(algorithm) + '\0' + std::string(user);
  unsigned char out[kMaxSalt];
  crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size(), reinterpret_cast<const unsigned char*>(key_.data()),
                     key_.size());
  return std::string(reinterpret_cast<char*>(out), std::min(size, sizeof out));
}

// ---- server -------------------------------------------------------------------

Step Scram::start(const std::optional<std::string_view>& initial) {
  if (!initial || initial->empty()) return Step::challenge_of("");
  return client_first(*initial);
}

Step Scram::step(std::string_view response) {
  switch (state_) {
    case State::ClientFirst: return client_first(response);
    case State::ClientFinal: return client_final(response);
    case State::FinalAck: {
      state_ = State::Done;
      if (!response.empty()) return Step::failure("unexpected data after SCRAM server-final", user_);
      Step s;
      s.kind = Step::Kind::Success;
      s.user = user_;
      return s;
    }
    case State::WaitCredential:
    case State::Done: break;
  }
  return Step::failure("unexpected SCRAM data", user_);
}

Step Scram::client_first(std::string_view message) {
  if (message.find('\0') != std::string_view::npos) return Step::failure("NUL in SCRAM message");
  // gs2-header: cbind-flag "," [authzid] ","
  const auto c1 = message.find(',');
  const auto c2 = c1 == std::string_view::npos ? c1 : message.find(',', c1 + 1);
  if (c2 == std::string_view::npos) return Step::failure("malformed SCRAM client-first");
  const std::string_view flag = message.substr(0, c1);
  const std::string_view authz = message.substr(c1 + 1, c2 - c1 - 1);
  if (flag != "n" && flag != "y") {
    return Step::failure(flag.rfind("p=", 0) == 0 ? "channel binding is not supported"
                                                   : "malformed SCRAM gs2 header");
  }
  gs2_header_ = std::string(message.substr(0, c2 + 1));
  client_first_bare_ = std::string(message.substr(c2 + 1));
  const auto parts = split_commas(client_first_bare_);
  if (parts.size() < 2 || parts[0].rfind("n=", 0) != 0 || parts[1].rfind("r=", 0) != 0)
    return Step::failure("malformed SCRAM client-first (m= extensions are not supported)");
  auto name = decode_saslname(parts[0].substr(2));
  if (!name || name->empty()) return Step::failure("malformed SCRAM user name");
  user_ = *name;
  if (!authz.empty()) {
    auto az = authz.rfind("a=", 0) == 0 ? decode_saslname(authz.substr(2)) : std::nullopt;
    if (!az || *az != user_)
      return Step::failure("authorization id differs from the user name", user_);
  }
  client_nonce_ = std::string(parts[1].substr(2));
  if (client_nonce_.empty()) return Step::failure("empty SCRAM client nonce", user_);
  state_ = State::WaitCredential;
  Step s;
  s.kind = Step::Kind::NeedCredential;
  s.user = user_;
  return s;
}

Step Scram::credential(const std::optional<StoredCredential>& cred) {
  if (state_ != State::WaitCredential) return Step::failure("unexpected credential", user_);
  // Everything the server-first message carries is fixed before looking at
  // the credential, except for a stored verifier's own salt and iterations.
  const ScramShared::Shape shape = shared_->shape(algorithm_);
  const std::string salt = shared_->salt_for(algorithm_, user_, shape.salt_size);
  std::optional<password::ScramKeys> keys;
  if (cred) {
    bool derived = false;
    keys = password::scram_keys_for(algorithm_, cred->stored, cred->default_scheme, salt,
                                    shape.iterations, &derived);
    if (keys && derived) shared_->saw_plaintext(algorithm_);
    else if (keys) shared_->saw_verifier(algorithm_, *keys);
    else
      decoy_reason_ = "stored credential cannot serve SCRAM-" +
                      std::string(algorithm_ == "SHA1" ? "SHA-1" : "SHA-256") +
                      " (needs plaintext or a {SCRAM-*} verifier)";
  } else {
    decoy_reason_ = "unknown user";
  }
  if (!keys) {
    // Decoy keys that no proof can match (and that decoy_ refuses anyway),
    // at the cost of the last real credential: a PBKDF2 run when that was
    // plaintext.
    decoy_ = true;
    const std::size_t n = password::scram_digest_size(algorithm_);
    std::string r(2 * n, '\0');
    randombytes_buf(r.data(), r.size());
    if (shared_->decoy_derives(algorithm_)) {
      keys = password::scram_derive(algorithm_, r, salt, shape.iterations);
    } else {
      password::ScramKeys k;
      k.iterations = shape.iterations;
      k.salt = salt;
      k.stored_key = Secret(std::string_view(r).substr(0, n));
      k.server_key = Secret(std::string_view(r).substr(n));
      keys = std::move(k);
    }
    wipe(r.data(), r.size());
  }
  keys_ = std::move(*keys);
  if (server_nonce_.empty()) server_nonce_ = make_nonce();
  server_first_ = "r=" + client_nonce_ + server_nonce_ + ",s=" + base64_encode(keys_.salt) +
                  ",i=" + std::to_string(keys_.iterations);
  state_ = State::ClientFinal;
  return Step::challenge_of(server_first_);
}

Step Scram::client_final(std::string_view message) {
  state_ = State::Done;
  const auto p = message.rfind(",p=");
  if (p == std::string_view::npos) return Step::failure("malformed SCRAM client-final", user_);
  const std::string_view without_proof = message.substr(0, p);
  const auto parts = split_commas(without_proof);
  if (parts.size() < 2 || parts[0].rfind("c=", 0) != 0 || parts[1].rfind("r=", 0) != 0)
    return Step::failure("malformed SCRAM client-final", user_);
  if (parts[0].substr(2) != base64_encode(gs2_header_))
    return Step::failure("SCRAM channel binding data does not match", user_);
  if (parts[1].substr(2) != client_nonce_ + server_nonce_)
    return Step::failure("SCRAM nonce does not match", user_);
  auto proof = base64_decode(message.substr(p + 3));
  const std::size_t n = password::scram_digest_size(algorithm_);
  if (!proof || proof->size() != n) return Step::failure("malformed SCRAM proof", user_);

  const std::string auth_message =
      client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
  std::string client_signature = password::scram_hmac(algorithm_, keys_.stored_key.view(), auth_message);
  std::string client_key = xor_bytes(*proof, client_signature);
  std::string stored = password::scram_hash(algorithm_, client_key);
  const bool match = constant_time_equal(stored, keys_.stored_key.view()) && !decoy_;
  for (std::string* s : {&client_signature, &client_key, &stored}) wipe(s->data(), s->size());
  if (!match) return Step::failure(decoy_ ? decoy_reason_ : "wrong password", user_);

  server_signature_ =
      "v=" + base64_encode(password::scram_hmac(algorithm_, keys_.server_key.view(), auth_message));
  if (final_resp_ok_) {
    Step s;
    s.kind = Step::Kind::Success;
    s.user = user_;
    s.final_data = server_signature_;
    return s;
  }
  state_ = State::FinalAck;
  return Step::challenge_of(server_signature_);
}

// ---- client ------------------------------------------------------------------

ScramClient::ScramClient(std::string algorithm, std::string user, std::string password,
                         std::string client_nonce)
    : algorithm_(std::move(algorithm)), user_(std::move(user)), password_(std::move(password)),
      nonce_(client_nonce.empty() ? make_nonce() : std::move(client_nonce)) {
  first_bare_ = "n=" + encode_saslname(user_) + ",r=" + nonce_;
}

std::string ScramClient::client_first() const { return "n,," + first_bare_; }

std::optional<std::string> ScramClient::client_final(std::string_view server_first) {
  const auto parts = split_commas(server_first);
  if (parts.size() < 3 || parts[0].rfind("r=", 0) != 0 || parts[1].rfind("s=", 0) != 0 ||
      parts[2].rfind("i=", 0) != 0)
    return std::nullopt;
  const std::string_view nonce = parts[0].substr(2);
  if (nonce.rfind(nonce_, 0) != 0) return std::nullopt;
  auto salt = base64_decode(parts[1].substr(2));
  unsigned iterations = 0;
  const std::string_view it = parts[2].substr(2);
  if (!salt || std::from_chars(it.data(), it.data() + it.size(), iterations).ptr !=
                   it.data() + it.size() || iterations == 0)
    return std::nullopt;
  password::ScramKeys k = password::scram_derive(algorithm_, password_, *salt, iterations);
  const std::string without_proof = "c=biws,r=" + std::string(nonce);
  const std::string auth_message = first_bare_ + "," + std::string(server_first) + "," + without_proof;
  std::string client_key = password::scram_client_key(algorithm_, password_, *salt, iterations);
  std::string signature = password::scram_hmac(algorithm_, k.stored_key.view(), auth_message);
  const std::string proof = xor_bytes(client_key, signature);
  server_signature_ =
      "v=" + base64_encode(password::scram_hmac(algorithm_, k.server_key.view(), auth_message));
  wipe(client_key.data(), client_key.size());
  return without_proof + ",p=" + base64_encode(proof);
}

bool ScramClient::verify_server_final(std::string_view server_final) const {
  return !server_signature_.empty() && constant_time_equal(server_final, server_signature_);
}

}  // namespace mailauth::sasl
