#!/bin/sh
# Time and peak memory of `mailauth-user import` of N users into a pwdfile.
#   scripts/bench-import.sh [BUILD_DIR] [N] [SCHEME]
# A benchmark, not a test; prints wall time, CPU time and max RSS.
set -eu
BUILD=${1:-build}
N=${2:-10000}
SCHEME=${3:-argon2id}
TOP=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(mktemp -d /tmp/mailauth-import-XXXXXX)
trap 'rm -rf "$DIR"' EXIT
cat > "$DIR/mailauthd.conf" <<CONF
[saslauthd]
socket = "$DIR/mux"
[[backend]]
type = "pwdfile"
path = "$DIR/passwd"
CONF
i=0
while [ $i -lt "$N" ]; do echo "user$i@example.com:password-$i"; i=$((i + 1)); done > "$DIR/users.txt"
python3 - "$TOP/$BUILD/mailauth-user" "$DIR" "$SCHEME" <<'PY'
import resource, subprocess, sys, time
tool, d, scheme = sys.argv[1:]
t0 = time.monotonic()
r = subprocess.run([tool, "--config", f"{d}/mailauthd.conf", "import", f"{d}/users.txt",
                    "--scheme", scheme], capture_output=True, text=True)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.stderr.strip().splitlines()[-1])
print(f"scheme {scheme}: wall {wall:.1f} s, cpu {ru.ru_utime + ru.ru_stime:.1f} s, "
      f"max RSS {ru.ru_maxrss / 1024:.1f} MiB, exit {r.returncode}")
lines = sum(1 for _ in open(f"{d}/passwd"))
print(f"passwd lines: {lines}")
PY
