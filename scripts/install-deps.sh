#!/bin/sh
# Install every build and test dependency of mailauth from Debian's packages.
# Non-interactive and idempotent: packages already present are left alone.
#
#   scripts/install-deps.sh          build + test dependencies (what `make check` needs)
#   scripts/install-deps.sh --build  only what building and `make run` need
#   scripts/install-deps.sh --bench  build + test + what `make bench` needs
#
# Servers that some packages ship (MariaDB, Postfix, Dovecot, saslauthd) are
# installed for their binaries only: the tests start private instances of
# them.  A temporary policy-rc.d keeps the package scripts from starting the
# system's copies during installation.
set -eu

BUILD_PKGS="build-essential cmake pkg-config g++ make help2man
  libsodium-dev libcrypt-dev libargon2-dev libssl-dev libtomlplusplus-dev
  libmariadb-dev libpam0g-dev libsystemd-dev libgtest-dev googletest
  libldap-dev"

TEST_PKGS="python3 sasl2-bin whois argon2 python3-argon2 dovecot-core
  mariadb-server mariadb-client libpam-pwdfile libpam-modules
  postfix swaks gsasl openssl fail2ban systemd
  clang-14 libclang-rt-14-dev libpam-mysql
  slapd ldap-utils debhelper lintian dpkg-dev fakeroot"

# make bench (scripts/bench-compare.sh): the peers it measures mailauthd
# against that the tests do not need.  Dovecot's sql passdb on MariaDB is in
# dovecot-mysql; saslauthd, pam_pwdfile, pam_mysql, MariaDB and dovecot-core
# are test packages already.
BENCH_PKGS="dovecot-mysql dovecot-ldap"

pkgs="$BUILD_PKGS"
case "${1:-}" in
  --build) ;;
  --bench) pkgs="$pkgs $TEST_PKGS $BENCH_PKGS" ;;
  *) pkgs="$pkgs $TEST_PKGS" ;;
esac

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' \
    || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "install-deps: all dependencies present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how it is used; the tests run a private instance, so "No configuration".
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
# slapd: the tests run private instances with their own configuration; the
# package must not build a system directory.
echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections

policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  made_policy=1
fi
cleanup() { [ -z "$made_policy" ] || $SUDO rm -f "$policy"; }
trap cleanup EXIT

$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
echo "install-deps: done"
