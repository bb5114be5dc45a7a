"""What `make install` ships is usable: the example configuration passes
--check-config, the systemd units pass systemd-analyze verify, and make
install puts every file in place."""
import grp
import os
import pwd
import shutil
import subprocess
import unittest

from harness import BUILD, DaemonTestCase, MAILAUTHD, which

SOURCE = os.environ.get("MAILAUTH_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


class PackagingTest(DaemonTestCase):
    def test_the_example_configuration_is_valid(self):
        with open(os.path.join(SOURCE, "conf", "mailauthd.conf")) as f:
            text = f.read()
        users = self.write("passwd", "alice:{PLAIN}x\n")
        self.assertIn('path = "/etc/mailauth/passwd"', text)
        text = text.replace('path = "/etc/mailauth/passwd"', f'path = "{users}"')
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
                     "usr/share/man/man1/mailauth-test.1", "usr/share/man/man8/mailauth-user.8"):
            self.assertTrue(os.path.exists(os.path.join(dest, path)), path)
        with open(os.path.join(dest, "lib/systemd/system/mailauthd.service")) as f:
            self.assertIn("ExecStart=/usr/sbin/mailauthd ", f.read())
        self.assertEqual(os.stat(os.path.join(dest, "etc/mailauth/mailauthd.conf")).st_mode & 0o777, 0o640)


if __name__ == "__main__":
    unittest.main()
