"""mailauthd standing in for saslauthd: Debian's argv, the PAM and shadow
backends through the real libpam (a private PAM configuration directory,
never /etc/pam.d) and a test shadow file, and PAM under a brute-force flood."""
import json
import os
import signal
import subprocess
import threading
import time
import unittest

from harness import (DaemonTestCase, MAILAUTHD, mkpasswd, which)

OK_LINE = '0: OK "Success."'
NO_LINE = '0: NO "authentication failed"'


class SaslauthdCompatTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.users = self.write("users", "\n".join([
            "alice:" + mkpasswd("alice-pw", "sha512crypt"),
            "alice@example.com:" + mkpasswd("realm-pw", "yescrypt"),
            ""]))
        os.makedirs(self.path("pam.d"))
        stack = f"auth required pam_pwdfile.so pwdfile={self.users}\n"
        # smtp: pam_faildelay asks PAM to sleep 3 s after a failure, which
        # mailauthd must override; account stack permits.
        self.write("pam.d/smtp", "auth optional pam_faildelay.so delay=3000000\n" + stack +
                   "account required pam_permit.so\n")
        self.write("pam.d/imap", stack + "account required pam_permit.so\n")
        self.write("pam.d/pop3", stack + "account required pam_deny.so\n")
        self.write("pam.d/other", "auth required pam_deny.so\naccount required pam_deny.so\n")
        self.rundir = self.path("saslauthd")
        os.makedirs(self.rundir)
        self.started = []

    def tearDown(self):
        # A detached daemon whose pid never reached self.started still left
        # its pid file behind.
        pidfile = os.path.join(self.rundir, "saslauthd.pid")
        try:
            with open(pidfile) as f:
                self.started.append(int(f.read()))
        except (OSError, ValueError):
            pass
        for pid in self.started:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        super().tearDown()

    def run_testsaslauthd(self, *args):
        return subprocess.run([which("testsaslauthd"), "-f", os.path.join(self.rundir, "mux"), *args],
                              capture_output=True, text=True, timeout=30)

    def wait_for(self, path, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                return
            time.sleep(0.02)
        raise AssertionError(f"{path} never appeared")

    def stop_pid(self, pid, timeout=10):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                self.started.remove(pid)
                return
            time.sleep(0.02)
        raise AssertionError(f"pid {pid} did not stop")

    def test_debians_exact_argv_detaches_and_serves_testsaslauthd(self):
        # /etc/default/saslauthd on Debian: OPTIONS="-c -m DIR -r", MECHANISMS="pam",
        # THREADS=5 -> saslauthd -a pam -c -m DIR -r -n 5.  -O points PAM at the
        # private configuration directory instead of /etc/pam.d.
        r = subprocess.run([MAILAUTHD, "-a", "pam", "-c", "-m", self.rundir, "-r", "-n", "5",
                            "-O", self.path("pam.d")], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)  # the parent returns once detached
        pidfile = os.path.join(self.rundir, "saslauthd.pid")
        self.wait_for(pidfile)
        with open(pidfile) as f:
            pid = int(f.read())
        self.started.append(pid)
        self.wait_for(os.path.join(self.rundir, "mux"))
        # Group-only (issue 11), not saslauthd's 0777.
        self.assertEqual(os.stat(os.path.join(self.rundir, "mux")).st_mode & 0o777, 0o660)
        r = self.run_testsaslauthd("-u", "alice", "-p", "alice-pw", "-s", "smtp")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE), r.stderr)
        r = self.run_testsaslauthd("-u", "alice", "-p", "wrong", "-s", "smtp")
        self.assertEqual((r.returncode, r.stdout.strip()), (255, NO_LINE))
        # testsaslauthd's default service is imap, which is PAM's service name.
        r = self.run_testsaslauthd("-u", "alice", "-p", "alice-pw")
        self.assertEqual(r.returncode, 0)
        # pop3's account stack denies: the right password still fails.
        r = self.run_testsaslauthd("-u", "alice", "-p", "alice-pw", "-s", "pop3")
        self.assertEqual(r.returncode, 255)
        # -r: login "alice" + realm "example.com" is looked up as alice@example.com.
        r = self.run_testsaslauthd("-u", "alice", "-r", "example.com", "-p", "realm-pw", "-s", "imap")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE))
        self.stop_pid(pid)
        self.assertFalse(os.path.exists(os.path.join(self.rundir, "mux")))
        self.assertFalse(os.path.exists(pidfile))

    def test_pid_file_is_never_written_through_a_symlink(self):
        """Issue 12 item 9: the PID file used to be fopen()ed as root at
        DIR/saslauthd.pid.tmp, following a symlink planted there."""
        victims = {}
        for i, name in enumerate(("saslauthd.pid.tmp", "saslauthd.pid")):
            victim = self.write(f"victim{i}", "precious\n")
            os.symlink(victim, os.path.join(self.rundir, name))
            victims[name] = victim
        r = subprocess.run([MAILAUTHD, "-a", "pam", "-m", self.rundir, "-O", self.path("pam.d")],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        pidfile = os.path.join(self.rundir, "saslauthd.pid")
        deadline = time.monotonic() + 15
        while os.path.islink(pidfile) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertFalse(os.path.islink(pidfile), "the symlink at saslauthd.pid is still there")
        with open(pidfile) as f:
            pid = int(f.read())
        self.started.append(pid)
        for victim in victims.values():
            with open(victim) as f:
                self.assertEqual(f.read(), "precious\n")
        self.assertFalse(os.path.lexists(os.path.join(self.rundir, "saslauthd.pid.tmp")))
        self.stop_pid(pid)
        self.assertFalse(os.path.lexists(pidfile))

    def test_pid_file_directory_writable_by_others_is_refused(self):
        """Issue 12 item 9: in a directory another user can write, they can
        plant what the daemon (root) then writes through or replaces."""
        for mode in (0o777, 0o1777, 0o775):
            os.chmod(self.rundir, mode)
            r = subprocess.run([MAILAUTHD, "-a", "pam", "-m", self.rundir, "-O", self.path("pam.d")],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 1, (oct(mode), r.stdout, r.stderr))
            self.assertIn(f"refusing to write saslauthd.pid in {self.rundir}: another user can write "
                          f"there (mode {mode:04o}", r.stderr)
            # Nothing left behind: no PID file, no socket.
            self.assertEqual(os.listdir(self.rundir), [], oct(mode))
        os.chmod(self.rundir, 0o755)

    def start_foreground(self, *args):
        log = open(self.path("argv.log"), "ab")
        proc = subprocess.Popen([MAILAUTHD, *args], stdout=log, stderr=log)
        self.started.append(proc.pid)
        self.wait_for(os.path.join(self.rundir, "mux"))
        return proc

    def client_as(self, uid, gid, groups):
        """preexec_fn for a client process running as uid/gid with exactly
        these supplementary groups (Postfix's smtpd: user postfix, group sasl)."""
        def drop():
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
        return drop

    def test_pam_cache_never_holds_a_changed_password(self):
        """Issue 12 item 1: `-a pam -c` (saslauthd's -t 28800 default) used to
        keep PAM answers for 8 hours: a failure for the password the admin
        was about to set kept that password failing, and the old one kept
        working.  Now PAM successes only are cached, 30 s at most, and a
        success with another password replaces the entry."""
        proc = self.start_foreground("-a", "pam", "-c", "-m", self.rundir, "-O", self.path("pam.d"),
                                     "-d")
        r = self.run_testsaslauthd("-u", "alice", "-p", "alice-pw", "-s", "smtp")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE), r.stderr)
        r = self.run_testsaslauthd("-u", "alice", "-p", "n3w-pw", "-s", "imap")
        self.assertEqual((r.returncode, r.stdout.strip()), (255, NO_LINE))
        # The admin changes alice's password (pam_pwdfile reads the file anew).
        with open(self.users) as f:
            lines = f.read().splitlines()
        lines[0] = "alice:" + mkpasswd("n3w-pw", "sha512crypt")
        self.write("users", "\n".join(lines) + "\n")
        r = self.run_testsaslauthd("-u", "alice", "-p", "n3w-pw", "-s", "imap")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE),
                         "the new password failed from a cached failure")
        r = self.run_testsaslauthd("-u", "alice", "-p", "n3w-pw", "-s", "smtp")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE))
        r = self.run_testsaslauthd("-u", "alice", "-p", "alice-pw", "-s", "smtp")
        self.assertEqual((r.returncode, r.stdout.strip()), (255, NO_LINE),
                         "the old password was answered from the cache")
        r = self.run_testsaslauthd("-u", "alice", "-p", "n3w-pw", "-s", "smtp")
        self.assertEqual(r.returncode, 0)
        proc.terminate()
        proc.wait(timeout=10)
        self.started.remove(proc.pid)
        with open(self.path("argv.log"), errors="replace") as f:
            log = f.read()
        attempts = [l for l in log.splitlines() if "result=" in l and "user=alice" in l]
        self.assertEqual(len(attempts), 6, log)
        # Only the last login was a cache hit; every failure asked PAM.
        self.assertEqual([("cached=yes" in l) for l in attempts],
                         [False, False, False, False, False, True], log)
        self.assertNotIn("alice-pw", log)
        self.assertNotIn("n3w-pw", log)

    def test_pam_form_is_not_a_root_pam_oracle(self):
        """Issue 11: `-a pam -m DIR` stays root and used to pass the client's
        service to pam_start, with DIR created 0755 and the socket 0777: any
        local user could ask "service=su user=root" and pam_rootok (the
        daemon is root) said OK to any password.  Now DIR is created 0710 and
        the socket 0660, both root:sasl (root's group without a sasl group),
        so only the group reaches it, and a service outside the allow-list
        (smtp, submission, imap, pop3, sieve) is refused before PAM."""
        if os.geteuid() != 0:
            self.skipTest("needs root: the daemon must be root for pam_rootok, clients run as nobody")
        import grp
        import pwd
        try:
            group = grp.getgrnam("sasl").gr_gid
        except KeyError:
            group = pwd.getpwuid(0).pw_gid
        nobody = pwd.getpwnam("nobody")
        nogroup = nobody.pw_gid
        # su and runuser as Debian ships them start with pam_rootok; pam_exec
        # leaves a mark if the stack is ever started.
        marker = self.path("su-stack-ran")
        for service in ("su", "runuser"):
            self.write(f"pam.d/{service}",
                       f"auth optional pam_exec.so /usr/bin/touch {marker}\n"
                       "auth sufficient pam_rootok.so\nauth required pam_deny.so\n"
                       "account required pam_permit.so\n")
        os.chmod(self.tmp, 0o755)  # nobody may walk up to DIR; DIR itself decides
        self.rundir = self.path("run/saslauthd")  # missing: mailauthd creates it
        mux = os.path.join(self.rundir, "mux")
        proc = self.start_foreground("-a", "pam", "-m", self.rundir, "-O", self.path("pam.d"), "-d")

        st = os.lstat(self.rundir)
        self.assertEqual((oct(st.st_mode & 0o7777), st.st_uid, st.st_gid), (oct(0o710), 0, group))
        st = os.lstat(mux)
        self.assertEqual((oct(st.st_mode & 0o7777), st.st_uid, st.st_gid), (oct(0o660), 0, group))

        tsa = which("testsaslauthd")

        def ask(user, pw, service, as_user=None):
            pre = self.client_as(*as_user) if as_user else None
            return subprocess.run([tsa, "-f", mux, "-u", user, "-p", pw, "-s", service],
                                  capture_output=True, text=True, timeout=30, preexec_fn=pre)

        # nobody, in no group of the socket: cannot connect at all.
        outsider = (nobody.pw_uid, nogroup, [])
        for service in ("su", "smtp"):
            r = ask("root", "wrong", service, outsider)
            self.assertNotEqual(r.stdout.strip(), OK_LINE, (service, r.stdout, r.stderr))
            self.assertNotEqual(r.returncode, 0)
        # A member of the group (Postfix's smtpd with `adduser postfix sasl`)
        # logs in with smtp, but cannot pick su or runuser.
        member = (nobody.pw_uid, nogroup, [group])
        r = ask("alice", "alice-pw", "smtp", member)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE), r.stderr)
        mark = len(self.daemon_log())
        for service in ("su", "runuser", "SU"):
            for who in (member, None):  # and root itself
                r = ask("root", "wrong", service, who)
                self.assertEqual((r.returncode, r.stdout.strip()), (255, NO_LINE), (service, who))
        self.assertFalse(os.path.exists(marker), "the su stack was started")
        log = self.daemon_log()[mark:]
        # One line per refused attempt, with the reason (and the name as sent).
        lines = [l for l in log.splitlines() if "auth: result=" in l]
        self.assertEqual(len(lines), 6, log)
        for service in ("su", "runuser", "SU"):
            self.assertEqual(sum(f"service={service} " in l and "result=fail" in l and
                                 f"reason=\"service '{service}' not allowed\"" in l
                                 for l in lines), 2, log)
        # The mail services still reach PAM, as root too.
        r = ask("alice", "alice-pw", "smtp")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE), r.stderr)
        r = ask("alice", "wrong", "smtp")
        self.assertEqual((r.returncode, r.stdout.strip()), (255, NO_LINE))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)
        self.started.remove(proc.pid)

    def daemon_log(self):
        with open(self.path("argv.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def test_shadow_backend_with_a_test_shadow_file(self):
        yes = mkpasswd("yes-pw", "yescrypt")
        sha = mkpasswd("sha-pw", "sha512crypt")
        today = int(time.time() // 86400)
        shadow = self.write("shadow", "\n".join([
            f"yes:{yes}:{today - 10}:0:99999:7:::",
            f"sha:{sha}:{today - 10}:0:99999:7:::",
            f"locked:!{sha}:{today - 10}:0:99999:7:::",
            f"expired:{sha}:{today - 10}:0:99999:7::{today - 1}:",
            f"oldpw:{sha}:{today - 400}:0:90:7:::",
            f"empty::{today - 10}:0:99999:7:::",
            ""]), mode=0o640)
        proc = self.start_foreground("-a", "shadow", "-O", shadow, "-m", self.rundir, "-d")
        for user, pw, ok in [("yes", "yes-pw", True), ("sha", "sha-pw", True), ("yes", "sha-pw", False),
                             ("locked", "sha-pw", False), ("expired", "sha-pw", False),
                             ("oldpw", "sha-pw", False), ("empty", "", False), ("empty", "x", False),
                             ("nobody", "x", False)]:
            r = self.run_testsaslauthd("-u", user, "-p", pw) if pw else None
            if r is None:
                continue  # testsaslauthd cannot send an empty password
            self.assertEqual(r.returncode, 0 if ok else 255, (user, pw))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)
        self.started.remove(proc.pid)
        with open(self.path("argv.log")) as f:
            log = f.read()
        for reason in ("account locked", "account expired", "password expired", "empty password field"):
            self.assertIn(f'reason="{reason}"', log)
        self.assertNotIn("sha-pw", log)

    def test_shadow_unprivileged_with_the_shadow_group(self):
        """Started as root, mailauthd binds its socket, then runs as nobody
        with group shadow, and reads a root:shadow 0640 shadow file."""
        if os.geteuid() != 0:
            self.skipTest("needs root to drop privileges")
        import grp
        import pwd
        shadow_gid = grp.getgrnam("shadow").gr_gid
        nobody = pwd.getpwnam("nobody")
        today = int(time.time() // 86400)
        shadow = self.write("shadow", f"yes:{mkpasswd('yes-pw', 'yescrypt')}:{today - 1}:0:99999:7:::\n",
                            mode=0o640)
        os.chown(shadow, 0, shadow_gid)
        os.chmod(self.tmp, 0o755)
        sock = os.path.join(self.rundir, "mux")
        d = self.daemon(f"""
[daemon]
user = "nobody"
group = "shadow"
log = "stderr"
[saslauthd]
socket = "{sock}"
mode = "0666"
[[backend]]
type = "shadow"
path = "{shadow}"
""", socket_path=sock)
        with open(f"/proc/{d.proc.pid}/status") as f:
            status = f.read()
        uid_line = next(l for l in status.splitlines() if l.startswith("Uid:"))
        gid_line = next(l for l in status.splitlines() if l.startswith("Gid:"))
        self.assertEqual(set(uid_line.split()[1:]), {str(nobody.pw_uid)}, uid_line)
        self.assertEqual(set(gid_line.split()[1:]), {str(shadow_gid)}, gid_line)
        self.assertIn("running as user nobody", d.log())
        self.assertEqual(self.run_testsaslauthd("-u", "yes", "-p", "yes-pw").returncode, 0)
        self.assertEqual(self.run_testsaslauthd("-u", "yes", "-p", "no").returncode, 255)
        # Without the group the file is unreadable: a temporary failure, never an accept.
        os.chown(shadow, 0, 0)
        r = self.run_testsaslauthd("-u", "yes", "-p", "yes-pw")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("result=tempfail", d.log())
        self.assertIn("Permission denied", d.log())

    def test_pwdfile_argv(self):
        proc = self.start_foreground("-a", "pwdfile", "-O", self.users, "-m", self.rundir, "-d")
        self.assertEqual(self.run_testsaslauthd("-u", "alice", "-p", "alice-pw").returncode, 0)
        self.assertEqual(self.run_testsaslauthd("-u", "alice", "-p", "nope").returncode, 255)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)
        self.started.remove(proc.pid)

    def test_mechanisms_that_need_a_stored_credential_fail_cleanly_with_pam(self):
        """PAM can only say yes or no to a password: PLAIN and LOGIN work,
        CRAM-MD5 and SCRAM fail with the reason in the log, never an accept."""
        auth = self.path("private/auth")
        d = self.daemon(f"""
[daemon]
log = "stderr"
[dovecot]
socket = "{auth}"
mode = "0666"
failure_delay = "0s"
mechanisms = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"]
[[backend]]
type = "pam"
service = "imap"
confdir = "{self.path('pam.d')}"
""", socket_path=auth)
        for mech, code in (("PLAIN", 0), ("LOGIN", 0), ("CRAM-MD5", 1), ("SCRAM-SHA-256", 1)):
            r = self.mailauth_test("--dovecot", "-f", auth, "--mech", mech, "-u", "alice", "-p", "alice-pw")
            self.assertEqual(r.returncode, code, (mech, r.stdout, r.stderr))
        self.assertEqual(d.log().count("backend pam can only verify passwords: use PLAIN or LOGIN"), 2)

    def test_brute_force_through_pam_does_not_delay_a_right_login(self):
        """Wrong passwords from many clients at once, through PAM (whose own
        3 s delay is configured): a right login, concurrently, is answered well
        within the 2 s failure delay, and every wrong one gets NO."""
        auth = self.path("private/auth")
        self.daemon(f"""
[daemon]
workers = 4
log = "stderr"
[dovecot]
socket = "{auth}"
mode = "0666"
failure_delay = "2s"
[saslauthd]
socket = "{self.rundir}/mux"
mode = "0666"
[[backend]]
type = "pam"
service = "smtp"
confdir = "{self.path('pam.d')}"
""", socket_path=auth)
        bad_users = self.write("bad-users", "alice:alice-pw\n")
        flood = subprocess.Popen(
            [os.path.join(os.path.dirname(MAILAUTHD), "mailauth-test"), "--dovecot", "-f", auth,
             "--bench", "--users", bad_users, "--wrong", "1", "--concurrency", "40",
             "--duration", "4", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # the flood is running
        times = []
        for _ in range(5):
            t0 = time.monotonic()
            r = self.mailauth_test("--dovecot", "-f", auth, "-u", "alice", "-p", "alice-pw")
            times.append(time.monotonic() - t0)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE), r.stderr)
            time.sleep(0.3)
        out, err = flood.communicate(timeout=60)
        report = json.loads(out)
        self.assertGreater(report["no"], 40, report)
        self.assertEqual(report["ok"] + report["tempfail"] + report["errors"], 0, report)
        # Each wrong login is answered after the 2 s failure delay, not PAM's 3 s.
        self.assertGreaterEqual(report["p50_ms"], 1900, report)
        self.assertLess(report["p50_ms"], 2900, report)
        self.assertLess(max(times), 2.0, f"right logins took {times}")


if __name__ == "__main__":
    unittest.main()
