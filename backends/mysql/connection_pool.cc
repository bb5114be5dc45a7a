#include "backends/mysql/connection_pool.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <algorithm>
#include <mutex>

#include "src/util/log.h"

namespace mailauth::backend::mysql {

namespace {

// An idle connection older than this is pinged before use: long-idle
// connections are the ones a server's wait_timeout or a firewall drops.  A
// connection that broke sooner is caught by the one transparent retry.
constexpr auto kPingAfterIdle = std::chrono::seconds(5);

// Result column buffers start this big; longer values are fetched again with
// mysql_stmt_fetch_column into a buffer of their size.
constexpr std::size_t kColumnBuffer = 512;

SqlError error_of(MYSQL* m) { return {mysql_errno(m), mysql_error(m)}; }
SqlError error_of(MYSQL_STMT* s) { return {mysql_stmt_errno(s), mysql_stmt_error(s)}; }

}  // namespace

void library_init() {
  static std::once_flag once;
  std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
}

std::string Endpoint::label() const {
  if (!socket.empty()) return "unix:" + socket;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool SqlError::connection_lost() const {
  // Client library errors (20xx, and Connector/C's own 50xx) mean the
  // connection's state is unknown; of the server's, these end a session or
  // invalidate its statements.
  if ((code >= 2000 && code < 3000) || (code >= 5000 && code < 6000)) return true;
  switch (code) {
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
    case ER_UNKNOWN_STMT_HANDLER:
    case ER_NEED_REPREPARE: return true;
    default: return false;
  }
}

std::string SqlError::text() const {
  std::string m = message.empty() ? std::string("unknown error") : message;
  return code ? m + " (" + std::to_string(code) + ")" : m;
}

// --- Connection ----------------------------------------------------------------

std::unique_ptr<Connection> Connection::open(const ConnectOptions& o, std::size_t endpoint,
                                             SqlError* error) {
  library_init();
  MYSQL* m = mysql_init(nullptr);
  if (m == nullptr) {
    *error = {0, "out of memory"};
    return nullptr;
  }
  const Endpoint& ep = o.endpoints.at(endpoint);
  unsigned connect_timeout = o.connect_timeout_s, read_timeout = o.read_timeout_s,
           write_timeout = o.write_timeout_s;
  my_bool no = 0, yes = 1;
  unsigned protocol = ep.socket.empty() ? MYSQL_PROTOCOL_TCP : MYSQL_PROTOCOL_SOCKET;
  mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
  mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &read_timeout);
  mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &write_timeout);
  // Reconnecting behind our back would drop the prepared statements; the
  // pool reconnects itself and re-prepares.
  mysql_options(m, MYSQL_OPT_RECONNECT, &no);
  // "localhost" would otherwise mean the default UNIX socket.
  mysql_options(m, MYSQL_OPT_PROTOCOL, &protocol);
  mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  if (o.tls) {
    mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &yes);
    if (!o.tls_ca.empty()) {
      mysql_options(m, MYSQL_OPT_SSL_CA, o.tls_ca.c_str());
      mysql_options(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &yes);
    }
    if (!o.tls_cert.empty()) mysql_options(m, MYSQL_OPT_SSL_CERT, o.tls_cert.c_str());
    if (!o.tls_key.empty()) mysql_options(m, MYSQL_OPT_SSL_KEY, o.tls_key.c_str());
  }
  // The client library wants a C string; keep the copy only as long as needed.
  std::string password(o.password.view());
  MYSQL* ok =
      mysql_real_connect(m, ep.socket.empty() ? ep.host.c_str() : "localhost", o.user.c_str(),
                         password.c_str(), o.database.c_str(), ep.socket.empty() ? ep.port : 0,
                         ep.socket.empty() ? nullptr : ep.socket.c_str(),
                         CLIENT_FOUND_ROWS);  // UPDATE reports matched rows
  wipe(password.data(), password.size());
  if (ok == nullptr) {
    *error = error_of(m);
    mysql_close(m);
    return nullptr;
  }
  // MYSQL_OPT_SSL_ENFORCE alone does not enforce: Connector/C 3.x falls back
  // to clear text when the server offers no TLS unless the certificate is
  // also verified.  tls = true means TLS, so check what was negotiated.
  if (o.tls && mysql_get_ssl_cipher(m) == nullptr) {
    *error = {CR_SSL_CONNECTION_ERROR,
              "TLS is required (tls = true) but the server did not offer it"};
    mysql_close(m);
    return nullptr;
  }
  auto c = std::unique_ptr<Connection>(new Connection(m, endpoint));
  c->last_used = Clock::now();
  return c;
}

