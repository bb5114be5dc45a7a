"""The Debian package (`make deb`, debian/) installs, works and purges
without a trace.

As root, with sasl2-bin and dovecot-core installed (as on CI), the test
installs build-deb/mailauth_VERSION_ARCH.deb (MAILAUTH_DEB overrides the
path) with dpkg -i, checks what it put in place (files, conffile, units,
the mailauth user, /var/lib/mailauth, the unit enabled but nothing
started), logs in through the installed programs and the installed user,
then purges it and checks that the system is as before, but for the
mailauth user and group, which a purge leaves locked (README.Debian: files
may still be theirs; a deleted uid could go to the next system user).  `make check` builds
the package first (`make deb`); a missing package or a non-root run is a
skip, which make check counts as a failure.  The package holds release
binaries, so make check-asan leaves this module out (label "deb").

It never touches a package it did not install: while it has one installed,
MARKER exists; a mailauth package installed without it, or a file the
package would ship that is already on disk (make install writes
/etc/mailauth/mailauthd.conf and /lib/systemd/system/mailauthd.service),
fails the test before anything is changed.  A package left by an
interrupted run of this test (MARKER present) is purged first.

It adds the system user mailauth (and renames it for a while), which other
modules look at (test_packaging): ctest runs it alone (RUN_SERIAL)."""
import glob
import grp
import gzip
import os
import pwd
import subprocess
import time
import unittest

from harness import DaemonTestCase, mkpasswd, which

