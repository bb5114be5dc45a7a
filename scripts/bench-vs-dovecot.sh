#!/bin/sh
# mailauthd beside Dovecot's own auth service, same users, same hashes, same
# client: `mailauth-test --dovecot --persistent --bench` against each socket
# at concurrency 1, 8 and 64, caches off on both sides.
#   scripts/bench-vs-dovecot.sh [BUILD_DIR] [SECONDS] [SCHEME]
# Starts a private Dovecot (dovecot-core; own base_dir, no network
# listeners, passwd-file passdb) and a private mailauthd in a temporary
# directory; stops both.  A benchmark, not a test.
set -eu
BUILD=${1:-build}
SECS=${2:-5}
SCHEME=${3:-sha512-crypt}
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/bench-lib.sh"
BIN="$TOP/$BUILD"
DIR=$(mktemp -d /tmp/mailauth-vs-dovecot-XXXXXX)
chmod 755 "$DIR"
mkdir "$DIR/run" "$DIR/state"
DPID="" MPID=""
cleanup() {
  [ -z "$MPID" ] || kill "$MPID" 2>/dev/null || true
  [ -z "$DPID" ] || kill "$DPID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

: > "$DIR/passwd"; : > "$DIR/users"
for i in $(seq 1 50); do
  printf 'user%s:pw-%s\n' "$i" "$i" >> "$DIR/users"
  printf 'user%s:%s\n' "$i" "$(printf 'pw-%s\n' "$i" | "$BIN/mailauth-user" hash --scheme "$SCHEME" --password-stdin)" >> "$DIR/passwd"
done
chmod 644 "$DIR/passwd"

cat > "$DIR/dovecot.conf" <<CONF
base_dir = $DIR/run
state_dir = $DIR/state
log_path = $DIR/dovecot.log
instance_name = mailauth-bench
protocols =
listen = 127.0.0.1
ssl = no
auth_mechanisms = plain login
auth_cache_size = 0
passdb {
  driver = passwd-file
  args = scheme=CRYPT $DIR/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$DIR
}
service auth {
  unix_listener $DIR/dovecot-auth {
    mode = 0666
  }
}
CONF
dovecot -F -c "$DIR/dovecot.conf" 2>>"$DIR/dovecot.log" &
DPID=$!

USER_LINE=""
[ "$(id -u)" -eq 0 ] && USER_LINE='user = "root"'
cat > "$DIR/mailauthd.conf" <<CONF
[daemon]
$USER_LINE
workers = $(nproc)
log = "stderr"
log_level = "warning"
[dovecot]
socket = "$DIR/mailauthd-auth"
mode = "0666"
[[backend]]
type = "pwdfile"
path = "$DIR/passwd"
CONF
start_mailauthd "$BIN" "$DIR/mailauthd.conf" "$DIR/mailauthd.log" "$DIR/mailauthd-auth"
MPID=$MAILAUTHD_PID
wait_for_sockets "$DIR/dovecot.log" "$DIR/dovecot-auth"

echo "scheme $SCHEME, 50 users, persistent connections, $SECS s per run, caches off"
for c in 1 8 64; do
  for who in dovecot mailauthd; do
    out=$("$BIN/mailauth-test" --dovecot -f "$DIR/$who-auth" --persistent --bench --users "$DIR/users" \
          --concurrency $c --duration "$SECS" --json)
    printf '%-9s c=%-2s %s\n' "$who" "$c" "$out"
  done
done