Connection::~Connection() {
  for (auto& s : statements_)
    if (s.stmt) mysql_stmt_close(s.stmt);
  mysql_close(mysql_);
}

bool Connection::ping(SqlError* error) {
  if (mysql_ping(mysql_) == 0) return true;
  *error = error_of(mysql_);
  return false;
}

Connection::Statement* Connection::statement(std::size_t id, const Template& t, SqlError* error) {
  if (statements_.size() <= id) statements_.resize(id + 1);
  Statement& s = statements_[id];
  if (s.stmt) return &s;
  MYSQL_STMT* st = mysql_stmt_init(mysql_);
  if (st == nullptr) {
    *error = error_of(mysql_);
    return nullptr;
  }
  if (mysql_stmt_prepare(st, t.sql.data(), t.sql.size()) != 0) {
    *error = error_of(st);
    mysql_stmt_close(st);
    return nullptr;
  }
  if (mysql_stmt_param_count(st) != t.params.size()) {
    *error = {0, "the statement has " + std::to_string(mysql_stmt_param_count(st)) +
                     " parameters, the template " + std::to_string(t.params.size())};
    mysql_stmt_close(st);
    return nullptr;
  }
  s.columns.clear();
  if (MYSQL_RES* md = mysql_stmt_result_metadata(st)) {
    const unsigned n = mysql_num_fields(md);
    const MYSQL_FIELD* fields = mysql_fetch_fields(md);
    for (unsigned k = 0; k < n; ++k) s.columns.emplace_back(fields[k].name, fields[k].name_length);
    mysql_free_result(md);
  }
  s.stmt = st;
  return &s;
}

bool Connection::prepare(std::size_t id, const Template& t, std::vector<std::string>* columns,
                         SqlError* error) {
  Statement* s = statement(id, t, error);
  if (s == nullptr) return false;
  if (columns) *columns = s->columns;
  return true;
}

