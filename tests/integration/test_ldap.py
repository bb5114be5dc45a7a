"""The ldap backend end to end: mailauthd against a real, private OpenLDAP
slapd (tests/integration/slapd.py), asked over the saslauthd mux socket and
the Dovecot socket.

One slapd (with TLS: a CA made here) is bootstrapped per class and reused;
tests that stop it start it again.  The failover test bootstraps a second.
"""
import base64
import os
import shutil
import subprocess
import tempfile
import threading
import time

from harness import (DaemonTestCase, DovecotConnection, MAILAUTHD, mkpasswd, mux_exchange,
                     mux_frame, mux_reply_text)
import slapd
from slapd import SEARCH_DN, SEARCH_PW, SERVICE_DN, SERVICE_PW, SUFFIX, Slapd

OK_LINE = '0: OK "Success."'
NO_LINE = '0: NO "authentication failed"'
ENABLED = "(!(employeeType=disabled))"


class LdapTestBase(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="mailauth-slapd-")
        cls.tls = slapd.make_ca(os.path.join(cls.root, "ca"))
        cls.tree = slapd.tree()
        cls.ldap = Slapd(os.path.join(cls.root, "a"), tls=cls.tls).bootstrap(cls.tree.ldif()).start()

    @classmethod
    def tearDownClass(cls):
        cls.ldap.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        super().setUp()
        if not self.ldap.running:
            self.ldap.start()
        self.sock = self.path("run/mux")
        self.dsock = self.path("run/auth")
        self.secret = self.write("ldap.secret", f"{SERVICE_PW}\n", 0o600)
        # An older store after the directory: it knows carol (disabled in
        # LDAP) with her password, and zed, whom the directory does not know.
        self.passwd = self.write("passwd", "\n".join([
            "carol@example.com:" + mkpasswd("carol-pw"),
            "zed@example.com:" + mkpasswd("zed-pw"),
            "",
        ]))

    def tearDown(self):
        if self._problem_count() != self._problems_before:
            print("--- last lines of slapd's log ---")
            print("\n".join(self.ldap.log().splitlines()[-15:]))
        super().tearDown()

    # --- helpers ---------------------------------------------------------------

    def backend(self, keys, uris=None, service=True, timeout="2s"):
        uris = uris or [self.ldap.uri]
        svc = (f'bind_dn = "{SERVICE_DN}"\npassword_file = "{self.secret}"\n' if service else "")
        return f"""
[[backend]]
type = "ldap"
uris = [{", ".join(f'"{u}"' for u in uris)}]
{f'timeout = "{timeout}"' if timeout else ""}
{svc}{keys}
"""

    def pwdfile(self):
        return f'\n[[backend]]\ntype = "pwdfile"\npath = "{self.passwd}"\n'

    def config(self, backends, dovecot=None, mux_extra="", policy='enabled = false',
               cache='ttl = "0s"\nnegative_ttl = "0s"'):
        text = f"""
[daemon]
workers = 4
log = "stderr"

[cache]
{cache}

[policy]
{policy}

[saslauthd]
socket = "{self.sock}"
mode = "0666"
{mux_extra}
"""
        if dovecot:
            mechs = ", ".join(f'"{m}"' for m in dovecot)
            text += f"""
[dovecot]
socket = "{self.dsock}"
mode = "0666"
mechanisms = [{mechs}]
failure_delay = "0s"
"""
        return text + backends

    def start(self, backends, args=(), **kw):
        return self.daemon(self.config(backends, **kw), args=args, socket_path=self.sock)

    def login(self, user, password, *extra):
        return self.mailauth_test("-f", self.sock, "-u", user, "-p", password, *extra)

    def assert_ok(self, user, password, *extra):
        r = self.login(user, password, *extra)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE), f"{user}: {r.stderr}")

    def assert_no(self, user, password, *extra):
        r = self.login(user, password, *extra)
        self.assertEqual((r.returncode, r.stdout.strip()), (1, NO_LINE), f"{user}: {r.stderr}")

    def assert_tempfail(self, user, password, *extra):
        r = self.login(user, password, *extra)
        self.assertEqual(r.returncode, 3, f"{user}: {r.stdout} {r.stderr}")

    def wait_ok(self, user, password, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            r = self.login(user, password)
            if r.returncode == 0:
                return
            self.assertNotEqual(r.returncode, 1, "a wrong-password answer while recovering")
            if time.monotonic() > deadline:
                self.fail(f"no OK within {timeout}s: {r.returncode} {r.stderr}")
            time.sleep(0.1)

    def check_config(self, text, name="check.conf"):
        path = self.write(name, text)
        return subprocess.run([MAILAUTHD, "--check-config", "--config", path],
                              capture_output=True, text=True, timeout=60)

    def assert_no_secrets(self, log):
        for secret in [SERVICE_PW, SEARCH_PW, "{SSHA}", "$6$", "$y$", "$argon2"] + \
                list(self.tree.users.values()):
            self.assertNotIn(secret, log)


class LdapTest(LdapTestBase):
    # --- both modes --------------------------------------------------------------

    def test_bind_mode_the_chain_and_password_policy(self):
        d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'
                                    f'enabled_filter = "{ENABLED}"\nauth = "bind"\n')
                       + self.pwdfile(), args=["--debug"])
        for user, pw in self.tree.users.items():
            if user.split("@")[0] in ("carol", "lock", "old"):
                continue
            self.assert_ok(user, pw)
            self.assert_no(user, pw + "x")
        self.assert_ok("ALICE@Example.COM", "alice-pw")  # the directory ignores case
        # Disabled in the directory: refused, and never asked of the pwdfile
        # that still knows her.
        self.assert_no("carol@example.com", "carol-pw")
        # Unknown to the directory: the next backend decides.
        self.assert_ok("zed@example.com", "zed-pw")
        self.assert_no("nobody@example.com", "zed-pw")
        # An empty password is never an (anonymous) bind that succeeds.
        r = mux_exchange(self.sock, mux_frame("alice@example.com", "", "smtp", ""))
        self.assertTrue((mux_reply_text(r) or "").startswith("NO"), r)
        # Password policy: the server's reasons are logged.  Without slapd's
        # ppolicy module these cases would pass for nothing: fail instead.
        self.assertTrue(slapd.have_module("ppolicy"),
                        f"slapd's ppolicy module is missing from {slapd.MODULE_PATH} (slapd package)")
        self.assert_no("lock@example.org", "lock-pw")
        self.assert_no("old@example.org", "old-pw")
        log = d.log()
        self.assertIn('user=carol@example.com service=smtp realm= rip= backend=ldap '
                      'reason="account disabled (enabled_filter)"', log)
        self.assertIn("result=ok proto=mux user=zed@example.com service=smtp realm= rip= "
                      "backend=pwdfile", log)
        self.assertIn('reason="password policy: account locked"', log)
        self.assertIn('reason="password policy: password expired"', log)
        self.assertNotIn("result=tempfail", log)
        self.assert_no_secrets(log)

    def test_bind_mode_a_disabled_account_costs_a_bind_like_any_other(self):
        """A disabled account in bind mode must not answer faster than a wrong
        password (it would tell who is disabled, and flooding its name would
        fill the authenticator's samples of real check times with fast
        values, so unknown users would be answered fast too): the bind with
        the given password is made all the same, and its result ignored."""
        d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'
                                    f'enabled_filter = "{ENABLED}"\nauth = "bind"\n'),
                       args=["--debug"])

        def timed(user, pw):
            t0 = time.monotonic()
            reply = mux_reply_text(mux_exchange(self.sock, mux_frame(user, pw, "smtp", "")))
            elapsed = time.monotonic() - t0
            self.assertTrue((reply or "").startswith("NO"), (user, reply))
            return elapsed

        disabled, wrong = [], []
        for i in range(15):
            disabled.append(timed("carol@example.com", "carol-pw" if i % 2 else f"wrong-{i}"))
            wrong.append(timed("alice@example.com", f"wrong-{i}"))
        disabled.sort()
        wrong.sort()
        # Loose, for a noisy 2-core machine: the same path within a factor 3.
        self.assertGreaterEqual(disabled[7], wrong[7] / 3, (disabled, wrong))
        # Deterministic: the bind was made for the disabled account.
        log = d.log()
        self.assertEqual(log.count("ldap ldap: user carol@example.com is disabled (enabled_filter): "
                                   "bound with the password all the same, result ignored"), 15, log)
        self.assertEqual(log.count('user=carol@example.com service=smtp realm= rip= backend=ldap '
                                   'reason="account disabled (enabled_filter)"'), 15, log)

    def test_lookup_mode_schemes_cram_md5_and_scram(self):
        d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(&(objectClass=posixAccount)(mail=%u))"\n'
                                    f'enabled_filter = "{ENABLED}"\nauth = "lookup"\n')
                       + self.pwdfile(), dovecot=("PLAIN", "CRAM-MD5", "SCRAM-SHA-256"))
        for user in ("alice@example.com", "bob@example.com", "erin@example.com",
                     "grace@example.com", "dave@example.org"):
            self.assert_ok(user, self.tree.users[user])
            self.assert_no(user, "wrong")
        self.assertTrue(self.tree.argon2, "slapd's argon2 module is missing (slappasswd -o "
                        "module-load=argon2 failed): the {ARGON2} case cannot run")
        self.assert_ok("frank@example.com", "frank-pw")  # {ARGON2} by slapd's module
        self.assert_no("carol@example.com", "carol-pw")
        self.assert_ok("zed@example.com", "zed-pw")
        self.assert_no("nopw@example.org", "")
        # A clear-text value serves CRAM-MD5 and SCRAM; a hash cannot.
        for mech in ("CRAM-MD5", "SCRAM-SHA-256"):
            r = self.mailauth_test("--dovecot", "-f", self.dsock, "--mech", mech,
                                   "-u", "grace@example.com", "-p", "grace-pw")
            self.assertEqual(r.returncode, 0, f"{mech}: {r.stdout} {r.stderr}")
            r = self.mailauth_test("--dovecot", "-f", self.dsock, "--mech", mech,
                                   "-u", "alice@example.com", "-p", "alice-pw")
            self.assertEqual(r.returncode, 1, f"{mech}: {r.stdout} {r.stderr}")
        log = d.log()
        self.assertIn('user=carol@example.com service=smtp realm= rip= backend=ldap '
                      'reason="account disabled (enabled_filter)"', log)
        self.assertNotIn("result=tempfail", log)
        self.assert_no_secrets(log)

    def test_empty_password_and_entry_without_password_over_dovecot_plain(self):
        """PLAIN can carry an empty password: bind mode never binds with it
        (anonymous), lookup mode has nothing to check for an entry without
        userPassword.  Both are NO, with the reason in the log."""
        for auth, user, reason in (("bind", "alice@example.com", "wrong password"),
                                   ("lookup", "nopw@example.org", "no userPassword")):
            with self.subTest(auth=auth):
                d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'
                                            f'auth = "{auth}"\n'), dovecot=("PLAIN",))
                conn = DovecotConnection(self.dsock)
                conn.handshake()
                for i, pw in enumerate(("", "something"), 1):
                    resp = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()
                    conn.send(f"AUTH\t{i}\tPLAIN\tservice=smtp\tresp={resp}\n")
                    self.assertTrue(conn.line().startswith(f"FAIL\t{i}"), pw)
                conn.close()
                log = d.log()
                # The empty one is refused before any backend is asked.
                self.assertIn(f'user={user} service=smtp realm= rip= backend=- '
                              f'reason="empty password"', log)
                self.assertIn(f'user={user} service=smtp realm= rip= backend=ldap '
                              f'reason="{reason}"', log)
                self.assertNotIn("result=ok", log)
                d.stop()
                self.daemons.remove(d)

    def test_a_changed_password_with_the_cache_on(self):
        """cyrus-sasl #550: a kept connection went on accepting the old
        password.  Changed with ldapmodify while mailauthd runs with its cache
        on: in lookup mode the old password is refused at once (the cache
        entry is bound to the stored value); in bind mode (verify-only, as
        PAM) a cached success lives verify_only_ttl at most, never longer."""
        dn = f"uid=bob,ou=example.com,{SUFFIX}"
        set_pw = lambda pw: self.ldap.modify(f"dn: {dn}\nchangetype: modify\n"
                                             f"replace: userPassword\nuserPassword: {slapd.ssha(pw)}\n")
        self.addCleanup(set_pw, "bob pw 2")
        for auth in ("lookup", "bind"):
            with self.subTest(auth=auth):
                set_pw("bob pw 2")
                d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'
                                            f'auth = "{auth}"\n'),
                               cache='ttl = "600s"\nnegative_ttl = "600s"\nverify_only_ttl = "2s"')
                for _ in range(3):
                    self.assert_ok("bob@example.com", "bob pw 2")
                set_pw("bob new 3")
                if auth == "lookup":
                    self.assert_no("bob@example.com", "bob pw 2")
                else:
                    time.sleep(2.2)
                    self.assert_no("bob@example.com", "bob pw 2")
                self.assert_ok("bob@example.com", "bob new 3")
                self.assert_no("bob@example.com", "bob pw 2")
                d.stop()
                self.daemons.remove(d)

    def test_lookup_mode_without_read_access_is_a_config_problem(self):
        d = self.start(f"""
[[backend]]
type = "ldap"
uris = ["{self.ldap.uri}"]
bind_dn = "{SEARCH_DN}"
password = "{SEARCH_PW}"
base = "{SUFFIX}"
filter = "(mail=%u)"
auth = "lookup"
""" + self.pwdfile())
        self.assert_no("alice@example.com", "alice-pw")  # known, nothing to verify
        self.assertIn("config problem: ldap ldap: user alice@example.com", d.log())

    def test_fastbind_dn_template_and_realm(self):
        d = self.start(self.backend('dn_template = "uid=%n,ou=%d,' + SUFFIX + '"\n', service=False))
        self.assert_ok("alice@example.com", "alice-pw")
        self.assert_no("alice", "alice-pw", "-r", "example.com")  # %d is the name's, not the realm
        self.assertIn('user=alice service=smtp realm=example.com rip= backend=- reason="unknown user"', d.log())
        self.assert_ok("sam@example.org", "sam-org-pw")
        self.assert_no("sam@example.org", "sam-com-pw")
        self.assert_no("alice@example.org", "alice-pw")  # no such DN
        self.assert_no("alice@example.com", "wrong")
        self.assertNotIn("result=tempfail", d.log())

    # --- hostile names -----------------------------------------------------------

    def test_one_account_one_name_for_the_brute_force_policy(self):
        """slapd's caseIgnoreMatch (RFC 4518) finds alice under Unicode case
        and compatibility forms (U+FF41, U+1D41A), with control characters
        dropped and other spaces: normalize = "lower" must not let those
        spellings in under a per-user counter of their own.  A name with a
        byte outside printable ASCII is nobody's here; the ASCII case and
        space variants are alice, and share her counter."""
        policy = ('enabled = true\npenalty = "100ms"\nmax_penalty = "5s"\n'
                  'max_user_penalty = "3s"\nwindow = "15m"')
        d = self.start(self.backend(f'base = "ou=example.com,{SUFFIX}"\nfilter = "(uid=%u)"\n'),
                       args=["--debug"], dovecot=("PLAIN",), policy=policy)
        conn = DovecotConnection(self.dsock)
        conn.handshake()
        rid = [0]

        def auth(user, password, rip):
            rid[0] += 1
            resp = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
            conn.send(f"AUTH\t{rid[0]}\tPLAIN\tservice=smtp\trip={rip}\tresp={resp}\n")
            return conn.line()

        for i in range(3):  # alice's counter: 3 failures, from 3 addresses
            self.assertTrue(auth("alice", f"wrong-{i}", f"198.51.100.{i + 1}").startswith("FAIL"))
        # Spellings slapd takes for alice, outside printable ASCII: never OK,
        # and not a counter of their own that starts clean.
        for n, name in enumerate(["\uff41lice", "\U0001d41alice", "alice\u00a0", "\u017fam",
                                  "ali\u200bce", "al\x01ice"]):
            reply = auth(name, "alice-pw", f"198.51.100.{20 + n}")
            self.assertTrue(reply.startswith("FAIL"), (name, reply))
        # ASCII case and space variants are alice: her counter (3 failures:
        # 100ms × 2^2), her name in the answer.
        for n, name in enumerate(["ALICE", "  Alice ", "alice\t", "\talice  "]):
            rip = f"198.51.100.{40 + n}"
            reply = auth(name, "wrong", rip)
            self.assertEqual(reply, f"FAIL\t{rid[0]}\tuser=alice", repr(name))
            self.assertIn(f"auth: penalty rip={rip} ", d.log(), repr(name))
        conn.close()
        log = d.log()
        self.assertNotIn("result=ok", log)
        for n in range(6):
            self.assertIn(f'rip=198.51.100.{20 + n} backend=- reason="unknown user"', log)

    def test_injection_names_never_widen_a_search_or_build_another_dn(self):
        names = ["*", "*)(uid=*", "alice@example.com)(|(mail=*", "*@example.com", "\\",
                 "\\2a", "alice@example.com,ou=x", "uid=alice,ou=example.com," + SUFFIX,
                 "alice,ou=example.com@example.com", "alice+cn=x@example.com",
                 "#alice@example.com"]
        # (" alice@example.com" and "alice@example.com\n" are alice: LDAP
        # matching maps tab/CR/LF to space and ignores surrounding spaces,
        # and normalize = "lower" trims them into the one name.)
        for keys in (f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\nauth = "bind"\n',
                     f'base = "{SUFFIX}"\nfilter = "(&(uid=%n)(mail=%u))"\nauth = "lookup"\n',
                     f'dn_template = "uid=%n,ou=%d,{SUFFIX}"\n'):
            with self.subTest(keys=keys):
                d = self.start(self.backend(keys) + self.pwdfile())
                self.addCleanup(d.stop)
                for name in names:
                    for pw in ("alice-pw", "sam-com-pw", "zed-pw"):
                        r = self.login(name, pw)
                        self.assertIn(r.returncode, (1,), f"{name!r} {pw}: {r.stdout} {r.stderr}")
                # NUL and control bytes over the raw protocol.
                for name in (b"ali\x00ce@example.com", b"\x00alice@example.com",
                             b"*\x00)(uid=*"):
                    reply = mux_reply_text(mux_exchange(self.sock, mux_frame(name, b"alice-pw", b"smtp", b"")))
                    self.assertTrue(reply is not None and reply.startswith("NO"), (name, reply))
                log = d.log()
                self.assertNotIn("result=ok", log)
                self.assertNotIn("ambiguous", log)
                d.stop()
                self.daemons.remove(d)

    def test_ambiguous_match_is_a_temporary_failure_not_the_first_entry(self):
        d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(uid=%n)"\n') + self.pwdfile())
        self.assert_ok("alice@example.com", "alice-pw")
        for pw in ("sam-com-pw", "sam-org-pw", "wrong"):
            self.assert_tempfail("sam@example.com", pw)
        log = d.log()
        self.assertEqual(log.count("is ambiguous"), 1, log)  # once per user
        self.assertIn('reason="ambiguous: more than one entry matches the filter for this user"', log)
        self.assertNotIn("result=ok proto=mux user=sam", log)

    def test_a_name_that_makes_no_valid_dn_is_unknown_not_an_outage(self):
        """With dn_template and enabled_filter the base search of the built DN
        is the first thing asked: a name that is no valid DN (invalid UTF-8:
        invalidDNSyntax) or a DN under nothing (noSuchObject) is nobody's --
        a NO, never a temporary failure or a "directory unavailable"."""
        d = self.start(self.backend(f'dn_template = "uid=%n,ou=%d,{SUFFIX}"\n'
                                    f'enabled_filter = "{ENABLED}"\nnormalize = "none"\n'))
        for name in (b"\xff@example.com", b"alice@ex\xffample.com", b"al\xc3ice@example.com",
                     b"nobody@nowhere.example"):
            reply = mux_reply_text(mux_exchange(self.sock, mux_frame(name, b"alice-pw", b"smtp", b"")))
            self.assertTrue(reply is not None and reply.startswith("NO"), (name, reply))
        self.assert_ok("alice@example.com", "alice-pw")
        log = d.log()
        self.assertNotIn("directory unavailable", log)
        self.assertNotIn("result=tempfail", log)

    def test_a_missing_search_base_is_a_temporary_failure_not_unknown_users(self):
        """base names an entry that is not there (a typo, a renamed OU, an ACL
        that hides it): every search says noSuchObject.  That is not "user
        unknown" -- the chain would go on to an older store that still has
        alice's old password."""
        old = self.write("old-passwd", "alice@example.com:" + mkpasswd("alice-old-pw") + "\n")
        d = self.start(self.backend(f'base = "ou=gone,{SUFFIX}"\nfilter = "(mail=%u)"\n')
                       + f'\n[[backend]]\ntype = "pwdfile"\npath = "{old}"\n')
        self.assert_tempfail("alice@example.com", "alice-old-pw")
        self.assert_tempfail("alice@example.com", "alice-pw")
        log = d.log()
        self.assertNotIn("result=ok", log)
        self.assertIn("search base", log)
        self.assertEqual(log.count("directory unavailable"), 1, log)

    # --- outages -------------------------------------------------------------------

    def test_slapd_stopped_under_load_then_back_without_a_restart(self):
        d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n', timeout="1s"))
        self.assert_ok("alice@example.com", "alice-pw")
        results, stop = [], threading.Event()

        def load(user, pw, right):
            while not stop.is_set():
                r = self.login(user, pw)
                results.append((right, r.returncode))

        threads = [threading.Thread(target=load, args=a) for a in
                   [("alice@example.com", "alice-pw", True), ("bob@example.com", "bob pw 2", True),
                    ("alice@example.com", "wrong", False), ("erin@example.com", "erin-pw", True)]]
        for t in threads:
            t.start()
        time.sleep(1)
        self.ldap.stop()
        time.sleep(2)
        mark = len(results)
        time.sleep(1)
        down = results[mark:]
        self.ldap.start()
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        self.wait_ok("alice@example.com", "alice-pw")
        self.assert_no("alice@example.com", "wrong")
        # While it was down: temporary failures only.
        self.assertTrue(down, "no attempts while slapd was down")
        self.assertTrue(all(rc == 3 for _, rc in down), down)
        # Never an OK for a wrong password, never a NO for a right one.
        for right, rc in results:
            self.assertIn(rc, (0, 3) if right else (1, 3))
        log = d.log()
        self.assertEqual(log.count("directory unavailable"), 1, log)
        self.assertIn("directory reachable again", log)

    def test_hung_slapd_is_a_timely_temporary_failure(self):
        d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n', timeout="1s"))
        self.assert_ok("alice@example.com", "alice-pw")
        self.ldap.pause()
        try:
            t0 = time.monotonic()
            self.assert_tempfail("alice@example.com", "alice-pw")
            self.assertLess(time.monotonic() - t0, 5)
        finally:
            self.ldap.resume()
        self.wait_ok("alice@example.com", "alice-pw")
        self.assertIn("directory unavailable", d.log())

    def test_timeout_is_one_deadline_per_request_not_per_server(self):
        """`timeout` bounds the whole request: with two hung servers and no
        idle connection, a login gets its temporary failure once `timeout`
        has passed -- not `timeout` per URI (connect, service bind, search,
        user bind each charged again), which with the default 5 s and two
        URIs is Postfix's whole 10 s."""
        second = Slapd(os.path.join(self.root, "b")).bootstrap(self.tree.ldif()).start()
        self.ldap.pause()
        second.pause()
        try:
            # Started while both hang: no connection is open to either.
            d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n',
                                        uris=[self.ldap.uri, second.uri], timeout="2s"))
            d.wait_log("backend problem at start", timeout=20)
            t0 = time.monotonic()
            r = self.login("alice@example.com", "alice-pw")
            elapsed = time.monotonic() - t0
            print(f"two hung servers, timeout 2s: rc={r.returncode} after {elapsed:.2f}s")
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
            self.assertLess(elapsed, 3.0, "timeout is per request, not per server")
            d.wait_log("timed out after", timeout=5)
        finally:
            self.ldap.resume()
            second.resume()
            second.stop()
        self.assertNotIn("alice-pw", d.log())

    def test_a_slow_first_step_still_completes_within_the_deadline(self):
        """The deadline is shared, not cut short: a server that hangs for
        part of `timeout` and then answers still gives the right answer."""
        d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'
                                    'auth = "bind"\n', timeout="3s"))
        self.ldap.pause()
        timer = threading.Timer(1.0, self.ldap.resume)
        timer.start()
        try:
            t0 = time.monotonic()
            self.assert_ok("alice@example.com", "alice-pw")
            elapsed = time.monotonic() - t0
            self.assertGreater(elapsed, 0.8)
            self.assertLess(elapsed, 3.0)
            self.assert_no("alice@example.com", "wrong")
        finally:
            timer.cancel()
            self.ldap.resume()
        self.assertNotIn("directory unavailable", d.log())

    def test_wrong_service_password(self):
        self.write("ldap.secret", "not-the-password\n", 0o600)
        conf = self.config(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n') + self.pwdfile())
        r = self.check_config(conf)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("Invalid credentials", r.stderr)
        self.assertIn(SERVICE_DN, r.stderr)
        self.assertNotIn("warning", r.stderr)  # an error, not "unreachable"
        d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n') + self.pwdfile())
        # Said at start, before any login asks: the admin who starts it sees why.
        d.wait_log("backend problem at start", timeout=15)
        self.assertRegex(d.log(), r"error: backend problem at start backend=ldap kind=error .*Invalid credentials")
        for user, pw in (("alice@example.com", "alice-pw"), ("alice@example.com", "wrong"),
                         ("zed@example.com", "zed-pw"), ("carol@example.com", "carol-pw")):
            self.assert_tempfail(user, pw)
        log = d.log()
        self.assertIn("directory unavailable", log)
        self.assertIn("Invalid credentials (49)", log)
        self.assertNotIn("result=ok", log)
        self.assertNotIn("not-the-password", log)

    def test_check_config(self):
        ok = self.check_config(self.config(self.backend(f'base = "{SUFFIX}"\n')))
        self.assertEqual(ok.returncode, 0, ok.stderr)
        bad_base = self.check_config(self.config(self.backend('base = "dc=nowhere,dc=example"\n')))
        self.assertEqual(bad_base.returncode, 1)
        self.assertIn("dc=nowhere", bad_base.stderr)
        down = self.check_config(self.config(self.backend(
            f'base = "{SUFFIX}"\n', uris=[f"ldap://127.0.0.1:{slapd.free_port()}"])))
        self.assertEqual(down.returncode, 0, down.stderr)
        self.assertIn("warning", down.stderr)
        for keys, message in [('base = "x"\nfilter = "uid=%u"\n', "parentheses"),
                              ('base = "x"\nfilter = "(uid=%x)"\n', "unknown escape %x"),
                              ('base = "x"\nfilter = "(uid=alice)"\n', "must use %u"),
                              ('base = "x"\nscope = "deep"\n', "scope"),
                              ('base = "x"\nauth = "compare"\n', "auth"),
                              ('base = "x"\nsurprise = 1\n', "surprise"),
                              ('base = "x"\ntimeout = "30s"\n', "timeout")]:
            r = self.check_config(self.config(self.backend(keys, timeout=None)))
            self.assertEqual(r.returncode, 1, keys)
            self.assertIn(message, r.stderr, keys)
            self.assertRegex(r.stderr, r"check\.conf:\d+: key 'backend")

    def test_tls_files_without_tls_are_refused_and_clear_text_binds_warned(self):
        """tls_ca/tls_cert/tls_key on ldap:// without starttls would be
        ignored: the admin who wrote them believes the passwords travel
        encrypted.  Refused, naming the key; a non-loopback ldap:// without
        StartTLS in bind mode (passwords in clear text) is warned about."""
        conf = self.config(self.backend(f'tls_ca = "{self.tls["ca"]}"\n'
                                        f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'))
        r = self.check_config(conf)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"check\.conf:\d+: key 'backend\[\d\]\.tls_ca'")
        self.assertIn("starttls", r.stderr)
        # ldap:// to a loopback address: no warning; to another host: one.
        ok = self.check_config(self.config(self.backend(f'base = "{SUFFIX}"\n')))
        self.assertNotIn("clear text", ok.stderr)
        remote = self.check_config(self.config(self.backend(
            f'base = "{SUFFIX}"\n', uris=["ldap://192.0.2.1:1"], timeout="100ms")))
        self.assertIn("clear text", remote.stderr, remote.stderr)

    # --- failover and TLS ------------------------------------------------------------

    def test_failover_and_return_to_the_first(self):
        second = Slapd(os.path.join(self.root, "b")).bootstrap(self.tree.ldif()).start()
        try:
            d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n',
                                        uris=[self.ldap.uri, second.uri], timeout="1s"))
            self.assert_ok("alice@example.com", "alice-pw")
            self.ldap.stop()
            self.wait_ok("alice@example.com", "alice-pw")
            for _ in range(5):
                self.assert_ok("bob@example.com", "bob pw 2")
                self.assert_no("bob@example.com", "wrong")
            d.wait_log(f"now using {second.uri} (failover)")
            self.ldap.start()
            deadline = time.monotonic() + 30
            while f"now using {self.ldap.uri}" not in d.log():
                self.assertLess(time.monotonic(), deadline, d.log())
                self.assert_ok("alice@example.com", "alice-pw")
                time.sleep(0.2)
            second.stop()
            for _ in range(3):
                self.assert_ok("alice@example.com", "alice-pw")
        finally:
            second.stop()

    def test_starttls_and_ldaps(self):
        for keys, uris in [(f'starttls = true\ntls_ca = "{self.tls["ca"]}"\n', [self.ldap.uri]),
                           (f'tls_ca = "{self.tls["ca"]}"\n', [self.ldap.ldaps_uri])]:
            with self.subTest(uris=uris):
                d = self.start(self.backend(keys + f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n',
                                            uris=uris))
                self.assert_ok("alice@example.com", "alice-pw")
                self.assert_no("alice@example.com", "wrong")
                d.stop()
                self.daemons.remove(d)
        # Without the test CA the certificate is not trusted: never a clear-text
        # fallback, a configuration error at --check-config, temporary failures.
        other = slapd.make_ca(self.path("other-ca"))
        conf = self.config(self.backend(f'starttls = true\ntls_ca = "{other["ca"]}"\n'
                                        f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'))
        r = self.check_config(conf)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("StartTLS", r.stderr)
        self.start(self.backend(f'starttls = true\ntls_ca = "{other["ca"]}"\n'
                                f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'))
        self.assert_tempfail("alice@example.com", "alice-pw")


class SaslauthdConfTest(LdapTestBase):
    """mailauthd -a ldap -O saslauthd.conf against the real saslauthd -a ldap
    -O with the same file: the same answers to testsaslauthd."""

    def setUp(self):
        super().setUp()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        super().tearDown()

    def serve(self, program, conf, name):
        rundir = self.path(name)
        os.makedirs(rundir, exist_ok=True)
        log = open(self.path(name + ".log"), "ab")
        self.procs.append(subprocess.Popen([program, "-a", "ldap", "-O", conf, "-m", rundir, "-d",
                                            "-n", "2"], stdout=log, stderr=log,
                                           stdin=subprocess.DEVNULL,
                                           # saslauthd signals its whole process group when it stops
                                           start_new_session=True))
        log.close()
        mux = os.path.join(rundir, "mux")
        deadline = time.monotonic() + 15
        while not os.path.exists(mux):
            if self.procs[-1].poll() is not None:
                with open(self.path(name + ".log")) as f:
                    self.fail(f"{name} exited: {f.read()}")
            self.assertLess(time.monotonic(), deadline, f"{name} did not start")
            time.sleep(0.05)
        return mux

    def ask(self, mux, user, password, *extra):
        r = subprocess.run([shutil.which("testsaslauthd") or "/usr/sbin/testsaslauthd", "-f", mux,
                            "-u", user, "-p", password, "-s", "smtp", *extra],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout.strip()

    def compare(self, conf_text, cases):
        conf = self.write("saslauthd.conf", conf_text, 0o600)
        theirs = self.serve(shutil.which("saslauthd") or "/usr/sbin/saslauthd", conf, "saslauthd")
        ours = self.serve(MAILAUTHD, conf, "mailauthd")
        oks = 0
        for case in cases:
            a, b = self.ask(theirs, *case), self.ask(ours, *case)
            self.assertEqual(a, b, f"{case}: saslauthd {a}, mailauthd {b}")
            oks += a[1] == OK_LINE
        self.assertGreater(oks, 0)
        for p in self.procs:
            p.terminate()
            p.wait(15)

    def cases(self, users):
        out = []
        for user in users:
            pw = self.tree.users[user]
            out += [(user, pw), (user, pw + "x"), (user, "")]
        out += [("nobody@example.com", "alice-pw"), ("*", "alice-pw"), ("*)(uid=*", "alice-pw"),
                ("alice", "alice-pw", "-r", "example.com")]
        return out

    def test_bind_and_search_filter(self):
        self.compare(f"""# as a Debian admin writes it
ldap_servers: {self.ldap.uri}
ldap_search_base: {SUFFIX}
ldap_filter: (mail=%u)
ldap_bind_dn: {SERVICE_DN}
ldap_password: {SERVICE_PW}
ldap_auth_method: bind
ldap_timeout: 3
ldap_version: 3
""", self.cases([u for u in self.tree.users if not u.startswith("sam@")]))

    def test_fastbind(self):
        self.compare(f"""ldap_servers: {self.ldap.uri}
ldap_auth_method: fastbind
ldap_filter: uid=%U,ou=%d,{SUFFIX}
""", self.cases(["alice@example.com", "bob@example.com", "dave@example.org",
                 "sam@example.org", "lock@example.org"]))

    def test_custom_compares_user_password(self):
        self.compare(f"""ldap_servers: {self.ldap.uri}
ldap_search_base: {SUFFIX}
ldap_filter: mail=%u
ldap_bind_dn: {SERVICE_DN}
ldap_password: {SERVICE_PW}
ldap_auth_method: custom
ldap_start_tls: yes
ldap_tls_cacert_file: {self.tls["ca"]}
ldap_tls_check_peer: yes
""", self.cases(["alice@example.com", "bob@example.com", "erin@example.com",
                 "grace@example.com", "dave@example.org"]))

    def test_unsupported_keys_are_reported(self):
        for text, message in [("ldap_use_sasl: yes\n", "ldap_use_sasl"),
                              ("ldap_group_dn: cn=mail\n", "ldap_group"),
                              ("ldap_frobnicate: 1\n", "ldap_frobnicate")]:
            conf = self.write("bad.conf", f"ldap_search_base: {SUFFIX}\n" + text)
            r = subprocess.run([MAILAUTHD, "-a", "ldap", "-O", conf, "-m", self.path("x"), "-d"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(f"{conf}:2: key '", r.stderr)
            self.assertIn(message, r.stderr)


class LdapUserToolTest(LdapTestBase):
    """mailauth-user on an ldap backend: passwd through Password Modify,
    show, verify; add and del refused."""

    def user_tool(self, conf, *args, input=None):
        from harness import MAILAUTH_USER
        return subprocess.run([MAILAUTH_USER, "--config", conf, *args], input=input,
                              capture_output=True, text=True, timeout=60)

    def ldap_tool(self, conf, *args, input=None):
        """The directory named: it is never the default store."""
        return self.user_tool(conf, "--backend", "ldap", *args, input=input)

    def test_the_directory_is_not_the_default_store(self):
        """[ldap, pwdfile]: `mailauth-user passwd carol` is about the file
        mailauth-user manages, never a silent change of her directory
        password; the directory is written only when named with --backend."""
        conf = self.write("both.conf", self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n')
                          + self.pwdfile())
        before = self.ldap.search(SUFFIX, "(mail=carol@example.com)", "userPassword")
        self.addCleanup(self.ldap.modify,
                        f"dn: uid=carol,ou=example.com,{SUFFIX}\nchangetype: modify\n"
                        f"replace: userPassword\nuserPassword: {slapd.ssha('carol-pw')}\n")
        r = self.user_tool(conf, "passwd", "carol@example.com", "--password-stdin",
                           input="carol file pw\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.ldap.search(SUFFIX, "(mail=carol@example.com)", "userPassword"), before)
        r = self.user_tool(conf, "verify", "carol@example.com", "--password-stdin",
                           input="carol file pw\n")
        self.assertEqual(r.returncode, 0, r.stderr)  # the pwdfile's, now
        # Only LDAP: no default store, and the message says how to use it.
        only = self.write("only.conf", self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'))
        r = self.user_tool(only, "passwd", "alice@example.com", "--password-stdin", input="x1\n")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--backend", r.stderr)
        # add on the directory, named: refused, pointing at --backend.
        r = self.user_tool(conf, "--backend", "ldap", "add", "new@example.com", "--random")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("managed with its own tools", r.stderr)
        self.assertIn("--backend", r.stderr)

    def test_passwd_show_verify_and_refusals(self):
        for auth in ("bind", "lookup"):
            with self.subTest(auth=auth):
                conf = self.write("user.conf", self.backend(
                    f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\nauth = "{auth}"\n'
                    f'enabled_filter = "{ENABLED}"\n'))
                r = self.ldap_tool(conf, "show", "alice@example.com")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(f"dn: uid=alice,ou=example.com,{SUFFIX}", r.stdout)
                self.assertIn("matched: filter (mail=alice@example.com), enabled_filter", r.stdout)
                r = self.ldap_tool(conf, "show", "carol@example.com")
                self.assertIn("disabled", r.stdout)
                r = self.ldap_tool(conf, "verify", "alice@example.com", "--password-stdin",
                                   input="alice-pw\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                r = self.ldap_tool(conf, "verify", "alice@example.com", "--password-stdin",
                                   input="wrong\n")
                self.assertEqual(r.returncode, 1, r.stderr)
                r = self.ldap_tool(conf, "show", "nobody@example.com")
                self.assertEqual(r.returncode, 1, r.stderr)
                for args in (["add", "new@example.com", "--random"], ["del", "alice@example.com"],
                             ["disable", "alice@example.com"], ["list"]):
                    r = self.ldap_tool(conf, *args)
                    self.assertNotEqual(r.returncode, 0, args)
                    self.assertIn("managed with its own tools", r.stderr, args)
        # passwd: the directory hashes the new password (Password Modify).
        conf = self.write("user.conf", self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'))
        r = self.ldap_tool(conf, "passwd", "dave@example.org", "--password-stdin",
                           input="new dave pw\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("new dave pw", r.stdout + r.stderr)
        stored = self.ldap.search(SUFFIX, "(mail=dave@example.org)", "userPassword")
        self.assertIn("userPassword::", stored)  # hashed by slapd ({SSHA}), not clear text
        d = self.start(self.backend(f'base = "{SUFFIX}"\nfilter = "(mail=%u)"\n'))
        self.assert_ok("dave@example.org", "new dave pw")
        self.assert_no("dave@example.org", "dave-pw")
        # A service DN without the right: refused with the directory's reason.
        conf = self.write("search.conf", f"""
[[backend]]
type = "ldap"
uris = ["{self.ldap.uri}"]
bind_dn = "{SEARCH_DN}"
password = "{SEARCH_PW}"
base = "{SUFFIX}"
filter = "(mail=%u)"
""")
        r = self.ldap_tool(conf, "passwd", "alice@example.com", "--password-stdin", input="x1\n")
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn("Insufficient access", r.stderr)
        # Put dave back for the other tests of this class.
        self.ldap.modify(f"dn: uid=dave,ou=example.org,{SUFFIX}\nchangetype: modify\n"
                         f"replace: userPassword\nuserPassword: {slapd.ssha('dave-pw')}\n")
        d.stop()
