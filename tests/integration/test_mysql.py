"""The mysql backend end to end: mailauthd against a real, private MariaDB
(tests/integration/mariadb.py), driven over the saslauthd mux socket and the
Dovecot socket with mailauth-test, testsaslauthd and raw exchanges.

One server is bootstrapped per class and reused; tests that stop it start it
again.  The failover test bootstraps a second one.
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (BUILD, DaemonTestCase, DovecotConnection, MAILAUTHD, MAILAUTH_USER, control,
                     mkpasswd, mux_exchange, mux_frame, mux_reply_text, prometheus_value, which)
from mariadb import MariaDB, free_port

SOURCE = os.environ.get("MAILAUTH_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
SCHEMA_USERS = os.path.join(SOURCE, "backends", "mysql", "schema-users.sql")
SCHEMA_POSTFIXADMIN = os.path.join(SOURCE, "backends", "mysql", "schema-postfixadmin.sql")
UNIT_TESTS = os.path.join(BUILD, "tests", "unit_tests")

OK_LINE = '0: OK "Success."'
NO_LINE = '0: NO "authentication failed"'
DB_USER = "mailauth"
DB_PASSWORD = "db-secret-9f2"


def doveadm_pw(scheme, password):
    out = subprocess.run([which("doveadm"), "pw", "-s", scheme, "-p", password],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def sql_str(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def seed(db, alice_pw="alice-pw"):
    """The guide's users table, PostfixAdmin's tables and two odd tables in
    `mail`; an empty `mailauth_writes` for the write statements.  The daemon's
    account may only read `mail`."""
    db.sql("CREATE DATABASE IF NOT EXISTS mail; CREATE DATABASE IF NOT EXISTS mailauth_writes;")
    db.load_file(SCHEMA_USERS, "mail")
    db.load_file(SCHEMA_POSTFIXADMIN, "mail")
    # The guide's way of making a hash: MariaDB's own ENCRYPT with a $5$ salt.
    db.sql(f"""
INSERT INTO users (id, name, maildir, crypt, clear, enabled) VALUES
  ('alice@example.com', 'Alice', 'example.com/alice/',
   ENCRYPT({sql_str(alice_pw)}, CONCAT('$5$', MD5(RAND()))), {sql_str(alice_pw)}, 1),
  ('carol@example.com', 'Carol', 'example.com/carol/',
   ENCRYPT('carol-pw', CONCAT('$5$', MD5(RAND()))), 'carol-pw', 0),
  ('bob@example.com', 'Bob', 'example.com/bob/', {sql_str(mkpasswd("bob pw", "yescrypt"))}, '', 1);
INSERT INTO domain (domain, description, transport, created, modified) VALUES
  ('example.org', 'test', 'virtual', NOW(), NOW());
INSERT INTO mailbox (username, password, name, maildir, local_part, domain, created, modified, active) VALUES
  ('john@example.org', {sql_str("{SHA512-CRYPT}" + mkpasswd("john-pw", "sha512crypt"))}, 'John',
   'example.org/john/', 'john', 'example.org', NOW(), NOW(), 1),
  ('jane@example.org', {sql_str(doveadm_pw("ARGON2ID", "jane-pw"))}, 'Jane',
   'example.org/jane/', 'jane', 'example.org', NOW(), NOW(), 1),
  ('jim@example.org', {sql_str("{SHA512-CRYPT}" + mkpasswd("jim-pw", "sha512crypt"))}, 'Jim',
   'example.org/jim/', 'jim', 'example.org', NOW(), NOW(), 0);
CREATE TABLE creds (login varchar(128) NOT NULL PRIMARY KEY, secret varchar(255) NULL);
INSERT INTO creds VALUES ('nullpw@example.com', NULL), ('emptypw@example.com', '');
""", "mail")
    db.sql(f"""
CREATE USER IF NOT EXISTS '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';
CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';
GRANT SELECT ON mail.* TO '{DB_USER}'@'localhost', '{DB_USER}'@'127.0.0.1';
GRANT SELECT, INSERT, UPDATE, DELETE ON mailauth_writes.* TO '{DB_USER}'@'localhost', '{DB_USER}'@'127.0.0.1';
""")
    crypt = db.rows("SELECT crypt FROM users WHERE id = 'alice@example.com'", "mail")[0][0]
    assert crypt.startswith("$5$"), f"ENCRYPT() did not make a sha256-crypt string: {crypt!r}"


class MysqlTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dbroot = tempfile.mkdtemp(prefix="mailauth-mariadb-")
        cls.db = MariaDB(os.path.join(cls.dbroot, "a")).bootstrap().start()
        seed(cls.db)

    @classmethod
    def tearDownClass(cls):
        cls.db.stop()
        shutil.rmtree(cls.dbroot, ignore_errors=True)

    def setUp(self):
        super().setUp()
        if not self.db.running:
            self.db.start()
        self.sock = self.path("run/mux")
        self.dsock = self.path("run/auth")
        self.secret = self.write("mysql.secret", f"\n  {DB_PASSWORD}  \n", 0o600)
        self.passwd = self.write("passwd", "\n".join([
            "dave@example.com:" + mkpasswd("dave-pw"),
            "carol@example.com:" + mkpasswd("carol-pw"),        # disabled in mysql
            "alice@example.com:" + mkpasswd("stale-alice-pw"),  # an old copy
            "nullpw@example.com:" + mkpasswd("null-pw"),
            "",
        ]))

    def tearDown(self):
        if self._problem_count() != self._problems_before:
            print("--- last lines of the MariaDB error log ---")
            print("\n".join(self.db.log().splitlines()[-15:]))
        super().tearDown()

    # --- helpers ---------------------------------------------------------------

    def mysql(self, keys, hosts=None, socket_path=None, name=None, timeouts=True,
              database="mail"):
        if socket_path:
            where = f'socket = "{socket_path}"'
        else:
            hosts = hosts or [f"127.0.0.1:{self.db.port}"]
            where = "hosts = [" + ", ".join(f'"{h}"' for h in hosts) + "]"
        return f"""
[[backend]]
type = "mysql"
{'name = "' + name + '"' if name else ''}
{where}
user = "{DB_USER}"
password_file = "{self.secret}"
database = "{database}"
{'connect_timeout = "1s"' if timeouts else ''}
{'read_timeout = "2s"' if timeouts else ''}
{keys}
"""

    def pwdfile(self):
        return f'\n[[backend]]\ntype = "pwdfile"\npath = "{self.passwd}"\n'

    def config(self, backends, mux_extra="", dovecot=None, workers=4, daemon_extra=""):
        text = f"""
