#!/bin/sh
# Run mailauthd in the foreground on a self-contained demo set-up:
#   ./run/mailauthd.conf   configuration (mux socket in ./run/, pwdfile backend)
#   ./run/passwd           one user, "demo" with password "demo" (Argon2id)
#   ./run/mux              the saslauthd-protocol socket
# Nothing outside ./run/ is touched.  Stop with Ctrl-C.
set -eu
BUILD=${1:-build}
TOP=$(cd "$(dirname "$0")/.." && pwd)
RUN="$TOP/run"
mkdir -p "$RUN"

if [ ! -s "$RUN/passwd" ]; then
  printf 'demo\n' | "$TOP/$BUILD/mailauth-user" hash --password-stdin > "$RUN/passwd.hash"
  printf '# user:hash, as pam_pwdfile reads it.  Password of "demo": demo\ndemo:%s\n' \
    "$(cat "$RUN/passwd.hash")" > "$RUN/passwd"
  rm -f "$RUN/passwd.hash"
fi

# mailauthd does not stay root without a reason.  Started as root, the demo
# drops to "nobody" when nobody can read the users file, else says root.
RUN_AS=""
if [ "$(id -u)" -eq 0 ]; then
  chmod 0644 "$RUN/passwd"
  if runuser -u nobody -- test -r "$RUN/passwd" 2>/dev/null; then
    RUN_AS='user = "nobody"'
  else
    RUN_AS='user = "root"   # the checkout is not readable by "nobody"'
  fi
fi

cat > "$RUN/mailauthd.conf" <<CONF
# Demo configuration written by scripts/demo.sh; see conf/mailauthd.conf
# for every key.
[daemon]
$RUN_AS
workers = 2
log = "stderr"
log_level = "info"
control_socket = "$RUN/control"

[saslauthd]
socket = "$RUN/mux"
mode = "0666"

[dovecot]
socket = "$RUN/auth"
mode = "0666"
mechanisms = ["PLAIN", "LOGIN"]

[cache]
ttl = "60s"

[[backend]]
type = "pwdfile"
path = "$RUN/passwd"
CONF

cat <<MSG

mailauthd is starting in the foreground (Ctrl-C stops it).  In another terminal:

  $BUILD/mailauth-test -f $RUN/mux -u demo -p demo          # 0: OK "Success."
  $BUILD/mailauth-test -f $RUN/mux -u demo -p wrong         # 0: NO "authentication failed"
  testsaslauthd -f $RUN/mux -u demo -p demo                   # Cyrus's own client (sasl2-bin)
  $BUILD/mailauth-test --dovecot -f $RUN/auth -u demo -p demo # Dovecot's protocol (Postfix)
  doveadm auth test -a $RUN/auth demo demo                    # Dovecot's own client
  $BUILD/mailauth-test --control $RUN/control stats           # counters (as root)

Add users with:  $BUILD/mailauth-user hash  (then append  user:HASH  to $RUN/passwd;
the daemon picks the change up by itself).

MSG
exec "$TOP/$BUILD/mailauthd" --foreground --config "$RUN/mailauthd.conf"
