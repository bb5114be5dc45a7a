"""What `make install` ships is usable: the example configuration passes
--check-config, the systemd units pass systemd-analyze verify, make
install puts every file in place, and the pwdfile rehash works under the
unit's sandbox with the layout make install creates."""
import grp
import os
import pwd
import re
import shutil
import subprocess
import unittest

from harness import BUILD, DaemonTestCase, MAILAUTHD, MAILAUTH_USER, mkpasswd, which

SOURCE = os.environ.get("MAILAUTH_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


class PackagingTest(DaemonTestCase):
    def test_the_example_configuration_is_valid(self):
        with open(os.path.join(SOURCE, "conf", "mailauthd.conf")) as f:
            text = f.read()
        users = self.write("passwd", "alice:{PLAIN}x\n")
        shipped = shipped_pwdfile_path(text)
        text = text.replace(f'path = "{shipped}"', f'path = "{users}"')
        conf = self.write("mailauthd.conf", text)
        # It runs as the user `make install` creates.  Where that has not
        # happened, --check-config says so (start-up would fail on it too),
        # and the rest is checked with a user and group that exist.
        try:
            pwd.getpwnam("mailauth")
            grp.getgrnam("mailauth")
        except KeyError:
            r = subprocess.run([MAILAUTHD, "--check-config", "--config", conf],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertRegex(r.stderr, r"mailauthd\.conf:\d+: key 'daemon\.(user|group)': "
                                       r"(user|group) 'mailauth' does not exist")
            daemon_keys = 'user = "mailauth"\ngroup = "mailauth"\n'
            self.assertEqual(text.count(daemon_keys), 1)
            nobody = pwd.getpwnam("nobody")
            text = text.replace(daemon_keys, f'user = "nobody"\n'
                                             f'group = "{grp.getgrgid(nobody.pw_gid).gr_name}"\n')
            conf = self.write("mailauthd.conf", text)
        r = subprocess.run([MAILAUTHD, "--check-config", "--config", conf], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("configuration OK (1 backend)", r.stdout)

    def test_systemd_units_verify(self):
        analyze = which("systemd-analyze")
        units = self.path("units")
        os.makedirs(units)
        for name in ("mailauthd.service", "mailauthd-mux.socket", "mailauthd-dovecot.socket"):
            with open(os.path.join(SOURCE, "conf", name)) as f:
                text = f.read().replace("@SBINDIR@", BUILD)
            with open(os.path.join(units, name), "w") as f:
                f.write(text)
        r = subprocess.run([analyze, "verify", "--man=no", "mailauthd.service", "mailauthd-mux.socket",
                            "mailauthd-dovecot.socket"], cwd=units, capture_output=True, text=True,
                           timeout=60)
        problems = [l for l in (r.stdout + r.stderr).splitlines()
                    if "mailauthd" in l and "Documentation" not in l]
        self.assertEqual(problems, [], r.stdout + r.stderr)
        r = subprocess.run([analyze, "security", "--offline=yes", os.path.join(units, "mailauthd.service")],
                           capture_output=True, text=True, timeout=60)
        exposure = [l for l in r.stdout.splitlines() if "Overall exposure level" in l]
        self.assertTrue(exposure, r.stdout + r.stderr)
        level = float(exposure[0].split("level for mailauthd.service:")[1].split()[0])
        self.assertLessEqual(level, 3.5, exposure[0])

    def test_make_install_with_destdir(self):
        dest = self.path("dest")
        r = subprocess.run(["make", "-C", SOURCE, "install", f"DESTDIR={dest}", "PREFIX=/usr",
                            f"BUILD={BUILD}"], capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for path in ("usr/sbin/mailauthd", "usr/bin/mailauth-test", "usr/bin/mailauth-user",
                     "etc/mailauth/mailauthd.conf", "lib/systemd/system/mailauthd.service",
                     "lib/systemd/system/mailauthd-mux.socket",
                     "lib/systemd/system/mailauthd-dovecot.socket",
                     "usr/share/doc/mailauth/README.md", "usr/share/man/man8/mailauthd.8",
                     "usr/share/man/man1/mailauth-test.1", "usr/share/man/man8/mailauth-user.8",
                     "usr/sbin/mailauth-migrate", "usr/share/man/man8/mailauth-migrate.8"):
            self.assertTrue(os.path.exists(os.path.join(dest, path)), path)
        with open(os.path.join(dest, "lib/systemd/system/mailauthd.service")) as f:
            self.assertIn("ExecStart=/usr/sbin/mailauthd ", f.read())
        self.assertEqual(os.stat(os.path.join(dest, "etc/mailauth/mailauthd.conf")).st_mode & 0o777, 0o640)



def unit_service_settings(path):
    """{key: [values]} of the [Service] section of a unit file."""
    settings, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                key, value = line.split("=", 1)
                settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def shipped_pwdfile_path(conf_text):
    """The path of the first (uncommented) pwdfile backend of the shipped config."""
    m = re.search(r'^\[\[backend\]\]\s*\ntype = "pwdfile"\n(?:[^\[].*\n)*?path = "([^"]+)"',
                  conf_text, re.M)
    if m is None:
        raise AssertionError("the shipped config has no pwdfile backend with a path")
    return m.group(1)


class RehashUnderTheUnitTest(DaemonTestCase):
    """The documented rehash, with the files `make install` lays out, under
    the shipped unit's sandbox: ProtectSystem=strict makes the file system
    read-only but for ReadWritePaths=, and the daemon runs as [daemon] user.

    The test machine (CI included) has no systemd as PID 1, so systemd-run
    cannot start anything there, and no "mailauth" user; the test stands in
    for both (a systemd-run variant would only ever be skipped here, and
    make check fails on skips): `make
    install` with MAILAUTH_USER=nobody MAILAUTH_GROUP=nogroup into a DESTDIR,
    and the sandbox's file-system part in a private mount namespace (unshare):
    the staged root bind-mounted read-only, each ReadWritePaths= directory of
    the unit, under the staged root, mounted read-write again, the unit's
    UMask= and NoNewPrivileges=."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: make install with owners, mount namespaces")
        self.unit = unit_service_settings(os.path.join(SOURCE, "conf", "mailauthd.service"))
        with open(os.path.join(SOURCE, "conf", "mailauthd.conf")) as f:
            self.users = shipped_pwdfile_path(f.read())
        self.assertEqual(self.unit.get("ProtectSystem"), ["strict"])
        # Where the unit lets the service write (a leading "-": may be missing).
        self.writable = [p.lstrip("-") for v in self.unit.get("ReadWritePaths", []) for p in v.split()]

    def stage(self):
        """make install into DESTDIR with nobody:nogroup standing in for mailauth."""
        os.chmod(self.tmp, 0o755)
        dest = self.path("dest")
        r = subprocess.run(["make", "-C", SOURCE, "install", f"DESTDIR={dest}", "PREFIX=/usr",
                            f"BUILD={BUILD}", "MAILAUTH_USER=nobody", "MAILAUTH_GROUP=nogroup"],
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return dest

    def sandbox(self, dest, writable):
        """A wrapper that runs a command with `dest` read-only but for `writable`."""
        script = [f"mount --rbind {dest} {dest}", f"mount -o remount,bind,ro {dest}"]
        for d in writable:
            script.append(f"mount --bind {dest}{d} {dest}{d} && mount -o remount,bind,rw {dest}{d}")
        umask = (self.unit.get("UMask") or ["0022"])[-1]
        script.append(f"umask {umask}")
        nnp = ["--no-new-privs"] if self.unit.get("NoNewPrivileges", ["no"])[-1] == "yes" else []
        script.append('exec "$@"')
        return [which("unshare"), "-m", "--propagation", "private", "sh", "-ec",
                "\n".join(script), "sh", which("setpriv"), *nnp]

    def config(self, dest):
        return f"""
[daemon]
user = "nobody"
group = "nogroup"
log = "stderr"
workers = 2
control_socket = "{self.path('control')}"

[saslauthd]
socket = "{self.path('mux')}"
mode = "0666"

[[backend]]
type = "pwdfile"
path = "{dest}{self.users}"
rehash = "argon2id"
"""

    def login(self, password):
        return self.mailauth_test("-f", self.path("mux"), "-u", "alice", "-p", password).returncode

    def test_the_users_directory_is_writable_under_the_unit(self):
        users_dir = os.path.dirname(self.users)
        self.assertTrue(any(users_dir == w or users_dir.startswith(w.rstrip("/") + "/")
                            for w in self.writable),
                        f"ProtectSystem=strict and no ReadWritePaths= for {users_dir}: "
                        f"a rehash cannot create its temporary file there ({self.writable})")

    def run_rehash(self, writable):
        """Stage, add alice (sha512-crypt) as root with mailauth-user, log her
        in through a daemon in the sandbox; returns (dest, daemon)."""
        dest = self.stage()
        users = dest + self.users
        nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
        self.assertTrue(os.path.exists(users), f"make install creates {self.users}")
        st = os.stat(os.path.dirname(users))
        self.assertEqual((st.st_uid, st.st_gid), (nobody, nogroup),
                         f"make install gives {os.path.dirname(self.users)} to the daemon's user")
        conf = self.write("mailauthd.conf", self.config(dest))
        r = subprocess.run([MAILAUTH_USER, "--config", conf, "add", "alice", "--scheme",
                            "sha512-crypt", "--password-stdin"], input="alice-pw\n",
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(conf) as f:
            text = f.read()
        d = self.daemon(text, socket_path=self.path("mux"), wrapper=self.sandbox(dest, writable))
        self.assertEqual(self.login("alice-pw"), 0, d.log())
        return users, d

    def test_rehash_works_in_the_units_sandbox_with_the_installed_layout(self):
        users, d = self.run_rehash([w for w in self.writable
                                    if os.path.isdir(self.path("dest") + w) or
                                    w == os.path.dirname(self.users)])
        self.assertIn('reason="rehashed SHA512-CRYPT to argon2id"', d.log())
        self.assertNotIn("rehash of", d.log())
        st = os.stat(users)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777),
                         (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid, 0o640))
        with open(users) as f:
            self.assertRegex(f.read(), r"^alice:\$argon2id\$")
        self.assertEqual(self.login("alice-pw"), 0)

    def test_without_read_write_paths_the_sandbox_refuses_the_rehash(self):
        """The other half: the emulated sandbox does bite.  Without the unit's
        ReadWritePaths= the same rehash fails (read-only file system) and the
        login still succeeds."""
        users, d = self.run_rehash([])
        d.wait_log("rehash of alice in pwdfile skipped")
        self.assertIn("Read-only file system", d.log())
        with open(users) as f:
            self.assertRegex(f.read(), r"^alice:\$6\$")

    def test_mailauth_user_creates_a_missing_users_file_for_the_daemon(self):
        """Run as root, mailauth-user gives a users file it creates the owner
        and group of its directory: the daemon's, in the installed layout."""
        dest = self.stage()
        users = dest + self.users
        os.unlink(users)
        conf = self.write("mailauthd.conf", self.config(dest))
        r = subprocess.run([MAILAUTH_USER, "--config", conf, "add", "bob", "--password-stdin"],
                           input="bob-pw\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("created", r.stderr)
        st = os.stat(users)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777),
                         (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid, 0o640))
        lock = os.stat(users + ".lock")
        self.assertEqual((lock.st_uid, lock.st_gid), (st.st_uid, st.st_gid),
                         "the lock file root created is the daemon's too")


if __name__ == "__main__":
    unittest.main()
