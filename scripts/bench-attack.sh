#!/bin/sh
# Attack resistance under load: does a flood of random unknown user names
# (the brute-force table's worst case, and an enumeration attempt) slow a
# legitimate client down, or grow the daemon?
#
#   scripts/bench-attack.sh [BUILD_DIR] [SECONDS]     (default: build 60)
#
# A private mailauthd (mux + Dovecot protocols, pwdfile with sha512-crypt,
# the default brute-force policy) in a temporary directory.  The legitimate
# client asks over the mux socket, one request at a time (c=1), with right
# passwords, for SECONDS:
#   0. alone,
#   a. while 4 attacker connections send random unknown user names over the
#      mux socket,
#   b. the same with 32 attacker connections,
#   c. while 32 attacker connections send random unknown user names over the
#      Dovecot socket from one address (203.0.113.66).
# Prints the legitimate client's p50/p99, the attackers' answer counts, and
# the daemon's RSS after each phase.  A benchmark, not a test: run it by
# hand; compare numbers within one run only (the machine is shared).
set -eu
BUILD=${1:-build}
SECS=${2:-60}
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/bench-lib.sh"
BIN="$TOP/$BUILD"
DIR=$(mktemp -d /tmp/mailauth-attack-XXXXXX)
chmod 755 "$DIR"
PID=""
trap '[ -z "$PID" ] || kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT

for u in alice bob carol; do
  printf '%s:%s\n' "$u" "$(printf '%s-pw\n' "$u" | "$BIN/mailauth-user" hash --scheme sha512-crypt --password-stdin)"
done > "$DIR/passwd"
printf 'alice:alice-pw\nbob:bob-pw\ncarol:carol-pw\n' > "$DIR/users"
# 200,000 random unknown names, random passwords: every answer is NO, and
# every failure is a new key for the brute-force policy's user-name table.
python3 -c '
import secrets
for _ in range(200000):
    print(f"{secrets.token_hex(8)}@example.net:{secrets.token_hex(6)}")
' > "$DIR/attack"

USER_LINE=""
[ "$(id -u)" -eq 0 ] && USER_LINE='user = "root"'
cat > "$DIR/mailauthd.conf" <<CONF
[daemon]
$USER_LINE
workers = 2
log = "stderr"
log_level = "warning"
max_connections = 4096
control_socket = "$DIR/control"
[saslauthd]
socket = "$DIR/mux"
mode = "0666"
[dovecot]
socket = "$DIR/auth"
mode = "0666"
[[backend]]
type = "pwdfile"
path = "$DIR/passwd"
CONF

start_mailauthd "$BIN" "$DIR/mailauthd.conf" "$DIR/log" "$DIR/auth" "$DIR/mux"
PID=$MAILAUTHD_PID

rss() { awk '/^VmRSS/ { print $2 " kB" }' "/proc/$PID/status"; }
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(str(d[k]) for k in sys.argv[2:]))' "$@"; }

legit() {  # $1: phase name
  "$BIN/mailauth-test" -f "$DIR/mux" --bench --users "$DIR/users" --concurrency 1 \
    --duration "$SECS" --json > "$DIR/legit.json"
  set -- "$1" $(field "$DIR/legit.json" p50_ms p99_ms auth_per_s ok no tempfail)
  printf '%-44s p50 %7s ms  p99 %7s ms  %8s auth/s  ok=%s no=%s tempfail=%s  RSS %s\n' \
    "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$(rss)"
}

attack() {  # $1: connections, $2...: mailauth-test protocol arguments
  n=$1; shift
  "$BIN/mailauth-test" "$@" --bench --users "$DIR/attack" --concurrency "$n" \
    --duration "$((SECS + 4))" --json > "$DIR/attacker.json" &
  APID=$!
  sleep 2
}

attacker_report() {
  wait "$APID"
  set -- $(field "$DIR/attacker.json" requests no tempfail errors)
  printf '%-44s answers %s (no=%s tempfail=%s errors=%s)\n' "  attacker" "$1" "$2" "$3" "$4"
}

echo "mailauthd $("$BIN/mailauthd" --version | head -1), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), ${SECS} s per phase"
legit "0. legitimate client alone"
attack 4 -f "$DIR/mux"
legit "a. + 4 attackers, unknown names, mux"
attacker_report
attack 32 -f "$DIR/mux"
legit "b. + 32 attackers, unknown names, mux"
attacker_report
attack 32 --dovecot -f "$DIR/auth" --rip 203.0.113.66 --persistent
legit "c. + 32 attackers, unknown names, Dovecot"
attacker_report
echo "policy: $("$BIN/mailauth-test" --control "$DIR/control" stats 2>/dev/null | grep -E '^mailauth_(penalties_total|refused_in_flight_total) ' | tr '\n' ' ')"
