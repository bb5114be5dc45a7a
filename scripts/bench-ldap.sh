#!/bin/sh
# make bench-ldap: mailauthd's ldap backend against saslauthd -a ldap and
# Dovecot's ldap passdb, in one run, against one private slapd, on the same
# users, with the same client.
#
#   scripts/bench-ldap.sh [--seconds S] [--users N] [--concurrency "1 8 64"]
#                         [--workers W] [--sets "ssha crypt"]
#                         [--only "mailauthd saslauthd dovecot"] [--json FILE] [--keep]
#   (or the environment: BENCH_SECONDS, BENCH_USERS, BENCH_CONCURRENCY,
#    BENCH_WORKERS, BENCH_SETS, BENCH_ONLY, BENCH_JSON; BUILD=dir;
#    BENCH_SKIP_DEPS=1)
#
# Installs what it needs (scripts/install-deps.sh --bench: slapd, saslauthd,
# dovecot-ldap), builds mailauthd, mailauth-test and mailauth-user, then runs
# tests/bench/bench_ldap.py: a private slapd (tests/integration/slapd.py)
# with 1,000 users with {SSHA} passwords and 1,000 with {CRYPT}$5$, and, at
# concurrency 1, 8 and 64 (3 s per cell by default): mailauthd auth = "bind"
# and "lookup" (mux and Dovecot sockets, cache off), saslauthd -a ldap
# (ldap_auth_method bind and custom), Dovecot's ldap passdb (auth_bind = yes
# and a userPassword lookup, each with blocking = no and yes).  Every daemon must answer NO to a wrong and OK
# to a right password before it is measured.  Prints Markdown tables.
#
# Root is needed for saslauthd's and Dovecot's privileged start-up; nothing
# outside one temporary directory is written, and every process is stopped
# by its PID.  A benchmark, not a test: compare numbers within one run.
set -eu
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$TOP/$BUILD" ;; esac

[ "$(id -u)" -eq 0 ] || { echo "bench-ldap: run as root (saslauthd, Dovecot)" >&2; exit 2; }
[ "${BENCH_SKIP_DEPS:-0}" = 1 ] || "$TOP/scripts/install-deps.sh" --bench
if [ -f "$BUILD/CMakeCache.txt" ]; then cmake -S "$TOP" -B "$BUILD" >/dev/null
else cmake -S "$TOP" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null; fi
cmake --build "$BUILD" -j "$(nproc)" --target mailauthd mailauth-test mailauth-user
# exec: Ctrl-C and kill reach the driver, which stops what it started.
exec python3 "$TOP/tests/bench/bench_ldap.py" --build "$BUILD" "$@"
