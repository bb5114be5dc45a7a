#!/usr/bin/env bash
# bench-mysql.sh: mailauthd's mysql backend against saslauthd + pam_mysql, on
# the same private MariaDB, the same users table and the same hashes (the
# guide's ENCRYPT(pw, CONCAT('$5$', MD5(RAND()))) sha256-crypt strings), with
# mailauth-test --bench --json as the load generator for both.
#
# Usage: scripts/bench-mysql.sh [options]
#   --build DIR          mailauth build directory [default: ./build]
#   --users N            accounts in the table [default: 200]
#   --duration S         seconds per run [default: 10]
#   --concurrency "C…"   client concurrency levels [default: "1 8 64"]
#   --workers N          mailauthd workers and pool_size, saslauthd -n [default: 8]
#   --wrong F            fraction of wrong passwords [default: 0]
#   --json FILE          also write all results as a JSON array to FILE
#   --keep               keep the work directory (logs, configs) afterwards
#   --help
#
# Run by hand (not part of the test suite); it needs root only if the PAM
# shim below cannot be built.  Everything runs privately under a temporary
# directory: MariaDB (tests/integration/mariadb.py: own datadir, socket and
# loopback port), mailauthd and saslauthd on their own sockets, all stopped
# by PID at exit.
#
# saslauthd's PAM configuration: saslauthd calls pam_start(), which reads
# /etc/pam.d.  To leave /etc/pam.d alone, the script builds a tiny LD_PRELOAD
# shim that turns pam_start() into pam_start_confdir(…, $WORK/pam.d, …)
# (Linux-PAM >= 1.4).  Only if that cannot be built (no cc or no PAM headers)
# does it write /etc/pam.d/mailauth-bench itself, say so loudly, and remove it
# at exit.
#
# Needs: mariadb-server, mariadb-client, sasl2-bin, libpam-mysql, python3, and
# for the shim cc and libpam0g-dev.  Prints one table; numbers depend on the
# machine, so compare the two daemons on the same run.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$SRC/build"
NUSERS=200
DURATION=10
LEVELS="1 8 64"
WORKERS=8
WRONG=0
JSON_OUT=""
KEEP=0
SERVICE=mailauth-bench

die() { echo "bench-mysql: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$(cd "${2:?--build needs a directory}" && pwd); shift 2 ;;
    --users) NUSERS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --concurrency) LEVELS=${2:?}; shift 2 ;;
    --workers) WORKERS=${2:?}; shift 2 ;;
    --wrong) WRONG=${2:?}; shift 2 ;;
    --json) JSON_OUT=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --help|-h) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ "$NUSERS" =~ ^[1-9][0-9]*$ ]] || die "--users must be a positive number"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive number"

