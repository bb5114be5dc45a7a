#!/bin/sh
# Throughput and latency of mailauthd with a pwdfile backend, both protocols,
# at concurrency 1, 8 and 64, with the credential cache off and on.
#   scripts/bench.sh [BUILD_DIR] [SECONDS] [SCHEME]
# Uses mailauth-test --bench --json; prints one line per run.  A benchmark,
# not a test: run it by hand on an otherwise idle machine.
set -eu
BUILD=${1:-build}
SECS=${2:-5}
SCHEME=${3:-sha512-crypt}
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/bench-lib.sh"
BIN="$TOP/$BUILD"
DIR=$(mktemp -d /tmp/mailauth-bench-XXXXXX)
chmod 755 "$DIR"
PID=""
trap '[ -z "$PID" ] || { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }; rm -rf "$DIR"' EXIT

: > "$DIR/users"
: > "$DIR/passwd"
for i in $(seq 1 50); do
  printf 'user%s:pw-%s\n' "$i" "$i" >> "$DIR/users"
  printf 'user%s:%s\n' "$i" "$(printf 'pw-%s\n' "$i" | "$BIN/mailauth-user" hash --scheme "$SCHEME" --password-stdin)" >> "$DIR/passwd"
done

start() {  # $1: cache table or empty
  USER_LINE=""
  [ "$(id -u)" -eq 0 ] && USER_LINE='user = "root"'
  cat > "$DIR/mailauthd.conf" <<CONF
[daemon]
$USER_LINE
workers = $(nproc)
log = "stderr"
log_level = "warning"
[saslauthd]
socket = "$DIR/mux"
mode = "0666"
[dovecot]
socket = "$DIR/auth"
mode = "0666"
$1
[[backend]]
type = "pwdfile"
path = "$DIR/passwd"
CONF
  start_mailauthd "$BIN" "$DIR/mailauthd.conf" "$DIR/log" "$DIR/auth"
  PID=$MAILAUTHD_PID
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

echo "scheme $SCHEME, $(nproc) workers, $SECS s per run"
for cache in off on; do
  if [ $cache = on ]; then start '[cache]
ttl = "600s"'; else start ""; fi
  for proto in mux dovecot; do
    for c in 1 8 64; do
      if [ $proto = mux ]; then
        out=$("$BIN/mailauth-test" -f "$DIR/mux" --bench --users "$DIR/users" --concurrency $c --duration "$SECS" --json)
      else
        out=$("$BIN/mailauth-test" --dovecot -f "$DIR/auth" --persistent --bench --users "$DIR/users" --concurrency $c --duration "$SECS" --json)
      fi
      printf 'cache=%-3s proto=%-7s c=%-2s %s\n' "$cache" "$proto" "$c" "$out"
    done
  done
  stop
done
