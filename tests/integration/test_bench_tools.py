"""mailauth-bench-tools (make bench's reference points) answers real clients.

The echo servers stand for "the limit of the socket" in make bench's table,
so they must speak each framing the way the real clients expect:
testsaslauthd (Cyrus's own client) and mailauth-test over the mux socket,
mailauth-test --dovecot (which insists on VERSION, MECH, DONE and OK with
user=) over the Dovecot one, one-shot and persistent under load.  No timing
is asserted: only answers.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import BUILD, MAILAUTH_TEST, DovecotConnection, mkpasswd, mux_exchange, mux_frame, \
    mux_reply_text, which

TOOLS = os.path.join(BUILD, "tests", "mailauth-bench-tools")


class EchoServerTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mailauth-bench-tools-")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def serve(self, mode):
        sock = os.path.join(self.dir, mode)
        p = subprocess.Popen([TOOLS, mode, "--socket", sock, "--threads", "2"])
        self.procs.append(p)
        for _ in range(200):
            if os.path.exists(sock):
                return sock
            self.assertIsNone(p.poll(), f"{mode} exited")
            time.sleep(0.025)
        self.fail(f"{mode}: no socket")

    def bench(self, *args):
        r = subprocess.run([MAILAUTH_TEST, *args, "--bench", "-u", "alice", "-p", "pw", "--count", "400",
                            "--concurrency", "8", "--json"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_mux_echo_answers_testsaslauthd_and_the_bench_client(self):
        sock = self.serve("echo-mux")
        r = subprocess.run([which("testsaslauthd"), "-f", sock, "-u", "alice", "-p", "pw"],
                           capture_output=True, text=True, timeout=30)
        self.assertIn('0: OK "Success."', r.stdout)
        # Four fields and a fifth (newer libsasl2): OK either way, then EOF.
        self.assertEqual(mux_reply_text(mux_exchange(sock, mux_frame("a", "b", "smtp", ""))), "OK")
        self.assertEqual(mux_reply_text(mux_exchange(sock, mux_frame("a", "b", "smtp", "", "192.0.2.1;25"))),
                         "OK")
        report = self.bench("-f", sock)
        self.assertEqual(report["ok"], 400, report)

    def test_dovecot_echo_answers_handshake_and_auth(self):
        sock = self.serve("echo-dovecot")
        c = DovecotConnection(sock)
        try:
            lines = c.handshake()
            self.assertEqual(lines[0], "VERSION\t1\t2")
            self.assertEqual([line.split("\t")[0] for line in lines],
                             ["VERSION", "MECH", "MECH", "SPID", "CUID", "COOKIE", "DONE"])
        finally:
            c.close()
        r = subprocess.run([MAILAUTH_TEST, "--dovecot", "-f", sock, "-u", "alice@example.org", "-p", "pw"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout.strip(), '0: OK "Success."', r.stderr)
        for extra in ([], ["--persistent"]):
            report = self.bench("--dovecot", "-f", sock, *extra)
            self.assertEqual(report["ok"], 400, report)

    def test_idle_dovecot_holds_connections(self):
        sock = self.serve("echo-dovecot")
        h = subprocess.Popen([TOOLS, "idle-dovecot", "--socket", sock, "--count", "50"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.assertEqual(h.stdout.readline().strip(), "ready 50")
        h.stdin.close()
        self.assertEqual(h.stdout.read().strip(), "alive 50")
        self.assertEqual(h.wait(30), 0)

    def test_crypt_limit_verifies_the_hash(self):
        h = mkpasswd("pw-1", "sha256crypt")
        r = subprocess.run([TOOLS, "crypt-limit", "--hash", h, "--password", "pw-1", "--threads", "2",
                            "--seconds", "0.2"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual(report["threads"], 2)
        self.assertGreater(report["verifications"], 0)
        r = subprocess.run([TOOLS, "crypt-limit", "--hash", h, "--password", "wrong", "--seconds", "0.2"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not verify", r.stderr)


if __name__ == "__main__":
    unittest.main()
