# mailauth — entry point.  CMake and CTest do the work underneath.
#
#   make            build (build/)
#   make run        install build dependencies, build, run mailauthd in the
#                   foreground on the demo set-up in ./run/ (pwdfile, demo user)
#   make check      install build and test dependencies, build with
#                   -Werror, run every test; a short libFuzzer run of every
#                   parser and whole server connection; the unit tests
#                   and simulator under TSan; then every test again under
#                   ASan/UBSan
#   make fuzz       the libFuzzer targets, FUZZ_SECONDS each (default 20)
#   make sim        the simulator on new seeds for SIM_SECONDS (default 60)
#   make bench      install the peers, build, and measure mailauthd against
#                   saslauthd, Dovecot's auth service, the crypt(3) limit and
#                   echo servers (scripts/bench-compare.sh; root; about 5
#                   minutes at BENCH_SECONDS=3 per cell)
#   make bench-ldap the ldap backend against saslauthd -a ldap and Dovecot's
#                   ldap passdb on one private slapd (scripts/bench-ldap.sh;
#                   root; about 4½ minutes at BENCH_SECONDS=3)
#   make install    install programs, example config and systemd unit
#                   (PREFIX=/usr/local, DESTDIR= for staging)
#   make deb        the Debian package (debian/, debhelper) built in a copy of
#                   the tree: build-deb/mailauth_VERSION_ARCH.deb, checked
#                   by lintian (fails on an error); nothing is written
#                   outside the repository.  `make check` builds it first and
#                   installs it in a test (integration.deb).
#   make clean

PREFIX     ?= /usr/local
DESTDIR    ?=
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
SIM_SECONDS ?= 60
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 20
DEB_BUILD  ?= build-deb
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
# The daemon's user and group ([daemon] user/group): make install creates the
# user (without DESTDIR) and gives it /var/lib/mailauth and the pwdfile there.
MAILAUTH_USER  ?= mailauth
MAILAUTH_GROUP ?= $(MAILAUTH_USER)
# The output of `make check` ends with ctest's summary, not make's chatter.
MAKEFLAGS += --no-print-directory

BENCH_SECONDS ?= 3
.PHONY: all build deps test-deps run check check-fast check-asan check-tsan sim fuzz bench bench-ldap install deb clean

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_ARGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

deps:
	scripts/install-deps.sh --build

test-deps:
	scripts/install-deps.sh

run: deps
	$(MAKE) build
	scripts/demo.sh $(BUILD)

# The whole suite, twice: the release build, then the sanitizer build.  The
# last lines are ctest's summary of the sanitizer run.  The Debian package is
# built first: integration.deb installs it (release pass only; the package
# holds release binaries, so check-asan leaves out the "deb" label).
check: test-deps
	$(MAKE) deb
	$(MAKE) check-fast
	$(MAKE) fuzz FUZZ_SECONDS=10
	$(MAKE) check-tsan
	$(MAKE) check-asan

check-fast: build
	scripts/ctest-no-skip.sh $(BUILD) --output-on-failure -j $(JOBS)

check-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMAILAUTH_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  scripts/ctest-no-skip.sh $(ASAN_BUILD) --output-on-failure -j $(JOBS) -LE '^deb$$'

