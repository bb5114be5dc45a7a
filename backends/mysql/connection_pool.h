// MariaDB Connector/C behind a small interface: a connection with its
// prepared statements, the failover bookkeeping across hosts, and the pool
// the worker threads share.
//
//   Pool::acquire() ──► an idle Connection (pinged if it sat idle, moved to a
//                       better host when one is due again), or a new one:
//                       HostSelector::plan() says which hosts to try, in order
//   Connection::execute(template, values) ──► prepare once per connection,
//                       bind every value as a parameter, fetch rows
//   Lease goes out of scope ──► back to the pool (or closed, after discard())
//
// Threads: Pool and HostSelector are thread-safe.  A Connection is used by one
// thread at a time (the one holding its Lease).  No MariaDB header leaks out of
// this file: the C handles are forward-declared.
#pragma once

#include "backends/common/host_selector.h"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends/mysql/query_template.h"
#include "src/util/secret.h"

struct st_mysql;
struct st_mysql_stmt;

namespace mailauth::backend::mysql {

using Clock = std::chrono::steady_clock;

// Where a server is: a TCP host and port, or a UNIX socket.
struct Endpoint {
  std::string host;  // empty for a UNIX socket
  unsigned port = 3306;
  std::string socket;
  std::string label() const;  // "db1:3306", "[::1]:3306" or "unix:/run/mysqld/mysqld.sock"
};

struct ConnectOptions {
  std::vector<Endpoint> endpoints;  // tried in order
  std::string user;
  Secret password;
  std::string database;
  unsigned connect_timeout_s = 3;  // the client library counts in whole seconds
  unsigned read_timeout_s = 5;
  unsigned write_timeout_s = 5;
  bool tls = false;    // require TLS
  std::string tls_ca;  // when set, the server certificate is verified against it
  std::string tls_cert;
  std::string tls_key;

  // A deep copy (the password is a move-only Secret).
  ConnectOptions copy() const {
    return {endpoints,
            user,
            password.clone(),
            database,
            connect_timeout_s,
            read_timeout_s,
            write_timeout_s,
            tls,
            tls_ca,
            tls_cert,
            tls_key};
  }
};

// An error from the server or the client library.
struct SqlError {
  unsigned code = 0;
  std::string message;  // mysql_error() text; never holds a bound value's secret
  // The connection cannot be used again (gone away, lost, killed, statement
  // handles invalid): close it; a read-only statement may be retried once on
  // a fresh connection.
  bool connection_lost() const;
  std::string text() const;  // "message (code)"
};

using HostSelector = backend::HostSelector;

using Cell = std::optional<Secret>;  // nullopt: SQL NULL
using Row = std::vector<Cell>;

struct Result {
  std::vector<Row> rows;
  std::vector<std::string> columns;  // names as the client sees them (aliases)
  unsigned long long affected = 0;   // statements without a result: rows matched
};

// One server connection (RAII over MYSQL*) and its prepared statements, each
// prepared on first use and kept until the connection closes: a reconnect is
// a new Connection, so statements are re-prepared after it automatically.
class Connection {
 public:
  // Connect to options.endpoints[endpoint]; nullptr with `error` set.
  static std::unique_ptr<Connection> open(const ConnectOptions& options, std::size_t endpoint,
                                          SqlError* error);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  std::size_t endpoint() const { return endpoint_; }
  bool ping(SqlError* error);

  // Prepare statement `id` (an index the caller owns) from `t` unless it is
  // prepared already; `columns` gets its result column names.
  bool prepare(std::size_t id, const Template& t, std::vector<std::string>* columns,
               SqlError* error);
  // Execute statement `id` with every escape of `t` bound from `values`.  A
  // result set is read up to `max_rows` rows (the rest is discarded).
  bool execute(std::size_t id, const Template& t, const Values& values, std::size_t max_rows,
               Result* out, SqlError* error);

  // A statement without parameters or results (DDL, for schema --apply).
  bool run_sql(const std::string& sql, SqlError* error);

  bool begin(SqlError* error);
  bool commit(SqlError* error);
  void rollback();

  Clock::time_point last_used{};

 private:
  Connection(st_mysql* mysql, std::size_t endpoint) : mysql_(mysql), endpoint_(endpoint) {}
  struct Statement {
    st_mysql_stmt* stmt = nullptr;
    std::vector<std::string> columns;
  };
  Statement* statement(std::size_t id, const Template& t, SqlError* error);

  st_mysql* mysql_;
  std::size_t endpoint_;
  std::vector<Statement> statements_;
};

// A fixed number of connections shared by the worker threads, opened lazily
// (the daemon starts while the database is down) and checked on checkout.
class Pool {
 public:
  // `log_name` prefixes log lines ("mysql db").
  Pool(std::string log_name, const ConnectOptions& options, std::size_t size,
       HostSelector::Policy policy = {});
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& o) noexcept : pool_(o.pool_), conn_(std::move(o.conn_)) { o.pool_ = nullptr; }
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    explicit operator bool() const { return conn_ != nullptr; }
    Connection* operator->() const { return conn_.get(); }
    // Done with it: back to the pool now rather than at the end of the scope.
    void release();
    // The connection is broken: close it instead of returning it.
    void discard();

   private:
    friend class Pool;
    Lease(Pool* pool, std::unique_ptr<Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
    Pool* pool_ = nullptr;
    std::unique_ptr<Connection> conn_;
  };

  // A connection for one request; an empty Lease with `error` set when none
  // can be had (every host down, or every connection busy for longer than a
  // request may wait).  `fresh`: ping even a recently used idle connection
  // (writes, which must not be retried blindly).
  Lease acquire(std::string* error, bool fresh = false);

  // For --check-config: connect to every host once, outside the pool.
  // One entry per endpoint: empty if it worked, else the error.
  std::vector<std::optional<SqlError>> probe_all(std::unique_ptr<Connection>* first_working);

  const ConnectOptions& options() const { return options_; }

 private:
  std::unique_ptr<Connection> connect(std::string* error);
  void give_back(std::unique_ptr<Connection> conn, bool broken);

  const std::string log_name_;
  const ConnectOptions options_;
  const std::size_t size_;
  HostSelector hosts_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;           // idle + leased + being opened
  std::size_t last_endpoint_ = 0;  // the host the last new connection went to (for the log)
  std::string last_error_;         // of the last failed round of connection attempts
};

// Call once on the main thread before any connection is opened (idempotent).
void library_init();

}  // namespace mailauth::backend::mysql
