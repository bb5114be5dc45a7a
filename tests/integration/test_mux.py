"""mailauthd's saslauthd (mux) protocol, end to end, with real clients:
Cyrus SASL's own testsaslauthd (sasl2-bin) and mailauth-test."""
import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import threading
import time
import unittest

from mariadb import free_port
from harness import (DaemonTestCase, MAILAUTHD, mkpasswd, mux_exchange, mux_frame,
                     mux_reply_text, which)

SOURCE = os.environ.get("MAILAUTH_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
OK_LINE = '0: OK "Success."'
NO_LINE = '0: NO "authentication failed"'


class MuxTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.sock = self.path("run/mux")
        self.passwd = self.write("passwd", "\n".join([
            "# test users",
            "alice:" + mkpasswd("alice-pw", "sha512crypt"),
            "bob:" + mkpasswd("bob pw with spaces", "yescrypt"),
            "carol:!" + mkpasswd("carol-pw", "sha512crypt"),
            "john@example.com:" + mkpasswd("john-pw", "sha256crypt"),
            "this line is malformed",
            "",
        ]))

    def config(self, extra_daemon="", extra_mux="", passwd=None):
        return f"""
[daemon]
workers = 2
log = "stderr"
{extra_daemon}

[saslauthd]
socket = "{self.sock}"
mode = "0666"
{extra_mux}

[[backend]]
type = "pwdfile"
path = "{passwd or self.passwd}"
"""

    def start(self, **kw):
        return self.daemon(self.config(**kw), socket_path=self.sock)

    def run_testsaslauthd(self, *args):
        return subprocess.run([which("testsaslauthd"), "-f", self.sock, *args],
                              capture_output=True, text=True, timeout=30)

    def assert_ok(self, user, password, **kw):
        r = self.mailauth_test("-f", self.sock, "-u", user, "-p", password, **kw)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE), r.stderr)

    def assert_no(self, user, password):
        r = self.mailauth_test("-f", self.sock, "-u", user, "-p", password)
        self.assertEqual((r.returncode, r.stdout.strip()), (1, NO_LINE), r.stderr)

    # --- real clients ------------------------------------------------------

    def test_testsaslauthd_ok_and_no(self):
        d = self.start()
        r = self.run_testsaslauthd("-u", "alice", "-p", "alice-pw")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE))
        r = self.run_testsaslauthd("-u", "bob", "-p", "bob pw with spaces", "-s", "smtp")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE))
        for user, pw in [("alice", "wrong"), ("alice", "alice-pw "), ("nobody", "alice-pw"),
                         ("carol", "carol-pw"), ("ALICE", "alice-pw")]:
            r = self.run_testsaslauthd("-u", user, "-p", pw)
            self.assertEqual((r.returncode, r.stdout.strip()), (255, NO_LINE), (user, pw))
        log = d.log()
        self.assertIn("passwd:6: no ':' between user and hash; line skipped", log)
        self.assertIn("reason=\"account disabled\"", log)
        self.assertIn("reason=\"unknown user\"", log)

    def test_mailauth_test_output_and_exit_codes(self):
        self.start()
        self.assert_ok("alice", "alice-pw")
        self.assert_no("alice", "nope")
        # Password from stdin when -p is absent and stdin is not a terminal.
        r = self.mailauth_test("-f", self.sock, "-u", "alice", input="alice-pw\n")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE), r.stderr)
        # No daemon there: 3, with the reason on stderr.
        r = self.mailauth_test("-f", self.path("nothing/mux"), "-u", "alice", "-p", "x")
        self.assertEqual(r.returncode, 3)
        self.assertIn("No such file or directory", r.stderr)
        self.assertEqual(r.stdout, "")
        # Usage errors: 2, one line naming the problem.
        r = self.mailauth_test("-f", self.sock, "-p", "x")
        self.assertEqual(r.returncode, 2)
        self.assertIn("-u USER is required", r.stderr)
        r = self.mailauth_test("--frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option '--frobnicate'", r.stderr)
        # -R N repeats, numbering the lines as testsaslauthd -R does.
        r = self.mailauth_test("-f", self.sock, "-u", "alice", "-p", "alice-pw", "-R", "3")
        self.assertEqual((r.returncode, r.stdout.splitlines()),
                         (0, ['0: OK "Success."', '1: OK "Success."', '2: OK "Success."']))
        tsa = self.run_testsaslauthd("-u", "alice", "-p", "alice-pw", "-R", "3")
        self.assertEqual(tsa.stdout, r.stdout, "the same output as Cyrus's own client")
        r = self.mailauth_test("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("Usage:", r.stdout)

    # --- the wire ----------------------------------------------------------

    def test_five_field_request_with_client_address(self):
        d = self.start()
        raw = mux_exchange(self.sock, mux_frame("alice", "alice-pw", "smtp", "", "192.0.2.7;4321"))
        self.assertEqual(mux_reply_text(raw), "OK")
        raw = mux_exchange(self.sock, mux_frame("alice", "bad", "smtp", "", "192.0.2.8;4321"))
        self.assertEqual(mux_reply_text(raw), "NO authentication failed")
        log = d.log()
        self.assertIn("result=ok proto=mux user=alice service=smtp realm= rip=192.0.2.7", log)
        self.assertIn("result=fail proto=mux user=alice service=smtp realm= rip=192.0.2.8", log)

    def test_failure_delay_holds_back_no_but_not_ok(self):
        self.start(extra_mux='failure_delay = "2s"')
        # Baseline: one right login on this machine now (loaded, maybe ASan).
        t0 = time.monotonic()
        self.assert_ok("alice", "alice-pw")
        base = time.monotonic() - t0
        t0 = time.monotonic()
        self.assert_no("alice", "wrong")
        self.assertGreaterEqual(time.monotonic() - t0, 1.95)  # timers never fire early
        # A right password meanwhile is not delayed, even during a wrong one:
        # two logins' work plus half the delay as slack.
        slow = threading.Thread(target=self.assert_no, args=("alice", "wrong-again"))
        slow.start()
        t0 = time.monotonic()
        self.assert_ok("alice", "alice-pw")
        self.assertLess(time.monotonic() - t0, 2 * base + 1.0)
        slow.join()

    def test_null_login_and_password_replies_match_saslauthd(self):
        self.start()
        self.assertEqual(mux_reply_text(mux_exchange(self.sock, mux_frame("", "pw", "smtp", ""))),
                         "NO NULL login received")
        self.assertEqual(mux_reply_text(mux_exchange(self.sock, mux_frame("alice", "", "smtp", ""))),
                         "NO NULL password received")

    def test_malformed_frames_close_one_connection_and_valid_logins_still_work(self):
        d = self.start(extra_mux='request_timeout = "1s"')
        bad_frames = [
            b"",                                             # zero-length: connect, close
            b"\x00",                                         # half a length
            b"\x00\x05ali",                                  # truncated field
            mux_frame("alice", "alice-pw", "smtp"),          # three fields then EOF
            mux_frame("alice", "alice-pw", "smtp", "") + b"\x00\x09192",  # partial 5th field
            b"\xff\xff" + b"A" * 70000,                      # oversized length
            mux_frame("a" * 2000, "pw", "smtp", ""),         # login over max_field
            mux_frame("alice", "p" * 5000, "smtp", ""),      # password over max_field
            os.urandom(3000),                                # noise
            b"GET / HTTP/1.0\r\n\r\n",                       # wrong protocol
        ]
        for frame in bad_frames:
            raw = mux_exchange(self.sock, frame, shutdown_write=True)
            self.assertNotEqual(mux_reply_text(raw), "OK", frame[:20])
            self.assert_ok("alice", "alice-pw")
        # Oversized fields are refused with saslauthd's bare "NO ".
        raw = mux_exchange(self.sock, mux_frame("a" * 2000, "pw", "smtp", ""))
        self.assertEqual(raw, b"\x00\x03NO ")
        log = d.log()
        self.assertIn("field 1 is longer than 1024 bytes", log)
        self.assertIn("field 2 is longer than 1024 bytes", log)
        self.assertIn("connection closed in the middle of field", log)
        self.assertIn("peer_uid=", log)
        # Every bad connection was closed: the daemon holds none open.
        self.assert_ok("bob", "bob pw with spaces")

    def test_slow_and_silent_clients_do_not_block_others(self):
        d = self.start(extra_mux='request_timeout = "800ms"')
        # 50 clients that connect and send half a request, and stay.
        hangers = []
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.sock)
            s.sendall(b"\x00\x05al")
            hangers.append(s)
        t0 = time.monotonic()
        self.assert_ok("alice", "alice-pw")
        self.assertLess(time.monotonic() - t0, 5)
        # They are closed after request_timeout, with a log line each.
        for s in hangers:
            s.settimeout(10)
            self.assertEqual(s.recv(10), b"")
            s.close()
        self.assertEqual(d.log().count("no complete request within 800 ms"), 50)

    def test_concurrent_load_with_the_bench_client(self):
        users = self.write("bench-users", "alice:alice-pw\nbob:bob pw with spaces\n")
        self.start()
        r = self.mailauth_test("-f", self.sock, "--bench", "--users", users, "--count", "300",
                               "--concurrency", "16", "--wrong", "0.3", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        report = json.loads(r.stdout)
        for key in ("auth_per_s", "ok", "no", "tempfail", "errors", "p50_ms", "p90_ms", "p99_ms",
                    "max_ms", "client_cpu_s", "client_cpu_us_per_req"):
            self.assertIn(key, report)
        self.assertGreater(report["client_cpu_us_per_req"], 0, report)
        self.assertEqual(report["ok"] + report["no"], 300, report)
        self.assertEqual(report["tempfail"] + report["errors"], 0, report)
        self.assertGreater(report["ok"], 100)
        self.assertGreater(report["no"], 30)

    # --- behaviour ---------------------------------------------------------

    def test_join_realm(self):
        self.start(extra_mux="join_realm = true")
        r = self.run_testsaslauthd("-u", "john", "-r", "example.com", "-p", "john-pw")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE))
        r = self.run_testsaslauthd("-u", "john", "-p", "john-pw")
        self.assertEqual(r.returncode, 255)
        # A realm on a user without one in the file does not match "alice".
        r = self.run_testsaslauthd("-u", "alice", "-r", "example.com", "-p", "alice-pw")
        self.assertEqual(r.returncode, 255)

    def test_without_join_realm_the_realm_is_not_appended(self):
        self.start()
        r = self.run_testsaslauthd("-u", "alice", "-r", "example.com", "-p", "alice-pw")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE))
        r = self.run_testsaslauthd("-u", "john", "-r", "example.com", "-p", "john-pw")
        self.assertEqual(r.returncode, 255)

    def test_pwdfile_change_takes_effect_on_the_next_login(self):
        self.start()
        self.assert_ok("alice", "alice-pw")
        self.write("passwd", "alice:" + mkpasswd("new-pw") + "\n")
        self.assert_no("alice", "alice-pw")
        self.assert_ok("alice", "new-pw")
        self.assert_no("bob", "bob pw with spaces")

    def test_unreadable_pwdfile_is_a_temporary_failure_without_reply(self):
        d = self.start()
        os.rename(self.passwd, self.passwd + ".away")
        raw = mux_exchange(self.sock, mux_frame("alice", "alice-pw", "smtp", ""))
        self.assertEqual(raw, b"", "a temporary failure must close without a reply")
        r = self.mailauth_test("-f", self.sock, "-u", "alice", "-p", "alice-pw")
        self.assertEqual(r.returncode, 3)
        self.assertIn("closed without a reply", r.stderr)
        r = self.run_testsaslauthd("-u", "alice", "-p", "alice-pw")
        self.assertNotIn("OK", r.stdout)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("result=tempfail", d.log())
        self.assertEqual(d.log().count("error: pwdfile pwdfile: cannot read " + self.passwd), 1,
                         "the outage is logged once per state change, not once per request")
        os.rename(self.passwd + ".away", self.passwd)
        self.assert_ok("alice", "alice-pw")
        self.assertIn("is readable again", d.log())

    def test_no_password_in_the_debug_log(self):
        marker_ok = "Pw-Right-7f3a9c"
        marker_bad = "Pw-Wrong-0b1e5d"
        self.write("passwd", f"dave:{mkpasswd(marker_ok)}\nplain:{{PLAIN}}{marker_ok}x\n")
        d = self.daemon(self.config(), args=["--debug"], socket_path=self.sock)
        self.assert_ok("dave", marker_ok)
        self.assert_no("dave", marker_bad)
        self.assert_no("nobody", marker_bad + "2")
        self.assert_no("plain", marker_bad + "3")
        mux_exchange(self.sock, mux_frame("dave", marker_bad + "4" * 2000, "smtp", ""))
        mux_exchange(self.sock, mux_frame("dave", marker_bad + "5", "smtp"), shutdown_write=True)
        self.assertEqual(d.stop(), 0)
        log = d.log()
        self.assertIn("debug:", log)
        self.assertIn("password_bytes=", log)
        for secret in (marker_ok, marker_bad, marker_ok.encode().hex(), marker_bad.encode().hex()):
            self.assertNotIn(secret, log)

    def test_sigterm_removes_the_socket_and_exits_zero(self):
        d = self.start()
        self.assertTrue(stat.S_ISSOCK(os.stat(self.sock).st_mode))
        self.assertEqual(d.stop(signal.SIGTERM), 0)
        self.assertFalse(os.path.exists(self.sock))
        self.assertIn("shutting down", d.log())
        d2 = self.start()
        self.assertEqual(d2.stop(signal.SIGINT), 0)
        self.assertFalse(os.path.exists(self.sock))

    def test_sigterm_removes_the_sockets_after_dropping_privileges(self):
        """Started as root with [daemon] user = nobody: the sockets' directory,
        created by mailauthd, belongs to nobody, so the unprivileged daemon
        still removes its sockets at SIGTERM.  In an existing directory nobody
        may not write, they are left behind with a log line, and the next
        start replaces them."""
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: the daemon must start as root and drop to nobody")
        import pwd
        os.chmod(self.tmp, 0o755)
        control_sock = self.path("run/control")
        run_as = f'user = "nobody"\ngroup = "nogroup"\ncontrol_socket = "{control_sock}"'
        d = self.start(extra_daemon=run_as)
        self.assertIn("running as user nobody", d.log())
        self.assertEqual(os.stat(self.path("run")).st_uid, pwd.getpwnam("nobody").pw_uid)
        self.assert_ok("alice", "alice-pw")
        self.assertEqual(d.stop(signal.SIGTERM), 0)
        self.assertFalse(os.path.exists(self.sock), os.listdir(self.path("run")))
        self.assertFalse(os.path.exists(control_sock), os.listdir(self.path("run")))
        self.assertNotIn("left behind", d.log())

        # A root-owned directory that nobody may not write to.
        self.sock = self.path("rootdir/mux")
        os.makedirs(self.path("rootdir"), 0o755)
        control_sock = self.path("rootdir/control")
        run_as = f'user = "nobody"\ngroup = "nogroup"\ncontrol_socket = "{control_sock}"'
        d = self.daemon(self.config(extra_daemon=run_as), name="rootdir", socket_path=self.sock)
        self.assert_ok("alice", "alice-pw")
        self.assertEqual(d.stop(signal.SIGTERM), 0)
        log = d.log()
        for path in (self.sock, control_sock):
            self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode), path)
            self.assertIn(f"socket {path} left behind: user nobody cannot remove it from "
                          f"{os.path.dirname(path)}; the next start replaces it", log)
        d = self.daemon(self.config(extra_daemon=run_as), name="rootdir2", socket_path=self.sock)
        self.assert_ok("alice", "alice-pw")
        d.stop()

    def test_stale_cache_answers_are_counted(self):
        """[cache] stale_ttl: while the backend cannot answer, a recent success
        is served from the cache, and mailauth_cache_stale_served_total
        counts each such answer (and nothing else)."""
        from harness import control, prometheus_value
        ctl = self.path("run/control")
        d = self.start(extra_daemon=f'control_socket = "{ctl}"',
                       extra_mux='\n[cache]\nttl = "60s"\nstale_ttl = "600s"\n')
        self.assert_ok("alice", "alice-pw")
        self.assert_ok("alice", "alice-pw")  # a fresh hit, not a stale one
        stats = control(ctl, "stats")
        self.assertEqual(prometheus_value(stats, "mailauth_cache_hits_total"), 1, stats)
        self.assertEqual(prometheus_value(stats, "mailauth_cache_stale_served_total"), 0, stats)
        os.rename(self.passwd, self.passwd + ".away")  # the backend cannot answer
        self.assert_ok("alice", "alice-pw")
        self.assert_ok("alice", "alice-pw")
        r = self.mailauth_test("-f", self.sock, "-u", "alice", "-p", "wrong")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)  # never a stale "yes" for it
        r = self.mailauth_test("-f", self.sock, "-u", "bob", "-p", "bob pw with spaces")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)  # no recent success for bob
        stats = control(ctl, "stats")
        self.assertEqual(prometheus_value(stats, "mailauth_cache_stale_served_total"), 2, stats)
        # Not hits: the hit ratio is about fresh answers.
        self.assertEqual(prometheus_value(stats, "mailauth_cache_hits_total"), 1, stats)
        self.assertEqual(d.log().count("accepted from the cache within stale_ttl"), 2)
        os.rename(self.passwd + ".away", self.passwd)
        self.assert_ok("alice", "alice-pw")
        stats = control(ctl, "stats")
        self.assertEqual(prometheus_value(stats, "mailauth_cache_stale_served_total"), 2, stats)

    def test_socket_mode_and_stale_socket(self):
        # A stale socket file from a crashed daemon is replaced.
        os.makedirs(os.path.dirname(self.sock), exist_ok=True)
        s = socket.socket(socket.AF_UNIX)
        s.bind(self.sock)
        s.close()
        owner = 'owner = "nobody"\ngroup = "nogroup"\n' if os.geteuid() == 0 else ""
        d = self.daemon(self.config().replace('mode = "0666"', 'mode = "0600"\n' + owner),
                        socket_path=self.sock)
        st = os.stat(self.sock)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        if owner:
            import grp
            import pwd
            self.assertEqual((st.st_uid, st.st_gid),
                             (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid))
        self.assert_ok("alice", "alice-pw")
        # A second daemon on the same socket refuses to start instead of stealing it.
        r = subprocess.run([MAILAUTHD, "--foreground", "--config", d.config_path],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("another process is listening on it", r.stderr)
        self.assert_ok("alice", "alice-pw")

    def test_sighup_reload_switches_backends_and_keeps_serving_on_bad_config(self):
        d = self.start()
        other = self.write("passwd2", "erin:" + mkpasswd("erin-pw") + "\n")
        d.write_config(self.config(passwd=other))
        tail = d.reload()
        self.assertIn("reload: done", tail)
        self.assert_ok("erin", "erin-pw")
        self.assert_no("alice", "alice-pw")
        # A broken config is refused with file:line:key and the old one serves on.
        d.write_config(self.config(passwd=other).replace("workers = 2", "workers = 0"))
        tail = d.reload()
        self.assertIn("reload failed, keeping the running configuration", tail)
        self.assertIn("mailauthd.conf:4: key 'daemon.workers': must be between 1 and 256", tail)
        self.assert_ok("erin", "erin-pw")

    def test_check_config(self):
        good = self.write("good.conf", self.config())
        r = subprocess.run([MAILAUTHD, "--check-config", "--config", good], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)
        self.assertFalse(os.path.exists(self.sock), "--check-config never listens")
        bad = self.write("bad.conf", self.config().replace("path =", "pth ="))
        r = subprocess.run([MAILAUTHD, "--check-config", "--config", bad], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.conf:12: key 'backend[1].path': is required", r.stderr)
        r = subprocess.run([MAILAUTHD, "--bogus"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option '--bogus'", r.stderr)


    # --- --check-config: a database that is down is not a configuration error

    def mysql_down(self, where):
        """A mysql backend (after the pwdfile) at WHERE, where nothing listens."""
        secret = self.write("db.secret", "db-pw\n", 0o600)
        return f"""
[[backend]]
type = "mysql"
{where}
user = "mailauth"
password_file = "{secret}"
database = "mail"
schema = "users"
connect_timeout = "1s"
"""

    def check_config(self, path, *options):
        return subprocess.run([MAILAUTHD, "--check-config", *options, "--config", path],
                              capture_output=True, text=True, timeout=60)

    def unit_exec_start_pre(self, config_path):
        """conf/mailauthd.service's ExecStartPre=, run on CONFIG_PATH."""
        with open(os.path.join(SOURCE, "conf", "mailauthd.service")) as f:
            lines = [l for l in f.read().splitlines() if l.startswith("ExecStartPre=")]
        self.assertEqual(len(lines), 1, lines)
        command = lines[0].split("=", 1)[1]
        # A "-" prefix would ignore every failure, real configuration errors too.
        self.assertTrue(command.startswith("@SBINDIR@/"), command)
        argv = [MAILAUTHD if a == "@SBINDIR@/mailauthd" else
                config_path if a == "/etc/mailauth/mailauthd.conf" else a
                for a in shlex.split(command)]
        self.assertIn(config_path, argv)
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    def test_check_config_with_the_database_down(self):
        port = free_port()
        nothing = self.path("no-mysqld.sock")
        for where, label in ((f'hosts = ["127.0.0.1:{port}"]', f"127.0.0.1:{port}"),
                             (f'socket = "{nothing}"', f"unix:{nothing}")):
            with self.subTest(where=where):
                conf = self.write("down.conf", self.config() + self.mysql_down(where))
                warning = (f"mailauthd: warning: backend mysql: cannot connect to the database: "
                           f"{label}: Can't connect")
                r = self.check_config(conf)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("configuration OK", r.stdout)
                self.assertIn(warning, r.stderr)
                # --strict, for scripts that need every backend up now: 3.
                r = self.check_config(conf, "--strict")
                self.assertEqual(r.returncode, 3, r.stderr)
                self.assertIn(warning, r.stderr)
                self.assertNotIn("configuration OK", r.stdout)
                # The unit's ExecStartPre= lets the service start ...
                r = self.unit_exec_start_pre(conf)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(warning, r.stderr)
        # ... and the daemon does start, answering what it can: the pwdfile's
        # users, and a temporary failure for users only the database knows.
        self.daemon(self.config() + self.mysql_down(f'hosts = ["127.0.0.1:{port}"]'),
                    socket_path=self.sock)
        self.assert_ok("alice", "alice-pw")
        r = self.mailauth_test("-f", self.sock, "-u", "dave@example.com", "-p", "dave-pw")
        self.assertEqual((r.returncode, r.stdout), (3, ""), r.stderr)

        # Configuration errors are still errors (1) with the database down,
        # with or without --strict, and stop the unit.
        down = self.mysql_down(f'hosts = ["127.0.0.1:{port}"]')
        for name, text, message in (
                ("workers.conf", self.config().replace("workers = 2", "workers = 0") + down,
                 "workers.conf:3: key 'daemon.workers': must be between 1 and 256"),
                ("syntax.conf", self.config() + down + 'read_timeout = "2s\n',
                 "syntax error"),
                ("escape.conf", self.config() + down +
                 "query = \"SELECT crypt FROM users WHERE id = '%U'\"\n",
                 "key 'backend[2].query': unknown escape %U")):
            with self.subTest(config=name):
                conf = self.write(name, text)
                for options in ((), ("--strict",)):
                    r = self.check_config(conf, *options)
                    self.assertEqual(r.returncode, 1, (options, r.stderr))
                    self.assertIn(message, r.stderr)
                    self.assertNotIn("configuration OK", r.stdout)
                r = self.unit_exec_start_pre(conf)
                self.assertEqual(r.returncode, 1, r.stderr)


    # --- --check-config resolves the names start-up resolves ------------------

    def start_fails(self, conf):
        """mailauthd started on CONF: its exit status and output (it must exit)."""
        p = subprocess.Popen([MAILAUTHD, "--foreground", "--config", conf],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            self.fail(f"mailauthd started with {conf}")
        return p.returncode, out

    def test_check_config_fails_on_names_that_do_not_exist(self):
        import grp
        import pwd
        missing = "mailauth-no-such-name"
        for lookup in (pwd.getpwnam, grp.getgrnam):
            with self.assertRaises(KeyError, msg=f"{missing} exists on this system"):
                lookup(missing)
        # Names that exist (and numbers) are fine.
        ok = self.write("ok.conf", self.config(
            extra_daemon=f'user = "nobody"\ngroup = "{grp.getgrgid(0).gr_name}"\n'
                         f'control_socket = "{self.path("ctl")}"\ncontrol_group = "0"',
            extra_mux='owner = "root"\ngroup = "0"'))
        r = self.check_config(ok)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("does not exist", r.stderr)
        self.assertFalse(os.path.exists(self.sock), "--check-config never listens")
        cases = (
            ("user", dict(extra_daemon=f'user = "{missing}"'),
             f"key 'daemon.user': user '{missing}' does not exist"),
            ("group", dict(extra_daemon=f'user = "nobody"\ngroup = "{missing}"'),
             f"key 'daemon.group': group '{missing}' does not exist"),
            ("group-without-user", dict(extra_daemon='group = "0"'),
             "key 'daemon.group': is set but [daemon] user is not"),
            ("owner", dict(extra_mux=f'owner = "{missing}"'),
             f"key 'saslauthd.owner': user '{missing}' does not exist"),
            ("socket-group", dict(extra_mux=f'group = "{missing}"'),
             f"key 'saslauthd.group': group '{missing}' does not exist"),
            ("control-group", dict(extra_daemon=f'user = "nobody"\n'
                                                f'control_socket = "{self.path("ctl")}"\n'
                                                f'control_group = "{missing}"'),
             f"key 'daemon.control_group': group '{missing}' does not exist"),
        )
        for name, keys, message in cases:
            with self.subTest(name):
                conf = self.write(name + ".conf", self.config(**keys))
                r = self.check_config(conf)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertRegex(r.stderr, rf"{name}\.conf:\d+: " + re.escape(message))
                self.assertNotIn("configuration OK", r.stdout)
                # Start-up (as root, where it switches users) fails on it too.
                if os.geteuid() == 0:
                    rc, out = self.start_fails(conf)
                    self.assertEqual(rc, 1, out)
                    self.assertIn(missing if missing in message else "group is set but user is not",
                                  out)


if __name__ == "__main__":
    unittest.main()