need() { command -v "$1" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"; }
need mariadbd "apt-get install mariadb-server"
need mariadb "apt-get install mariadb-client"
need saslauthd "apt-get install sasl2-bin"
need python3 "apt-get install python3"
PATH="$PATH:/usr/sbin:/sbin"
PAM_MYSQL=""
for d in /lib/x86_64-linux-gnu/security /usr/lib/x86_64-linux-gnu/security /lib/security /usr/lib/security \
         "/usr/lib/$(uname -m)-linux-gnu/security"; do
  [ -f "$d/pam_mysql.so" ] && PAM_MYSQL="$d/pam_mysql.so" && break
done
[ -n "$PAM_MYSQL" ] || die "pam_mysql.so not found (apt-get install libpam-mysql)"
MAILAUTHD="$BUILD/mailauthd"
MAILAUTH_TEST="$BUILD/mailauth-test"
[ -x "$MAILAUTHD" ] && [ -x "$MAILAUTH_TEST" ] || die "no mailauthd/mailauth-test in $BUILD (build first, or --build DIR)"

WORK=$(mktemp -d /tmp/mailauth-bench.XXXXXX)
chmod 755 "$WORK"
DB_PID="" MAILAUTHD_PID="" SASLAUTHD_PID="" ETC_PAM_FILE=""
cleanup() {
  set +e
  [ -n "$SASLAUTHD_PID" ] && kill "$SASLAUTHD_PID" 2>/dev/null && wait "$SASLAUTHD_PID" 2>/dev/null
  [ -n "$MAILAUTHD_PID" ] && kill "$MAILAUTHD_PID" 2>/dev/null && wait "$MAILAUTHD_PID" 2>/dev/null
  [ -n "$DB_PID" ] && kill "$DB_PID" 2>/dev/null && wait "$DB_PID" 2>/dev/null
  if [ -n "$ETC_PAM_FILE" ]; then
    rm -f "$ETC_PAM_FILE"
    echo "bench-mysql: removed $ETC_PAM_FILE" >&2
  fi
  if [ "$KEEP" = 1 ]; then echo "bench-mysql: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- a private MariaDB ----------------------------------------------------------
echo "bench-mysql: starting a private MariaDB in $WORK/db" >&2
python3 "$SRC/tests/integration/mariadb.py" serve "$WORK/db" > "$WORK/db.out" 2>&1 &
DB_PID=$!
for _ in $(seq 1 600); do
  grep -q '^socket=' "$WORK/db.out" 2>/dev/null && break
  kill -0 "$DB_PID" 2>/dev/null || { cat "$WORK/db.out" >&2; die "MariaDB did not start"; }
  sleep 0.1
done
grep -q '^socket=' "$WORK/db.out" || die "MariaDB did not start in time"
DB_SOCKET=$(sed -n 's/^socket=\([^ ]*\) .*/\1/p' "$WORK/db.out")
sql() { mariadb --no-defaults --socket="$DB_SOCKET" --user=root --batch --skip-column-names "$@"; }

DB_PASSWORD="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
echo "bench-mysql: creating $NUSERS users (sha256-crypt made by MariaDB's ENCRYPT)" >&2
sql -e "CREATE DATABASE mail"
sql mail < "$SRC/backends/mysql/schema-users.sql"
{
  echo "INSERT INTO users (id, name, maildir, crypt, clear, enabled) VALUES"
  for i in $(seq 1 "$NUSERS"); do
    sep=","; [ "$i" = "$NUSERS" ] && sep=";"
    echo "('user$i@bench.test', 'User $i', 'bench.test/user$i/', ENCRYPT('pw-$i', CONCAT('\$5\$', MD5(RAND()))), 'pw-$i', 1)$sep"
  done
  echo "CREATE USER 'bench'@'localhost' IDENTIFIED BY '$DB_PASSWORD';"
  echo "GRANT SELECT ON mail.* TO 'bench'@'localhost';"
} | sql mail
[ "$(sql mail -e "SELECT COUNT(*) FROM users WHERE crypt LIKE '\$5\$%'")" = "$NUSERS" ] \
  || die "ENCRYPT() did not produce \$5\$ hashes"
for i in $(seq 1 "$NUSERS"); do echo "user$i@bench.test:pw-$i"; done > "$WORK/users.txt"

# --- mailauthd --------------------------------------------------------------------
mkdir -p "$WORK/mailauthd"
printf '%s\n' "$DB_PASSWORD" > "$WORK/mailauthd/mysql.secret"
chmod 600 "$WORK/mailauthd/mysql.secret"
DAEMON_USER=""
[ "$(id -u)" = 0 ] && DAEMON_USER='user = "nobody"   # drops root after opening its socket'
cat > "$WORK/mailauthd/mailauthd.conf" <<EOF
[daemon]
$DAEMON_USER
workers = $WORKERS
log = "stderr"
log_level = "warning"      # no line per login: saslauthd does not log successes either

[saslauthd]
socket = "$WORK/mailauthd/mux"
mode = "0666"

[[backend]]
type = "mysql"
socket = "$DB_SOCKET"
user = "bench"
password_file = "$WORK/mailauthd/mysql.secret"
database = "mail"
schema = "users"           # SELECT crypt, enabled, id AS user FROM users WHERE id = ?
pool_size = $WORKERS
EOF
# (The account may only read: the warnings about write statements are expected.)
"$MAILAUTHD" --check-config --config "$WORK/mailauthd/mailauthd.conf" > "$WORK/mailauthd/check.log" 2>&1 \
  || { cat "$WORK/mailauthd/check.log" >&2; die "mailauthd --check-config failed"; }
"$MAILAUTHD" --foreground --config "$WORK/mailauthd/mailauthd.conf" > "$WORK/mailauthd/log" 2>&1 &
MAILAUTHD_PID=$!

# --- saslauthd + pam_mysql ----------------------------------------------------------
# The flurdy guide's pam_mysql lines (auth + account), pointed at our table.
PAM_ARGS="user=bench passwd=$DB_PASSWORD host=$DB_SOCKET db=mail table=users usercolumn=id passwdcolumn=crypt crypt=1 where=enabled=1 verbose=0"
PAM_STACK="auth required $PAM_MYSQL $PAM_ARGS
account sufficient $PAM_MYSQL $PAM_ARGS"
mkdir -p "$WORK/pam.d" "$WORK/saslauthd"
printf '%s\n' "$PAM_STACK" > "$WORK/pam.d/$SERVICE"
chmod 600 "$WORK/pam.d/$SERVICE"
PRELOAD=""
if command -v cc >/dev/null 2>&1 && [ -f /usr/include/security/pam_appl.h ]; then
  cat > "$WORK/pam_confdir_shim.c" <<'EOF'
/* LD_PRELOAD: make pam_start() read its stack from $BENCH_PAM_CONFDIR. */
#include <security/pam_appl.h>
#include <stdlib.h>
int pam_start(const char *service, const char *user, const struct pam_conv *conv,
              pam_handle_t **pamh) {
  return pam_start_confdir(service, user, conv, getenv("BENCH_PAM_CONFDIR"), pamh);
}
EOF
  # saslauthd binds pam_start@LIBPAM_1.0: give the shim's symbol that version.
  printf 'LIBPAM_1.0 { global: pam_start; local: *; };\n' > "$WORK/shim.map"
  if cc -shared -fPIC -O2 -o "$WORK/pam_confdir_shim.so" "$WORK/pam_confdir_shim.c" \
        -Wl,--version-script="$WORK/shim.map" -lpam 2>"$WORK/shim.err"; then
    PRELOAD="$WORK/pam_confdir_shim.so"
  fi
fi
if [ -z "$PRELOAD" ]; then
  [ "$(id -u)" = 0 ] || die "cannot build the PAM shim (cc, libpam0g-dev) and not root: cannot write /etc/pam.d/$SERVICE"
  [ -e "/etc/pam.d/$SERVICE" ] && die "/etc/pam.d/$SERVICE exists already; not touching it"
  echo "######################################################################" >&2
  echo "bench-mysql: cannot build the pam_start_confdir shim; WRITING /etc/pam.d/$SERVICE" >&2
  echo "bench-mysql: (it is removed again when this script exits)" >&2
  echo "######################################################################" >&2
  ETC_PAM_FILE="/etc/pam.d/$SERVICE"
  printf '%s\n' "$PAM_STACK" > "$ETC_PAM_FILE"
  chmod 600 "$ETC_PAM_FILE"
fi
# setsid: when saslauthd stops it signals its whole process group, which
# would otherwise include this script and the shell that started it.
setsid env ${PRELOAD:+LD_PRELOAD="$PRELOAD"} BENCH_PAM_CONFDIR="$WORK/pam.d" \
  saslauthd -a pam -m "$WORK/saslauthd" -n "$WORKERS" -d > "$WORK/saslauthd/log" 2>&1 &
SASLAUTHD_PID=$!

wait_socket() {
  for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.05; done
  die "no socket $1 (see $2)"
}
wait_socket "$WORK/mailauthd/mux" "$WORK/mailauthd/log"
wait_socket "$WORK/saslauthd/mux" "$WORK/saslauthd/log"

# Both must accept a right password and refuse a wrong one before we measure.
for name in mailauthd saslauthd; do
  sock="$WORK/$name/mux"
  "$MAILAUTH_TEST" -f "$sock" -s "$SERVICE" -u user1@bench.test -p pw-1 >/dev/null \
    || die "$name does not accept user1's password (see $WORK/$name/log; --keep keeps it)"
  if "$MAILAUTH_TEST" -f "$sock" -s "$SERVICE" -u user1@bench.test -p wrong >/dev/null; then
    die "$name accepts a wrong password"
  fi
done

# --- the runs ---------------------------------------------------------------------------
results="$WORK/results.jsonl"
: > "$results"
printf '%-10s %5s %10s %9s %9s %9s %8s %6s %9s %7s\n' daemon conc "auth/s" "p50 ms" "p90 ms" "p99 ms" ok no tempfail errors
for c in $LEVELS; do
  for name in mailauthd saslauthd; do
    out=$("$MAILAUTH_TEST" -f "$WORK/$name/mux" -s "$SERVICE" --bench --users "$WORK/users.txt" \
          --duration "$DURATION" --concurrency "$c" --wrong "$WRONG" --json) || true
    [ -n "$out" ] || die "$name: the benchmark printed nothing"
    python3 - "$name" "$c" "$out" "$results" <<'EOF'
import json, sys
name, conc, text, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
r = json.loads(text)
r.update(daemon=name, concurrency=conc)
with open(path, "a") as f:
    f.write(json.dumps(r) + "\n")
print(f"{name:<10} {conc:>5} {r['auth_per_s']:>10.1f} {r['p50_ms']:>9.2f} {r['p90_ms']:>9.2f} "
      f"{r['p99_ms']:>9.2f} {r['ok']:>8} {r['no']:>6} {r['tempfail']:>9} {r['errors']:>7}")
EOF
  done
done
if [ -n "$JSON_OUT" ]; then
  python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])], indent=1))' \
    "$results" > "$JSON_OUT"
  echo "bench-mysql: results in $JSON_OUT" >&2
fi
echo "bench-mysql: $NUSERS users, ${DURATION}s per run, workers/-n $WORKERS, wrong fraction $WRONG; MariaDB $(sql -e 'SELECT VERSION()')" >&2
