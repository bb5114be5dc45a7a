"""The fail2ban filter conf/fail2ban/filter.d/mailauth.conf against mailauthd's
real log: one daemon with a mux and a Dovecot socket produces successes,
failures, temporary failures and hostile user names; fail2ban's own
fail2ban-regex must then find exactly the client address of every failure,
nothing else, and never an address that a client smuggled into a value.

The log lines are also checked against the documented format with a parser
written here (independent of the filter's regex), and the jail example is
checked with fail2ban-client -t."""
import base64
import collections
import ipaddress
import os
import re
import shutil
import subprocess
import unittest

from harness import (MAILAUTHD, DaemonTestCase, DovecotConnection, mkpasswd, mux_exchange,
                     mux_frame, mux_reply_text, which)

SOURCE = os.environ.get("MAILAUTH_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
FILTER = os.path.join(SOURCE, "conf", "fail2ban", "filter.d", "mailauth.conf")
JAIL = os.path.join(SOURCE, "conf", "fail2ban", "jail.d", "mailauth.conf")
FAIL2BAN_ETC = "/etc/fail2ban"

# Addresses a client smuggles into values.  None of them may ever be reported.
INJECTED = [f"203.0.113.{i}" for i in range(60, 100)] + ["2001:db8:bad::66"]

HOSTILE_USERS = [
    "bob rip=203.0.113.66",
    "rip=203.0.113.67",
    'x"y rip=203.0.113.68',
    'q" rip=203.0.113.69 "',
    "back\\slash\\\" rip=203.0.113.70 backend=pwdfile",
    "tab\there rip=203.0.113.71",
    "new\nline rip=203.0.113.72",
    "jürgen rip=203.0.113.73",
    "\u202e rip=203.0.113.74 \u00a0",
    "a rip=2001:db8:bad::66 b",
    " rip=203.0.113.75 realm= rip=203.0.113.76 backend=",
    "\\",
    '"',
    "=",
    "A" * 300 + " rip=203.0.113.77",           # cut at 256 bytes
    " rip=203.0.113.78 " + "B" * 300,
    "C" * 255 + '" rip=203.0.113.79',         # the cut falls just after an escape
    "D" * 255 + "\\",
    "v" * 300,                                # cut, but needs no quotes
]

AUTH_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) mailauthd\[(\d+)\]: (\w+): (auth: result=.*)$")
KEY = re.compile(r"([a-z_]+)=")
LINES_SUMMARY = re.compile(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", re.M)
FAILREGEX_SUMMARY = re.compile(r"^\|\s+1\) \[(\d+)\] \^auth: result=fail", re.M)


def b64(data):
    return base64.b64encode(data).decode()


def as_bytes(value):
    return value.encode() if isinstance(value, str) else value


def parse_kv(text):
    """Split 'auth: k=v k="v" ...' into [(key, decoded value as bytes)], following
    log::kv(): a value is quoted when it holds ' ', '=', '"', '\\', a control
    or a non-ASCII byte; inside quotes '"' and '\\' are escaped with '\\' and
    other unprintables are \\xNN.  Raises ValueError on anything else."""
    if not text.startswith("auth:"):
        raise ValueError("no 'auth:'")
    i = len("auth:")
    fields = []
    while i < len(text):
        if text[i] != " ":
            raise ValueError(f"no space before a field at {i}: {text[i:]!r}")
        m = KEY.match(text, i + 1)
        if not m:
            raise ValueError(f"no key at {i + 1}: {text[i + 1:]!r}")
        key, i = m.group(1), m.end()
        if i < len(text) and text[i] == '"':
            value = bytearray()
            i += 1
            while True:
                if i >= len(text):
                    raise ValueError(f"unterminated quoted value for {key}")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    n = text[i + 1]
                    if n in '"\\':
                        value.append(ord(n))
                        i += 2
                    elif n == "x" and re.fullmatch(r"[0-9a-f]{2}", text[i + 2:i + 4]):
                        value.append(int(text[i + 2:i + 4], 16))
                        i += 4
                    else:
                        raise ValueError(f"bad escape in {key}: {text[i:i + 4]!r}")
                elif 0x20 <= ord(c) < 0x7F:
                    value.append(ord(c))
                    i += 1
                else:
                    raise ValueError(f"raw byte {c!r} inside quotes")
            if i < len(text) and text[i] != " ":
                raise ValueError(f"junk after the quoted value of {key}")
            value = bytes(value)
        else:
            end = text.find(" ", i)
            end = len(text) if end < 0 else end
            raw = text[i:end]
            if any(c in raw for c in '"\\=') or not all(0x20 < ord(c) < 0x7F for c in raw):
                raise ValueError(f"unquoted value of {key} needs quoting: {raw!r}")
            value, i = raw.encode(), end
        fields.append((key, value))
    return fields


def ban_address(rip):
    """The address fail2ban must report for a rip= value, or None."""
    if not rip:
        return None
    try:
        addr = ipaddress.ip_address(rip.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # fail2ban's <ADDR> reads ::ffff:a.b.c.d as a.b.c.d
    return addr


def logged(value):
    """What kv() keeps of a value: 256 bytes, then '...'."""
    value = as_bytes(value)
    return value if len(value) <= 256 else value[:256] + b"..."


class Fail2banFilterTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.mux = self.path("run/mux")
        self.auth = self.path("private/auth")
        users = [
            "alice:" + mkpasswd("alice-pw", "sha512crypt"),
            "carol:!" + mkpasswd("carol-pw", "sha512crypt"),      # disabled
            "plain:{PLAIN}plain-pw",                              # for CRAM-MD5 and SCRAM
            # Known users with hostile names: their successes must not match either.
            "evil rip=203.0.113.90 x:{PLAIN}evil-pw",
            'q"uote rip=203.0.113.91:{PLAIN}quote-pw',
            "jürgen rip=203.0.113.92:{PLAIN}jürgen-pw",
            "",
        ]
        with open(self.path("passwd"), "wb") as f:
            f.write("\n".join(users).encode())
        self.passwd = self.path("passwd")
        self.expected = []  # (result, rip bytes or None, user bytes), in log order

    def config(self):
        run_as = ""
        if os.geteuid() == 0:
            # mailauthd does not stay root without a reason: run it as nobody,
            # which must be able to read the password file.
            os.chmod(self.tmp, 0o755)
            run_as = 'user = "nobody"\ngroup = "nogroup"'
        text = f"""
[daemon]
workers = 2
log = "stderr"
{run_as}

[saslauthd]
socket = "{self.mux}"
mode = "0666"

[dovecot]
socket = "{self.auth}"
mode = "0666"
mechanisms = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"]
failure_delay = "0s"

[[backend]]
type = "pwdfile"
path = "{self.passwd}"
"""
        # The brute-force policy (if this mailauthd has one) stays on, with short
        # penalties: the same names fail many times here, and only the log matters.
        policy = """
[policy]
penalty = "1ms"
max_penalty = "20ms"
max_user_penalty = "20ms"
"""
        probe = self.write("probe.conf", text + policy)
        r = subprocess.run([MAILAUTHD, "--check-config", "--config", probe],
                           capture_output=True, text=True, timeout=30)
        return text + policy if r.returncode == 0 else text

    # --- producing attempts ---------------------------------------------------

    def mux_try(self, user, password, result, addr=None, service="smtp", realm=""):
        fields = [user, password, service, realm] + ([addr] if addr is not None else [])
        raw = mux_exchange(self.mux, mux_frame(*fields))
        reply = mux_reply_text(raw)
        want = {"ok": "OK", "fail": "NO", "tempfail": None}[result]
        self.assertEqual((reply or "")[:2] or None, want, (user, password, addr, reply))
        rip = None if addr is None else as_bytes(addr).rsplit(b";", 1)[0]
        self.expected.append((result, rip, logged(user)))

    def mux_oversized(self, fields, user, rip):
        raw = mux_exchange(self.mux, mux_frame(*fields))
        self.assertEqual(raw, b"\x00\x03NO ", [f[:20] for f in fields])
        self.expected.append(("fail", as_bytes(rip) if rip else None, as_bytes(user)))

    def dovecot_tool(self, mech, user, password, rip, result):
        args = ["--dovecot", "-f", self.auth, "--mech", mech, "-u", user, "-p", password]
        if rip is not None:
            args += ["--rip", rip]
        r = self.mailauth_test(*args)
        self.assertEqual(r.returncode, {"ok": 0, "fail": 1, "tempfail": 3}[result],
                         (mech, user, rip, r.stdout, r.stderr))
        self.expected.append((result, as_bytes(rip or ""), logged(user)))

    def dovecot_raw(self, user, password, rip, result, service="smtp"):
        conn = DovecotConnection(self.auth)
        try:
            conn.handshake("VERSION\t1\t2\nCPID\t4242\n")
            params = f"AUTH\t1\tPLAIN\tservice={service}"
            if rip is not None:
                params += f"\trip={rip}"
            resp = b64(b"\0" + as_bytes(user) + b"\0" + as_bytes(password))
            conn.send(f"{params}\tresp={resp}\n")
            reply = conn.line()
        finally:
            conn.close()
        want = {"ok": "OK", "fail": "FAIL", "tempfail": None}[result]
        self.assertEqual(reply.split("\t")[0] if reply else None, want, (user, rip, reply))
        self.expected.append((result, as_bytes(rip or ""), logged(user)))

    def produce(self):
        # Successes, over both protocols, IPv4 and IPv6, several mechanisms.
        self.mux_try("alice", "alice-pw", "ok", "192.0.2.5;1111")
        self.mux_try("alice", "alice-pw", "ok", "2001:db8::5;1112")
        self.mux_try("alice", "alice-pw", "ok")                       # no address field
        self.dovecot_tool("PLAIN", "alice", "alice-pw", "192.0.2.5", "ok")
        self.dovecot_tool("LOGIN", "alice", "alice-pw", "2001:db8::5", "ok")
        self.dovecot_tool("CRAM-MD5", "plain", "plain-pw", "192.0.2.6", "ok")
        self.dovecot_tool("SCRAM-SHA-256", "plain", "plain-pw", "2001:db8::6", "ok")
        self.dovecot_tool("PLAIN", "alice", "alice-pw", None, "ok")
        # Hostile names that exist: successes never match.
        self.mux_try("evil rip=203.0.113.90 x", "evil-pw", "ok", "192.0.2.7;1")
        self.dovecot_raw('q"uote rip=203.0.113.91', "quote-pw", "192.0.2.7", "ok")
        self.dovecot_raw("jürgen rip=203.0.113.92", "jürgen-pw", "2001:db8::7", "ok")

        # Failures: wrong password, unknown user, disabled account.
        self.mux_try("alice", "wrong", "fail", "192.0.2.8;1234")
        self.mux_try("alice", "wrong", "fail", "2001:db8::8;1234")
        self.mux_try("nobody", "x", "fail", "192.0.2.9;1")
        self.mux_try("carol", "carol-pw", "fail", "192.0.2.10;1")
        self.mux_try("alice", "wrong", "fail")                         # no address: no ban
        self.mux_try("alice", "wrong", "fail", "")                     # empty address
        self.mux_try("alice", "", "fail", "192.0.2.11;1")              # refused before auth
        self.mux_try("", "x", "fail", "192.0.2.11;2")                  # refused before auth
        self.dovecot_tool("PLAIN", "alice", "wrong", "192.0.2.12", "fail")
        self.dovecot_tool("LOGIN", "alice", "wrong", "2001:db8::12", "fail")
        self.dovecot_tool("CRAM-MD5", "plain", "wrong", "192.0.2.13", "fail")
        self.dovecot_tool("SCRAM-SHA-256", "plain", "wrong", "2001:db8::13", "fail")
        self.dovecot_tool("PLAIN", "nobody", "x", "192.0.2.14", "fail")
        self.dovecot_tool("LOGIN", "nobody", "x", "2001:db8::14", "fail")
        self.dovecot_tool("SCRAM-SHA-256", "nobody", "x", "192.0.2.15", "fail")
        self.dovecot_tool("PLAIN", "carol", "carol-pw", "192.0.2.16", "fail")
        self.dovecot_tool("LOGIN", "carol", "carol-pw", "2001:db8::16", "fail")
        self.dovecot_tool("PLAIN", "alice", "wrong", None, "fail")    # no rip: no ban
        self.dovecot_raw("alice", "wrong", "::ffff:192.0.2.17", "fail")  # v4-mapped
        self.dovecot_raw("alice", "wrong", "2001:DB8:0:0:0:0:0:18", "fail")
        # Odd rip values (the MTA's business, but they must not ban anything).
        self.mux_try("alice", "wrong", "fail", "203.0.113.80 rip=203.0.113.81;1")
        self.mux_try("alice", "wrong", "fail", "203.0.113.82x;1")
        self.mux_try("alice", "wrong", "fail", "203.0.113.83;1;2")      # rip=203.0.113.83;1
        self.dovecot_raw("alice", "wrong", "203.0.113.84 backend=x", "fail")
        self.dovecot_raw("alice", "wrong", 'x" rip=203.0.113.85', "fail")

        # Hostile user names, with and without a real address, over both protocols,
        # and hostile service and realm values.
        for n, user in enumerate(HOSTILE_USERS):
            self.mux_try(user, "pw", "fail", f"198.51.100.{n};{1000 + n}")
            self.mux_try(user, "pw", "fail")
            self.dovecot_raw(user, "pw", f"2001:db8:1::{n:x}", "fail")
            self.dovecot_raw(user, "pw", None, "fail")
        self.mux_try(b"\xff\xfe rip=203.0.113.86", "pw", "fail", "198.51.100.100;1")
        self.mux_try(b"\x01\x7f rip=203.0.113.87", "pw", "fail")
        self.mux_try("alice", "wrong", "fail", "198.51.100.101;1", service="smtp rip=203.0.113.88",
                     realm='x" rip=203.0.113.89')
        self.mux_try("alice", "wrong", "fail", None, service="rip=203.0.113.93",
                     realm="rip=203.0.113.94 backend=")
        self.dovecot_raw("alice", "wrong", "198.51.100.102", "fail", service="imap rip=203.0.113.95")
        self.dovecot_raw("alice", "wrong", None, "fail", service="rip=203.0.113.96")

        # A field over max_field (1024): saslauthd's bare "NO ", and an attempt
        # line with the fields that could be read, so the address counts.
        self.mux_oversized(["alice", "p" * 5000, "smtp", "", "192.0.2.30;1"], "alice", "192.0.2.30")
        self.mux_oversized(["a" * 2000, "pw", "smtp", "", "2001:db8::30;1"], "", "2001:db8::30")
        self.mux_oversized(["alice", "pw", "smtp", "r" * 1025, "192.0.2.31;1"], "alice", "192.0.2.31")
        self.mux_oversized(["alice", "pw", "s" * 3000, ""], "alice", None)   # no address: no ban
        self.mux_oversized(["alice", "pw", "smtp", "", "9" * 1100], "alice", None)

        # Temporary failures: the password file is gone for a while.
        os.rename(self.passwd, self.passwd + ".away")
        self.mux_try("alice", "alice-pw", "tempfail", "192.0.2.20;1")
        self.mux_try("alice", "wrong", "tempfail", "2001:db8::20;1")
        self.mux_try("nobody", "x", "tempfail", "192.0.2.21;1")
        self.mux_try("bob rip=203.0.113.97", "x", "tempfail", "192.0.2.22;1")
        self.dovecot_tool("PLAIN", "alice", "wrong", "192.0.2.23", "tempfail")
        self.dovecot_tool("LOGIN", "alice", "alice-pw", "2001:db8::23", "tempfail")
        self.dovecot_tool("SCRAM-SHA-256", "plain", "plain-pw", "192.0.2.24", "tempfail")
        self.dovecot_tool("CRAM-MD5", "plain", "wrong", "2001:db8::24", "tempfail")
        self.dovecot_raw("bob rip=203.0.113.98", "x", "192.0.2.25", "tempfail")
        os.rename(self.passwd + ".away", self.passwd)
        # And back: the same requests are answered again.
        self.mux_try("alice", "alice-pw", "ok", "192.0.2.26;1")
        self.mux_try("alice", "wrong", "fail", "192.0.2.27;1")
        self.dovecot_tool("LOGIN", "alice", "wrong", "2001:db8::27", "fail")

    # --- checking ----------------------------------------------------------------

    def auth_lines(self, log):
        """[(full line, level, message, fields dict, keys)] for every attempt line."""
        out = []
        for line in log.splitlines():
            if " auth: result=" not in line:
                continue
            m = AUTH_LINE.match(line)
            self.assertIsNotNone(m, f"attempt line not in the documented form: {line!r}")
            try:
                fields = parse_kv(m.group(4))
            except ValueError as e:
                self.fail(f"{e}: {line!r}")
            keys = [k for k, _ in fields]
            out.append((line, m.group(3), m.group(4), dict(fields), keys))
        return out

    def fail2ban_regex(self, log_path, filter_arg, *opts):
        r = subprocess.run([which("fail2ban-regex"), *opts, log_path, filter_arg],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def check_filter(self, log_path, filter_arg, expected_hits, total_lines):
        """fail2ban-regex on log_path must report exactly expected_hits:
        a Counter of (matched line, address)."""
        # 1. The human summary, with every matched line.
        out = self.fail2ban_regex(log_path, filter_arg, "--print-all-matched")
        m = LINES_SUMMARY.search(out)
        self.assertIsNotNone(m, out)
        lines, ignored, matched, missed = map(int, m.groups())
        want = sum(expected_hits.values())
        self.assertEqual((lines, ignored, matched, missed),
                         (total_lines, 0, want, total_lines - want), out[-3000:])
        m = FAILREGEX_SUMMARY.search(out)
        self.assertIsNotNone(m, out)
        self.assertEqual(int(m.group(1)), want)
        section = out.split("|- Matched line(s):", 1)[1].split("\n`-", 1)[0] if want else ""
        listed = collections.Counter(l[3:] for l in section.splitlines() if l.startswith("|  "))
        self.assertEqual(listed, collections.Counter(
            {line: n for (line, _), n in expected_hits.items()}))
        # 2. The address fail2ban takes from each matched line.
        out = self.fail2ban_regex(log_path, filter_arg, "-o", "<ip>\t<msg>")
        got = collections.Counter()
        for row in out.splitlines():
            ip, _, line = row.partition("\t")
            got[(line, ipaddress.ip_address(ip))] += 1
        self.assertEqual(got, expected_hits)
        for (_, ip) in got:
            self.assertNotIn(ip, [ipaddress.ip_address(a) for a in INJECTED])
        return lines, matched, missed

    def test_filter_against_a_real_log(self):
        d = self.daemon(self.config(), socket_path=self.auth)
        d.wait_log("listening")
        self.assertTrue(os.path.exists(self.mux))
        self.produce()
        d.stop()  # flushes and closes the log
        log = d.log()

        # The log itself: one line per attempt, in the documented form, in order.
        attempts = self.auth_lines(log)
        self.assertEqual(len(attempts), len(self.expected),
                         "\n".join(a[0] for a in attempts))
        full_keys = ["result", "proto", "user", "service", "realm", "rip", "backend", "reason", "ms"]
        for (line, level, _, f, keys), (result, rip, user) in zip(attempts, self.expected):
            self.assertEqual(f["result"].decode(), result, line)
            self.assertEqual(level, "warning" if result == "tempfail" else "info", line)
            self.assertEqual(f["user"], user, line)
            core = [k for k in keys if k != "cached"]  # cached=yes: answered from a cache
            if f["proto"] == b"dovecot":
                self.assertEqual(core, full_keys[:2] + ["mech"] + full_keys[2:], line)
            else:
                # Requests refused before authentication (empty login or
                # password) have their attempt line, with rip=, too.
                self.assertEqual(core, full_keys, line)
            self.assertEqual(f["rip"], rip or b"", line)

        # What fail2ban must find: each result=fail with an address, with that address.
        bans = [ban_address(f.get("rip", b"")) if f["result"] == b"fail" else None
                 for _, _, _, f, _ in attempts]
        hits = collections.Counter((a[0], ip) for a, ip in zip(attempts, bans) if ip is not None)
        counts = collections.Counter(f["result"].decode() for _, _, _, f, _ in attempts)
        total = len([l for l in log.splitlines() if l.strip() and not l.startswith("#")])

        # fail2ban looks for common.conf next to the filter: give it an
        # installed-like tree (filter.d/common.conf from the system, ours).
        etc = self.path("fail2ban")
        os.makedirs(os.path.join(etc, "filter.d"))
        shutil.copy(os.path.join(FAIL2BAN_ETC, "filter.d", "common.conf"),
                    os.path.join(etc, "filter.d"))
        filt = shutil.copy(FILTER, os.path.join(etc, "filter.d", "mailauth.conf"))

        lines, matched, missed = self.check_filter(d.log_path, filt, hits, total)
        print(f"\n  log: {total} lines, {len(attempts)} attempts "
              f"(ok {counts['ok']}, fail {counts['fail']}, tempfail {counts['tempfail']}); "
              f"fail with an address: {sum(hits.values())} from {len(set(ip for _, ip in hits))} "
              f"addresses\n  fail2ban-regex: {lines} lines, {matched} matched, {missed} missed")

        # The same attempts as other log sources write them.
        variants = {
            # log = "syslog" -> rsyslog (Debian 12: RFC 3339 stamps) -> /var/log/auth.log
            "syslog-rfc3339": ("2026-11-22T00:24:14.123456+01:00 mx mailauthd[7226]: {msg}", ""),
            "syslog-traditional": ("Nov 22 00:24:14 mx mailauthd[7226]: {msg}", ""),
            # backend = systemd: fail2ban formats journal entries like this
            "journal": ("mx mailauthd[7226]: {msg}", "[logtype=journal]"),
            # log = "stderr" captured by systemd: journal, or forwarded to /var/log/syslog
            "journal-stderr": ("mx mailauthd[7226]: {stamp} mailauthd[7226]: {level}: {msg}",
                               "[logtype=journal]"),
            "syslog-stderr": ("2026-11-22T00:24:14.123456+01:00 mx mailauthd[7226]: "
                              "{stamp} mailauthd[7226]: {level}: {msg}", ""),
        }
        for name, (fmt, opts) in variants.items():
            with self.subTest(source=name):
                path = self.path(f"{name}.log")
                want = collections.Counter()
                with open(path, "w") as f:
                    for (line, level, msg, _, _), ip in zip(attempts, bans):
                        stamp = AUTH_LINE.match(line).group(1)
                        new = fmt.format(msg=msg, level=level, stamp=stamp)
                        f.write(new + "\n")
                        if ip is not None:
                            want[(new, ip)] += 1
                self.check_filter(path, filt + opts, want, len(attempts))

    def test_jail_example(self):
        """The example jail parses, is off by default, and with enabled = true
        fail2ban-client -t accepts it with either log source."""
        with open(JAIL) as f:
            jail = f.read()
        self.assertRegex(jail, r"(?m)^enabled\s*=\s*false\s*$")
        self.assertRegex(jail, r"(?m)^port\s*=\s*smtp,submission,submissions,imap,imaps,pop3,pop3s\s*$")
        with open(FILTER) as f:
            self.assertRegex(f.read(), r"(?m)^journalmatch\s*=\s*_SYSTEMD_UNIT=mailauthd\.service\s*$")
        logfile = self.write("auth.log", "")
        variants = {
            "systemd": jail,
            "file": re.sub(r"(?m)^backend\s*=\s*systemd\s*$", "backend = auto\nlogpath = " + logfile,
                           jail),
        }
        for name, text in variants.items():
            with self.subTest(backend=name):
                etc = self.path(f"etc-{name}")
                shutil.copytree(FAIL2BAN_ETC, etc, symlinks=True)
                # Only the stock jail.conf and ours: no local jails or overrides.
                for p in os.listdir(os.path.join(etc, "jail.d")):
                    os.unlink(os.path.join(etc, "jail.d", p))
                if os.path.exists(os.path.join(etc, "jail.local")):
                    os.unlink(os.path.join(etc, "jail.local"))
                shutil.copy(FILTER, os.path.join(etc, "filter.d", "mailauth.conf"))
                with open(os.path.join(etc, "jail.d", "mailauth.conf"), "w") as f:
                    f.write(re.sub(r"(?m)^enabled\s*=\s*false", "enabled = true", text))
                client = which("fail2ban-client")
                r = subprocess.run([client, "-c", etc, "-t"], capture_output=True, text=True,
                                   timeout=60)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                r = subprocess.run([client, "-c", etc, "-d"], capture_output=True, text=True,
                                   timeout=60)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("['add', 'mailauth', '%s']" % ("systemd" if name == "systemd" else "auto"),
                              r.stdout)
                self.assertIn("--dports smtp,submission,submissions,imap,imaps,pop3,pop3s", r.stdout)
                if name == "systemd":
                    self.assertIn("['set', 'mailauth', 'addjournalmatch', "
                                  "'_SYSTEMD_UNIT=mailauthd.service']", r.stdout)
                else:
                    self.assertIn(f"['set', 'mailauth', 'addlogpath', '{logfile}'", r.stdout)


if __name__ == "__main__":
    unittest.main()
