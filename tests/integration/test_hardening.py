"""Production hardening: control socket, credential cache, brute-force
policy, reload under load, systemd notification and socket activation."""
import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time
import unittest

from harness import (DaemonTestCase, DovecotConnection, MAILAUTHD, MAILAUTH_TEST, control,
                     insist_on_root,
                     mkpasswd, mux_exchange, mux_frame, mux_reply_text, prometheus_value)

OK_LINE = '0: OK "Success."'


def plain(user, password):
    import base64
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


class HardeningTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.mux = self.path("run/mux")
        self.auth = self.path("run/auth")
        self.ctl = self.path("run/control")
        self.passwd = self.write("passwd", "\n".join([
            "alice:" + mkpasswd("alice-pw", "sha512crypt"),
            "bob:" + mkpasswd("bob-pw", "yescrypt"),
            ""]))

    def config(self, extra="", delay="0s", cache=True):
        return f"""
[daemon]
workers = 2
log = "stderr"
log_level = "debug"
control_socket = "{self.ctl}"

[saslauthd]
socket = "{self.mux}"
mode = "0666"

[dovecot]
socket = "{self.auth}"
mode = "0666"
failure_delay = "{delay}"

{'[cache]' if cache else ''}
{'ttl = "60s"' if cache else ''}

{extra}

[[backend]]
type = "pwdfile"
path = "{self.passwd}"
"""

    def start(self, **kw):
        return self.daemon(self.config(**kw), socket_path=self.ctl)

    def login(self, user, password, sock=None):
        r = self.mailauth_test("-f", sock or self.mux, "-u", user, "-p", password)
        return r.returncode

    # --- control socket ------------------------------------------------------

    def test_control_socket_stats_flush_reload(self):
        d = self.start()
        self.assertEqual(stat.S_IMODE(os.stat(self.ctl).st_mode), 0o600)
        for _ in range(3):
            self.assertEqual(self.login("alice", "alice-pw"), 0)
        self.assertEqual(self.login("alice", "nope"), 1)
        conn = DovecotConnection(self.auth)
        conn.handshake()
        conn.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={plain('bob', 'bob-pw')}\n")
        self.assertEqual(conn.line(), "OK\t1\tuser=bob")
        stats = control(self.ctl, "stats")
        self.assertIn("# TYPE mailauth_auth_attempts_total counter", stats)
        self.assertEqual(prometheus_value(stats, "mailauth_auth_attempts_total", result="ok",
                                          proto="mux", backend="pwdfile"), 3)
        self.assertEqual(prometheus_value(stats, "mailauth_auth_attempts_total", result="fail",
                                          proto="mux"), 1)
        self.assertEqual(prometheus_value(stats, "mailauth_auth_attempts_total", result="ok",
                                          proto="dovecot", mech="PLAIN"), 1)
        self.assertEqual(prometheus_value(stats, "mailauth_auth_duration_seconds_count", proto="mux"), 4)
        self.assertEqual(prometheus_value(stats, "mailauth_auth_duration_seconds_bucket",
                                          proto="mux", le="+Inf"), 4)
        # alice's 2nd and 3rd logins were answered from the cache.
        self.assertEqual(prometheus_value(stats, "mailauth_cache_hits_total"), 2)
        self.assertGreaterEqual(prometheus_value(stats, "mailauth_cache_entries"), 2)
        self.assertEqual(prometheus_value(stats, "mailauth_connections", proto="dovecot"), 1)
        self.assertEqual(prometheus_value(stats, "mailauth_workers"), 2)
        self.assertIn("mailauth_worker_queue_depth 0", stats)
        conn.close()

        # One entry per user and credential (the wrong password replaced the
        # right one), and bob's.
        self.assertEqual(control(self.ctl, "flush alice"), "OK flushed 1\n")
        self.assertEqual(control(self.ctl, "flush"), "OK flushed 1\n")
        self.assertEqual(control(self.ctl, "reload"), "OK reloaded\n")
        d.write_config(self.config().replace("workers = 2", "workers = 0"))
        reply = control(self.ctl, "reload")
        self.assertTrue(reply.startswith("ERROR "), reply)
        self.assertIn("key 'daemon.workers'", reply)
        self.assertEqual(control(self.ctl, "dance"),
                         "ERROR unknown command; use stats, flush [USER] or reload\n")
        stats = control(self.ctl, "stats")
        self.assertEqual(prometheus_value(stats, "mailauth_reloads_total", result="ok"), 1)
        self.assertEqual(prometheus_value(stats, "mailauth_reloads_total", result="failed"), 1)
        self.assertEqual(self.login("alice", "alice-pw"), 0)

    # --- cache -----------------------------------------------------------------

    def test_password_change_with_the_cache_on_fails_the_old_password_at_once(self):
        d = self.start()
        self.assertEqual(self.login("alice", "alice-pw"), 0)
        self.assertEqual(self.login("alice", "alice-pw"), 0)
        self.assertIn("cached=yes", d.log())
        # The admin rewrites the file (as mailauth-user would): no flush needed.
        self.write("passwd", "alice:" + mkpasswd("new-pw", "sha512crypt") + "\n"
                   "bob:" + mkpasswd("bob-pw", "yescrypt") + "\n")
        self.assertEqual(self.login("alice", "alice-pw"), 1, "the very next login must fail")
        self.assertEqual(self.login("alice", "new-pw"), 0)
        # A disabled account fails at once too.
        self.write("passwd", "alice:!" + mkpasswd("new-pw", "sha512crypt") + "\n")
        self.assertEqual(self.login("alice", "new-pw"), 1)

    # --- brute force --------------------------------------------------------

    def test_penalty_slows_the_attacker_not_others(self):
        self.start(extra='[policy]\npenalty = "400ms"\nmax_penalty = "2s"')
        conn = DovecotConnection(self.auth)
        conn.handshake()
        # alice logs in from her usual address.
        conn.send(f"AUTH\t100\tPLAIN\tservice=smtp\trip=198.51.100.9\tresp={plain('alice', 'alice-pw')}\n")
        self.assertEqual(conn.line(), "OK\t100\tuser=alice")
        # Six different wrong passwords for her from 203.0.113.5.
        for i in range(1, 7):
            conn.send(f"AUTH\t{i}\tPLAIN\tservice=smtp\trip=203.0.113.5\t"
                      f"resp={plain('alice', 'guess%d' % i)}\n")
            self.assertEqual(conn.line(), f"FAIL\t{i}\tuser=alice")
        t0 = time.monotonic()
        conn.send(f"AUTH\t7\tPLAIN\tservice=smtp\trip=203.0.113.5\tresp={plain('bob', 'bob-pw')}\n")
        self.assertEqual(conn.line(), "OK\t7\tuser=bob")
        self.assertGreaterEqual(time.monotonic() - t0, 1.9, "the attacker's address waits the capped penalty")
        # alice from her usual address is not slowed (her user-name penalty
        # spares it), nor is a no-penalty request.
        t0 = time.monotonic()
        conn.send(f"AUTH\t8\tPLAIN\tservice=smtp\trip=198.51.100.9\tresp={plain('alice', 'alice-pw')}\n")
        self.assertEqual(conn.line(), "OK\t8\tuser=alice")
        conn.send(f"AUTH\t9\tPLAIN\tservice=smtp\trip=203.0.113.6\tno-penalty\t"
                  f"resp={plain('bob', 'bob-pw')}\n")
        self.assertEqual(conn.line(), "OK\t9\tuser=bob")
        self.assertLess(time.monotonic() - t0, 1.0)
        stats = control(self.ctl, "stats")
        self.assertGreaterEqual(prometheus_value(stats, "mailauth_penalties_total"), 5)

    def test_in_flight_cap_per_address_is_a_temporary_failure(self):
        self.start(extra='[policy]\nmax_in_flight = 2', delay="1s")
        conn = DovecotConnection(self.auth)
        conn.handshake()
        # 2 are admitted (and held by the failure delay's... no: the delay
        # starts after processing).  Send many at once from one address.
        conn.send("".join(f"AUTH\t{i}\tPLAIN\tservice=smtp\trip=192.0.2.50\t"
                          f"resp={plain('alice', 'alice-pw')}\n" for i in range(1, 21)))
        # temp_failure = "disconnect" (default): a refused request closes the
        # connection; the admitted ones may answer before that.
        lines = []
        while True:
            l = conn.line()
            if l is None:
                break
            lines.append(l)
        self.assertTrue(all(l.startswith("OK\t") for l in lines), lines)
        self.assertLess(len(lines), 20)
        stats = control(self.ctl, "stats")
        self.assertGreaterEqual(prometheus_value(stats, "mailauth_refused_in_flight_total"), 1)

    # --- reload under load -----------------------------------------------------

    def test_ten_reloads_under_load_fail_no_request(self):
        users = self.write("users", "alice:alice-pw\nbob:bob-pw\n")
        d = self.start()
        results = {}

        def bench(name, *args):
            r = subprocess.run([MAILAUTH_TEST, *args, "--bench", "--users", users, "--duration", "4",
                                "--concurrency", "4", "--json"], capture_output=True, text=True,
                               timeout=60)
            results[name] = (r.returncode, r.stdout, r.stderr)

        threads = [threading.Thread(target=bench, args=("mux", "-f", self.mux)),
                   threading.Thread(target=bench, args=("dovecot", "--dovecot", "-f", self.auth,
                                                        "--persistent"))]
        for t in threads:
            t.start()
        time.sleep(0.5)
        for i in range(10):
            if i % 2:
                d.send_signal(signal.SIGHUP)
            else:
                self.assertEqual(control(self.ctl, "reload"), "OK reloaded\n")
            time.sleep(0.25)
        for t in threads:
            t.join()
        for name, (rc, out, err) in results.items():
            self.assertEqual(rc, 0, err)
            report = json.loads(out)
            self.assertGreater(report["ok"], 50, (name, report))
            self.assertEqual(report["no"] + report["tempfail"] + report["errors"], 0, (name, report))
        self.assertEqual(d.log().count("reload: done"), 10)

    # --- systemd ---------------------------------------------------------------

    def test_sd_notify_ready_reloading_stopping(self):
        notify_path = self.path("notify")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(notify_path)
        ns.settimeout(15)
        cfg = self.write("n.conf", insist_on_root(self.config()))
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        with open(self.path("n.log"), "wb") as log:
            proc = subprocess.Popen([MAILAUTHD, "--config", cfg], env=env, stdout=log, stderr=log)
        try:
            # Under systemd (NOTIFY_SOCKET set) it does not fork: proc is the daemon.
            self.assertIn(b"READY=1", ns.recv(4096))
            proc.send_signal(signal.SIGHUP)
            self.assertIn(b"RELOADING=1", ns.recv(4096))
            self.assertIn(b"READY=1", ns.recv(4096))
            proc.send_signal(signal.SIGTERM)
            self.assertIn(b"STOPPING=1", ns.recv(4096))
            self.assertEqual(proc.wait(10), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
            ns.close()

    def test_socket_activation(self):
        """systemd-socket-activate (as systemd would) creates the sockets and
        passes them by name; mailauthd serves them and leaves them in place."""
        cfg = self.write("a.conf", insist_on_root(self.config(cache=False)))
        os.makedirs(self.path("run"), exist_ok=True)
        with open(self.path("a.log"), "wb") as log:
            proc = subprocess.Popen(
                ["systemd-socket-activate", "-l", self.mux, "--fdname=saslauthd",
                 "-l", self.auth, "--fdname=dovecot",
                 MAILAUTHD, "--foreground", "--config", cfg], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 15
            while not (os.path.exists(self.mux) and os.path.exists(self.auth)):
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.02)
            # The first connection starts mailauthd (Accept=no: one daemon, all sockets).
            self.assertEqual(self.login("alice", "alice-pw"), 0)
            r = self.mailauth_test("--dovecot", "-f", self.auth, "-u", "bob", "-p", "bob-pw")
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(self.path("a.log")) as f:
                log = f.read()
            self.assertIn("systemd passed 2 socket(s)", log)
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            self.assertTrue(os.path.exists(self.mux), "the socket file belongs to systemd")
        finally:
            if proc.poll() is None:
                proc.kill()


if __name__ == "__main__":
    unittest.main()
