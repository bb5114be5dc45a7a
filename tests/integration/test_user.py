"""mailauth-user on a pwdfile: every subcommand and exit code, hashes that
independent tools verify, concurrent writers while mailauthd reads, the
cache flushed after a change, import."""
import grp
import json
import os
import pwd
import subprocess
import threading
import time
import unittest

from harness import (DaemonTestCase, MAILAUTHD, MAILAUTH_USER, mkpasswd, which)

OK_LINE = '0: OK "Success."'


class UserToolTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.passwd = self.path("passwd")
        self.mux = self.path("mux")
        self.ctl = self.path("control")
        self.conf = self.write("mailauthd.conf", f"""
[daemon]
log = "stderr"
workers = 2
control_socket = "{self.ctl}"

[saslauthd]
socket = "{self.mux}"
mode = "0666"

[cache]
ttl = "300s"

[[backend]]
type = "pwdfile"
path = "{self.passwd}"
""")

    def user(self, *args, input=None, conf=True):
        cmd = [MAILAUTH_USER] + (["--config", self.conf] if conf else []) + list(args)
        return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=300)

    def login(self, user, password):
        r = self.mailauth_test("-f", self.mux, "-u", user, "-p", password)
        return r.returncode

    def lines(self):
        with open(self.passwd) as f:
            return [l for l in f.read().splitlines() if l and not l.startswith("#")]

    def test_every_subcommand_and_exit_code(self):
        r = self.user("add", "alice@example.com", "--password-stdin", input="alice-pw\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(self.passwd))
        self.assertEqual(os.stat(self.passwd).st_mode & 0o777, 0o640)
        self.assertEqual(self.user("add", "alice@example.com", "--password-stdin",
                                   input="x\n").returncode, 1, "exists already")
        r = self.user("add", "bob@example.org", "--random", "--scheme", "yescrypt")
        self.assertEqual(r.returncode, 0, r.stderr)
        bob_pw = r.stdout.strip()
        self.assertGreaterEqual(len(bob_pw), 20)
        self.assertEqual(self.user("add", "carol@example.com", "--disabled", "--password-stdin",
                                   input="carol-pw\n").returncode, 0)
        # list, --domain, --json
        r = self.user("list")
        self.assertEqual(r.stdout.splitlines(), ["alice@example.com\tenabled", "bob@example.org\tenabled",
                                                 "carol@example.com\tdisabled"])
        r = self.user("list", "--domain", "example.com", "--json")
        self.assertEqual(json.loads(r.stdout),
                         [{"user": "alice@example.com", "name": "", "enabled": True},
                          {"user": "carol@example.com", "name": "", "enabled": False}])
        # show never prints the hash
        r = self.user("show", "alice@example.com")
        self.assertEqual(r.returncode, 0)
        self.assertIn("scheme:  ARGON2ID", r.stdout)
        self.assertNotIn("$argon2", r.stdout)
        self.assertEqual(self.user("show", "nobody").returncode, 1)
        # verify
        self.assertEqual(self.user("verify", "alice@example.com", "--password-stdin",
                                   input="alice-pw\n").returncode, 0)
        self.assertEqual(self.user("verify", "alice@example.com", "--password-stdin",
                                   input="wrong\n").returncode, 1)
        self.assertEqual(self.user("verify", "bob@example.org", "--password-stdin",
                                   input=bob_pw + "\n").returncode, 0)
        self.assertEqual(self.user("verify", "carol@example.com", "--password-stdin",
                                   input="carol-pw\n").returncode, 1, "disabled")
        # enable / disable / passwd / del
        self.assertEqual(self.user("enable", "carol@example.com").returncode, 0)
        self.assertEqual(self.user("verify", "carol@example.com", "--password-stdin",
                                   input="carol-pw\n").returncode, 0)
        self.assertEqual(self.user("disable", "alice@example.com").returncode, 0)
        self.assertTrue(any(l.startswith("alice@example.com:!$argon2id$") for l in self.lines()))
        self.assertEqual(self.user("passwd", "alice@example.com", "--password-stdin",
                                   "--scheme", "sha512-crypt", input="new-pw\n").returncode, 0)
        self.assertTrue(any(l.startswith("alice@example.com:!$6$") for l in self.lines()),
                        "stays disabled with its new password")
        self.assertEqual(self.user("enable", "alice@example.com").returncode, 0)
        self.assertEqual(self.user("verify", "alice@example.com", "--password-stdin",
                                   input="new-pw\n").returncode, 0)
        self.assertEqual(self.user("passwd", "nobody", "--password-stdin", input="x\n").returncode, 1)
        self.assertEqual(self.user("del", "bob@example.org").returncode, 0)
        self.assertEqual(self.user("del", "bob@example.org").returncode, 1)
        # usage errors: 2
        for args in (["frobnicate"], ["add"], ["add", "x", "--scheme", "rot13"], ["add", "x", "-p", "pw"],
                     ["list", "extra"], []):
            r = self.user(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertEqual(self.user("--help").returncode, 0)
        self.assertIn("mailauth-user ", self.user("--version").stdout)
        # a backend that cannot be written
        pam_conf = self.write("pam.conf", f'[saslauthd]\nsocket = "{self.mux}"\n[[backend]]\ntype = "shadow"\npath = "{self.passwd}"\n')
        r = subprocess.run([MAILAUTH_USER, "--config", pam_conf, "add", "x", "--random"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("has no backend that keeps accounts (pwdfile, mysql); "
                      "shadow: manage system accounts with passwd, useradd and usermod", r.stderr)
        # backend unavailable: 3
        os.chmod(self.tmp, 0o755)
        os.rename(self.passwd, self.passwd + ".away")
        os.makedirs(self.passwd)  # a directory where the file should be
        r = self.user("list")
        self.assertEqual(r.returncode, 3, r.stderr)

    def test_a_configuration_with_backends_only(self):
        """An admin host (or a config tool writing a file just for the CLI) has
        no listener tables: mailauth-user needs the backends, nothing else."""
        only = self.write("backends-only.conf",
                          f'[[backend]]\ntype = "pwdfile"\npath = "{self.passwd}"\n')
        # ... and optionally the control socket, to flush a running daemon's cache.
        with_ctl = self.write("backends-ctl.conf",
                              f'[daemon]\ncontrol_socket = "{self.ctl}"\n\n'
                              f'[[backend]]\ntype = "pwdfile"\npath = "{self.passwd}"\n')
        for conf in (only, with_ctl):
            with self.subTest(conf=os.path.basename(conf)):
                if os.path.exists(self.passwd):
                    os.unlink(self.passwd)
                def user(*args, input=None):
                    return subprocess.run([MAILAUTH_USER, "--config", conf, *args], input=input,
                                          capture_output=True, text=True, timeout=300)
                r = user("add", "alice@example.com", "--password-stdin", input="alice-pw\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                r = user("add", "bob@example.org", "--password-stdin", "--scheme", "sha512-crypt",
                         input="bob-pw\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                r = user("verify", "alice@example.com", "--password-stdin", input="alice-pw\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                r = user("verify", "alice@example.com", "--password-stdin", input="wrong\n")
                self.assertEqual(r.returncode, 1, r.stderr)
                r = user("list")
                self.assertEqual((r.returncode, r.stdout.splitlines()),
                                 (0, ["alice@example.com\tenabled", "bob@example.org\tenabled"]),
                                 r.stderr)
                self.assertEqual(len(self.lines()), 2)
        # Everything else is still checked: a typo is an error, not ignored.
        typo = self.write("typo.conf", f'[daemon]\ncontrol_sockt = "{self.ctl}"\n\n'
                                       f'[[backend]]\ntype = "pwdfile"\npath = "{self.passwd}"\n')
        r = subprocess.run([MAILAUTH_USER, "--config", typo, "list"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("typo.conf:2: key 'daemon.control_sockt': unknown key", r.stderr)
        # ... and backends are still needed.
        none = self.write("none.conf", f'[daemon]\ncontrol_socket = "{self.ctl}"\n')
        r = subprocess.run([MAILAUTH_USER, "--config", none, "list"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("none.conf: no [[backend]] is configured; add at least one", r.stderr)
        # mailauthd itself still needs a listener, in --check-config and at start-up.
        for conf in (only, with_ctl):
            for args in (["--check-config"], ["--foreground"]):
                r = subprocess.run([MAILAUTHD, *args, "--config", conf], capture_output=True,
                                   text=True, timeout=60)
                self.assertEqual(r.returncode, 1, (args, r.stdout, r.stderr))
                self.assertIn(f"{conf}: no listener is configured; add a [saslauthd] or [dovecot] "
                              "table", r.stderr)
                self.assertFalse(os.path.exists(self.ctl))

    def test_hashes_verify_with_independent_tools(self):
        doveadm = which("doveadm")
        for scheme in ("argon2id", "yescrypt", "bcrypt", "sha512-crypt", "sha256-crypt",
                       "scram-sha-256"):
            with self.subTest(scheme=scheme):
                r = self.user("hash", "--scheme", scheme, "--password-stdin", "--dovecot-prefix",
                              input="Tr0ub4dor&3\n", conf=False)
                self.assertEqual(r.returncode, 0, r.stderr)
                stored = r.stdout.strip()
                # Dovecot's own verifier.
                ok = subprocess.run([doveadm, "pw", "-t", stored, "-p", "Tr0ub4dor&3"],
                                    capture_output=True, text=True)
                self.assertEqual(ok.returncode, 0, (stored, ok.stdout, ok.stderr))
                bad = subprocess.run([doveadm, "pw", "-t", stored, "-p", "Tr0ub4dor&4"],
                                     capture_output=True, text=True)
                self.assertNotEqual(bad.returncode, 0)
                bare = self.user("hash", "--scheme", scheme, "--password-stdin",
                                 input="Tr0ub4dor&3\n", conf=False).stdout.strip()
                if bare.startswith("$") and not bare.startswith("$argon2"):
                    # crypt(3) as pam_pwdfile and shadow call it (Python's crypt -> libcrypt).
                    code = ("import crypt, sys; h = sys.argv[1]; "
                            "sys.exit(0 if crypt.crypt('Tr0ub4dor&3', h) == h and "
                            "crypt.crypt('x', h) != h else 1)")
                    self.assertEqual(subprocess.run(["/usr/bin/python3", "-W", "ignore", "-c", code,
                                                     bare]).returncode, 0, bare)
                if bare.startswith("$argon2id$"):
                    code = ("import argon2, sys; ph = argon2.PasswordHasher(); "
                            "ph.verify(sys.argv[1], 'Tr0ub4dor&3'); "
                            "sys.exit(0)")
                    self.assertEqual(subprocess.run(["/usr/bin/python3", "-c", code, bare]).returncode,
                                     0, bare)

    def test_passwd_with_the_cache_on_takes_effect_at_the_next_login(self):
        self.assertEqual(self.user("add", "dave", "--password-stdin", input="old-pw\n").returncode, 0)
        d = self.daemon(open(self.conf).read(), socket_path=self.mux)
        self.assertEqual(self.login("dave", "old-pw"), 0)
        self.assertEqual(self.login("dave", "old-pw"), 0)
        self.assertIn("cached=yes", d.log())
        self.assertEqual(self.user("passwd", "dave", "--password-stdin", input="new-pw\n").returncode, 0)
        self.assertIn("control: flush user=dave", d.log())
        self.assertEqual(self.login("dave", "old-pw"), 1)
        self.assertEqual(self.login("dave", "new-pw"), 0)
        self.assertEqual(self.user("disable", "dave").returncode, 0)
        self.assertEqual(self.login("dave", "new-pw"), 1)
        # No daemon running is not an error.
        d.stop()
        self.assertEqual(self.user("enable", "dave").returncode, 0)

    def test_concurrent_writers_while_the_daemon_reads(self):
        # 40 existing users the daemon keeps logging in; 5 processes add 20
        # users each at the same time.
        existing = "\n".join(f"old{i}:{{PLAIN}}pw{i}" for i in range(40))
        self.write("passwd", existing + "\n", mode=0o640)
        d = self.daemon(open(self.conf).read().replace('[cache]\nttl = "300s"', ""),
                        socket_path=self.mux)
        stop = threading.Event()
        failures = []

        def reader():
            i = 0
            while not stop.is_set():
                rc = self.login(f"old{i % 40}", f"pw{i % 40}")
                if rc != 0:
                    failures.append((i, rc))
                i += 1

        def writer(w):
            for j in range(20):
                r = self.user("add", f"new{w}-{j}", "--scheme", "sha256-crypt", "--password-stdin",
                              input=f"pw-{w}-{j}\n")
                if r.returncode != 0:
                    failures.append(("writer", w, j, r.stderr))

        readers = [threading.Thread(target=reader) for _ in range(2)]
        writers = [threading.Thread(target=writer, args=(w,)) for w in range(5)]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        for t in readers:
            t.join()
        self.assertEqual(failures, [])
        users = [l.split(":")[0] for l in self.lines()]
        self.assertEqual(len(users), 140, "no line lost")
        self.assertEqual(len(set(users)), 140)
        self.assertEqual(self.login("new3-17", "pw-3-17"), 0)
        self.assertNotIn("malformed", d.log())

    def test_import(self):
        self.assertEqual(self.user("add", "exists", "--password-stdin", input="old\n").returncode, 0)
        hash_line = subprocess.run([which("mkpasswd"), "-m", "sha512crypt", "hashed-pw"],
                                   capture_output=True, text=True).stdout.strip()
        rows = [f"user{i}@example.com:secret{i}" for i in range(200)]
        rows += [f"prehashed:{hash_line}", "exists:new", "broken line without colon",
                 ":nouser", "# a comment", ""]
        src = self.write("import.txt", "\n".join(rows) + "\n")
        r = self.user("import", src, "--scheme", "sha256-crypt")
        self.assertEqual(r.returncode, 1, r.stderr)  # bad lines -> 1, the rest is in
        self.assertIn("import.txt:203: expected user:password", r.stderr)
        self.assertIn("import.txt:204: expected user:password", r.stderr)
        self.assertIn("201 added, 0 updated, 1 skipped", r.stderr)
        self.assertEqual(self.user("verify", "user199@example.com", "--password-stdin",
                                   input="secret199\n").returncode, 0)
        self.assertEqual(self.user("verify", "prehashed", "--password-stdin",
                                   input="hashed-pw\n").returncode, 0, "a hash is stored as it is")
        self.assertEqual(self.user("verify", "exists", "--password-stdin", input="old\n").returncode, 0)
        r = self.user("import", src, "--scheme", "sha256-crypt", "--update")
        self.assertIn("0 added, 202 updated", r.stderr)
        self.assertEqual(self.user("verify", "exists", "--password-stdin", input="new\n").returncode, 0)


class RehashOwnerTest(DaemonTestCase):
    """Rehash-on-login by a daemon that is not root: the rewritten pwdfile
    keeps its owner, group and mode, or is not rewritten at all."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: files owned by root:adm, a daemon run as nobody")
        try:
            self.nobody = pwd.getpwnam("nobody").pw_uid
            self.adm = grp.getgrnam("adm").gr_gid
        except KeyError as e:
            raise unittest.SkipTest(f"no such user or group on this machine: {e}")
        # The daemon runs as nobody:adm.  It can read the users file through
        # group adm and create files in its directory (root:adm 0770).
        os.chmod(self.tmp, 0o755)
        self.dir = self.path("users")
        os.mkdir(self.dir)
        os.chown(self.dir, 0, self.adm)
        os.chmod(self.dir, 0o770)
        self.passwd = os.path.join(self.dir, "passwd")
        self.mux = self.path("mux")
        self.text = f"# kept as it is\nalice:{mkpasswd('alice-pw')}\nbob:{{PLAIN}}bob-pw:extra\n"

    def start(self):
        return self.daemon(f"""
[daemon]
user = "nobody"
group = "adm"
log = "stderr"
workers = 2
control_socket = "{self.path('control')}"

[saslauthd]
socket = "{self.mux}"
mode = "0666"

[[backend]]
type = "pwdfile"
path = "{self.passwd}"
rehash = "argon2id"
""", socket_path=self.mux)

    def users_file(self, uid, gid, mode):
        with open(self.passwd, "w") as f:
            f.write(self.text)
        os.chown(self.passwd, uid, gid)
        os.chmod(self.passwd, mode)

    def login(self, user, password):
        return self.mailauth_test("-f", self.mux, "-u", user, "-p", password).returncode

    def test_a_rehash_that_cannot_keep_the_owner_writes_nothing(self):
        self.users_file(0, self.adm, 0o640)
        d = self.start()
        self.assertEqual(self.login("alice", "alice-pw"), 0, d.log())
        # The rehash runs before the answer: the file is as it will stay.
        st = os.stat(self.passwd)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777), (0, self.adm, 0o640))
        with open(self.passwd) as f:
            self.assertEqual(f.read(), self.text)
        d.wait_log("rehash of alice in pwdfile skipped")
        self.assertRegex(d.log(), r"rehash of alice in pwdfile skipped: .*owner")
        self.assertEqual(sorted(os.listdir(self.dir)), ["passwd", "passwd.lock"],
                         "no temporary file is left behind")
        self.assertEqual(self.login("alice", "alice-pw"), 0, "the old hash still logs in")

    def test_a_rehash_by_the_files_owner_keeps_owner_group_and_mode(self):
        self.users_file(self.nobody, self.adm, 0o640)
        d = self.start()
        self.assertEqual(self.login("alice", "alice-pw"), 0, d.log())
        d.wait_log('reason="rehashed SHA512-CRYPT to argon2id"')
        st = os.stat(self.passwd)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777), (self.nobody, self.adm, 0o640))
        with open(self.passwd) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "# kept as it is")
        self.assertTrue(lines[1].startswith("alice:$argon2id$"), lines[1])
        self.assertEqual(lines[2], "bob:{PLAIN}bob-pw:extra")
        self.assertNotIn("rehash of", d.log())
        self.assertEqual(self.login("alice", "alice-pw"), 0, "the new hash logs in")


if __name__ == "__main__":
    unittest.main()
