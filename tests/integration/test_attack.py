"""Attack resistance (issue 11), against the real daemon on its sockets:
what a hostile client of the Dovecot or mux socket must not be able to do."""
import base64
import math
import os
import random
import socket
import statistics
import subprocess
import time
import unittest

from harness import (DaemonTestCase, DovecotConnection, mkpasswd, mux_exchange, mux_frame, mux_reply_text,
                     which)


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


class DovecotAttackTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.sock = self.path("auth")
        self.passwd = self.write("passwd", "alice:" + mkpasswd("s3cret", "sha512crypt") + "\n")

    def start(self, delay="0s"):
        return self.daemon(f"""
[daemon]
workers = 2
log = "stderr"
log_level = "debug"

[dovecot]
socket = "{self.sock}"
mode = "0666"
failure_delay = "{delay}"

[policy]
enabled = false

[[backend]]
type = "pwdfile"
path = "{self.passwd}"
""", socket_path=self.sock)

    def test_a_bare_line_of_credentials_never_reaches_the_log(self):
        # A client that sends its base64 PLAIN data as a line of its own (or as
        # the mechanism name) must not get it logged: it decodes to a password.
        d = self.start()
        secret = b64("\0alice\0Tr0ub4dor&3-horse")
        conn = DovecotConnection(self.sock)
        conn.handshake()
        conn.send(secret + "\n")
        self.assertIsNone(conn.line(), "a protocol violation closes the connection")
        conn.close()
        conn = DovecotConnection(self.sock)
        conn.handshake()
        conn.send(f"AUTH\t1\t{secret}\tservice=smtp\n")
        self.assertTrue(conn.line().startswith("FAIL\t1"))
        conn.close()
        time.sleep(0.2)
        log = d.log()
        self.assertIn("protocol violation", log)
        for leak in (secret, secret[:20], secret[:12], secret.upper()[:12], "Tr0ub4dor"):
            self.assertNotIn(leak, log, "client bytes that may hold a password were logged")

    def test_a_cont_during_the_failure_delay_does_not_cut_it_short(self):
        d = self.start(delay="1500ms")
        conn = DovecotConnection(self.sock)
        conn.handshake()
        t0 = time.monotonic()
        conn.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={b64(chr(0) + 'alice' + chr(0) + 'wrong')}\n")
        # Wait until the check is done and the FAIL is being held back, then
        # poke the request.
        d.wait_log("result=fail", timeout=10)
        conn.send("CONT\t1\tAAAA\n")
        line = conn.line()
        elapsed = time.monotonic() - t0
        self.assertIsNotNone(line)
        self.assertTrue(line.startswith("FAIL\t1"), line)
        self.assertGreaterEqual(elapsed, 1.4, f"the failure delay was skipped: FAIL after {elapsed:.2f}s")
        # Exactly one answer for the request.
        conn.send(f"AUTH\t2\tPLAIN\tservice=smtp\tresp={b64(chr(0) + 'alice' + chr(0) + 's3cret')}\n")
        self.assertEqual(conn.line(), "OK\t2\tuser=alice")
        conn.close()


