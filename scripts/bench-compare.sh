#!/bin/sh
# make bench: mailauthd against its peers and against the machine's limits,
# in one run, on the same users and hashes, with the same client.
#
#   scripts/bench-compare.sh [--seconds S] [--users N] [--concurrency "1 8 64"]
#                            [--only "crypt echo mailauthd saslauthd dovecot"]
#                            [--idle "1000 10000"] [--json FILE] [--keep]
#   (or the environment: BENCH_SECONDS, BENCH_USERS, BENCH_CONCURRENCY,
#    BENCH_ONLY, BENCH_IDLE, BENCH_JSON; BUILD=dir; BENCH_SKIP_DEPS=1)
#
# Installs what it needs (scripts/install-deps.sh), builds mailauthd,
# mailauth-test, mailauth-user and mailauth-bench-tools, then runs
# tests/bench/bench_compare.py, which measures, at concurrency 1, 8 and 64
# (3 s per cell by default, 1,000 users with sha256-crypt hashes):
#   - the crypt(3) limit: crypt_r() verifications per second on min(c, nproc)
#     threads (mailauth-bench-tools crypt-limit);
#   - echo servers of both framings (the limit of the socket);
#   - mailauthd (pwdfile): hash-bound, credential-cache hits, {PLAIN};
#   - saslauthd -a pam with pam_pwdfile (with and without -c) and pam_mysql
#     (crypt and clear columns) on a private MariaDB;
#   - Dovecot's auth service: passwd-file, sql (same MariaDB), {PLAIN}, and
#     passwd-file with its auth cache;
#   - mailauthd's RSS with 1,000 and 10,000 idle Dovecot connections, and
#     Dovecot's auth process with 1,000;
# and prints Markdown tables with the ratios, the server CPU per
# authentication and the client's own CPU per request.
#
# Root is needed: saslauthd reads its PAM stack from /etc/pam.d, so
# /etc/pam.d/mailauth-bench is written while saslauthd runs and removed at
# exit (also on Ctrl-C or an error).  Everything else lives in one temporary
# directory; every process is stopped by its PID.  A benchmark, not a test:
# compare numbers within one run, on an otherwise idle machine.
set -eu
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$TOP/$BUILD" ;; esac

[ "$(id -u)" -eq 0 ] || { echo "bench-compare: run as root (saslauthd's PAM service file goes to /etc/pam.d)" >&2; exit 2; }
[ "${BENCH_SKIP_DEPS:-0}" = 1 ] || "$TOP/scripts/install-deps.sh" --bench
# Configure (again): a build directory made before a target existed knows no
# rule for it until CMake has re-read the lists.
if [ -f "$BUILD/CMakeCache.txt" ]; then cmake -S "$TOP" -B "$BUILD" >/dev/null
else cmake -S "$TOP" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null; fi
cmake --build "$BUILD" -j "$(nproc)" --target mailauthd mailauth-test mailauth-user mailauth-bench-tools
# exec: Ctrl-C and kill reach the driver, which stops what it started.
exec python3 "$TOP/tests/bench/bench_compare.py" --build "$BUILD" "$@"
