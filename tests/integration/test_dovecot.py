"""mailauthd's Dovecot auth client protocol, end to end: golden transcripts,
bad input, Dovecot's own `doveadm auth test`, and mailauth-test --dovecot
with every mechanism."""
import base64
import glob
import hashlib
import hmac
import os
import subprocess
import threading
import time
import unittest

from harness import (DaemonTestCase, DovecotConnection, RecordingProxy, mkpasswd, which)

SOURCE = os.environ.get("MAILAUTH_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
TRANSCRIPTS = os.path.join(SOURCE, "tests", "data", "transcripts")
OK_LINE = '0: OK "Success."'
NO_LINE = '0: NO "authentication failed"'


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def scram_client_final(user, password, client_nonce, server_first, digest="sha256"):
    """An independent SCRAM client (RFC 5802): the client-final message for
    `server_first`, and the server signature to expect."""
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored_key = hashlib.new(digest, client_key).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"n={user},r={client_nonce},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, digest).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    server_key = hmac.new(salted, b"Server Key", digest).digest()
    return (f"{without_proof},p={b64(proof)}",
            "v=" + b64(hmac.new(server_key, auth_message, digest).digest()))


def doveadm_pw(scheme, password):
    return subprocess.run([which("doveadm"), "pw", "-s", scheme, "-p", password],
                          capture_output=True, text=True, check=True).stdout.strip()


class DovecotTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.sock = self.path("private/auth")
        self.passwd = self.write("passwd", "\n".join([
            "alice:" + mkpasswd("s3cret", "sha512crypt"),
            "dave:!" + mkpasswd("s3cret", "sha512crypt"),
            "plain:{PLAIN}plain-pw",
            "scram:" + doveadm_pw("SCRAM-SHA-256", "scram-pw"),
            "scram1:" + doveadm_pw("SCRAM-SHA-1", "scram1-pw"),
            "cram:" + doveadm_pw("CRAM-MD5", "cram-pw"),
            "",
        ]))

    def config(self, mechanisms=("PLAIN", "LOGIN"), delay="0s", temp="disconnect"):
        mechs = ", ".join(f'"{m}"' for m in mechanisms)
        return f"""
[daemon]
workers = 2
log = "stderr"

[dovecot]
socket = "{self.sock}"
mode = "0666"
mechanisms = [{mechs}]
failure_delay = "{delay}"
temp_failure = "{temp}"

[[backend]]
type = "pwdfile"
path = "{self.passwd}"
"""

    def start(self, **kw):
        return self.daemon(self.config(**kw), socket_path=self.sock)

    def dovecot_test(self, *args):
        return self.mailauth_test("--dovecot", "-f", self.sock, *args)

    def assert_login(self, user, password, mech="PLAIN", ok=True):
        r = self.dovecot_test("--mech", mech, "-u", user, "-p", password)
        want = (0, OK_LINE) if ok else (1, NO_LINE)
        self.assertEqual((r.returncode, r.stdout.strip()), want, f"{mech} {user}: {r.stderr}")

    # --- golden transcripts -------------------------------------------------

    def replay(self, path):
        conn = DovecotConnection(self.sock)
        pending_send = []
        with open(path) as f:
            for n, raw in enumerate(f, 1):
                raw = raw.rstrip("\n")
                if not raw or raw.startswith("#"):
                    continue
                kind, text = raw[:3], raw[3:].replace("\\t", "\t")
                if kind == "C: ":
                    pending_send.append(text + "\n")
                    continue
                self.assertEqual(kind, "S: ", f"{path}:{n}")
                if pending_send:
                    conn.send("".join(pending_send))
                    pending_send = []
                got = conn.line()
                if text.endswith("*"):
                    self.assertTrue(got is not None and got.startswith(text[:-1]),
                                    f"{os.path.basename(path)}:{n}: expected {text!r}, got {got!r}")
                else:
                    self.assertEqual(got, text, f"{os.path.basename(path)}:{n}")
        conn.close()

    def test_golden_transcripts(self):
        self.start()
        files = sorted(glob.glob(os.path.join(TRANSCRIPTS, "*.txt")))
        self.assertGreaterEqual(len(files), 4)
        for path in files:
            with self.subTest(transcript=os.path.basename(path)):
                self.replay(path)

    # --- real clients --------------------------------------------------------

    def test_doveadm_auth_test(self):
        d = self.start()
        doveadm = which("doveadm")
        r = subprocess.run([doveadm, "auth", "test", "-a", self.sock, "-x", "service=smtp",
                            "-x", "rip=192.0.2.5", "alice", "s3cret"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("passdb: alice auth succeeded", r.stdout)
        self.assertIn("user=alice", r.stdout)
        r = subprocess.run([doveadm, "auth", "test", "-a", self.sock, "alice", "wrong"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 77, r.stdout + r.stderr)
        self.assertIn("passdb: alice auth failed", r.stdout)
        r = subprocess.run([doveadm, "auth", "test", "-a", self.sock, "dave", "s3cret"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 77)
        self.assertIn("result=ok proto=dovecot mech=PLAIN user=alice service=smtp realm= rip=192.0.2.5",
                      d.log())
        self.assertIn("service=doveadm", d.log())

    def test_what_doveadm_really_sends_matches_the_golden_transcript(self):
        """Dovecot's own doveadm, through a recording proxy: its bytes are the
        client lines of tests/data/transcripts/doveadm-auth-test.txt."""
        real = self.path("private/auth-real")
        self.daemon(self.config().replace(f'socket = "{self.sock}"', f'socket = "{real}"'),
                    socket_path=real)
        proxy = RecordingProxy(self.sock, real)
        try:
            r = subprocess.run([which("doveadm"), "auth", "test", "-a", self.sock, "-x", "service=smtp",
                                "-x", "rip=192.0.2.1", "-x", "secured", "alice", "s3cret"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            proxy.close()
        sent = proxy.recorded().splitlines()
        with open(os.path.join(TRANSCRIPTS, "doveadm-auth-test.txt")) as f:
            golden = [l[3:].replace("\\t", "\t") for l in f.read().splitlines() if l.startswith("C: ")]
        # The CPID is doveadm's pid: compare everything else byte for byte.
        self.assertRegex(sent[1], r"^CPID\t\d+$")
        self.assertEqual([sent[0], sent[2]], [golden[0], golden[2]])

    def test_every_mechanism_with_every_stored_form(self):
        self.start(mechanisms=("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"))
        creds = {"alice": "s3cret", "plain": "plain-pw", "scram": "scram-pw",
                 "scram1": "scram1-pw", "cram": "cram-pw"}
        # Which stored forms can serve which mechanism (protocols.md C.6).
        serves = {
            "PLAIN": {"alice", "plain", "scram", "scram1", "cram"},
            "LOGIN": {"alice", "plain", "scram", "scram1", "cram"},
            "CRAM-MD5": {"plain", "cram"},
            "SCRAM-SHA-1": {"plain", "scram1"},
            "SCRAM-SHA-256": {"plain", "scram"},
        }
        for mech, users in serves.items():
            for user, pw in creds.items():
                with self.subTest(mech=mech, user=user):
                    self.assert_login(user, pw, mech, ok=user in users)
                    self.assert_login(user, pw + "x", mech, ok=False)
            with self.subTest(mech=mech, user="nobody"):
                self.assert_login("nobody", "whatever", mech, ok=False)
            with self.subTest(mech=mech, user="dave"):
                self.assert_login("dave", "s3cret", mech, ok=False)

    def test_scram_server_first_does_not_tell_what_is_stored(self):
        """SCRAM's server-first message (salt, iterations) and its path to the
        answer are the same whether the user is unknown, has a plaintext
        credential, or a hash that cannot serve SCRAM (Argon2, SHA-crypt) or
        is disabled: a challenge each time, a salt stable per user of the same
        form as a real verifier's, the iteration count of the real verifiers;
        then FAIL at the proof.  Issue 11, finding 3."""
        with open(self.passwd, "a") as f:
            f.write("argon:" + doveadm_pw("ARGON2ID", "argon-pw") + "\n")
        d = self.start(mechanisms=("PLAIN", "SCRAM-SHA-256"))
        passwords = {"nobody": "whatever", "plain": "plain-pw", "scram": "scram-pw",
                     "alice": "s3cret", "argon": "argon-pw", "dave": "s3cret"}
        conn = DovecotConnection(self.sock)
        conn.handshake()
        next_id = [0]

        def attempt(user, password):
            """One exchange: (server-first, final answer line)."""
            next_id[0] += 1
            rid = next_id[0]
            nonce = f"cnonce{rid}x"
            conn.send(f"AUTH\t{rid}\tSCRAM-SHA-256\tservice=smtp\trip=127.0.0.1\t"
                      f"resp={b64(f'n,,n={user},r={nonce}')}\n")
            first = conn.line()
            self.assertTrue(first.startswith(f"CONT\t{rid}\t"),
                            f"{user}: a challenge, not an immediate answer: {first!r}")
            server_first = base64.b64decode(first.split("\t")[2]).decode()
            final, signature = scram_client_final(user, password, nonce, server_first)
            conn.send(f"CONT\t{rid}\t{b64(final)}\n")
            answer = conn.line()
            if answer.startswith(f"CONT\t{rid}\t"):
                self.assertEqual(base64.b64decode(answer.split("\t")[2]).decode(), signature)
                conn.send(f"CONT\t{rid}\t\n")
                answer = conn.line()
            return dict(kv.split("=", 1) for kv in server_first.split(",")), answer

        # A real verifier first: its iteration count is the deployment's.
        seen = {}
        for user in ("scram", "nobody", "plain", "alice", "argon", "dave"):
            for round_ in (1, 2):
                with self.subTest(user=user, round=round_):
                    first, answer = attempt(user, passwords[user] + "-wrong")
                    self.assertRegex(answer, rf"^FAIL\t{next_id[0]}\tuser={user}$")
                    seen.setdefault(user, []).append(first)
        verifier = seen["scram"][0]
        self.assertEqual(verifier["i"], "4096")  # doveadm's
        self.assertEqual(len(base64.b64decode(verifier["s"])), 16)
        for user, (a, b) in seen.items():
            with self.subTest(user=user):
                self.assertEqual(a["s"], b["s"], "the same salt on every attempt")
                self.assertEqual(a["i"], verifier["i"], "the iteration count of the real verifiers")
                self.assertEqual(len(base64.b64decode(a["s"])), len(base64.b64decode(verifier["s"])))
                self.assertEqual(len(a["s"]), len(verifier["s"]))
                self.assertNotEqual(a["r"], b["r"], "a fresh server nonce every time")
        self.assertEqual(len({seen[u][0]["s"] for u in seen}), len(seen), "one salt per user")
        # The right passwords: OK where the stored credential can serve SCRAM.
        for user in ("plain", "scram"):
            with self.subTest(user=user, password="right"):
                first, answer = attempt(user, passwords[user])
                self.assertEqual(answer, f"OK\t{next_id[0]}\tuser={user}")
                self.assertEqual(first["s"], seen[user][0]["s"])
        for user in ("alice", "argon", "dave", "nobody"):
            with self.subTest(user=user, password="right"):
                self.assertRegex(attempt(user, passwords[user])[1], r"^FAIL\t")
        conn.close()
        # The log line names the real reason.
        log = d.log()
        for user, reason in (("alice", "stored credential cannot serve SCRAM-SHA-256"),
                             ("argon", "stored credential cannot serve SCRAM-SHA-256"),
                             ("nobody", "unknown user"), ("plain", "wrong password"),
                             ("scram", "wrong password")):
            with self.subTest(log=user):
                self.assertRegex(log, rf"result=fail proto=dovecot mech=SCRAM-SHA-256 user={user} "
                                      rf"[^\n]*reason=\"?{reason}")
        self.assertRegex(log, r"result=fail proto=dovecot mech=SCRAM-SHA-256 user=dave [^\n]*"
                              r"reason=\"?(account )?disabled")

    def test_only_configured_mechanisms_are_advertised(self):
        self.start(mechanisms=("LOGIN", "SCRAM-SHA-256"))
        conn = DovecotConnection(self.sock)
        lines = conn.handshake()
        self.assertEqual([l for l in lines if l.startswith("MECH")],
                         ["MECH\tLOGIN\tplaintext", "MECH\tSCRAM-SHA-256\tmutual-auth"])
        spid = next(i for i, l in enumerate(lines) if l.startswith("SPID"))
        self.assertGreater(spid, max(i for i, l in enumerate(lines) if l.startswith("MECH")))
        conn.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={b64(chr(0) + 'alice' + chr(0) + 's3cret')}\n")
        self.assertEqual(conn.line(), "FAIL\t1\treason=Unsupported authentication mechanism")
        r = self.dovecot_test("--mech", "PLAIN", "-u", "alice", "-p", "s3cret")
        self.assertEqual(r.returncode, 3)
        self.assertIn("does not offer PLAIN", r.stderr)

    # --- bad input -------------------------------------------------------------

    def test_bad_input_closes_only_that_connection(self):
        d = self.start()
        plain = f"resp={b64(chr(0) + 'alice' + chr(0) + 's3cret')}"
        cases = {
            "garbage before VERSION": "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "unsupported major version": "VERSION\t2\t0\nCPID\t1\n",
            "AUTH before CPID": f"VERSION\t1\t0\nAUTH\t1\tPLAIN\tservice=smtp\t{plain}\n",
            "a 1 MB line": "VERSION\t1\t0\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\tresp="
                           + "A" * (1 << 20) + "\n",
            "reused in-flight id": "VERSION\t1\t0\nCPID\t1\nAUTH\t1\tLOGIN\tservice=smtp\n"
                                   "AUTH\t1\tLOGIN\tservice=smtp\n",
            "unknown command": "VERSION\t1\t0\nCPID\t1\nSHUTDOWN\n",
            "AUTH without service": f"VERSION\t1\t0\nCPID\t1\nAUTH\t1\tPLAIN\t{plain}\n",
            "binary noise": bytes(range(256)) * 50,
        }
        for name, data in cases.items():
            with self.subTest(case=name):
                conn = DovecotConnection(self.sock)
                try:
                    conn.send(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                lines = []
                while True:
                    l = conn.line()
                    if l is None:
                        break
                    lines.append(l)
                    self.assertFalse(l.startswith("OK"), name)
                conn.close()
                self.assert_login("alice", "s3cret")
        log = d.log()
        for part in ("invalid VERSION line", "unsupported protocol major version 2",
                     "expected CPID", "line longer than 16384 bytes", "already in use",
                     "unknown command", "AUTH without service"):
            self.assertIn(part, log)
        self.assertIn("protocol violation", log)
        self.assertIn("peer_uid=", log)

    def baseline(self, conn, rip="127.0.0.1"):
        """Seconds one right login takes on this machine now (loaded, maybe
        under ASan): the timing assertions below are relative to it, so a
        slow run widens them instead of failing."""
        t0 = time.monotonic()
        conn.send(f"AUTH\t99\tPLAIN\tservice=smtp\trip={rip}\t"
                  f"resp={b64(chr(0) + 'alice' + chr(0) + 's3cret')}\n")
        self.assertEqual(conn.line(), "OK\t99\tuser=alice")
        return time.monotonic() - t0

    def test_requests_fail_and_succeed_independently_on_one_connection(self):
        delay = 3.0
        self.start(delay=f"{int(delay)}s")
        conn = DovecotConnection(self.sock)
        conn.handshake()
        base = self.baseline(conn)
        # A wrong password first, then a right one: the OK does not wait for the
        # delayed FAIL (replies may come back in any order).
        conn.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={b64(chr(0) + 'alice' + chr(0) + 'bad')}\n"
                  f"AUTH\t2\tPLAIN\tservice=smtp\tresp={b64(chr(0) + 'alice' + chr(0) + 's3cret')}\n")
        t0 = time.monotonic()
        first = conn.line()
        t_ok = time.monotonic() - t0
        second = conn.line()
        t_fail = time.monotonic() - t0
        self.assertEqual(first, "OK\t2\tuser=alice")
        self.assertEqual(second, "FAIL\t1\tuser=alice")
        # Two hashes instead of one, and half the delay as slack: waiting for
        # the FAIL's delay would overshoot this by 1.5 s however loaded.
        self.assertLess(t_ok, 2 * base + delay / 2,
                        "the right password must not wait for the failure delay")
        # A timer never fires early: the lower bound holds under any load.
        self.assertGreaterEqual(t_fail, delay - 0.05,
                                "a wrong password is answered after failure_delay")

    def test_a_flood_of_bad_logins_does_not_delay_good_ones(self):
        # 2 workers and a 4 s failure delay: 60 wrong passwords in flight would
        # take 120 worker-seconds if the delay slept in a worker.
        delay = 4.0
        self.start(delay=f"{int(delay)}s")
        good = DovecotConnection(self.sock)
        good.handshake()
        base = self.baseline(good)
        conns = []
        for i in range(6):
            c = DovecotConnection(self.sock)
            c.handshake()
            c.send("".join(
                f"AUTH\t{j}\tPLAIN\tservice=smtp\trip=198.51.100.{i}\t"
                f"resp={b64(chr(0) + 'alice' + chr(0) + 'wrong' + str(j))}\n" for j in range(1, 11)))
            conns.append(c)
        time.sleep(0.3)  # let the bad requests reach their delay timers
        # alice from her own (trusted) address: the brute-force policy would
        # rightly slow a login for a name being guessed from elsewhere; this
        # test is about workers, not about the policy.
        t0 = time.monotonic()
        good.send(f"AUTH\t1\tPLAIN\tservice=smtp\trip=127.0.0.1\t"
                  f"resp={b64(chr(0) + 'alice' + chr(0) + 's3cret')}\n")
        self.assertEqual(good.line(), "OK\t1\tuser=alice")
        # The 60 wrong hashes may still be queued before it (60 × base on two
        # workers), but no failure delay may be: that would be ≥ 4 s.
        self.assertLess(time.monotonic() - t0, 31 * base + delay / 2)
        good.close()
        for c in conns:
            replies = [c.line() for _ in range(10)]
            self.assertTrue(all(r.startswith("FAIL\t") for r in replies), replies)
            c.close()

    def test_abandoned_requests_expire_and_do_not_pile_up(self):
        """Postfix never sends CANCEL: a client that gives up leaves its
        request pending.  It expires after request_timeout; a late CONT gets
        Dovecot's "timed out" answer, and hundreds of abandoned requests on
        one long-lived connection never close it."""
        self.start()
        cfg = open(self.daemons[0].config_path).read().replace(
            'temp_failure = "disconnect"', 'temp_failure = "disconnect"\nrequest_timeout = "1s"')
        self.daemons[0].stop()
        self.daemons.clear()
        self.daemon(cfg, socket_path=self.sock)
        conn = DovecotConnection(self.sock)
        conn.handshake()
        conn.send("AUTH\t1\tLOGIN\tservice=smtp\n")
        self.assertEqual(conn.line(), "CONT\t1\tVXNlcm5hbWU6")
        time.sleep(1.5)
        conn.send("CONT\t1\tYWxpY2U=\n")
        self.assertEqual(conn.line(), "FAIL\t1\treason=Authentication request timed out")
        # 300 abandoned exchanges (more than the 256 in flight a connection
        # may hold), in batches that expire in between.
        for batch in range(3):
            conn.send("".join(f"AUTH\t{1000 + batch * 100 + i}\tPLAIN\tservice=smtp\n"
                              for i in range(100)))
            for _ in range(100):
                self.assertTrue(conn.line().startswith("CONT\t"))
            time.sleep(1.3)
        conn.send(f"AUTH\t2\tPLAIN\tservice=smtp\tresp={b64(chr(0) + 'alice' + chr(0) + 's3cret')}\n")
        self.assertEqual(conn.line(), "OK\t2\tuser=alice")

    # --- temporary failures --------------------------------------------------

    def test_temporary_failure_disconnects_by_default(self):
        d = self.start()
        conn = DovecotConnection(self.sock)
        conn.handshake()
        os.rename(self.passwd, self.passwd + ".away")
        conn.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={b64(chr(0) + 'alice' + chr(0) + 's3cret')}\n")
        self.assertIsNone(conn.line(), "a temporary failure closes the connection without a FAIL")
        r = self.dovecot_test("-u", "alice", "-p", "s3cret")
        self.assertEqual(r.returncode, 3)
        self.assertIn("result=tempfail", d.log())
        os.rename(self.passwd + ".away", self.passwd)
        self.assert_login("alice", "s3cret")

    def test_temporary_failure_as_fail_with_code(self):
        self.start(temp="fail", mechanisms=("PLAIN", "SCRAM-SHA-256"))
        os.rename(self.passwd, self.passwd + ".away")
        for mech in ("PLAIN", "SCRAM-SHA-256"):
            conn = DovecotConnection(self.sock)
            conn.handshake()
            if mech == "PLAIN":
                conn.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={b64(chr(0) + 'alice' + chr(0) + 's3cret')}\n")
            else:
                conn.send(f"AUTH\t1\tSCRAM-SHA-256\tservice=smtp\tresp={b64('n,,n=alice,r=abcdef')}\n")
            self.assertEqual(conn.line(), "FAIL\t1\tuser=alice\tcode=temp_fail\ttemp")
            conn.close()
        r = self.dovecot_test("-u", "alice", "-p", "s3cret")
        self.assertEqual(r.returncode, 3)
        self.assertIn("temp_fail", r.stderr)

    def test_bench_over_persistent_connections(self):
        users = self.write("bench-users", "alice:s3cret\nplain:plain-pw\n")
        self.start()
        import json
        r = self.mailauth_test("--dovecot", "-f", self.sock, "--bench", "--users", users,
                               "--count", "200", "--concurrency", "8", "--persistent", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual(report["ok"], 200, report)
        self.assertEqual(report["no"] + report["tempfail"] + report["errors"], 0, report)


if __name__ == "__main__":
    unittest.main()