[daemon]
workers = {workers}
log = "stderr"
{daemon_extra}

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

    def assert_tempfail(self, user, password):
        r = self.login(user, password)
        self.assertEqual(r.returncode, 3, f"{user}: {r.stdout} {r.stderr}")
        self.assertEqual(r.stdout, "")

    def wait_ok(self, user, password, timeout=10):
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

    # --- presets ---------------------------------------------------------------

    def test_users_preset_and_the_chain(self):
        d = self.start(self.mysql('schema = "users"') + self.pwdfile(), args=["--debug"])
        self.assert_ok("alice@example.com", "alice-pw")
        self.assert_no("alice@example.com", "wrong")
        # mysql knows alice and decides: the pwdfile's old copy is never asked.
        self.assert_no("alice@example.com", "stale-alice-pw")
        self.assert_ok("bob@example.com", "bob pw")          # yescrypt from mkpasswd
        # enabled = 0: found and disabled; never falls through to the pwdfile,
        # which would accept carol-pw.
        self.assert_no("carol@example.com", "carol-pw")
        # Unknown to mysql: the next backend is asked.
        self.assert_ok("dave@example.com", "dave-pw")
        self.assert_no("nobody@example.com", "dave-pw")
        r = subprocess.run([which("testsaslauthd"), "-f", self.sock, "-u", "alice@example.com",
                            "-p", "alice-pw"], capture_output=True, text=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE))
        log = d.log()
        self.assertIn('result=fail proto=mux user=carol@example.com service=smtp realm= rip= '
                      'backend=mysql reason="account disabled"', log)
        self.assertIn("result=ok proto=mux user=dave@example.com service=smtp realm= rip= "
                      "backend=pwdfile", log)
        self.assertIn('user=alice@example.com service=smtp realm= rip= backend=mysql '
                      'reason="wrong password"', log)
        self.assertNotIn("result=tempfail", log)
        # Never a password, a hash or the database password in the (debug) log.
        for secret in ("alice-pw", "stale-alice-pw", "$5$", "$y$", DB_PASSWORD):
            self.assertNotIn(secret, log)

    def test_postfixadmin_preset_over_the_unix_socket_and_reload(self):
        d = self.start(self.mysql('schema = "users"', socket_path=self.db.socket))
        self.assert_ok("alice@example.com", "alice-pw")
        self.assert_no("john@example.org", "john-pw")
        # SIGHUP: a new backend (a new pool) replaces the old one.
        d.write_config(self.config(self.mysql('schema = "postfixadmin"',
                                              socket_path=self.db.socket)))
        self.assertIn("reload: done", d.reload())
        self.assert_ok("john@example.org", "john-pw")        # {SHA512-CRYPT}
        self.assert_ok("jane@example.org", "jane-pw")        # {ARGON2ID} from doveadm pw
        self.assert_no("john@example.org", "jane-pw")
        self.assert_no("jim@example.org", "jim-pw")          # active = 0
        self.assert_no("alice@example.com", "alice-pw")
        log = d.log()
        self.assertIn('user=jim@example.org service=smtp realm= rip= backend=mysql '
                      'reason="account disabled"', log)
        self.assertNotIn("result=tempfail", log)

    def test_custom_queries_plaintext_column_cram_md5_and_scram(self):
        # A Dovecot-style template: quoted escapes, a literal that mixes text and
        # escapes ('%n@%d' -> CONCAT), the service, and the guide's clear column.
        query = ("SELECT CONCAT('{PLAIN}', clear) AS pw, enabled FROM users "
                 "WHERE id = '%n@%d' AND clear <> '' AND '%s' IN ('smtp', 'imap')")
        self.start(self.mysql(f'query = "{query}"'), mux_extra="join_realm = true",
                   dovecot=("PLAIN", "CRAM-MD5", "SCRAM-SHA-256"))
        self.assert_ok("alice", "alice-pw", "-r", "example.com")
        self.assert_ok("alice", "alice-pw", "-r", "example.com", "-s", "imap")
        self.assert_no("alice", "alice-pw", "-r", "example.com", "-s", "pop3")  # no row
        self.assert_no("alice", "wrong", "-r", "example.com")
        self.assert_no("carol", "carol-pw", "-r", "example.com")  # enabled = 0
        self.assert_no("bob", "bob pw", "-r", "example.com")      # no plaintext
        for mech in ("PLAIN", "CRAM-MD5", "SCRAM-SHA-256"):
            r = self.mailauth_test("--dovecot", "-f", self.dsock, "--mech", mech,
                                   "-u", "alice@example.com", "-p", "alice-pw")
            self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE), f"{mech}: {r.stderr}")
            r = self.mailauth_test("--dovecot", "-f", self.dsock, "--mech", mech,
                                   "-u", "alice@example.com", "-p", "alice-pw2")
            self.assertEqual((r.returncode, r.stdout.strip()), (1, NO_LINE), f"{mech}: {r.stderr}")

    def test_sql_injection_and_odd_user_names_are_data(self):
        d = self.start(self.mysql('schema = "users"'))
        names = [b"x' OR '1'='1", b"alice@example.com' -- ", b"' OR 1=1 #", b"\\", b"%", b"_",
                 b"%u", b"alice@example.com\\", b"alice@example.com\x00",
                 b"alice@example.com\x00' OR '1'='1", b"\x00", b"\xff\xfe", b"\xc0\xaf",
                 b"alice@example.com\"", b"\"alice@example.com\"", b"alice@%",
                 b"') UNION SELECT '$1$x$y' -- "]
        for name in names:
            for password in (b"alice-pw", b"x' OR '1'='1"):
                raw = mux_exchange(self.sock, mux_frame(name, password, b"smtp", b""))
                self.assertEqual(mux_reply_text(raw), "NO authentication failed", name)
        self.assert_ok("alice@example.com", "alice-pw")
        log = d.log()
        self.assertNotIn("result=tempfail", log)
        self.assertNotIn("database unavailable", log)

    def test_null_or_empty_credential_is_a_known_user_that_cannot_log_in(self):
        d = self.start(self.mysql("query = \"SELECT secret FROM creds WHERE login = '%u'\"")
                       + self.pwdfile())
        # The pwdfile has nullpw with null-pw: it must not be asked.
        self.assert_no("nullpw@example.com", "null-pw")
        self.assert_no("emptypw@example.com", "")
        self.assert_no("emptypw@example.com", "x")
        self.assert_ok("dave@example.com", "dave-pw")
        log = d.log()
        self.assertIn('result=fail proto=mux user=nullpw@example.com service=smtp realm= rip= '
                      'backend=mysql reason="no stored credential (NULL or empty)"', log)
        # A configuration problem, logged once per user.
        self.assertEqual(log.count("config problem: mysql mysql: user nullpw@example.com has a "
                                   "NULL or empty stored credential"), 1, log)
        self.assert_no("nullpw@example.com", "null-pw")
        self.assertEqual(d.log().count("user nullpw@example.com has a NULL"), 1)
        self.assertNotIn("result=ok proto=mux user=nullpw", d.log())

    def test_several_rows_for_one_login_are_an_error_not_a_pick(self):
        """A lookup that matches two rows (a %n-only query, namesakes in two
        domains) is ambiguous: a temporary failure with a log line that says
        so, never the first row's password, and never the next backend."""
        self.db.sql(f"""
DROP TABLE IF EXISTS namesakes;
CREATE TABLE namesakes (login varchar(64) NOT NULL, domain varchar(64) NOT NULL,
  crypt varchar(255) NULL, PRIMARY KEY (login, domain));
INSERT INTO namesakes VALUES
  ('sam', 'a.example', {sql_str(mkpasswd("sam-a-pw"))}),
  ('sam', 'b.example', {sql_str(mkpasswd("sam-b-pw"))}),
  ('solo', 'a.example', {sql_str(mkpasswd("solo-pw"))});
""", "mailauth_writes")
        passwd = self.write("namesakes.passwd", "sam:" + mkpasswd("sam-file-pw") + "\n")
        d = self.start(self.mysql("query = \"SELECT crypt FROM namesakes WHERE login = '%n'\"",
                                  database="mailauth_writes")
                       + f'\n[[backend]]\ntype = "pwdfile"\npath = "{passwd}"\n')
        self.assert_ok("solo", "solo-pw")
        # Neither namesake's password, nor the next backend's, logs sam in.
        for pw in ("sam-a-pw", "sam-b-pw", "sam-file-pw", "wrong"):
            self.assert_tempfail("sam", pw)
        log = d.log()
        self.assertIn('result=tempfail proto=mux user=sam service=smtp realm= rip= backend=mysql '
                      'reason="ambiguous: the lookup returned more than one row for this user"',
                      log)
        self.assertEqual(log.count("mysql mysql: the lookup for user sam is ambiguous"), 1, log)
        self.assertNotIn("result=ok proto=mux user=sam", log)
        self.assertNotIn("database unavailable", log)
        # mailauth-user sees the same: neither show nor verify picks a row.
        conf = self.write("namesakes.conf", self.config(self.mysql(
            "query = \"SELECT crypt FROM namesakes WHERE login = '%n'\"",
            database="mailauth_writes")))
        r = subprocess.run([MAILAUTH_USER, "--config", conf, "verify", "sam", "--password-stdin"],
                           input="sam-a-pw\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("ambiguous", r.stderr)

    def test_root_only_password_file_survives_a_reload_after_the_privilege_drop(self):
        """Started as root with [daemon] user = nobody and a 0600 root-only
        password_file: the secret is read before the drop, and a reload
        (SIGHUP) by the unprivileged daemon, which can no longer open the
        file, keeps it (with a log line) instead of failing."""
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: the daemon must start as root and drop to nobody")
        os.chmod(self.tmp, 0o755)  # nobody reads the config (at reload) below here
        self.assertEqual(os.stat(self.secret).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(self.secret).st_uid, 0)
        d = self.start(self.mysql('schema = "users"'),
                       daemon_extra='user = "nobody"\ngroup = "nogroup"')
        self.assertIn("running as user nobody", d.log())
        self.assert_ok("alice@example.com", "alice-pw")
        tail = d.reload()
        self.assertIn("reload: done", tail)
        self.assertNotIn("reload failed", tail)
        self.assertIn(f"password_file {self.secret} cannot be read now (Permission denied); "
                      "keeping the password read from it before", tail)
        # The new configuration is in use, with the password read at start-up.
        self.assert_ok("alice@example.com", "alice-pw")
        self.assert_no("alice@example.com", "wrong")
        self.assertNotIn("result=tempfail", d.log())
        self.assertNotIn(DB_PASSWORD, d.log())
        # A second reload: still the same.
        self.assertIn("reload: done", d.reload())
        self.assert_ok("alice@example.com", "alice-pw")
        # A new path is a new secret: one that cannot be read fails the reload
        # (the running configuration stays).
        other = self.write("other.secret", DB_PASSWORD + "\n", 0o600)
        d.write_config(self.config(self.mysql('schema = "users"').replace(self.secret, other),
                                   daemon_extra='user = "nobody"\ngroup = "nogroup"'))
        tail = d.reload()
        self.assertIn("reload failed", tail)
        self.assertIn(f"cannot read {other}: Permission denied", tail)
        self.assertIn("readable by the daemon's user or group", tail)
        self.assert_ok("alice@example.com", "alice-pw")

    def test_import_counts_updates_and_keeps_scheme_prefixes_for_postfixadmin(self):
        """mailauth-user import into PostfixAdmin's table: pre-hashed values
        are stored in the preset's form ({SCHEME}$…, as PostfixAdmin and
        Dovecot read them) and verify through mailauthd, mailauth-user and
        doveadm; a second import with --update reports updates, not adds."""
        dbname = "mailauth_import_pfa"
        self.db.sql(f"""
DROP DATABASE IF EXISTS {dbname}; CREATE DATABASE {dbname};
GRANT SELECT, INSERT, UPDATE, DELETE ON {dbname}.* TO '{DB_USER}'@'localhost', '{DB_USER}'@'127.0.0.1';
""")
        self.db.load_file(SCHEMA_POSTFIXADMIN, dbname)
        backend = self.mysql('schema = "postfixadmin"', database=dbname)
        conf = self.write("import-pfa.conf", self.config(backend))

        def user(*args, password=None):
            return subprocess.run([MAILAUTH_USER, "--config", conf, *args], input=password,
                                  capture_output=True, text=True, timeout=120)

        def stored(name):
            return self.db.rows(f"SELECT password FROM mailbox WHERE username = '{name}'",
                                dbname)[0][0]

        first = {
            "sha@example.org": ("sha-pw", doveadm_pw("SHA512-CRYPT", "sha-pw")),
            "blf@example.org": ("blf-pw", doveadm_pw("BLF-CRYPT", "blf-pw")),
            "bare@example.org": ("bare-pw", mkpasswd("bare-pw", "sha512crypt")),
            "plain@example.org": ("plain-pw", "plain-pw"),
        }
        self.assertTrue(first["sha@example.org"][1].startswith("{SHA512-CRYPT}$6$"))
        self.assertTrue(first["blf@example.org"][1].startswith("{BLF-CRYPT}$2"))
        src = self.write("import-pfa.txt", "".join(f"{u}:{v}\n" for u, (_, v) in first.items()))
        r = user("import", src, "--scheme", "sha512-crypt")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(": 4 added, 0 updated, 0 skipped", r.stderr)
        self.assertEqual(stored("sha@example.org"), first["sha@example.org"][1])
        self.assertEqual(stored("blf@example.org"), first["blf@example.org"][1])
        # A bare crypt string gets the prefix PostfixAdmin's table needs.
        self.assertEqual(stored("bare@example.org"), "{CRYPT}" + first["bare@example.org"][1])
        self.assertTrue(stored("plain@example.org").startswith("{CRYPT}$6$"))
        self.start(backend)
        for name, (pw, _) in first.items():
            with self.subTest(user=name):
                self.assertTrue(stored(name).startswith("{"), stored(name))
                self.assert_ok(name, pw)
                self.assert_no(name, pw + "x")
                r = user("verify", name, "--password-stdin", password=pw + "\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                r = subprocess.run([which("doveadm"), "pw", "-t", stored(name), "-p", pw],
                                   capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Again, with new passwords: without --update all are skipped; with
        # it all are updated (none added).
        second = {
            "sha@example.org": ("sha-pw2", doveadm_pw("SHA512-CRYPT", "sha-pw2")),
            "blf@example.org": ("blf-pw2", doveadm_pw("BLF-CRYPT", "blf-pw2")),
            "bare@example.org": ("bare-pw2", mkpasswd("bare-pw2", "sha512crypt")),
            "plain@example.org": ("plain-pw2", "plain-pw2"),
        }
        src = self.write("import-pfa2.txt", "".join(f"{u}:{v}\n" for u, (_, v) in second.items())
                         + "new@example.org:new-pw\n")
        r = user("import", src, "--scheme", "sha512-crypt")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(": 1 added, 0 updated, 4 skipped", r.stderr)
        self.db.sql("DELETE FROM mailbox WHERE username = 'new@example.org'; "
                    "DELETE FROM alias WHERE address = 'new@example.org'", dbname)
        r = user("import", src, "--scheme", "sha512-crypt", "--update")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(": 1 added, 4 updated, 0 skipped", r.stderr)
        self.assertEqual(self.db.rows("SELECT COUNT(*) FROM mailbox", dbname), [["5"]])
        self.assertEqual(stored("bare@example.org"), "{CRYPT}" + second["bare@example.org"][1])
        for name, (pw, _) in second.items():
            with self.subTest(user=name, round=2):
                self.assertTrue(stored(name).startswith("{"), stored(name))
                self.assert_ok(name, pw)
                self.assert_no(name, first[name][0])
                r = user("verify", name, "--password-stdin", password=pw + "\n")
                self.assertEqual(r.returncode, 0, r.stderr)

    # --- faults ----------------------------------------------------------------

    def test_outage_is_a_temporary_failure_and_recovery_needs_no_restart(self):
        d = self.start(self.mysql('schema = "users"') + self.pwdfile())
        self.assert_ok("alice@example.com", "alice-pw")
        results = []  # (started, finished, right password?, reply text or "" for no reply)
        stop = threading.Event()

        def run(k):
            i = 0
            while not stop.is_set():
                right = (i + k) % 2 == 0
                password = "alice-pw" if right else "wrong-pw"
                t0 = time.monotonic()
                try:
                    # From loopback (trusted): the load is about the outage,
                    # not the brute-force policy.
                    raw = mux_exchange(self.sock, mux_frame("alice@example.com", password,
                                                            "smtp", "", "127.0.0.1;25"), timeout=15)
                    reply = mux_reply_text(raw) or ""
                except OSError as e:
                    reply = f"error {e}"
                results.append((t0, time.monotonic(), right, reply))
                i += 1
                time.sleep(0.01)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            self.db.stop()                       # SIGTERM, wait for the exit
            t_down = time.monotonic()
            time.sleep(1.5)
            # The real client's view: exit 3, never a NO.
            self.assert_tempfail("alice@example.com", "alice-pw")
            # Users unknown to mysql would fall through to the pwdfile when it
            # is up; while it cannot answer, the chain stops there.
            self.assert_tempfail("dave@example.com", "dave-pw")
            time.sleep(1.5)
            t_restart = time.monotonic()
            self.db.start()
            t_up = time.monotonic()
            deadline = t_up + 10
            while time.monotonic() < deadline:
                if any(r[0] >= t_up and r[3] == "OK" for r in results):
                    break
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertIsNone(d.proc.poll(), "mailauthd must keep running")
        wrong_ok = [r for r in results if not r[2] and r[3] == "OK"]
        self.assertEqual(wrong_ok, [], "a wrong password was accepted")
        outage = [r for r in results if r[0] > t_down and r[1] < t_restart]
        self.assertGreater(len(outage), 20, "the load loop did not run during the outage")
        self.assertEqual([r for r in outage if r[3] != ""], [],
                         "every request during the outage must be a temporary failure "
                         "(closed without a reply), never OK or NO")
        first_ok = min((r[1] for r in results if r[0] >= t_up and r[3] == "OK"), default=None)
        self.assertIsNotNone(first_ok, "no login succeeded within 10 s of the restart")
        self.assertLess(first_ok - t_up, 10)
        self.assert_ok("alice@example.com", "alice-pw")
        self.assert_no("alice@example.com", "wrong-pw")
        log = d.log()
        self.assertIn("result=tempfail", log)
        unavailable = log.count("mysql mysql: database unavailable")
        self.assertGreaterEqual(unavailable, 1)
        self.assertLessEqual(unavailable, 2, "the outage is logged per state change, not per request")
        self.assertIn("mysql mysql: database reachable again", log)

    def test_killed_connections_are_replaced_transparently(self):
        d = self.start(self.mysql('schema = "users"'), args=["--debug"])
        users = self.write("bench-users", "alice@example.com:alice-pw\nbob@example.com:bob pw\n")
        bench = ["-f", self.sock, "--bench", "--users", users, "--count", "60",
                 "--concurrency", "4", "--json"]
        r = self.mailauth_test(*bench)
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = [row[0] for row in self.db.rows(
            f"SELECT id FROM information_schema.PROCESSLIST WHERE USER = '{DB_USER}'")]
        self.assertGreaterEqual(len(ids), 1)
        # "Server has gone away" for every pooled connection, as after
        # wait_timeout or a server restart.
        self.db.sql("".join(f"KILL CONNECTION {i};" for i in ids))
        self.assert_ok("alice@example.com", "alice-pw")
        r = self.mailauth_test(*bench)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"tempfail": 0', r.stdout.replace('"tempfail":0', '"tempfail": 0'))
        log = d.log()
        self.assertNotIn("result=tempfail", log)
        self.assertNotIn("database unavailable", log)
        # It was the one retry on a fresh connection that hid the killed ones.
        self.assertRegex(log, r"lookup on 127\.0\.0\.1:\d+ failed: .*\((2006|2013|1927)\); "
                              r"retrying once on a fresh connection")

    def test_a_hung_server_is_a_bounded_temporary_failure(self):
        self.start(self.mysql('schema = "users"'))
        self.assert_ok("alice@example.com", "alice-pw")
        self.db.pause()  # SIGSTOP: TCP still accepts, nothing answers
        try:
            t0 = time.monotonic()
            self.assert_tempfail("alice@example.com", "alice-pw")
            # read_timeout = 2s; Postfix would wait 10 s.
            self.assertLess(time.monotonic() - t0, 6)
            t0 = time.monotonic()
            for _ in range(3):
                self.assert_tempfail("alice@example.com", "alice-pw")
            self.assertLess(time.monotonic() - t0, 9)
        finally:
            self.db.resume()
        self.wait_ok("alice@example.com", "alice-pw")

    def test_failover_to_the_second_server_and_back(self):
        b = MariaDB(os.path.join(self.dbroot, "b")).bootstrap().start()
        try:
            seed(b, alice_pw="alice-pw-on-b")  # tells which server answered
            d = self.start(self.mysql('schema = "users"',
                                      hosts=[f"127.0.0.1:{self.db.port}", f"127.0.0.1:{b.port}"]))
            self.assert_ok("alice@example.com", "alice-pw")          # the first server
            self.assert_no("alice@example.com", "alice-pw-on-b")
            self.db.stop()
            self.wait_ok("alice@example.com", "alice-pw-on-b")       # the second server
            t0 = time.monotonic()
            for _ in range(10):
                self.assert_ok("alice@example.com", "alice-pw-on-b")
            self.assertLess(time.monotonic() - t0, 8)
            # The first server returns and the second dies: back to the first.
            self.db.start()
            b.stop()
            self.wait_ok("alice@example.com", "alice-pw")
            self.assertIsNone(d.proc.poll())
            log = d.log()
            self.assertIn(f"mysql mysql: cannot connect to 127.0.0.1:{self.db.port}", log)
            self.assertIn(f"mysql mysql: now using 127.0.0.1:{b.port}", log)
            self.assertIn(f"mysql mysql: now using 127.0.0.1:{self.db.port}", log)
        finally:
            b.stop()

    def test_an_unresponsive_primary_costs_one_connect_timeout_not_one_per_login(self):
        # A listener that never accepts: connections hang until connect_timeout.
        hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        try:
            port = hole.getsockname()[1]
            d = self.start(self.mysql('schema = "users"\npool_size = 4',
                                      hosts=[f"127.0.0.1:{port}", f"127.0.0.1:{self.db.port}"]))
            t0 = time.monotonic()
            self.assert_ok("alice@example.com", "alice-pw")
            self.assertLess(time.monotonic() - t0, 4)
            users = self.write("bench-users", "alice@example.com:alice-pw\n")
            t0 = time.monotonic()
            r = self.mailauth_test("-f", self.sock, "--bench", "--users", users, "--count", "40",
                                   "--concurrency", "4", "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('"ok": 40', r.stdout.replace('"ok":40', '"ok": 40'))
            # New connections skip the dead primary during its backoff.
            self.assertLess(time.monotonic() - t0, 4)
            self.assertEqual(d.log().count(f"cannot connect to 127.0.0.1:{port}"), 1, d.log())
        finally:
            hole.close()

    def test_daemon_starts_while_the_database_is_down(self):
        port = free_port()
        self.start(self.mysql('schema = "users"', hosts=[f"127.0.0.1:{port}"]))
        self.assert_tempfail("alice@example.com", "alice-pw")

    def make_ca(self, name):
        """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
        ca_key, ca = self.path(f"{name}-ca.key"), self.path(f"{name}-ca.pem")
        key, csr, cert = (self.path(f"{name}-server.{x}") for x in ("key", "csr", "pem"))
        ext = self.write(f"{name}.ext", "subjectAltName = IP:127.0.0.1\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *a: subprocess.run([which("openssl"), *a], capture_output=True, check=True)
        run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", f"/CN=mailauth test CA {name}")
        run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
        run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
        return ca, cert, key

    def test_tls_required_and_the_server_certificate_verified(self):
        ca, cert, key = self.make_ca("good")
        other_ca, _, _ = self.make_ca("other")
        c = MariaDB(os.path.join(self.dbroot, "tls"),
                    extra_args=[f"--ssl-ca={ca}", f"--ssl-cert={cert}", f"--ssl-key={key}"])
        try:
            c.bootstrap().start()
            seed(c, alice_pw="alice-pw-over-tls")
            c.sql(f"ALTER USER '{DB_USER}'@'127.0.0.1' REQUIRE SSL")
            hosts = [f"127.0.0.1:{c.port}"]
            # Verified against the right CA: logins work.
            d = self.start(self.mysql(f'schema = "users"\ntls = true\ntls_ca = "{ca}"', hosts=hosts))
            self.assert_ok("alice@example.com", "alice-pw-over-tls")
            d.stop()
            r = self.check_config(self.config(self.mysql(
                f'schema = "users"\ntls = true\ntls_ca = "{ca}"', hosts=hosts)))
            self.assertEqual(r.returncode, 0, r.stderr)
            # tls = true without tls_ca: encrypted (the account requires it), not verified.
            r = self.check_config(self.config(self.mysql('schema = "users"\ntls = true',
                                                         hosts=hosts)))
            self.assertEqual(r.returncode, 0, r.stderr)
            # The account requires TLS: without it the server refuses.
            r = self.check_config(self.config(self.mysql('schema = "users"', hosts=hosts)))
            self.assertEqual(r.returncode, 1)
            self.assertIn("Access denied for user 'mailauth'", r.stderr)
            # A certificate from another CA is refused by us.
            r = self.check_config(self.config(self.mysql(
                f'schema = "users"\ntls = true\ntls_ca = "{other_ca}"', hosts=hosts)))
            self.assertEqual(r.returncode, 1)
            self.assertRegex(r.stderr, r"(?i)certificate|verif|TLS|SSL")
            d2 = self.daemon(self.config(self.mysql(
                f'schema = "users"\ntls = true\ntls_ca = "{other_ca}"', hosts=hosts)),
                name="mailauthd-wrong-ca", socket_path=self.sock)
            self.assert_tempfail("alice@example.com", "alice-pw-over-tls")
            d2.stop()
        finally:
            c.stop()
        # tls = true against a server without TLS: refused, never silently clear
        # text (Connector/C alone would fall back when no tls_ca is given).
        r = self.check_config(self.config(self.mysql('schema = "users"\ntls = true')))
        self.assertEqual(r.returncode, 1)
        self.assertIn("backend mysql: cannot connect to the database", r.stderr)
        self.assertIn("TLS is required (tls = true) but the server did not offer it", r.stderr)
        d3 = self.daemon(self.config(self.mysql('schema = "users"\ntls = true')),
                         name="mailauthd-no-tls", socket_path=self.sock)
        self.assert_tempfail("alice@example.com", "alice-pw")
        d3.stop()

    # --- --check-config and the write statements ------------------------------

    def test_check_config(self):
        r = self.check_config(self.config(self.mysql('schema = "postfixadmin"')))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)
        # The daemon's account may only read `mail`: the write statements are
        # a warning (mailauth-user would need the privilege), not a failure.
        self.assertIn("INSERT command denied to user 'mailauth'", r.stderr)
        self.assertIn("mailauthd only reads", r.stderr)
        self.assertFalse(os.path.exists(self.sock))
        r = self.check_config(self.config(self.mysql(
            "query = \"SELECT nosuchcolumn FROM users WHERE id = '%u'\"")))
        self.assertEqual(r.returncode, 1)
        self.assertIn("backend mysql: query (SELECT nosuchcolumn FROM users WHERE id = ?): "
                      "Unknown column 'nosuchcolumn'", r.stderr)
        # Where the account may write, a broken write statement is an error.
        self.db.load_file(SCHEMA_USERS, "mailauth_writes")
        r = self.check_config(self.config(self.mysql(
            'schema = "users"\npassword_query = "UPDATE nosuchtable SET crypt = %h WHERE id = %u"',
            database="mailauth_writes")))
        self.assertEqual(r.returncode, 1)
        self.assertIn("password_query (UPDATE nosuchtable SET crypt = ? WHERE id = ?): Table "
                      "'mailauth_writes.nosuchtable' doesn't exist", r.stderr)
        r = self.check_config(self.config(self.mysql('schema = "users"',
                                                     database="mailauth_writes")))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("warning", r.stderr)
        r = self.check_config(self.config(self.mysql(
            "query = \"SELECT crypt FROM users WHERE id = '%U'\"")))
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"check\.conf:\d+: key 'backend\[1\]\.query': unknown escape %U")
        # No server at all: a warning, not a configuration error (mailauthd
        # starts and answers temporary failures); --strict makes it exit 3.
        port = free_port()
        down = self.config(self.mysql('schema = "users"', hosts=[f"127.0.0.1:{port}"]))
        r = self.check_config(down)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"warning: backend mysql: cannot connect to the database: 127.0.0.1:{port}: ",
                      r.stderr)
        path = self.write("down.conf", down)
        r = subprocess.run([MAILAUTHD, "--check-config", "--strict", "--config", path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn(f"backend mysql: cannot connect to the database: 127.0.0.1:{port}: ", r.stderr)
        # A down secondary is worth a warning, not a failure.
        r = self.check_config(self.config(self.mysql(
            'schema = "users"', hosts=[f"127.0.0.1:{self.db.port}", f"127.0.0.1:{port}"])))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"cannot connect to 127.0.0.1:{port}", r.stderr)
        # A wrong database password.
        self.write("mysql.secret", "not-the-password\n", 0o600)
        r = self.check_config(self.config(self.mysql('schema = "users"')))
        self.assertEqual(r.returncode, 1)
        self.assertIn("Access denied for user 'mailauth'", r.stderr)
        self.assertNotIn("not-the-password", r.stderr + r.stdout)
        self.assertNotIn("warning: backend mysql", r.stderr, "a refusal is not an outage")

    def test_mailauth_user_writes_through_the_account_store(self):
        """mailauth-user (the real CLI) on a PostfixAdmin preset; the running
        daemon sees each change at the next login."""
        self.db.sql(f"""
DROP DATABASE IF EXISTS mailauth_cli; CREATE DATABASE mailauth_cli;
GRANT SELECT, INSERT, UPDATE, DELETE ON mailauth_cli.* TO '{DB_USER}'@'localhost';
""")
        self.db.load_file(SCHEMA_POSTFIXADMIN, "mailauth_cli")
        conf = self.config(self.mysql('schema = "postfixadmin"', socket_path=self.db.socket,
                                      database="mailauth_cli"))
        self.start(self.mysql('schema = "postfixadmin"', socket_path=self.db.socket,
                              database="mailauth_cli"))
        conf_path = self.write("user.conf", conf)

        def user(*args, password=None):
            return subprocess.run([MAILAUTH_USER, "--config", conf_path, *args], input=password,
                                  capture_output=True, text=True, timeout=60)

        r = user("add", "eve@example.net", "--password-stdin", "--name", "Eve", password="eve-pw\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(user("add", "eve@example.net", "--password-stdin",
                              password="x\n").returncode, 1)
        self.assert_ok("eve@example.net", "eve-pw")
        stored = self.db.rows("SELECT password, maildir FROM mailbox", "mailauth_cli")
        self.assertTrue(stored[0][0].startswith("{ARGON2ID}$argon2id$"), stored)
        self.assertEqual(stored[0][1], "example.net/eve/")
        self.assertEqual(self.db.rows("SELECT address, goto FROM alias", "mailauth_cli"),
                         [["eve@example.net", "eve@example.net"]])
        r = user("passwd", "eve@example.net", "--password-stdin", password="eve-pw-2\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_no("eve@example.net", "eve-pw")
        self.assert_ok("eve@example.net", "eve-pw-2")
        self.assertEqual(user("disable", "eve@example.net").returncode, 0)
        self.assert_no("eve@example.net", "eve-pw-2")
        self.assertEqual(user("enable", "eve@example.net").returncode, 0)
        self.assert_ok("eve@example.net", "eve-pw-2")
        r = user("list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"user": "eve@example.net"', r.stdout)
        self.assertEqual(user("del", "eve@example.net").returncode, 0)
        self.assertEqual(user("del", "eve@example.net").returncode, 1)
        self.assert_no("eve@example.net", "eve-pw-2")
        self.assertEqual(self.db.rows("SELECT COUNT(*) FROM alias", "mailauth_cli"), [["0"]])

    def test_cache_never_serves_a_password_changed_by_sql(self):
        """With the cache on, an UPDATE in the database makes the old password
        fail at the very next login (the cache key includes the stored hash)."""
        self.db.sql("""
DROP TABLE IF EXISTS cache_users;
CREATE TABLE cache_users (id varchar(128) PRIMARY KEY, crypt varchar(255), enabled tinyint(1));
""", "mailauth_writes")
        self.db.sql(f"INSERT INTO cache_users VALUES ('kim@example.com', "
                    f"{sql_str(mkpasswd('kim-old'))}, 1)", "mailauth_writes")
        d = self.start(self.mysql("query = \"SELECT crypt, enabled FROM cache_users WHERE id = '%u'\"",
                                  database="mailauth_writes"),
                       mux_extra='\n[cache]\nttl = "600s"\n')
        self.assert_ok("kim@example.com", "kim-old")
        self.assert_ok("kim@example.com", "kim-old")
        self.assertIn("cached=yes", d.log(), "the second login came from the cache")
        self.db.sql(f"UPDATE cache_users SET crypt = {sql_str(mkpasswd('kim-new'))} "
                    f"WHERE id = 'kim@example.com'", "mailauth_writes")
        self.assert_no("kim@example.com", "kim-old")
        self.assert_ok("kim@example.com", "kim-new")
        self.db.sql("UPDATE cache_users SET enabled = 0 WHERE id = 'kim@example.com'", "mailauth_writes")
        self.assert_no("kim@example.com", "kim-new")

    # --- user names the store does not tell apart -----------------------------

    def test_case_and_trailing_space_variants_are_one_account(self):
        """utf8mb4_general_ci takes ALICE@EXAMPLE.COM and "alice@example.com   "
        for alice@example.com.  They log in as alice, under her one name: the
        OK line's user=, the attempt line, the cache and the brute-force
        policy's per-user counter all use alice@example.com (issue 11,
        finding 10)."""
        ctl = self.path("run/control")
        d = self.start(self.mysql('schema = "users"'), args=["--debug"], dovecot=("PLAIN",),
                       daemon_extra=f'control_socket = "{ctl}"',
                       mux_extra='\n[cache]\nttl = "600s"\nnegative_ttl = "600s"\n')

        def auth(conn, rid, user, password, rip):
            resp = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
            conn.send(f"AUTH\t{rid}\tPLAIN\tservice=smtp\trip={rip}\tresp={resp}\n")
            return conn.line()

        conn = DovecotConnection(self.dsock)
        conn.handshake()
        variants = ["alice@example.com", "ALICE@EXAMPLE.COM", "alice@example.com   ",
                    "Alice@Example.Com "]
        for i, name in enumerate(variants, 1):
            self.assertEqual(auth(conn, i, name, "alice-pw", "198.51.100.1"),
                             f"OK\t{i}\tuser=alice@example.com", repr(name))
        # Over the mux socket too (its OK names nobody; the log line does).
        self.assert_ok("ALICE@example.COM  ", "alice-pw")
        log = d.log()
        self.assertEqual(log.count("result=ok proto=dovecot mech=PLAIN user=alice@example.com "
                                   "service=smtp"), 4, log)
        self.assertIn("result=ok proto=mux user=alice@example.com service=smtp", log)
        # The attempt lines (the debug "auth: request" lines show the request
        # as it came).
        attempts = "\n".join(l for l in log.splitlines() if "auth: result=" in l)
        self.assertEqual(attempts.count("user=alice@example.com service=smtp"), 5, attempts)
        # One cache entry for alice's one name, not one per spelling: the
        # first login checked the hash, the other four were cache hits.
        stats = control(ctl, "stats")
        self.assertEqual(prometheus_value(stats, "mailauth_cache_entries"), 1, stats)
        self.assertEqual(prometheus_value(stats, "mailauth_cache_hits_total"), 4, stats)
        self.assertEqual(log.count("cached=yes"), 4, log)
        # `flush` with any spelling drops alice's entry.
        self.assertEqual(control(ctl, "flush ALICE@EXAMPLE.COM"), "OK flushed 1\n")

        # Wrong passwords under two spellings, from two addresses: one per-user
        # counter with two failures, so a third address asking for a third
        # spelling waits penalty × 2 = 1000 ms.  (The success from .1 cleared
        # alice's counter; .11 to .13 never logged in.)
        self.assertEqual(auth(conn, 11, "ALICE@EXAMPLE.COM", "wrong-1", "198.51.100.11"),
                         "FAIL\t11\tuser=alice@example.com")
        self.assertEqual(auth(conn, 12, "alice@example.com   ", "wrong-2", "198.51.100.12"),
                         "FAIL\t12\tuser=alice@example.com")
        self.assertEqual(auth(conn, 13, "aLiCe@example.com", "wrong-3", "198.51.100.13"),
                         "FAIL\t13\tuser=alice@example.com")
        log = d.log()
        self.assertIn("auth: penalty rip=198.51.100.13 user=aLiCe@example.com ms=1000", log)
        self.assertEqual(log.count('result=fail proto=dovecot mech=PLAIN user=alice@example.com '
                                   'service=smtp realm= rip=198.51.100.1'), 3, log)

        # A name that is nothing but spaces is nobody's, not an account.
        self.assertTrue(auth(conn, 21, "   ", "alice-pw", "198.51.100.21").startswith("FAIL\t21"))
        self.assertIn('rip=198.51.100.21 backend=- reason="unknown user"', d.log())
        # Neither is a spelling that differs in more than case and trailing
        # spaces, although the collation takes it for alice: the stored name
        # (the preset's `user` column) says which account the row is.
        self.assertEqual(self.db.rows("SELECT COUNT(*) FROM users WHERE id = 'alicé@example.com'",
                                      "mail"), [["1"]])
        self.assertTrue(auth(conn, 22, "alicé@example.com", "alice-pw",
                             "198.51.100.22").startswith("FAIL\t22"))
        self.assertIn('rip=198.51.100.22 backend=- reason="unknown user"', d.log())
        conn.close()
        self.assertEqual(d.log().count("result=ok proto=dovecot"), 4)
        self.assertNotIn("result=tempfail", d.log())

    def test_mailauth_user_schema_prints_and_applies_the_preset(self):
        self.db.sql(f"""
DROP DATABASE IF EXISTS mailauth_schema; CREATE DATABASE mailauth_schema;
GRANT ALL ON mailauth_schema.* TO '{DB_USER}'@'localhost', '{DB_USER}'@'127.0.0.1';
""")
        conf = self.write("schema.conf", self.config(self.mysql('schema = "users"',
                                                                database="mailauth_schema")))

        def user(*args):
            return subprocess.run([MAILAUTH_USER, "--config", conf, *args], capture_output=True,
                                  text=True, timeout=60)

        r = user("schema")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(SCHEMA_USERS) as f:
            self.assertEqual(r.stdout, f.read())
        r = user("schema", "--apply")
        self.assertEqual(r.returncode, 0, r.stderr)
        tables = [row[0] for row in self.db.rows("SHOW TABLES", "mailauth_schema")]
        self.assertIn("users", tables)
        self.assertEqual(subprocess.run([MAILAUTH_USER, "--config", conf, "add", "lee@example.com",
                                         "--password-stdin", "--scheme", "sha512-crypt"],
                                        input="lee-pw\n", capture_output=True, text=True).returncode, 0)
        crypt = self.db.rows("SELECT crypt FROM users WHERE id = 'lee@example.com'", "mailauth_schema")
        self.assertTrue(crypt[0][0].startswith("$6$"), "bare crypt strings in the guide's table")
        self.assertEqual(user("schema", "--apply").returncode, 0, "IF NOT EXISTS: idempotent")
        # A custom query has no preset schema.
        custom = self.write("custom.conf", self.config(self.mysql(
            "query = \"SELECT crypt FROM users WHERE id = '%u'\"", database="mailauth_schema")))
        r = subprocess.run([MAILAUTH_USER, "--config", custom, "schema"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no schema preset", r.stderr)

    def test_mailauth_user_show_verify_import_and_unavailable(self):
        self.db.sql(f"""
DROP DATABASE IF EXISTS mailauth_cli2; CREATE DATABASE mailauth_cli2;
GRANT SELECT, INSERT, UPDATE, DELETE ON mailauth_cli2.* TO '{DB_USER}'@'localhost', '{DB_USER}'@'127.0.0.1';
""")
        self.db.load_file(SCHEMA_USERS, "mailauth_cli2")
        conf = self.write("cli2.conf", self.config(self.mysql('schema = "users"',
                                                              database="mailauth_cli2")))

        def user(*args, password=None):
            return subprocess.run([MAILAUTH_USER, "--config", conf, *args], input=password,
                                  capture_output=True, text=True, timeout=120)

        src = self.write("import.txt", "\n".join(
            [f"u{i}@example.com:pw{i}" for i in range(50)] + [
                f"hashed@example.com:{mkpasswd('hashed-pw')}", "no colon here"]) + "\n")
        r = user("import", src, "--scheme", "sha256-crypt")
        self.assertEqual(r.returncode, 1, r.stderr)  # one bad line
        self.assertIn("51 added", r.stderr)
        self.assertIn("import.txt:52: expected user:password", r.stderr)
        self.assertEqual(self.db.rows("SELECT COUNT(*) FROM users", "mailauth_cli2"), [["51"]])
        r = user("show", "u7@example.com")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("scheme:  SHA256-CRYPT", r.stdout)
        self.assertIn("backend: mysql (mysql)", r.stdout)
        self.assertEqual(user("show", "nobody@example.com").returncode, 1)
        self.assertEqual(user("verify", "u7@example.com", "--password-stdin", password="pw7\n").returncode, 0)
        self.assertEqual(user("verify", "u7@example.com", "--password-stdin", password="pw8\n").returncode, 1)
        self.assertEqual(user("verify", "hashed@example.com", "--password-stdin",
                              password="hashed-pw\n").returncode, 0)
        r = user("list", "--json")
        self.assertEqual(len(json.loads(r.stdout)), 51)
        # The database down: exit 3, for every command that needs it.
        self.db.stop()
        try:
            for args, pw in ((("show", "u7@example.com"), None), (("list",), None),
                             (("add", "new@example.com", "--password-stdin"), "x\n"),
                             (("passwd", "u7@example.com", "--password-stdin"), "x\n")):
                r = user(*args, password=pw)
                self.assertEqual(r.returncode, 3, (args, r.stderr))
        finally:
            self.db.start()

    def test_saslauthd_argv_with_a_mysql_option_file(self):
        """mailauthd -a mysql -O FILE: FILE holds the [[backend]] table, as
        pam_mysql's config file would in a saslauthd set-up."""
        option_file = self.write("mysql-backend.conf", self.mysql('schema = "users"'))
        rundir = self.path("sasl")
        os.makedirs(rundir)
        log = open(self.path("argv.log"), "wb")
        proc = subprocess.Popen([MAILAUTHD, "-a", "mysql", "-O", option_file, "-m", rundir, "-r", "-d"],
                                stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 15
            while not os.path.exists(os.path.join(rundir, "mux")):
                if proc.poll() is not None:
                    with open(self.path("argv.log")) as f:
                        self.fail(f.read())
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            tsa = which("testsaslauthd")
            mux = os.path.join(rundir, "mux")
            r = subprocess.run([tsa, "-f", mux, "-u", "alice", "-r", "example.com", "-p", "alice-pw"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, OK_LINE))
            r = subprocess.run([tsa, "-f", mux, "-u", "alice", "-r", "example.com", "-p", "nope"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 255)
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()

    # --- rehash on login ---------------------------------------------------------

    def rehash_database(self, name, schema_file):
        self.db.sql(f"""
DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name};
GRANT SELECT, UPDATE ON {name}.* TO '{DB_USER}'@'localhost', '{DB_USER}'@'127.0.0.1';
""")
        self.db.load_file(schema_file, name)

    def test_rehash_on_login_users_preset(self):
        """rehash = "yescrypt" on the guides' table: the $5$ hash MariaDB's
        ENCRYPT() made becomes $y$ at the next successful login; clear (the
        same password) is left alone; a wrong password writes nothing."""
        db = "mailauth_rehash_users"
        self.rehash_database(db, SCHEMA_USERS)
        self.db.sql("""
INSERT INTO users (id, name, maildir, crypt, clear, enabled) VALUES
  ('ann@example.com', 'Ann', 'example.com/ann/',
   ENCRYPT('ann-pw', CONCAT('$5$', MD5(RAND()))), 'ann-pw', 1),
  ('off@example.com', 'Off', 'example.com/off/',
   ENCRYPT('off-pw', CONCAT('$5$', MD5(RAND()))), 'off-pw', 0);
""", db)

        def row(user):
            return self.db.rows(f"SELECT crypt, clear FROM users WHERE id = '{user}'", db)[0]

        ann, off = "ann@example.com", "off@example.com"
        before, off_before = row(ann), row(off)
        self.assertTrue(before[0].startswith("$5$"), before)
        d = self.start(self.mysql('schema = "users"\nrehash = "yescrypt"', database=db))
        self.assert_no(ann, "wrong")
        self.assertEqual(row(ann), before, "a wrong password never rewrites")
        self.assert_ok(ann, "ann-pw")
        after = row(ann)
        self.assertTrue(after[0].startswith("$y$"), after)
        self.assertEqual(after[1], "ann-pw", "clear is not touched: the password did not change")
        self.assert_ok(ann, "ann-pw")
        self.assertEqual(row(ann), after, "a current hash is not rewritten")
        self.assert_no(ann, "wrong")
        self.assert_no(ann, "$5$")
        self.assertEqual(row(ann), after)
        self.assert_no(off, "off-pw")  # disabled: the login fails, nothing is rehashed
        self.assertEqual(row(off), off_before)
        log = d.log()
        self.assertEqual(log.count('reason="rehashed SHA256-CRYPT to yescrypt"'), 1, log)
        self.assertNotIn("rehash of", log)  # no "skipped" warning
        for secret in ("ann-pw", "$5$", "$y$", DB_PASSWORD):
            self.assertNotIn(secret, log)

        # --check-config: where the account may not UPDATE, a rehash that
        # cannot write is a warning; without rehash the statement is unused.
        r = self.check_config(self.config(self.mysql('schema = "users"\nrehash = "yescrypt"')))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('rehash = "yescrypt" needs this privilege', r.stderr)
        r = self.check_config(self.config(self.mysql('schema = "users"')))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("rehash_query", r.stderr)
        r = self.check_config(self.config(self.mysql('schema = "users"\nrehash = "yescrypt"',
                                                     database=db)))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("rehash_query", r.stderr)  # INSERT/DELETE are denied, UPDATE is not
        # A rehash_query that does not compare the old credential is refused.
        r = self.check_config(self.config(self.mysql(
            'schema = "users"\nrehash = "yescrypt"\n'
            "rehash_query = \"UPDATE users SET crypt = '%h' WHERE id = '%u'\"", database=db)))
        self.assertEqual(r.returncode, 1)
        self.assertIn("key 'backend[1].rehash_query': must use %o", r.stderr)

    def test_rehash_on_login_postfixadmin_preset(self):
        """rehash = "argon2id" on PostfixAdmin's mailbox table: {SHA512-CRYPT}$6$…
        becomes {ARGON2ID}$argon2id$… (Dovecot's form, which doveadm verifies)."""
        db = "mailauth_rehash_pfa"
        self.rehash_database(db, SCHEMA_POSTFIXADMIN)
        pat_hash = "{SHA512-CRYPT}" + mkpasswd("pat-pw", "sha512crypt")
        self.db.sql(f"""
INSERT INTO mailbox (username, password, name, maildir, local_part, domain, created, modified, active) VALUES
  ('pat@example.org', {sql_str(pat_hash)}, 'Pat', 'example.org/pat/', 'pat', 'example.org',
   '2001-01-01', '2001-01-01', 1);
""", db)

        def row():
            return self.db.rows("SELECT password, modified FROM mailbox "
                                "WHERE username = 'pat@example.org'", db)[0]

        d = self.start(self.mysql('schema = "postfixadmin"\nrehash = "argon2id"',
                                  socket_path=self.db.socket, database=db))
        self.assert_no("pat@example.org", "wrong")
        self.assertEqual(row(), [pat_hash, "2001-01-01 00:00:00"])
        self.assert_ok("pat@example.org", "pat-pw")
        password, modified = row()
        self.assertTrue(password.startswith("{ARGON2ID}$argon2id$"), password)
        self.assertNotEqual(modified, "2001-01-01 00:00:00", "modified is set, as by a password change")
        self.assert_ok("pat@example.org", "pat-pw")
        self.assert_no("pat@example.org", "wrong")
        self.assertEqual(row()[0], password, "rehashed once")
        r = subprocess.run([which("doveadm"), "pw", "-t", password, "-p", "pat-pw"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        log = d.log()
        self.assertEqual(log.count('reason="rehashed SHA512-CRYPT to argon2id"'), 1, log)
        self.assertNotIn("rehash of", log)

    def test_write_statements_through_the_backend_api(self):
        """The C++ write API (for mailauth-user) against this server: the
        MysqlLive.* unit tests, then SQL checks of what they left behind."""
        self.db.load_file(SCHEMA_USERS, "mailauth_writes")
        self.db.load_file(SCHEMA_POSTFIXADMIN, "mailauth_writes")
        self.db.sql("""
DROP TABLE IF EXISTS edge;
CREATE TABLE edge (login varchar(64) NOT NULL PRIMARY KEY, secret text NULL, flag varchar(16) NULL);
INSERT INTO edge VALUES ('long', REPEAT('x', 3000), '1'), ('null-secret', NULL, '1'),
  ('empty-secret', '', '1'), ('flag-null', 's', NULL), ('flag-zero', 's', '0'),
  ('flag-no', 's', 'no'), ('flag-junk', 's', 'junk'), ('flag-two', 's', '2'),
  ('flag-yes', 's', 'YES'), ('flag-bit', 's', UNHEX('01'));
DELETE FROM users; DELETE FROM mailbox; DELETE FROM alias;
""", "mailauth_writes")
        for preset in ("users", "postfixadmin"):
            self.db.sql(f"""
DROP DATABASE IF EXISTS mailauth_schema_{preset};
CREATE DATABASE mailauth_schema_{preset};
GRANT ALL ON mailauth_schema_{preset}.* TO '{DB_USER}'@'localhost';
""")
        env = dict(os.environ, MAILAUTH_TEST_MYSQL_SOCKET=self.db.socket,
                   MAILAUTH_TEST_MYSQL_USER=DB_USER, MAILAUTH_TEST_MYSQL_PASSWORD=DB_PASSWORD,
                   MAILAUTH_TEST_MYSQL_DATABASE="mailauth_writes")
        r = subprocess.run([UNIT_TESTS, "--gtest_filter=MysqlLive.*"], env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout[-4000:] + r.stderr[-2000:])
        self.assertIn("[  PASSED  ] 5 tests", r.stdout)
        self.assertNotIn("SKIPPED", r.stdout)
        rows = self.db.rows("SELECT username, maildir, local_part, domain, active, name "
                            "FROM mailbox ORDER BY username", "mailauth_writes")
        self.assertEqual(rows, [["kept@pfa.test", "pfa.test/kept/", "kept", "pfa.test", "1",
                                 "Kept"]])
        self.assertEqual(self.db.rows("SELECT address, goto, domain, active FROM alias",
                                      "mailauth_writes"),
                         [["kept@pfa.test", "kept@pfa.test", "pfa.test", "1"]])
        self.assertEqual(self.db.rows("SELECT COUNT(*) FROM users", "mailauth_writes"), [["0"]])
        # apply_schema() made the preset tables from the shipped .sql files.
        self.assertEqual(self.db.sql("SHOW TABLES", "mailauth_schema_users").split(), ["users"])
        self.assertEqual(self.db.sql("SHOW TABLES", "mailauth_schema_postfixadmin").split(),
                         ["alias", "domain", "mailbox"])


if __name__ == "__main__":
    unittest.main()
