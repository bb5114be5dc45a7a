#include "src/runtime/metrics.h"

#include <cstdio>
#include <sstream>

namespace mailauth {

namespace {
// Label values come from clients (mechanism names) and config (backend
// names): escape them as the exposition format requires.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string num(double d) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", d);
  return buf;
}
}  // namespace

Metrics::Metrics() : started_(std::chrono::steady_clock::now()) {}

void Metrics::record(const std::string& result, const std::string& proto, const std::string& mech,
                     const std::string& backend, double seconds) {
  // A client can send any mechanism name; only known ones become labels.
  std::string m = mech;
  if (!m.empty() && m != "PLAIN" && m != "LOGIN" && m != "CRAM-MD5" && m != "SCRAM-SHA-1" &&
      m != "SCRAM-SHA-256")
    m = "other";
  std::lock_guard lock(mutex_);
  ++attempts_[{result, proto, m, backend}];
  auto& b = buckets_[proto];
  std::size_t i = 0;
  while (i < kBuckets.size() && seconds > kBuckets[i]) ++i;
  ++b[i];
  sum_[proto] += seconds;
  ++count_[proto];
}

std::string Metrics::prometheus(const Gauges& g) const {
  std::lock_guard lock(mutex_);
  std::ostringstream o;
  o << "# HELP mailauth_auth_attempts_total Authentication attempts by outcome.\n"
       "# TYPE mailauth_auth_attempts_total counter\n";
  for (const auto& [k, v] : attempts_) {
    const auto& [result, proto, mech, backend] = k;
    o << "mailauth_auth_attempts_total{result=\"" << label(result) << "\",proto=\"" << label(proto)
      << "\",mech=\"" << label(mech) << "\",backend=\"" << label(backend) << "\"} " << v << "\n";
  }
  o << "# HELP mailauth_auth_duration_seconds Time from request to answer (before failure delay).\n"
       "# TYPE mailauth_auth_duration_seconds histogram\n";
  for (const auto& [proto, b] : buckets_) {
    unsigned long long cum = 0;
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
      cum += b[i];
      o << "mailauth_auth_duration_seconds_bucket{proto=\"" << label(proto) << "\",le=\""
        << num(kBuckets[i]) << "\"} " << cum << "\n";
    }
    cum += b[kBuckets.size()];
    o << "mailauth_auth_duration_seconds_bucket{proto=\"" << label(proto) << "\",le=\"+Inf\"} "
      << cum << "\n";
    o << "mailauth_auth_duration_seconds_sum{proto=\"" << label(proto) << "\"} "
      << num(sum_.at(proto)) << "\n";
    o << "mailauth_auth_duration_seconds_count{proto=\"" << label(proto) << "\"} "
      << count_.at(proto) << "\n";
  }
  const auto hits = cache_hits.load(), misses = cache_misses.load();
  o << "# HELP mailauth_cache_hits_total Credential cache hits (fresh entries; stale_ttl answers are counted in mailauth_cache_stale_served_total).\n"
       "# TYPE mailauth_cache_hits_total counter\n"
       "mailauth_cache_hits_total " << hits << "\n"
       "# HELP mailauth_cache_misses_total Credential cache misses.\n"
       "# TYPE mailauth_cache_misses_total counter\n"
       "mailauth_cache_misses_total " << misses << "\n"
       "# HELP mailauth_cache_hit_ratio Hits / (hits + misses) since start.\n"
       "# TYPE mailauth_cache_hit_ratio gauge\n"
       "mailauth_cache_hit_ratio " << num(hits + misses ? double(hits) / double(hits + misses) : 0)
    << "\n"
       "# HELP mailauth_cache_stale_served_total Logins accepted from the cache's stale_ttl window while a backend could not answer.\n"
       "# TYPE mailauth_cache_stale_served_total counter\n"
       "mailauth_cache_stale_served_total " << cache_stale_served.load() << "\n"
       "# HELP mailauth_cache_entries Entries in the credential cache.\n"
       "# TYPE mailauth_cache_entries gauge\n"
       "mailauth_cache_entries " << g.cache_entries << "\n"
       "# HELP mailauth_worker_queue_depth Jobs waiting for a worker.\n"
       "# TYPE mailauth_worker_queue_depth gauge\n"
       "mailauth_worker_queue_depth " << g.queue_depth << "\n"
       "# HELP mailauth_workers_busy Workers running a job.\n"
       "# TYPE mailauth_workers_busy gauge\n"
       "mailauth_workers_busy " << g.workers_busy << "\n"
       "# HELP mailauth_workers Worker threads.\n"
       "# TYPE mailauth_workers gauge\n"
       "mailauth_workers " << g.workers << "\n"
       "# HELP mailauth_requests_in_flight Password checks in progress.\n"
       "# TYPE mailauth_requests_in_flight gauge\n"
       "mailauth_requests_in_flight " << g.in_flight << "\n"
       "# HELP mailauth_connections Open client connections.\n"
       "# TYPE mailauth_connections gauge\n"
       "mailauth_connections{proto=\"mux\"} " << g.mux_connections << "\n"
       "mailauth_connections{proto=\"dovecot\"} " << g.dovecot_connections << "\n"
       "# HELP mailauth_penalties_total Requests delayed by the brute-force policy.\n"
       "# TYPE mailauth_penalties_total counter\n"
       "mailauth_penalties_total " << penalized_ << "\n"
       "# HELP mailauth_penalty_seconds_total Total penalty delay applied.\n"
       "# TYPE mailauth_penalty_seconds_total counter\n"
       "mailauth_penalty_seconds_total " << num(penalty_seconds_) << "\n"
       "# HELP mailauth_refused_in_flight_total Requests refused: too many in flight from one address.\n"
       "# TYPE mailauth_refused_in_flight_total counter\n"
       "mailauth_refused_in_flight_total " << refused_in_flight_ << "\n"
       "# HELP mailauth_auth_abandoned_total Answers dropped: their request was cancelled, timed out or its client left.\n"
       "# TYPE mailauth_auth_abandoned_total counter\n"
       "mailauth_auth_abandoned_total " << abandoned_ << "\n"
       "# HELP mailauth_auth_answered_on_loop_total Attempts answered without a worker (cache hit, cheap scheme, held-back no).\n"
       "# TYPE mailauth_auth_answered_on_loop_total counter\n"
       "mailauth_auth_answered_on_loop_total " << on_loop_ << "\n"
       "# HELP mailauth_reloads_total Configuration reloads.\n"
       "# TYPE mailauth_reloads_total counter\n"
       "mailauth_reloads_total{result=\"ok\"} " << reloads_ok_ << "\n"
       "mailauth_reloads_total{result=\"failed\"} " << reloads_failed_ << "\n"
       "# HELP mailauth_uptime_seconds Seconds since start.\n"
       "# TYPE mailauth_uptime_seconds gauge\n"
       "mailauth_uptime_seconds "
    << num(std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count())
    << "\n";
  return o.str();
}

}  // namespace mailauth
