#!/bin/sh
# Brute force vs a legitimate user: does an attacker hammering wrong
# passwords from one address slow down a legitimate client on another?
#
#   scripts/bench-bruteforce.sh [BUILD_DIR] [SECONDS]
#
# Starts a private mailauthd (Dovecot protocol, pwdfile with sha512-crypt
# hashes, the default brute-force policy and a 2 s failure delay) in a
# temporary directory, then measures the legitimate client's latency
#   1. alone,
#   2. while 32 attacker connections send wrong passwords as fast as they
#      are answered from 203.0.113.66,
# and prints both reports (mailauth-test --bench --json).  A benchmark, not a
# test: run it by hand on an otherwise idle machine.
set -eu
BUILD=${1:-build}
SECS=${2:-10}
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/bench-lib.sh"
BIN="$TOP/$BUILD"
DIR=$(mktemp -d /tmp/mailauth-bench-XXXXXX)
chmod 755 "$DIR"
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DIR"' EXIT

for u in alice bob carol; do
  printf '%s:%s\n' "$u" "$(printf '%s-pw\n' "$u" | "$BIN/mailauth-user" hash --scheme sha512-crypt --password-stdin)"
done > "$DIR/passwd"
printf 'alice:alice-pw\nbob:bob-pw\ncarol:carol-pw\n' > "$DIR/users"

USER_LINE=""
[ "$(id -u)" -eq 0 ] && USER_LINE='user = "root"'
cat > "$DIR/mailauthd.conf" <<CONF
[daemon]
$USER_LINE
workers = 2
log = "stderr"
log_level = "warning"
control_socket = "$DIR/control"
[dovecot]
socket = "$DIR/auth"
mode = "0666"
failure_delay = "2s"
[[backend]]
type = "pwdfile"
path = "$DIR/passwd"
CONF

start_mailauthd "$BIN" "$DIR/mailauthd.conf" "$DIR/log" "$DIR/auth"
PID=$MAILAUTHD_PID

legit() {
  "$BIN/mailauth-test" --dovecot -f "$DIR/auth" --bench --users "$DIR/users" --rip 198.51.100.7 \
    --concurrency 2 --persistent --duration "$SECS" --json
}

echo "== legitimate client alone (2 connections, 198.51.100.7)"
legit
echo "== the same while an attacker hammers from 203.0.113.66 (32 connections, all wrong)"
"$BIN/mailauth-test" --dovecot -f "$DIR/auth" --bench --users "$DIR/users" --rip 203.0.113.66 \
  --concurrency 32 --persistent --wrong 1 --duration "$((SECS + 2))" --json > "$DIR/attacker.json" &
APID=$!
sleep 1
legit
wait "$APID"
echo "== attacker"
cat "$DIR/attacker.json"
echo "== daemon counters"
"$BIN/mailauth-test" --control "$DIR/control" stats | grep -E '^mailauth_(auth_attempts_total|penalties_total|penalty_seconds_total|refused_in_flight_total)'