# Where threads meet (event loops, worker pool, authenticator, cache, policy):
# the unit tests and the simulator under ThreadSanitizer, then the daemon
# itself (loops = one per core) under the lifetime and mux integration tests.
# Every TSan report of any process goes to a file; one file fails the run.
TSAN_REPORTS = $(TSAN_BUILD)/tsan-reports
check-tsan:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMAILAUTH_TSAN=ON \
	  -DSIM_SESSIONS=20000 $(CMAKE_ARGS)
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target unit_tests mailauth-sim mailauthd mailauth-test
	rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  scripts/ctest-no-skip.sh $(TSAN_BUILD) --output-on-failure -j $(JOBS) -L 'unit|sim'
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:log_path=$(abspath $(TSAN_REPORTS))/report \
	  scripts/ctest-no-skip.sh $(TSAN_BUILD) --output-on-failure -j $(JOBS) \
	  -R '^integration\.(lifetime|mux)$$'
	@if [ -n "$$(ls -A $(TSAN_REPORTS))" ]; then cat $(TSAN_REPORTS)/*; \
	  echo "check-tsan: ThreadSanitizer reports above" >&2; exit 1; fi

# Soak: the simulator on new seeds for SIM_SECONDS (make sim SIM_SECONDS=3600).
sim: build
	$(BUILD)/tests/sim/mailauth-sim --seed $$(date +%s) --seconds $(SIM_SECONDS)

# Each parser's fuzzer runs from the seeds in tests/data/fuzz/NAME, on a
# scratch copy of the corpus (the repository is never written).
fuzz:
	CXX=clang++-14 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DMAILAUTH_FUZZ=ON -DMAILAUTH_TESTS=OFF $(CMAKE_ARGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_mux fuzz_dovecot fuzz_schemes fuzz_mux_server fuzz_dovecot_server fuzz_migrate \
	  fuzz_ldap
	@for t in mux dovecot schemes mux_server dovecot_server migrate ldap; do \
	  rm -rf $(FUZZ_BUILD)/corpus/$$t && mkdir -p $(FUZZ_BUILD)/corpus/$$t && \
	  cp tests/data/fuzz/$$t/* $(FUZZ_BUILD)/corpus/$$t/ && \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s" && \
	  $(FUZZ_BUILD)/tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- $(FUZZ_BUILD)/corpus/$$t 2>&1 | \
	    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done)' ; \
	  if ls $(FUZZ_BUILD)/crash-$$t-* >/dev/null 2>&1; then \
	    echo "fuzz_$$t found a crash, timeout or leak:"; ls $(FUZZ_BUILD)/crash-$$t-*; exit 1; fi; \
	done

# One table: mailauthd / best peer / limit, per path and concurrency; the raw
# numbers of every daemon; RSS with idle connections.  BENCH_SECONDS per cell.
bench:
	BUILD=$(BUILD) BENCH_SECONDS=$(BENCH_SECONDS) scripts/bench-compare.sh

bench-ldap:
	BUILD=$(BUILD) BENCH_SECONDS=$(BENCH_SECONDS) scripts/bench-ldap.sh

# The pwdfile lives in a directory of its own that the daemon's user owns,
# /var/lib/mailauth: a rehash (run as that user) writes a temporary file there
# and renames it over the old one, keeping its owner; /etc/mailauth (the
# configuration, secrets) stays root's.  An existing passwd is left as it is.
install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)
	install -d $(DESTDIR)/etc/mailauth
	[ -e $(DESTDIR)/etc/mailauth/mailauthd.conf ] || \
	  install -m 0640 conf/mailauthd.conf $(DESTDIR)/etc/mailauth/mailauthd.conf
	install -d $(DESTDIR)/lib/systemd/system
	sed 's|@SBINDIR@|$(PREFIX)/sbin|g' conf/mailauthd.service \
	  > $(DESTDIR)/lib/systemd/system/mailauthd.service
	install -m 0644 conf/mailauthd-mux.socket conf/mailauthd-dovecot.socket $(DESTDIR)/lib/systemd/system/
	install -d $(DESTDIR)$(PREFIX)/share/doc/mailauth
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/mailauth/
	@if [ -z "$(DESTDIR)" ] && ! getent passwd $(MAILAUTH_USER) >/dev/null; then \
	  echo "creating system user $(MAILAUTH_USER)"; \
	  useradd --system --home-dir /nonexistent --no-create-home \
	    --shell /usr/sbin/nologin --user-group $(MAILAUTH_USER); \
	fi
	install -d -m 0750 $(DESTDIR)/var/lib/mailauth
	@owner=; \
	if [ "$$(id -u)" = 0 ] && getent passwd $(MAILAUTH_USER) >/dev/null; then \
	  owner=$(MAILAUTH_USER):$(MAILAUTH_GROUP); chown $$owner $(DESTDIR)/var/lib/mailauth; \
	else \
	  echo "note: give /var/lib/mailauth and its passwd to $(MAILAUTH_USER):$(MAILAUTH_GROUP) (chown)"; \
	fi; \
	if [ ! -e $(DESTDIR)/var/lib/mailauth/passwd ]; then \
	  install -m 0640 /dev/null $(DESTDIR)/var/lib/mailauth/passwd; \
	  if [ -n "$$owner" ]; then chown $$owner $(DESTDIR)/var/lib/mailauth/passwd; fi; \
	fi

# dpkg-buildpackage writes its results next to the source tree, so the tree
# is copied (the files git knows, committed or not, plus untracked ones it
# does not ignore) to $(DEB_BUILD)/mailauth-VERSION and built there; the
# .deb, .buildinfo and .changes land in $(DEB_BUILD).  The upstream part of
# debian/changelog's version must be CMakeLists.txt's project VERSION.
DEB_VERSION  = $(shell dpkg-parsechangelog -l debian/changelog -S Version)
CMAKE_VERSION = $(shell sed -n 's/^project(mailauth VERSION \([^ )]*\).*/\1/p' CMakeLists.txt)
DEB_ARCH     = $(shell dpkg-architecture -q DEB_HOST_ARCH)
DEB_SRC      = $(DEB_BUILD)/mailauth-$(CMAKE_VERSION)
deb:
	@v=$(DEB_VERSION); v=$${v#*:}; [ "$${v%-*}" = "$(CMAKE_VERSION)" ] || { \
	  echo "make deb: debian/changelog says $(DEB_VERSION), CMakeLists.txt $(CMAKE_VERSION):" \
	       "add a changelog entry (dch -v $(CMAKE_VERSION)-1)" >&2; exit 1; }
	@git rev-parse --is-inside-work-tree >/dev/null || { \
	  echo "make deb: needs a git checkout (it copies the files git knows)" >&2; exit 1; }
	rm -rf $(DEB_SRC) $(DEB_BUILD)/mailauth_* $(DEB_BUILD)/mailauth-dbgsym_*
	mkdir -p $(DEB_SRC)
	git ls-files -z --cached --others --exclude-standard | \
	  xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh | \
	  tar --null -T - -cf - | tar -xf - -C $(DEB_SRC)
	cd $(DEB_SRC) && DEB_BUILD_OPTIONS="nocheck parallel=$(JOBS)" dpkg-buildpackage -us -uc -b
	lintian --fail-on error $(DEB_BUILD)/mailauth_$(DEB_VERSION)_$(DEB_ARCH).deb
	@echo "built $(DEB_BUILD)/mailauth_$(DEB_VERSION)_$(DEB_ARCH).deb"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) $(DEB_BUILD)