bool Connection::execute(std::size_t id, const Template& t, const Values& values,
                         std::size_t max_rows, Result* out, SqlError* error) {
  Statement* s = statement(id, t, error);
  if (s == nullptr) return false;
  MYSQL_STMT* st = s->stmt;
  out->columns = s->columns;
  out->rows.clear();
  out->affected = 0;

  // Every value is bound with its length: NUL bytes, quotes and backslashes
  // are data, never SQL.
  const std::size_t n = t.params.size();
  std::vector<MYSQL_BIND> params(n);
  std::vector<unsigned long> lengths(n);
  for (std::size_t k = 0; k < n; ++k) {
    const std::string_view v = values[t.params[k]];
    lengths[k] = v.size();
    params[k].buffer_type = MYSQL_TYPE_STRING;
    params[k].buffer = const_cast<char*>(v.empty() ? "" : v.data());
    params[k].buffer_length = v.size();
    params[k].length = &lengths[k];
  }
  if (n && mysql_stmt_bind_param(st, params.data()) != 0) {
    *error = error_of(st);
    return false;
  }
  if (mysql_stmt_execute(st) != 0) {
    *error = error_of(st);
    return false;
  }
  const unsigned ncols = mysql_stmt_field_count(st);
  if (ncols == 0) {
    out->affected = mysql_stmt_affected_rows(st);
    return true;
  }
  if (mysql_stmt_store_result(st) != 0) {
    *error = error_of(st);
    mysql_stmt_free_result(st);
    return false;
  }
  std::vector<MYSQL_BIND> cols(ncols);
  std::vector<std::vector<char>> buffers(ncols, std::vector<char>(kColumnBuffer));
  std::vector<unsigned long> col_len(ncols);
  std::vector<my_bool> is_null(ncols), truncated(ncols);
  for (unsigned k = 0; k < ncols; ++k) {
    cols[k].buffer_type = MYSQL_TYPE_STRING;
    cols[k].buffer = buffers[k].data();
    cols[k].buffer_length = buffers[k].size();
    cols[k].length = &col_len[k];
    cols[k].is_null = &is_null[k];
    cols[k].error = &truncated[k];
  }
  bool ok = true;
  if (mysql_stmt_bind_result(st, cols.data()) != 0) {
    *error = error_of(st);
    ok = false;
  }
  while (ok && out->rows.size() < max_rows) {
    const int rc = mysql_stmt_fetch(st);
    if (rc == MYSQL_NO_DATA) break;
    if (rc == 1) {
      *error = error_of(st);
      ok = false;
      break;
    }
    Row row(ncols);
    for (unsigned k = 0; k < ncols; ++k) {
      if (is_null[k]) continue;
      if (col_len[k] <= buffers[k].size()) {
        row[k] = Secret(std::string_view(buffers[k].data(), col_len[k]));
        continue;
      }
      std::vector<char> big(col_len[k]);
      unsigned long big_len = 0;
      MYSQL_BIND b{};
      b.buffer_type = MYSQL_TYPE_STRING;
      b.buffer = big.data();
      b.buffer_length = big.size();
      b.length = &big_len;
      if (mysql_stmt_fetch_column(st, &b, k, 0) != 0) {
        *error = error_of(st);
        ok = false;
        break;
      }
      row[k] = Secret(std::string_view(big.data(), std::min<std::size_t>(big_len, big.size())));
      wipe(big.data(), big.size());
    }
    if (!ok) break;
    out->rows.push_back(std::move(row));
  }
  for (auto& b : buffers) wipe(b.data(), b.size());
  mysql_stmt_free_result(st);
  return ok;
}

bool Connection::run_sql(const std::string& sql, SqlError* error) {
  if (mysql_real_query(mysql_, sql.data(), sql.size()) == 0) {
    if (MYSQL_RES* r = mysql_store_result(mysql_)) mysql_free_result(r);
    return true;
  }
  *error = error_of(mysql_);
  return false;
}

bool Connection::begin(SqlError* error) { return run_sql("START TRANSACTION", error); }

bool Connection::commit(SqlError* error) {
  if (mysql_commit(mysql_) == 0) return true;
  *error = error_of(mysql_);
  return false;
}

void Connection::rollback() { mysql_rollback(mysql_); }

// --- Pool ------------------------------------------------------------------------

Pool::Pool(std::string log_name, const ConnectOptions& options, std::size_t size,
           HostSelector::Policy policy)
    : log_name_(std::move(log_name)),
      options_(options.copy()),
      size_(size),
      hosts_(options_.endpoints.size(), policy) {
  library_init();
}

Pool::~Pool() {
  std::lock_guard lock(mutex_);
  idle_.clear();
}

Pool::Lease::~Lease() {
  if (pool_ && conn_) pool_->give_back(std::move(conn_), false);
}

void Pool::Lease::release() {
  if (pool_ && conn_) pool_->give_back(std::move(conn_), false);
}

void Pool::Lease::discard() {
  if (pool_ && conn_) pool_->give_back(std::move(conn_), true);
}

void Pool::give_back(std::unique_ptr<Connection> conn, bool broken) {
  if (broken) {
    conn.reset();  // mysql_close outside the lock: it may write to the socket
    std::lock_guard lock(mutex_);
    --open_;
  } else {
    conn->last_used = Clock::now();
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(conn));
  }
  cv_.notify_one();
}