SOURCE = os.environ.get("MAILAUTH_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
MARKER = "/var/lib/mailauth-deb-test.marker"
PACKAGE = "mailauth"
CONF = "/etc/mailauth/mailauthd.conf"
DATA = "/var/lib/mailauth"
STATE_DIR = "/var/lib/mailauth-package"  # postinst's list of what it created
RUNTIME = "/run/mailauth"  # the unit's RuntimeDirectory=, which purge removes
UNITS = ("mailauthd.service", "mailauthd-mux.socket", "mailauthd-dovecot.socket")
SHIPPED = ("/usr/sbin/mailauthd", "/usr/bin/mailauth-test", "/usr/bin/mailauth-user",
           "/usr/sbin/mailauth-migrate",
           "/usr/share/man/man8/mailauthd.8.gz", "/usr/share/man/man1/mailauth-test.1.gz",
           "/usr/share/man/man8/mailauth-user.8.gz", "/usr/share/man/man8/mailauth-migrate.8.gz",
           CONF,
           "/usr/share/doc/mailauth/README.md", "/usr/share/doc/mailauth/copyright",
           *(f"/lib/systemd/system/{u}" for u in UNITS))
WANTS = "/etc/systemd/system/multi-user.target.wants/mailauthd.service"
OK = '0: OK "Success."'
NO = '0: NO "authentication failed"'


def run(*argv, check=True, timeout=300, **kwargs):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited with {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def changelog_version():
    return run("dpkg-parsechangelog", "-l", os.path.join(SOURCE, "debian", "changelog"),
               "-S", "Version").stdout.strip()


def package_file():
    """The path of the .deb to test (MAILAUTH_DEB, else what make deb builds)."""
    path = os.environ.get("MAILAUTH_DEB")
    if path:
        return path
    arch = run("dpkg", "--print-architecture").stdout.strip()
    return os.path.join(SOURCE, "build-deb", f"{PACKAGE}_{changelog_version()}_{arch}.deb")


def package_status(name=PACKAGE):
    """dpkg's status abbreviation ("ii ", "rc ", ...), or None when dpkg does not know it."""
    r = run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", name, check=False)
    return r.stdout if r.returncode == 0 and r.stdout.strip() else None


def dpkg(*args, check=True):
    """dpkg, waiting while another dpkg or apt holds its lock."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    deadline = time.monotonic() + 300
    while True:
        r = run("dpkg", *args, check=False, env=env)
        locked = any(s in r.stderr for s in ("frontend lock", "database area is locked"))
        if r.returncode == 0 or not locked or time.monotonic() > deadline:
            break
        time.sleep(2)
    if check and r.returncode != 0:
        raise AssertionError(f"dpkg {' '.join(args)} exited with {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def account(name=PACKAGE):
    """(passwd entry or None, group entry or None)."""
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        user = None
    try:
        group = grp.getgrnam(name)
    except KeyError:
        group = None
    return user, group


def shadow_password(name=PACKAGE):
    with open("/etc/shadow") as f:
        return next(l.split(":")[1] for l in f if l.split(":")[0] == name)


def supplementary_groups(name=PACKAGE):
    return sorted(g.gr_name for g in grp.getgrall() if name in g.gr_mem)


def systemd_helper(action, unit):
    """deb-systemd-helper's answer (exit status); it insists on being run from a maintainer script."""
    return run("deb-systemd-helper", action, unit, check=False,
               env=dict(os.environ, DPKG_MAINTSCRIPT_PACKAGE=PACKAGE)).returncode


def processes_of(program):
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/exe") == program:
                pids.append(int(pid))
        except OSError:
            pass
    return pids


def purge_leftover():
    """Purge a package this test installed and did not get to purge."""
    if os.path.exists(MARKER):
        if package_status() is not None:
            dpkg("--purge", PACKAGE)
        os.unlink(MARKER)


class PackageSourcesTest(unittest.TestCase):
    """debian/ agrees with the rest of the tree (no root, no package needed)."""

    def test_build_depends_cover_the_build_packages(self):
        """Build-Depends names every package scripts/install-deps.sh installs
        to build (BUILD_PKGS), but build-essential and what it implies."""
        with open(os.path.join(SOURCE, "scripts", "install-deps.sh")) as f:
            text = f.read()
        build_pkgs = set(text.split('BUILD_PKGS="', 1)[1].split('"', 1)[0].split())
        self.assertIn("cmake", build_pkgs)
        with open(os.path.join(SOURCE, "debian", "control")) as f:
            lines = [l for l in f.read().split("\n\n", 1)[0].splitlines() if not l.startswith("#")]
        field, depends = None, ""
        for line in lines:
            if line[:1] in (" ", "\t"):
                if field == "Build-Depends":
                    depends += line
                continue
            field, _, value = line.partition(":")
            if field == "Build-Depends":
                depends = value
        names = {d.split()[0] for d in depends.replace("|", ",").split(",") if d.strip()}
        self.assertEqual(build_pkgs - {"build-essential", "g++", "make"} - names, set(),
                         "scripts/install-deps.sh BUILD_PKGS not in debian/control's Build-Depends")
        self.assertNotIn("build-essential", names)

    def test_the_changelog_version_is_the_project_version(self):
        with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
            project = next(l for l in f if l.startswith("project(mailauth VERSION "))
        upstream = changelog_version().split(":")[-1].rsplit("-", 1)[0]
        self.assertEqual(upstream, project.split()[2], "debian/changelog vs CMakeLists.txt")


class DebInstallTest(DaemonTestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root: installs and purges the package with dpkg")
        self.deb = package_file()
        if not os.path.isfile(self.deb):
            self.skipTest(f"no package {self.deb}" + (" (MAILAUTH_DEB)" if os.environ.get("MAILAUTH_DEB")
                          else ": run `make deb` first (make check does)"))
        for pkg in ("sasl2-bin", "dovecot-core"):
            self.assertEqual(package_status(pkg), "ii ",
                             f"{pkg} must be installed beside the package (scripts/install-deps.sh)")
        purge_leftover()
        status = package_status()
        if status is not None:
            self.fail(f"a {PACKAGE} package is installed (dpkg status {status.strip()!r}) that this "
                      f"test did not install ({MARKER} is missing): refusing to replace or purge it. "
                      f"Remove it yourself (dpkg --purge {PACKAGE}) to run this test.")
        contents = run("dpkg-deb", "-c", self.deb).stdout.splitlines()
        self.ships = [l.split(None, 5)[5].split(" -> ")[0][1:] for l in contents]
        self.assertIn("/usr/sbin/mailauthd", self.ships)
        present = [p for p in self.ships if not p.endswith("/") and os.path.lexists(p)]
        if present:
            self.fail(f"files the package ships exist already, from no package ({', '.join(present)}; "
                      f"make install?): installing would take them over and purging would delete "
                      f"them. Refusing; move them away to run this test.")
        self.before = self.system_state()
        super().setUp()

    def system_state(self):
        user, group = account()
        return {
            "user": user, "group": group,
            "groups": supplementary_groups() if user else [],
            "dirs": {p for p in self.ships if p.endswith("/") and os.path.isdir(p)},
            DATA: os.path.lexists(DATA), STATE_DIR: os.path.lexists(STATE_DIR),
            RUNTIME: os.path.lexists(RUNTIME),
            "/etc/mailauth": os.path.lexists("/etc/mailauth"),
            WANTS: os.path.lexists(WANTS),
        }

    def install(self, check=True):
        with open(MARKER, "w") as f:
            f.write(f"{self.deb} installed by tests/integration/test_deb.py (pid {os.getpid()}); "
                    f"the test purges the package and removes this file\n")
        self.addCleanup(purge_leftover)
        return dpkg("-i", self.deb, check=check)

    def purge(self, listed=None):
        """Purge the package; returns the paths dpkg -L listed (or `listed`)."""
        listed = listed or run("dpkg", "-L", PACKAGE).stdout.splitlines()
        dpkg("--purge", PACKAGE)
        os.unlink(MARKER)
        return listed

    def assert_purged(self, listed):
        self.assertIsNone(package_status(), "dpkg still knows the package")
        dirs = self.before["dirs"]
        left = [p for p in listed if p not in ("/.", "/") and os.path.lexists(p)
                and not (p + "/" in dirs and os.path.isdir(p))]
        self.assertEqual(left, [], "left after dpkg --purge")
        for path in (DATA, STATE_DIR, "/etc/mailauth", WANTS):
            self.assertEqual(os.path.lexists(path), self.before[path], f"{path} after the purge")
        self.assertFalse(os.path.lexists(RUNTIME), f"{RUNTIME} after the purge")
        user, group = account()
        if self.before["user"] is None:
            # postinst made them; purge keeps them (files may still be
            # theirs, README.Debian), locked: no password, no login shell, no
            # supplementary group.
            self.assertIsNotNone(user, "purge keeps the mailauth user postinst created")
            self.assertIsNotNone(group, "purge keeps the mailauth group postinst created")
            self.assertLess(user.pw_uid, 1000)
            self.assertEqual(user.pw_shell, "/usr/sbin/nologin")
            self.assertTrue(shadow_password().startswith("!"), "the password is locked")
            self.assertEqual(supplementary_groups(), [])
        else:
            self.assertEqual((user, group), (self.before["user"], self.before["group"]),
                             "the mailauth user and group are as before the install")
            self.assertEqual(supplementary_groups(), self.before["groups"])
        for unit in UNITS:
            self.assertEqual(systemd_helper("debian-installed", unit), 1,
                             f"deb-systemd-helper still tracks {unit}")
        self.assertEqual(glob.glob("/var/lib/systemd/deb-systemd-helper-enabled/**/mailauthd*",
                                   recursive=True), [])

    def check_installed_files(self):
        listed = run("dpkg", "-L", PACKAGE).stdout.splitlines()
        for path in SHIPPED:
            self.assertIn(path, listed)
            self.assertTrue(os.path.isfile(path), path)
        self.assertTrue([p for p in listed if p.startswith("/usr/share/doc/mailauth/README.Debian")])
        for prog in ("/usr/sbin/mailauthd", "/usr/bin/mailauth-test", "/usr/bin/mailauth-user",
                     "/usr/sbin/mailauth-migrate"):
            self.assertTrue(os.access(prog, os.X_OK), prog)
            r = run(prog, "--version")
            self.assertRegex(r.stdout, rf"^{os.path.basename(prog)} "
                                       rf"{changelog_version().rsplit('-', 1)[0]}")
        for page in (p for p in SHIPPED if "/man/" in p):
            with gzip.open(page, "rt") as f:
                self.assertIn(".TH ", f.read(), page)
        conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout.split()
        self.assertEqual(conffiles[0::2], [CONF], "the configuration, and only it, is a conffile")
        # Beside sasl2-bin and dovecot-core: no file is another package's too.
        files = [p for p in listed if os.path.isfile(p)]
        owners = run("dpkg", "-S", *files).stdout.splitlines()
        self.assertEqual(sorted(l.rsplit(": ", 1)[1] for l in owners if l.split(":")[0] == PACKAGE),
                         sorted(files))
        self.assertEqual([l for l in owners if l.split(":")[0] != PACKAGE], [], "shared files")
        with open("/lib/systemd/system/mailauthd.service") as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/sbin/mailauthd --config /etc/mailauth/mailauthd.conf", unit)
        self.assertNotIn("@SBINDIR@", unit)
        for url in (w for l in unit.splitlines() if l.startswith("Documentation=")
                    for w in l.split("=", 1)[1].split() if w.startswith("file://")):
            self.assertTrue(os.path.isfile(url[len("file://"):]), f"Documentation={url}")
        return listed

    def check_accounts_and_layout(self):
        user, group = account()
        self.assertIsNotNone(user, "postinst creates the mailauth user")
        self.assertIsNotNone(group, "postinst creates the mailauth group")
        if self.before["user"] is None:
            self.assertLess(user.pw_uid, 1000, "a system user")
            self.assertEqual((user.pw_dir, user.pw_shell, user.pw_gid),
                             ("/nonexistent", "/usr/sbin/nologin", group.gr_gid))
            self.assertFalse(os.path.exists("/nonexistent"))
            # The shipped configuration has no shadow backend and no sasl socket group.
            self.assertEqual(supplementary_groups(), [])
        if not self.before[DATA]:
            st = os.lstat(DATA)
            self.assertEqual((st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)),
                             (user.pw_uid, group.gr_gid, oct(0o750)), DATA)
            st = os.lstat(os.path.join(DATA, "passwd"))
            self.assertEqual((st.st_uid, st.st_gid, oct(st.st_mode & 0o7777), st.st_size),
                             (user.pw_uid, group.gr_gid, oct(0o640), 0), f"{DATA}/passwd")
        st = os.lstat(CONF)
        self.assertEqual((st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)),
                         (0, group.gr_gid, oct(0o640)), CONF)
        # postinst's list of what it created, which purge trusts: root's alone.
        for path in (STATE_DIR, os.path.join(STATE_DIR, "created")):
            if os.path.lexists(path):
                st = os.lstat(path)
                self.assertEqual((st.st_uid, st.st_mode & 0o022), (0, 0),
                                 f"{path}: root's, not writable by group or others")
                r = run("setpriv", f"--reuid={user.pw_uid}", f"--regid={group.gr_gid}",
                        "--init-groups", "test", "-w", path, check=False)
                self.assertEqual(r.returncode, 1, f"mailauth may write {path}")
        # The daemon reads it again after dropping to mailauth (reload).
        r = run("setpriv", f"--reuid={user.pw_uid}", f"--regid={group.gr_gid}", "--init-groups",
                "cat", CONF, check=False)
        self.assertEqual(r.returncode, 0, f"mailauth cannot read {CONF}: {r.stderr}")

    def check_enabled_not_started(self):
        self.assertEqual(os.readlink(WANTS), "/lib/systemd/system/mailauthd.service")
        # systemctl answers from the unit files when systemd does not run (CI).
        r = run("systemctl", "is-enabled", *UNITS, check=False)
        self.assertEqual(r.stdout.split(), ["enabled", "disabled", "disabled"],
                         "mailauthd.service is enabled, the socket units stay optional")
        self.assertEqual([systemd_helper("is-enabled", u) for u in UNITS], [0, 1, 1])
        self.assertEqual([systemd_helper("debian-installed", u) for u in UNITS], [0, 0, 0])
        self.assertEqual(processes_of("/usr/sbin/mailauthd"), [], "the package starts nothing")

    def login_through_the_installed_programs(self):
        """The installed configuration, with its sockets, users file and
        control socket moved into the test directory, served by the installed
        daemon running as the installed user."""
        r = run("/usr/sbin/mailauthd", "--check-config")
        self.assertIn("configuration OK", r.stdout)
        user, group = account()
        os.chmod(self.tmp, 0o755)  # the daemon's user reads the users file here
        alice = run("/usr/bin/mailauth-user", "hash", "--password-stdin", input="alice-pw\n").stdout
        self.assertTrue(alice.strip().startswith("$argon2id$"), alice)
        users = self.write("passwd", f"alice:{alice.strip()}\nbob:{mkpasswd('bob-pw', 'yescrypt')}\n",
                           mode=0o640)
        os.chown(users, 0, group.gr_gid)
        with open(CONF) as f:
            text = f.read()
        for old, new in (('"/var/spool/postfix/var/run/saslauthd/mux"', f'"{self.path("mux")}"'),
                         ('"/var/spool/postfix/private/auth"', f'"{self.path("auth")}"'),
                         ('"/run/mailauth/control"', f'"{self.path("control")}"'),
                         ('"/var/lib/mailauth/passwd"', f'"{users}"'),
                         ('log = "syslog"', 'log = "stderr"'),
                         ('failure_delay = "2s"', 'failure_delay = "0s"')):
            self.assertEqual(text.count(old), 1, old)
            text = text.replace(old, new)
        self.assertIn('user = "mailauth"', text)
        d = self.daemon(text, socket_path=self.path("auth"), program="/usr/sbin/mailauthd")
        with open(f"/proc/{d.proc.pid}/status") as f:
            uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
        self.assertEqual({int(u) for u in uids}, {user.pw_uid}, "runs as the installed user")

        mailauth_test = "/usr/bin/mailauth-test"
        testsaslauthd = which("testsaslauthd")
        for name, password in (("alice", "alice-pw"), ("bob", "bob-pw")):
            with self.subTest(user=name):
                r = run(mailauth_test, "-f", self.path("mux"), "-u", name, "-p", password)
                self.assertEqual(r.stdout.strip(), OK)
                r = run(mailauth_test, "-f", self.path("mux"), "-u", name, "-p", "wrong", check=False)
                self.assertEqual((r.returncode, r.stdout.strip()), (1, NO))
                r = run(testsaslauthd, "-f", self.path("mux"), "-u", name, "-p", password, check=False)
                self.assertIn(OK, r.stdout)
                r = run(testsaslauthd, "-f", self.path("mux"), "-u", name, "-p", "wrong", check=False)
                self.assertIn(NO, r.stdout)
                r = run(mailauth_test, "--dovecot", "-f", self.path("auth"), "-u", name, "-p", password)
                self.assertEqual(r.stdout.strip(), OK)
        log = d.log()
        self.assertEqual(d.stop(), 0, log)
        self.assertNotIn("alice-pw", log)

    def test_install_log_in_and_purge(self):
        self.install()
        listed = self.check_installed_files()
        self.check_accounts_and_layout()
        self.check_enabled_not_started()
        self.login_through_the_installed_programs()
        # Installed again (dpkg's upgrade path): configure runs again and
        # changes nothing.
        with open(os.path.join(STATE_DIR, "created")) as f:
            created = f.read()
        self.assertEqual(sorted(created.split()), sorted(
            (["user", "group"] if self.before["user"] is None else []) +
            ([] if self.before[DATA] else ["dir", "passwd"])))
        user = account()
        dpkg("-i", self.deb)
        self.check_accounts_and_layout()
        self.check_enabled_not_started()
        self.assertEqual(account(), user)
        with open(os.path.join(STATE_DIR, "created")) as f:
            self.assertEqual(f.read(), created)
        # Removed, not purged: the configuration, the user and the users file stay.
        dpkg("--remove", PACKAGE)
        self.assertEqual(package_status(), "rc ")
        self.assertFalse(os.path.exists("/usr/sbin/mailauthd"))
        self.assertTrue(os.path.isfile(CONF))
        self.assertEqual(account(), user)
        self.assertTrue(os.path.isfile(os.path.join(DATA, "passwd")))
        # What systemd leaves with RuntimeDirectoryPreserve=yes: purge removes it.
        if not self.before[RUNTIME]:
            self.addCleanup(run, "rm", "-rf", RUNTIME)
            os.mkdir(RUNTIME, 0o755)
            os.chown(RUNTIME, user[0].pw_uid, user[1].gr_gid)
            with open(os.path.join(RUNTIME, "control"), "w"):
                pass
        self.assert_purged(self.purge(listed))

    def test_groups_follow_the_configuration(self):
        """postinst adds mailauth to shadow for a shadow backend and to sasl
        for a socket of group sasl (README.Debian), at every configure; purge
        takes back what it added."""
        self.install()
        with open(CONF, "a") as f:
            f.write('\n[[backend]]\ntype = "shadow"   # system accounts\n')
        r = run("dpkg-reconfigure", PACKAGE, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        self.assertEqual(supplementary_groups(), sorted(set(self.before["groups"]) | {"shadow"}),
                         r.stdout + r.stderr)
        with open(CONF) as f:
            text = f.read()
        start = text.index("\n[saslauthd]\n")
        end = text.index("\n[", start + 1)
        self.assertIn('\ngroup = "postfix"\n', text[start:end])
        text = text[:start] + text[start:end].replace('\ngroup = "postfix"\n', '\ngroup = "sasl"\n') \
            + text[end:]
        with open(CONF, "w") as f:
            f.write(text)
        r = run("dpkg-reconfigure", PACKAGE, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        self.assertEqual(supplementary_groups(),
                         sorted(set(self.before["groups"]) | {"shadow", "sasl"}), r.stdout + r.stderr)
        r = run("/usr/sbin/mailauthd", "--check-config")
        self.assertIn("configuration OK (2 backends)", r.stdout)
        # What the shadow backend needs: mailauth (with its groups, which the
        # daemon keeps when it drops privileges) reads /etc/shadow.
        run("setpriv", "--reuid=mailauth", "--regid=mailauth", "--init-groups",
            "head", "-c", "1", "/etc/shadow")
        self.assert_purged(self.purge())

    def test_a_user_from_before_the_package_stays(self):
        """`make install` creates the mailauth user; the package then uses it
        and its purge leaves it (and what it owned) as it was."""
        made_here = self.before["user"] is None
        if made_here:
            if self.before["group"] is not None:
                self.fail("a mailauth group without a mailauth user: refusing to guess")
            # What make install runs.
            run("useradd", "--system", "--home-dir", "/nonexistent", "--no-create-home",
                "--shell", "/usr/sbin/nologin", "--user-group", PACKAGE)
            self.addCleanup(run, "userdel", PACKAGE, check=False)
            self.before = self.system_state()
        self.install()
        self.check_accounts_and_layout()
        self.assertEqual(account(), (self.before["user"], self.before["group"]),
                         "postinst leaves an existing user alone")
        self.assert_purged(self.purge())
        if made_here:
            run("userdel", PACKAGE)
            self.assertEqual(account(), (None, None))


    def set_aside_the_mailauth_account(self):
        """Rename a mailauth user and group that exist (a system user left by
        an earlier purge) for the rest of the test: their uid and gid stay,
        and so does whatever they own."""
        if self.before["user"] is None and self.before["group"] is None:
            return
        saved = "mailauth-deb-test-saved"
        if account(saved) != (None, None):
            self.fail(f"{saved} exists: left by an interrupted run? Rename it back to {PACKAGE}.")
        if self.before["user"] is not None:
            run("usermod", "-l", saved, PACKAGE)
            self.addCleanup(run, "usermod", "-l", PACKAGE, saved)
        if self.before["group"] is not None:
            run("groupmod", "-n", saved, PACKAGE)
            self.addCleanup(run, "groupmod", "-n", PACKAGE, saved)

    def assert_refused(self, message, account_before):
        """dpkg -i fails in configure with postinst's `message`, having
        changed nothing; purge leaves the account alone."""
        r = self.install(check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(message, r.stderr)
        self.assertIn("refusing to give it", r.stderr)
        self.assertEqual(package_status(), "iF ", "installed, configure failed")
        self.assertEqual(account(), account_before)
        self.assertEqual(os.stat(CONF).st_gid, 0, f"{CONF} is not given to the group")
        self.assertEqual(os.path.lexists(DATA), self.before[DATA], DATA)
        self.assertFalse(os.path.exists(os.path.join(STATE_DIR, "created")))
        listed = self.purge()
        self.assertIsNone(package_status())
        self.assertEqual(account(), account_before, "purge leaves an account it did not create")
        self.assertEqual([p for p in listed if p not in ("/.", "/") and os.path.lexists(p)
                          and not (p + "/" in self.before["dirs"] and os.path.isdir(p))], [])

    def test_a_mailauth_group_with_other_members_is_refused(self):
        """A system user mailauth whose group has another member: that member
        would read the configuration too, so configure fails."""
        self.set_aside_the_mailauth_account()
        run("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
            "--shell", "/usr/sbin/nologin", "--user-group", PACKAGE)
        self.addCleanup(run, "userdel", PACKAGE, check=False)
        other = "mailauth-deb-test-other"
        run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
            "--groups", PACKAGE, other)
        self.addCleanup(run, "userdel", other, check=False)
        self.assert_refused(f"the existing group {PACKAGE} has other members: {other}", account())
        run("userdel", other)
        run("userdel", PACKAGE)

    def test_a_login_account_named_mailauth_is_refused(self):
        """An existing mailauth user with a login account's uid and shell is
        not given the configuration and the users file: configure fails,
        saying why, and changes nothing; purge leaves that user alone."""
        self.set_aside_the_mailauth_account()
        run("useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/bash",
            "--user-group", PACKAGE)
        self.addCleanup(run, "userdel", PACKAGE, check=False)
        login = account()
        self.assertGreaterEqual(login[0].pw_uid, 1000)
        self.assert_refused(f"the existing user {PACKAGE} (uid {login[0].pw_uid}) is not a "
                            f"system user", login)
        run("userdel", PACKAGE)


if __name__ == "__main__":
    unittest.main()
