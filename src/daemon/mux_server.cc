#include "src/daemon/mux_server.h"

#include "src/util/log.h"

namespace mailauth {

namespace {
constexpr std::size_t kDrainLimit = 64 * 1024;
constexpr std::chrono::milliseconds kDrainTimeout{2000};
// What a failed login gets.  libsasl2 and testsaslauthd only look at "NO";
// the text is the same for every reason so it reveals nothing.
constexpr std::string_view kFailReply = "NO authentication failed";
}  // namespace

class MuxServer::Session final : public net::Session {
 public:
  explicit Session(MuxServer& server)
      : server_(server), decoder_(std::make_unique<mux::Decoder>(server.config_.max_field)) {}

  void on_open(net::Connection& c) override {
    const auto timeout = server_.config_.request_timeout;
    c.set_timer(timeout, [&c, timeout] {
      log::warning("mux: " + c.peer() + ": no complete request within " +
                   std::to_string(timeout.count()) + " ms; closing");
      c.close();
    });
  }

  void on_input(net::Connection& c, std::string_view bytes) override {
    if (!decoder_) return;
    const auto st = decoder_->feed(bytes);
    if (st != mux::Decoder::Status::NeedMore) complete(c, st);
  }

  void on_eof(net::Connection& c) override {
    if (!decoder_) return c.close();
    complete(c, decoder_->finish());
  }

  void on_close(net::Connection&) override {
    if (request_) request_->kill();
    request_.reset();
  }

 private:
  // The one request of this connection while a worker checks it.
  struct Request : auth::Liveness {
    net::Connection* conn = nullptr;
    Session* session = nullptr;
  };

  void complete(net::Connection& c, mux::Decoder::Status st) {
    c.cancel_timer();
    if (st == mux::Decoder::Status::Failed) {
      const auto field = std::to_string(decoder_->error_field());
      switch (decoder_->error()) {
        case mux::Error::FieldTooLong: {
          const std::string limit = std::to_string(server_.config_.max_field);
          log::warning("mux: " + c.peer() + ": field " + field + " is longer than " + limit +
                       " bytes; request refused");
          // An attempt like any other refusal: one attempt line, with the
          // fields that were read (the client address too), so that
          // fail2ban and the brute-force policy count it.
          server_.auth_.record(attempt_of(decoder_->request()),
                               auth::AuthResult{auth::Outcome::Fail, "-",
                                                "field " + field + " longer than max_field (" +
                                                    limit + " bytes)"},
                               server_.loop_.now());
          return reply(c, "NO ");
        }
        case mux::Error::Truncated:
          log::warning("mux: " + c.peer() + ": connection closed in the middle of field " + field +
                       "; closing");
          break;
        case mux::Error::Empty:
          log::debug("mux: " + c.peer() + ": connection closed without a request");
          break;
        case mux::Error::None: break;
      }
      decoder_.reset();
      return c.close();
    }
    start_auth(c);
  }

  // The attempt a request's fields describe (no password).
  auth::AuthRequest attempt_of(const mux::Request& req) const {
    auth::AuthRequest a;
    a.protocol = "mux";
    a.user = mux::effective_user(req, server_.config_.join_realm);
    a.realm = req.realm;
    a.service = req.service;
    // Field 5 is "ADDR;PORT" (libsasl2's SASL_IPREMOTEPORT); keep the address.
    a.client_addr = req.client_addr.substr(0, req.client_addr.rfind(';'));
    return a;
  }

  void start_auth(net::Connection& c) {
    mux::Request& req = decoder_->request();
    auth::AuthRequest a = attempt_of(req);
    if (auto refusal = mux::check_request(req)) {
      // Refused before any backend: still one attempt line (fail2ban sees it).
      server_.auth_.record(a, auth::AuthResult{auth::Outcome::Fail, "-", refusal->substr(3)},
                           server_.loop_.now());
      return reply(c, *refusal);
    }
    a.password = std::move(req.password);
    decoder_.reset();  // wipes what is left of the request bytes
    c.set_reading(false);
    auto r = std::make_shared<Request>();
    r->conn = &c;
    r->session = this;
    request_ = r;
    a.life = r;
    server_.auth_.authenticate(std::move(a), [r](const auth::AuthResult& result) {
      // Delivered only to the request that asked, while it lives.
      if (r->dead()) return;
      r->session->answer(*r->conn, result);
    });
  }

  void answer(net::Connection& c, const auth::AuthResult& result) {
    request_.reset();
    switch (result.outcome) {
      case auth::Outcome::Ok: return reply(c, "OK");
      case auth::Outcome::Fail:
        if (server_.config_.failure_delay.count() > 0) {
          // Hold the NO back on a timer; no worker waits.
          c.set_timer(server_.config_.failure_delay, [this, &c] { reply(c, kFailReply); });
          return;
        }
        return reply(c, kFailReply);
      case auth::Outcome::TempFail:
        // No reply: the client sees a failed read, which Postfix turns into
        // a temporary 454 instead of a permanent 535.
        return c.close();
    }
  }

  void reply(net::Connection& c, std::string_view text) {
    decoder_.reset();
    c.send(mux::encode_reply(text));
    // Shut down our side, then drain the client's leftovers so it does not
    // see ECONNRESET (protocols.md A.2).
    c.linger_close(kDrainLimit, kDrainTimeout);
  }

  MuxServer& server_;
  std::unique_ptr<mux::Decoder> decoder_;
  std::shared_ptr<Request> request_;
};

MuxServer::MuxServer(EventLoop& loop, auth::Authenticator& authenticator,
                     config::MuxConfig config, std::shared_ptr<net::SharedListener> listener)
    : loop_(loop), auth_(authenticator), config_(std::move(config)),
      server_(loop, std::move(listener), net::Server::Options{"mux", 4096, 1 << 16},
              [this](net::Connection&) { return std::make_unique<Session>(*this); }) {
  if (!server_.path().empty() && server_.first_on_listener()) log::info("mux: listening on " + server_.path());
}

MuxServer::~MuxServer() { server_.close_all(); }

void MuxServer::set_options(const config::MuxConfig& next) {
  config_.join_realm = next.join_realm;
  config_.request_timeout = next.request_timeout;
  config_.max_field = next.max_field;
  config_.failure_delay = next.failure_delay;
}

}  // namespace mailauth