if __name__ == "__main__":
    unittest.main()


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DescriptorLimitTest(DaemonTestCase):
    """At the descriptor limit the daemon keeps serving the connections it
    has, does not spin on accept, does not flood the log, and closes Dovecot
    connections that stay idle."""

    def at_fd_limit(self):
        """prlimit to 64 descriptors.  In the sanitizer build, UBSan's vptr
        check is switched off for this daemon only: the sanitizer tests
        whether memory is readable by writing it to a pipe, which fails with
        EMFILE, and then reports every virtual call as "invalid vptr" (seen:
        shared_ptr_base.h:604 ... "memory cannot be printed"; the same run
        with 1024 descriptors reports nothing).  ASan stays on."""
        supp = self.write("ubsan.supp", "vptr_check:*\n")
        opts = os.environ.get("UBSAN_OPTIONS", "")
        return [which("env"), f"UBSAN_OPTIONS={opts}{':' if opts else ''}suppressions={supp}",
                which("prlimit"), "--nofile=64:64"]

    def test_at_the_fd_limit_it_neither_spins_nor_stops_serving(self):
        mux = self.path("mux")
        auth = self.path("auth")
        passwd = self.write("passwd", "alice:{PLAIN}s3cret\n")
        d = self.daemon(f"""
[daemon]
workers = 2
log = "stderr"
log_level = "debug"

[saslauthd]
socket = "{mux}"
mode = "0666"

[dovecot]
socket = "{auth}"
mode = "0666"
idle_timeout = "3s"

[policy]
enabled = false

[[backend]]
type = "pwdfile"
path = "{passwd}"
""", socket_path=auth, wrapper=self.at_fd_limit())
        # A mux client that connected before the limit was reached.
        early = socket.socket(socket.AF_UNIX)
        early.connect(mux)
        idle = []
        for _ in range(80):  # more than the descriptors left
            s = socket.socket(socket.AF_UNIX)
            s.connect(auth)  # the backlog takes what accept cannot
            idle.append(s)
        time.sleep(0.5)
        cpu0, t0 = cpu_seconds(d.proc.pid), time.monotonic()
        time.sleep(2)
        share = (cpu_seconds(d.proc.pid) - cpu0) / (time.monotonic() - t0)
        # The early client still gets its answer while the limit is hit.
        early.sendall(mux_frame("alice", "s3cret", "smtp", ""))
        early.settimeout(5)
        self.assertEqual(mux_reply_text(early.recv(100)), "OK")
        early.close()
        self.assertLess(share, 0.3, f"mailauthd used {share:.0%} of a CPU while idle at the fd limit")
        errors = d.log().count("Too many open files")
        self.assertLess(errors, 10, f"{errors} log lines about the descriptor limit")
        self.assertIn("refused", d.log())
        # Idle Dovecot connections are closed after idle_timeout, so the ones
        # waiting in the backlog get in and are served.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and d.log().count("idle for") < 20:
            time.sleep(0.2)
        self.assertGreaterEqual(d.log().count("idle for"), 20, "idle Dovecot connections were not closed")
        for s in idle:
            s.close()
        conn = DovecotConnection(auth)
        conn.handshake()
        conn.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={b64(chr(0) + 'alice' + chr(0) + 's3cret')}\n")
        self.assertEqual(conn.line(), "OK\t1\tuser=alice")
        conn.close()


def ks_2samp(a, b):
    """Two-sample Kolmogorov-Smirnov statistic and its asymptotic p-value."""
    a, b = sorted(a), sorted(b)
    n, m = len(a), len(b)
    i = j = 0
    d = 0.0
    while i < n and j < m:
        x = min(a[i], b[j])
        while i < n and a[i] <= x:
            i += 1
        while j < m and b[j] <= x:
            j += 1
        d = max(d, abs(i / n - j / m))
    ne = n * m / (n + m)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, max(0.0, min(1.0, p))


