// One client connection of a server, and the protocol session behind it.
//
// The connection layer owns what every protocol needs the same way: reading
// into a wiped buffer, a bounded output buffer written as the peer takes it,
// one deadline timer, a graceful "reply, shut down, drain, close", and —
// the rule that keeps requests and their clients apart — deferred freeing:
//
//   close() never frees anything.  It marks the connection closed, tells
//   the session (which kills its requests in flight), releases the socket,
//   and hands the objects to the server, which frees them only after the
//   current event has been handled.  So a Connection& or Session& that a
//   caller holds stays valid for the rest of its call, whatever it called;
//   after a call that may close, it checks closed() before going on.
//
// Loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "src/runtime/event_loop.h"
#include "src/util/fd.h"

namespace mailauth::net {

class Connection;
class Server;

// What a protocol does with one connection.  Every call comes from the loop
// thread, with the connection still open.
class Session {
 public:
  virtual ~Session() = default;
  // Right after accept, before any input.
  virtual void on_open(Connection& c) { (void)c; }
  // Bytes from the peer (the buffer is wiped after the call).
  virtual void on_input(Connection& c, std::string_view bytes) = 0;
  // The peer shut down its side.  Default: close.
  virtual void on_eof(Connection& c);
  // The connection is closing, for whatever reason: forget and kill requests
  // in flight.  No call follows, and send() is ignored from here on.
  virtual void on_close(Connection& c) { (void)c; }
};

class Connection {
 public:
  Connection(Server& server, std::uint64_t id, UniqueFd fd, std::string peer);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  std::uint64_t id() const { return id_; }
  const std::string& peer() const { return peer_; }
  bool closed() const { return closed_; }
  Session& session() { return *session_; }
  int fd() const { return fd_.get(); }
  // Bytes queued and not yet taken by the peer.
  std::size_t pending_output() const { return out_.size() - out_pos_; }

  // Queue bytes and write what the socket takes now.  More than the server's
  // max_output waiting for a peer that does not read, or a write error,
  // closes the connection.  Ignored once closed or lingering.
  void send(std::string_view data);
  // Whether input is read (and EOF noticed).  Off while a mux request is
  // being answered, so a client's half-close is not taken for a hang-up.
  void set_reading(bool on);
  // After the queued output is written: shut down the write side, then read
  // and discard what the peer still sends (up to `limit` bytes, at most
  // `timeout`), then close; so the peer reads the reply before any reset.
  void linger_close(std::size_t limit, std::chrono::milliseconds timeout);
  void close();

  // One deadline per connection: `fn` runs once after `delay` unless
  // replaced, cancelled or the connection closes first.
  void set_timer(std::chrono::milliseconds delay, std::function<void()> fn);
  void cancel_timer();

 private:
  friend class Server;
  void flush();
  void readable();
  void start_drain();
  void update_watch();
  void on_event(uint32_t events);

  Server& server_;
  EventLoop& loop_;
  const std::uint64_t id_;
  UniqueFd fd_;
  std::string peer_;
  std::unique_ptr<Session> session_;
  std::string out_;
  std::size_t out_pos_ = 0;
  EventLoop::TimerId timer_ = 0;
  std::uint32_t watched_ = 0;  // the events registered with the loop
  bool registered_ = false;    // added to the loop (removed at close only)
  bool closed_ = false;
  bool reading_ = true;
  bool eof_ = false;
  bool want_write_ = false;
  bool linger_ = false;     // close after flushing and draining
  bool draining_ = false;   // write side shut down; discarding input
  std::size_t drain_limit_ = 0;
  std::size_t drained_ = 0;
};

}  // namespace mailauth::net
