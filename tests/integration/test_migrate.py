"""mailauth-migrate on the fixture trees of tests/data/migrate: the generated
configuration passes mailauthd --check-config, and --compare finds no
difference between the REAL old daemon and the new configuration for right,
wrong, unknown and disabled users:

  saslauthd + PAM (pam_unix on system users, pam_mysql on the guides' users
  table and on PostfixAdmin's mailbox table, pam_pwdfile in a second
  instance), and Dovecot's auth service (passwd-file, SQL).

The old daemons see only the test's files: saslauthd runs in a private mount
namespace (unshare -m) where the fixture's pam.d (and for pam_unix a test
passwd and shadow) are bind-mounted over /etc/pam.d, /etc/passwd and
/etc/shadow; Dovecot runs with its own base_dir from the fixture's
dovecot.conf; MariaDB is a private server (mariadb.py).  Paths in the copied
fixtures are rewritten into the test's directory.  Nothing on the host is
changed."""
import os
import pwd
import grp
import shlex
import shutil
import signal
import stat
import subprocess
import time
import unittest

from harness import BUILD, MAILAUTHD, DaemonTestCase, mkpasswd, which
from mariadb import MariaDB

SOURCE = os.environ.get("MAILAUTH_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(SOURCE, "tests", "data", "migrate")
MIGRATE = os.path.join(BUILD, "mailauth-migrate")
SCHEMAS = os.path.join(SOURCE, "backends", "mysql")


def sql_str(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def can_unshare():
    if os.geteuid() != 0:
        return "needs root (a private mount namespace for saslauthd's PAM files)"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"unshare -m is not permitted here: {r.stderr.strip()}"
    return None


class MigrateBase(DaemonTestCase):
    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o755)  # Dovecot's auth process runs as dovecot
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        super().tearDown()

    # --- the fixture tree ---------------------------------------------------
    def copy_case(self, case, replacements=()):
        """Copy tests/data/migrate/CASE to TMP/root and rewrite its paths."""
        root = self.path("root")
        shutil.copytree(os.path.join(FIXTURES, case), root)
        reps = [("/var/spool/postfix", root + "/var/spool/postfix")] + list(replacements)
        for d, _, files in os.walk(root):
            for name in files:
                p = os.path.join(d, name)
                with open(p) as f:
                    text = f.read()
                for old, new in reps:
                    text = text.replace(old, new)
                text = text.replace("@ROOT@", root)
                with open(p, "w") as f:
                    f.write(text)
        return root

    # --- mailauth-migrate ---------------------------------------------------
    def migrate(self, root, *args, expect=0):
        out = self.path("mailauthd.conf")
        r = subprocess.run([MIGRATE, "--root", root, "--output", out, *args],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, expect, f"{r.stdout}\n{r.stderr}")
        with open(out) as f:
            return out, f.read(), r.stdout

    def runnable(self, conf, extra=()):
        """The generated file, made runnable here: the mailauth user is not
        created on test machines (make install does that), so root stands in
        for it; the control socket goes into the test directory."""
        with open(conf) as f:
            text = f.read()
        try:
            pwd.getpwnam("mailauth")
            grp.getgrnam("mailauth")
        except KeyError:
            text = text.replace('user = "mailauth"', 'user = "root"').replace(
                'group = "mailauth"', 'group = "root"')
        text = text.replace('"/run/mailauth/control"', '"' + self.path("control") + '"')
        for old, new in extra:
            self.assertIn(old, text)
            text = text.replace(old, new)
        path = conf + ".run"
        with open(path, "w") as f:
            f.write(text)
        return path

    def check_config(self, conf):
        r = subprocess.run([MAILAUTHD, "--check-config", "--config", conf], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, f"{r.stdout}\n{r.stderr}")
        self.assertIn("configuration OK", r.stdout + r.stderr)
        self.assertNotIn("not reachable", r.stdout + r.stderr)

    def compare(self, old, conf, logins, protocol="mux", expect=0, ok=None):
        """--compare; `ok`: how many logins both must have accepted (so that
        "no difference" is not two daemons refusing everyone)."""
        path = self.write("logins", "".join(line + "\n" for line in logins), mode=0o600)
        r = subprocess.run([MIGRATE, "--compare", "--old", old, "--old-protocol", protocol,
                            "--config", conf, "--logins", path], capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(r.returncode, expect, f"{r.stdout}\n{r.stderr}")
        out = r.stdout + r.stderr
        self.assertIn(f"compared {len(logins)} logins", out)
        for line in logins:  # never a password in the output
            if ":" in line and len(line.split(":", 1)[1]) >= 6:
                self.assertNotIn(line.split(":", 1)[1], out)
        if ok is not None:
            self.assertEqual(out.count("(given password): ok\n"), ok, out)
        return out

    # --- the old daemons ----------------------------------------------------
    def start_saslauthd(self, root, default_file, binds):
        """saslauthd as Debian's init script starts it from DEFAULT_FILE, in a
        mount namespace where `binds` (source, target) are bind-mounted."""
        vars_ = {}
        with open(os.path.join(root, default_file.lstrip("/"))) as f:
            for line in f:
                line = line.strip()
                if "=" in line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    vars_[k] = " ".join(shlex.split(v))
        argv = [which("saslauthd"), "-a", vars_["MECHANISMS"].split()[0]]
        if vars_.get("MECH_OPTIONS"):
            argv += ["-O", vars_["MECH_OPTIONS"]]
        argv += ["-n", "1"]  # one process: the test stops it by its group
        argv += shlex.split(vars_.get("OPTIONS", ""))
        argv += ["-d"]  # foreground
        rundir = argv[argv.index("-m") + 1]
        os.makedirs(rundir, exist_ok=True)
        script = " && ".join(f"mount --bind {shlex.quote(s)} {shlex.quote(t)}" for s, t in binds)
        script += " && exec " + " ".join(shlex.quote(a) for a in argv)
        log = open(self.path("saslauthd.log"), "ab")
        p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                             stdout=log, stderr=log, start_new_session=True)
        self.procs.append(p)
        sock = os.path.join(rundir, "mux")
        deadline = time.monotonic() + 15
        while not os.path.exists(sock):
            if p.poll() is not None or time.monotonic() > deadline:
                with open(self.path("saslauthd.log")) as f:
                    raise AssertionError(f"saslauthd did not start:\n{f.read()}")
            time.sleep(0.05)
        return sock

    def start_dovecot(self, root):
        conf = os.path.join(root, "etc/dovecot/dovecot.conf")
        run = self.path("dovecot-run")
        os.makedirs(run)
        os.makedirs(self.path("dovecot-state"))
        os.makedirs(os.path.join(root, "var/spool/postfix/private"), exist_ok=True)
        with open(conf, "a") as f:  # a private instance: no ports, own directories
            f.write(f"\nbase_dir = {run}\nstate_dir = {self.path('dovecot-state')}\n"
                    f"log_path = {self.path('dovecot.log')}\n"
                    f"instance_name = mailauth-migrate-{os.path.basename(self.tmp)}\n"
                    "protocols =\nssl = no\nlisten = 127.0.0.1\n")
        p = subprocess.Popen([which("dovecot"), "-F", "-c", conf], stdout=subprocess.DEVNULL,
                             stderr=open(self.path("dovecot.err"), "ab"), start_new_session=True)
        self.procs.append(p)
        sock = os.path.join(root, "var/spool/postfix/private/auth")
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            if p.poll() is not None or time.monotonic() > deadline:
                log = ""
                for name in ("dovecot.log", "dovecot.err"):
                    if os.path.exists(self.path(name)):
                        log += open(self.path(name)).read()
                raise AssertionError(f"dovecot did not start:\n{log}")
            time.sleep(0.05)
        return sock


class SaslauthdFileTest(MigrateBase):
    """saslauthd cases that need no database."""

    def setUp(self):
        super().setUp()
        reason = can_unshare()
        if reason:
            self.skipTest(reason)

    def test_a_pam_unix_system_users_socket_in_the_chroot(self):
        root = self.copy_case("saslauthd-pam-system")
        conf, text, report = self.migrate(root)
        self.assertIn('type = "shadow"', text)
        self.assertIn(f'socket = "{root}/var/spool/postfix/var/run/saslauthd/mux"', text)
        self.assertIn('group = "sasl"', text)
        self.assertIn("pam_unix -> shadow backend", report)
        self.assertIn("/etc/pam.d/common-auth:5:", report)
        # System users, in files of the test's own.
        with open("/etc/passwd") as f:
            passwd = f.read()
        with open("/etc/shadow") as f:
            shadow = f.read()
        passwd += ("migalice:x:60001:60001::/nonexistent:/usr/sbin/nologin\n"
                   "miglocked:x:60002:60002::/nonexistent:/usr/sbin/nologin\n"
                   "migbob:x:60003:60003::/nonexistent:/usr/sbin/nologin\n")
        shadow += (f"migalice:{mkpasswd('alice-pw', 'sha512crypt')}:19000:0:99999:7:::\n"
                   f"miglocked:!{mkpasswd('locked-pw', 'sha512crypt')}:19000:0:99999:7:::\n"
                   f"migbob:{mkpasswd('bob-pw', 'yescrypt')}:19000:0:99999:7:::\n")
        p = self.write("passwd", passwd)
        s = self.write("shadow", shadow, mode=0o640)
        sock = self.start_saslauthd(root, "/etc/default/saslauthd",
                                    [(os.path.join(root, "etc/pam.d"), "/etc/pam.d"),
                                     (p, "/etc/passwd"), (s, "/etc/shadow")])
        run = self.runnable(conf, [('type = "shadow"\n', f'type = "shadow"\npath = "{s}"\n')])
        self.check_config(run)
        out = self.compare(sock, run, ["migalice:alice-pw", "migalice:not-her-pw", "migbob:bob-pw",
                                       "migbob", "miglocked:locked-pw", "nosuchmiguser:pw"], ok=2)
        self.assertIn("compared 6 logins: 0 differences", out)

    def test_d_second_instance_with_pam_pwdfile(self):
        root = self.copy_case("saslauthd-instance-pwdfile",
                              [("/etc/postfix/sasl/passwd", "@ROOT@/etc/postfix/sasl/passwd")])
        conf, text, report = self.migrate(root)
        # Two instances start; the one whose socket Postfix uses is migrated.
        self.assertIn("saslauthd instance 'saslauthd' not migrated", report)
        self.assertIn(f'path = "{root}/etc/postfix/sasl/passwd"', text)
        self.assertIn("join_realm = true", text)
        sock = self.start_saslauthd(root, "/etc/default/saslauthd-postfix",
                                    [(os.path.join(root, "etc/pam.d"), "/etc/pam.d")])
        run = self.runnable(conf)
        self.check_config(run)
        logins = ["alice:alice-pw", "alice:bad", "bob@example.com:bob-pw", "bob@example.com",
                  "carol:carol-pw", "nobody@example.com:pw"]
        out = self.compare(sock, run, logins, ok=2)
        self.assertIn("compared 6 logins: 0 differences", out)

        # Negative: the new side has another password for alice.
        other = self.write("passwd.new", f"alice:{mkpasswd('changed-pw', 'sha512crypt')}\n")
        run2 = self.runnable(conf, [(f'path = "{root}/etc/postfix/sasl/passwd"',
                                     f'path = "{other}"')])
        out = self.compare(sock, run2, ["alice:alice-pw", "bob@example.com"], expect=1)
        self.assertRegex(out, r"DIFFERENT \S+:1: user=alice \(given password\): old=ok new=no")
        self.assertIn("compared 2 logins: 1 difference", out)

        # Also --instance picks the other one, and an unknown one is a usage error.
        r = subprocess.run([MIGRATE, "--root", root, "--instance", "nosuch"], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("no saslauthd instance 'nosuch'", r.stderr)


class MysqlMigrateTest(MigrateBase):
    """pam_mysql (saslauthd) and Dovecot's sql passdb against a private MariaDB."""

    @classmethod
    def setUpClass(cls):
        cls.dbdir = os.path.join("/tmp", f"mailauth-migrate-db-{os.getpid()}")
        cls.db = MariaDB(cls.dbdir).bootstrap().start()

    @classmethod
    def tearDownClass(cls):
        cls.db.stop()
        shutil.rmtree(cls.dbdir, ignore_errors=True)

    def setUp(self):
        super().setUp()

    def database(self, name, schema, user, password):
        self.db.sql(f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name};"
                    f"CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY {sql_str(password)};"
                    f"GRANT SELECT ON {name}.* TO '{user}'@'localhost';")
        self.db.load_file(os.path.join(SCHEMAS, schema), name)

    def saslauthd_case(self, case):
        reason = can_unshare()
        if reason:
            self.skipTest(reason)
        root = self.copy_case(case, [("host=localhost", f"host={self.db.socket}")])
        conf, text, report = self.migrate(root)
        self.assertIn(f'socket = "{self.db.socket}"', text)
        secret = os.path.join(self.tmp, "mysql.secret")
        self.assertEqual(stat.S_IMODE(os.stat(secret).st_mode), 0o600)
        self.assertIn(f'password_file = "{secret}"', text)
        sock = self.start_saslauthd(root, "/etc/default/saslauthd",
                                    [(os.path.join(root, "etc/pam.d"), "/etc/pam.d")])
        run = self.runnable(conf)
        self.check_config(run)
        return root, text, report, sock, run, secret

    def test_b_pam_mysql_users_table_with_realms(self):
        self.database("maildb", "schema-users.sql", "mail", "aPASSWORD")
        rows = [("alice@example.com", mkpasswd("alice-pw", "sha512crypt"), 1),
                ("bob@example.com", mkpasswd("bob-pw", "sha512crypt"), 0),
                ("carol@example.com", mkpasswd("carol-pw", "sha256crypt"), 1)]
        self.db.sql("".join(f"INSERT INTO users (id, crypt, enabled) VALUES ({sql_str(u)}, "
                            f"{sql_str(h)}, {e});" for u, h, e in rows), "maildb")
        root, text, report, sock, run, secret = self.saslauthd_case("saslauthd-pam-mysql-users")
        self.assertIn('schema = "users"', text)
        self.assertIn("join_realm = true", text)
        with open(secret) as f:
            self.assertEqual(f.read(), "aPASSWORD\n")
        self.assertNotIn("aPASSWORD", text + report)
        out = self.compare(sock, run, [
            "alice@example.com:alice-pw", "alice@example.com:wrong-pw-9", "bob@example.com:bob-pw",
            "carol@example.com:carol-pw", "carol@example.com", "nobody@example.com:pw"], ok=2)
        self.assertIn("compared 6 logins: 0 differences", out)

    def test_c_pam_mysql_postfixadmin_mailbox(self):
        self.database("postfixadmin", "schema-postfixadmin.sql", "postfixadmin", "pfa-secret")
        rows = [("alice@example.com", mkpasswd("alice-pw", "md5crypt"), 1),
                ("bob@example.com", mkpasswd("bob-pw", "md5crypt"), 0),
                ("carol@example.org", mkpasswd("carol-pw", "sha512crypt"), 1)]
        self.db.sql("".join(
            f"INSERT INTO mailbox (username, password, maildir, local_part, domain, active) "
            f"VALUES ({sql_str(u)}, {sql_str(h)}, '', {sql_str(u.split('@')[0])}, "
            f"{sql_str(u.split('@')[1])}, {a});" for u, h, a in rows), "postfixadmin")
        root, text, report, sock, run, secret = self.saslauthd_case(
            "saslauthd-pam-mysql-postfixadmin")
        self.assertIn('schema = "postfixadmin"', text)
        self.assertNotIn("pfa-secret", text + report)
        out = self.compare(sock, run, [
            "alice@example.com:alice-pw", "alice@example.com:nope", "bob@example.com:bob-pw",
            "carol@example.org:carol-pw", "carol@example.org", "ghost@example.com:pw"], ok=2)
        self.assertIn("compared 6 logins: 0 differences", out)

    def test_f_dovecot_sql_sha512_crypt(self):
        self.database("mailserver", "schema-postfixadmin.sql", "mailuser", "mailuserpass")
        rows = [("alice@example.com", "{SHA512-CRYPT}" + mkpasswd("alice-pw", "sha512crypt"), 1),
                ("bob@example.com", mkpasswd("bob-pw", "sha512crypt"), 1),  # default_pass_scheme
                ("carol@example.com", mkpasswd("carol-pw", "sha512crypt"), 0)]
        self.db.sql("".join(
            f"INSERT INTO mailbox (username, password, maildir, local_part, domain, active) "
            f"VALUES ({sql_str(u)}, {sql_str(h)}, '', {sql_str(u.split('@')[0])}, "
            f"{sql_str(u.split('@')[1])}, {a});" for u, h, a in rows), "mailserver")
        root = self.copy_case("dovecot-sql", [("host=localhost", f"host={self.db.socket}"),
                                               ("/etc/dovecot/", "@ROOT@/etc/dovecot/")])
        conf, text, report = self.migrate(root)
        self.assertIn('default_scheme = "CRYPT"', text)
        self.assertIn("query = \"SELECT password, username AS user FROM mailbox", text)
        self.assertIn('mechanisms = ["PLAIN", "LOGIN"]', text)
        self.assertNotIn("mailuserpass", text + report)
        run = self.runnable(conf)
        self.check_config(run)
        sock = self.start_dovecot(root)
        out = self.compare(sock, run, [
            "alice@example.com:alice-pw", "alice@example.com:wrong-pw-9", "bob@example.com:bob-pw",
            "bob@example.com", "carol@example.com:carol-pw", "nobody@example.com:pw"],
            protocol="dovecot", ok=2)
        self.assertIn("compared 6 logins: 0 differences", out)


class DovecotFileTest(MigrateBase):
    def test_e_dovecot_passwd_file(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (Dovecot's auth service)")
        root = self.copy_case("dovecot-passwd-file", [("/etc/dovecot/", "@ROOT@/etc/dovecot/")])
        conf, text, report = self.migrate(root)
        self.assertIn(f'path = "{root}/etc/dovecot/users"', text)
        self.assertIn(f'socket = "{root}/var/spool/postfix/private/auth"', text)
        self.assertIn('failure_delay = "2s"', text)
        self.assertIn("conf.d/auth-passwdfile.conf.ext:7: passdb passwd-file", report)
        run = self.runnable(conf)
        self.check_config(run)
        sock = self.start_dovecot(root)
        out = self.compare(sock, run, [
            "alice@example.com:alice-pw", "alice@example.com:wrong-pw-9", "bob@example.com:bob-pw",
            "carol@example.com:carol-pw", "carol@example.com", "dave@example.com:dave-pw",
            "nobody@example.com:pw"], protocol="dovecot", ok=3)
        self.assertIn("compared 7 logins: 0 differences", out)

    def test_doveconf_output_and_reported_not_dropped(self):
        """--doveconf FILE (doveconf -n output) with things mailauthd cannot do:
        each is reported with its line, and the exit status says partial."""
        doveconf = self.write("doveconf.txt", """# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf
auth_mechanisms = plain login digest-md5
auth_username_format = %Ln
passdb {
  args = /etc/dovecot/users
  driver = passwd-file
}
passdb {
  driver = ldap
  args = /etc/dovecot/dovecot-ldap.conf.ext
}
service auth {
  unix_listener /var/spool/postfix/private/auth {
    group = postfix
    mode = 0660
    user = postfix
  }
}
""")
        # The passwd-file is read to check its extra fields (allow_nets, nologin).
        os.makedirs(os.path.join(self.tmp, "etc/dovecot"), exist_ok=True)
        with open(os.path.join(self.tmp, "etc/dovecot/users"), "w") as f:
            f.write("alice:{PLAIN}alice-pw\n")
        out = self.path("out.conf")
        r = subprocess.run([MIGRATE, "--root", self.tmp, "--from", "dovecot", "--doveconf", doveconf,
                            "--output", out], capture_output=True, text=True)
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn(f"NOT CARRIED {doveconf}:2: auth mechanism digest-md5", r.stdout)
        self.assertIn(f"NOT CARRIED {doveconf}:3: auth_username_format = %Ln", r.stdout)
        self.assertIn(f"NOT CARRIED {doveconf}:9: passdb driver ldap", r.stdout)
        self.assertIn("partial migration", r.stdout)
        users = self.write("users", "alice:{PLAIN}alice-pw\n")
        run = self.runnable(out, [('path = "/etc/dovecot/users"', f'path = "{users}"')])
        self.check_config(run)


if __name__ == "__main__":
    unittest.main()