class TimingTest(DaemonTestCase):
    """Finding 2: every "no" — a repeated wrong password answered from the
    negative cache, an unknown user, a disabled user, a fresh wrong password —
    takes the same time, on both protocols.  Relative comparisons inside one
    run, samples interleaved, so a loaded machine slows all kinds alike."""

    SAMPLES = 200

    def test_no_answer_tells_an_account_or_a_repeated_password_by_its_time(self):
        mux = self.path("mux")
        auth = self.path("auth")
        # Slow enough (about 10 ms) that fixed overheads do not dominate.
        slow = subprocess.run([which("mkpasswd"), "-m", "sha512crypt", "-R", "30000", "--stdin"],
                              input=b"s3cret", capture_output=True, check=True).stdout.decode().strip()
        passwd = self.write("passwd", f"alice:{slow}\nbob:{slow}\ndave:!{slow}\n")
        self.daemon(f"""
[daemon]
workers = 2
log = "stderr"

[saslauthd]
socket = "{mux}"
mode = "0666"

[dovecot]
socket = "{auth}"
mode = "0666"
failure_delay = "0s"

[cache]
ttl = "10m"
negative_ttl = "10m"

[policy]
enabled = false

[[backend]]
type = "pwdfile"
path = "{passwd}"
""", socket_path=auth)
        conn = DovecotConnection(auth)
        conn.handshake()
        ids = iter(range(1, 100000))

        def dovecot(user, password):
            i = next(ids)
            t = time.perf_counter()
            conn.send(f"AUTH\t{i}\tPLAIN\tservice=smtp\tresp={b64(chr(0) + user + chr(0) + password)}\n")
            line = conn.line()
            elapsed = time.perf_counter() - t
            self.assertTrue(line.startswith(f"FAIL\t{i}"), line)
            return elapsed

        def muxed(user, password):
            t = time.perf_counter()
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(mux)
            s.sendall(mux_frame(user, password, "smtp", ""))
            reply = mux_reply_text(s.recv(100))
            elapsed = time.perf_counter() - t
            s.close()
            self.assertTrue(reply.startswith("NO"), reply)
            return elapsed

        for name, ask in (("dovecot", dovecot), ("mux", muxed)):
            # Passwords of one length: SHA-crypt's cost grows with it, and
            # the client chooses the password, not the account.
            kinds = {
                "fresh wrong password": lambda k: ("alice", f"wrong{k:05d}{name[0]}"),
                "repeated wrong password (negative cache)": lambda k: ("bob", f"wrong99999{name[0]}"),
                "unknown user": lambda k: (f"nobody-{name}-{k}", f"wrong{k:05d}{name[0]}"),
                "disabled user": lambda k: ("dave", f"wrong{k:05d}{name[0]}"),
            }
            for user, password in (kinds[k](-1) for k in kinds):  # warm up (fills the cache)
                ask(user, password)
            # Six comparisons on a shared machine: a failing protocol is
            # sampled once more, and only failing twice counts (a real
            # leak, such as the negative cache's D = 1.0, fails both).
            for attempt in (1, 2):
                failures = []
                times = {k: [] for k in kinds}
                order = list(kinds)
                shuffle = random.Random(7 + attempt)
                for k in range(self.SAMPLES):
                    shuffle.shuffle(order)  # no kind always follows another
                    for kind in order:
                        times[kind].append(ask(*kinds[kind](k + attempt * self.SAMPLES)))
                base = times["fresh wrong password"]
                base_median = statistics.median(base)
                for kind, sample in times.items():
                    if kind == "fresh wrong password":
                        continue
                    median = statistics.median(sample)
                    d, p = ks_2samp(base, sample)
                    detail = (f"{kind}: median {median * 1000:.2f} ms vs {base_median * 1000:.2f} ms "
                              f"for a fresh wrong password; KS D={d:.3f} p={p:.4f}")
                    print(f"\n{name} (sample {attempt}): {detail}")
                    # An effect size, not a p-value alone: with 200 answers
                    # a side a KS p-value flags differences of tens of
                    # microseconds that a 2-core VM makes by itself -- a
                    # padded "no" leaves an idle machine, a hashed one a
                    # busy one -- (seen in CI: D = 0.16-0.24, p < 0.01, at
                    # equal medians), which no client behind Postfix can
                    # see.  D >= 0.25 means a quarter of the answers could
                    # be told apart: the leaks this test exists for are
                    # far above it (the negative cache unpadded: D = 1.0; a
                    # constant 0.1 ms late padding: D = 0.35).  A median
                    # shift counts only with KS evidence behind it: when
                    # the machine's speed drifts the times are bimodal and
                    # medians of one distribution differ by 10-15 % (seen:
                    # 11.70 vs 10.05 ms at D = 0.09).
                    shifted = abs(median - base_median) / base_median >= 0.10
                    if d >= 0.25 or (shifted and p <= 0.05):
                        failures.append(detail)
                if not failures:
                    break
            self.assertEqual(failures, [], f"{name}: answer times tell kinds of \"no\" apart")
        conn.close()


class MuxBrakeTest(DaemonTestCase):
    """Finding 6: the mux socket (libsasl2 2.1.28 sends no client address)
    slows down guessing for a user name too."""

    def test_guessing_one_user_over_the_mux_is_slowed_without_an_address(self):
        mux = self.path("mux")
        passwd = self.write("passwd", "alice:{PLAIN}s3cret\n")
        self.daemon(f"""
[daemon]
workers = 2
log = "stderr"

[saslauthd]
socket = "{mux}"
mode = "0666"

[policy]
penalty = "400ms"
max_user_penalty = "1600ms"

[[backend]]
type = "pwdfile"
path = "{passwd}"
""", socket_path=mux)

        def ask(password):
            t = time.monotonic()
            reply = mux_reply_text(mux_exchange(mux, mux_frame("alice", password, "smtp", "")))
            return reply, time.monotonic() - t

        waits = [ask(f"guess-{i}")[1] for i in range(5)]
        # Failures 1..4 earn 400 ms, 800 ms, 1.6 s, 1.6 s before the next try.
        self.assertGreaterEqual(waits[3], 1.5, f"no brake on the mux without an address: {waits}")
        self.assertGreaterEqual(waits[4], 1.5, f"the penalty is capped at max_user_penalty: {waits}")
        reply, wait = ask("s3cret")
        self.assertEqual(reply, "OK")
        self.assertLess(wait, 3.0, "alice herself waits at most max_user_penalty")
        # Her success clears the counter: the next attempt is not held back
        # by the earlier guesses.
        reply, wait = ask("s3cret")
        self.assertEqual(reply, "OK")
        self.assertLess(wait, 1.0, f"a success did not clear the user's counter: {wait:.2f}s")