Pool::Lease Pool::acquire(std::string* error, bool fresh) {
  std::unique_ptr<Connection> conn;
  {
    std::unique_lock lock(mutex_);
    // A request waits for a busy pool at most as long as one query may take.
    const auto deadline =
        Clock::now() + std::chrono::seconds(options_.connect_timeout_s + options_.read_timeout_s);
    while (true) {
      if (!idle_.empty()) {
        conn = std::move(idle_.back());  // the most recently used: warm
        idle_.pop_back();
        break;
      }
      if (open_ < size_) {
        ++open_;  // a slot for the connection we are about to open
        break;
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
          open_ >= size_) {
        *error =
            "all " + std::to_string(size_) + " database connections stayed busy (raise pool_size?)";
        return {};
      }
    }
  }
  // From here on this thread owns one slot: `conn`, or the right to open one.
  if (conn) {
    SqlError e;
    if ((fresh || Clock::now() - conn->last_used > kPingAfterIdle) && !conn->ping(&e)) {
      log::debug(log_name_ + ": idle connection to " +
                 options_.endpoints[conn->endpoint()].label() + " is gone (" + e.text() +
                 "); reconnecting");
      conn.reset();
    }
  }
  if (conn) {
    // A connection on a secondary host moves back when a preferred host is
    // up again (or due for a retry); if that fails, it stays where it is.
    if (auto better = hosts_.claim_better(conn->endpoint(), Clock::now())) {
      SqlError e;
      const std::string& label = options_.endpoints[*better].label();
      if (auto c = Connection::open(options_, *better, &e)) {
        if (hosts_.succeeded(*better)) log::info(log_name_ + ": " + label + " is reachable again");
        {
          std::lock_guard lock(mutex_);
          if (last_endpoint_ != *better) {
            last_endpoint_ = *better;
            log::info(log_name_ + ": now using " + label);
          }
        }
        conn = std::move(c);
      } else if (hosts_.failed(*better, Clock::now())) {
        log::warning(log_name_ + ": cannot connect to " + label + ": " +
                     log::sanitize(e.text(), 1024));
      }
    }
    return Lease(this, std::move(conn));
  }
  conn = connect(error);
  if (!conn) {
    {
      std::lock_guard lock(mutex_);
      --open_;
    }
    cv_.notify_one();
    return {};
  }
  return Lease(this, std::move(conn));
}

std::unique_ptr<Connection> Pool::connect(std::string* error) {
  const auto order = hosts_.plan(Clock::now());
  if (order.empty()) {
    std::lock_guard lock(mutex_);
    *error = "no database host is reachable (" + last_error_ +
             "); the next attempt is due within a second";
    return nullptr;
  }
  std::string errors;
  for (std::size_t i : order) {
    SqlError e;
    const std::string& label = options_.endpoints[i].label();
    if (auto c = Connection::open(options_, i, &e)) {
      if (hosts_.succeeded(i)) log::info(log_name_ + ": " + label + " is reachable again");
      std::lock_guard lock(mutex_);
      if (last_endpoint_ != i) {
        last_endpoint_ = i;
        if (options_.endpoints.size() > 1) {
          if (i == 0)
            log::info(log_name_ + ": now using " + label);
          else
            log::warning(log_name_ + ": now using " + label + " (failover)");
        }
      }
      return c;
    }
    if (hosts_.failed(i, Clock::now()))
      log::warning(log_name_ + ": cannot connect to " + label + ": " +
                   log::sanitize(e.text(), 1024));
    errors += (errors.empty() ? "" : "; ") + label + ": " + e.text();
  }
  *error = "cannot connect to the database: " + errors;
  std::lock_guard lock(mutex_);
  last_error_ = errors;
  return nullptr;
}

std::vector<std::optional<SqlError>> Pool::probe_all(std::unique_ptr<Connection>* first_working) {
  std::vector<std::optional<SqlError>> out;
  for (std::size_t i = 0; i < options_.endpoints.size(); ++i) {
    SqlError e;
    auto c = Connection::open(options_, i, &e);
    out.push_back(c ? std::nullopt : std::optional<SqlError>(e));
    if (c && first_working && !*first_working) *first_working = std::move(c);
  }
  return out;
}

}  // namespace mailauth::backend::mysql
