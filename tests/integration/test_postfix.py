"""SMTP AUTH end to end: a private Postfix (master + smtpd on 127.0.0.1, all
under the test's temporary directory) asks mailauthd, and real SMTP clients
(swaks, GNU SASL's gsasl) log in.

  * smtpd_sasl_type = dovecot: Postfix speaks the Dovecot auth protocol to
    mailauthd's [dovecot] socket at private/auth in the queue directory.
  * smtpd_sasl_type = cyrus: Postfix's libsasl2 (pwcheck_method: saslauthd)
    asks mailauthd's [saslauthd] mux socket.

Every test asserts the SMTP reply codes: 235 accepted, 535 rejected, 454
temporary failure (the client should retry; fail2ban must not count it).
"""
import base64
import os
import re
import subprocess
import unittest

from harness import RecordingProxy, mkpasswd, which
from postfix import PostfixTestCase, gsasl_smtp_auth, swaks_auth


def doveadm_pw(password, scheme="SCRAM-SHA-256"):
    """A Dovecot {SCHEME} credential made by Dovecot's own tool."""
    out = subprocess.run([which("doveadm"), "pw", "-s", scheme, "-p", password],
                         capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.strip()


class PostfixAuthTest(PostfixTestCase):
    def setUp(self):
        super().setUp()
        self.passwd = self.write("passwd", "\n".join([
            "alice:" + mkpasswd("alice-pw", "sha512crypt"),
            "plain:{PLAIN}plain-pw",
            "",
        ]))
        self.mux = self.path("run/mux")

    def config(self, pf, temp_failure="disconnect"):
        return f"""
[daemon]
workers = 2
log = "stderr"

[dovecot]
socket = "{pf.queue_dir}/private/auth"
mode = "0666"
mechanisms = ["PLAIN", "LOGIN", "SCRAM-SHA-256"]
failure_delay = "0s"
temp_failure = "{temp_failure}"

[saslauthd]
socket = "{self.mux}"
mode = "0666"

[[backend]]
type = "pwdfile"
path = "{self.passwd}"
"""

    def start_mailauthd(self, pf, temp_failure="disconnect"):
        return self.daemon(self.config(pf, temp_failure), socket_path=self.dovecot_socket(pf))

    @staticmethod
    def dovecot_socket(pf):
        return os.path.join(pf.queue_dir, "private", "auth")

    def dovecot_postfix(self):
        """Postfix with smtpd_sasl_type = dovecot, smtpd_sasl_path = private/auth."""
        return self.postfix()

    def assert_auth(self, pf, user, password, code, mech="PLAIN"):
        r = swaks_auth(pf.port, user, password, mech)
        self.assertEqual(r.code, code, r)
        # swaks: 0 when AUTH succeeded, 28 when the server refused it.
        self.assertEqual(r.returncode, 0 if code == 235 else 28, r)
        return r

    def take_pwdfile_away(self):
        """The backend outage: mailauthd cannot read the file (tempfail)."""
        os.rename(self.passwd, self.passwd + ".away")

    def bring_pwdfile_back(self):
        os.rename(self.passwd + ".away", self.passwd)

    # --- smtpd_sasl_type = dovecot ------------------------------------------

    def test_dovecot_plain_and_login(self):
        pf = self.dovecot_postfix()
        d = self.start_mailauthd(pf)
        pf.start()
        self.assertEqual(pf.postconf("-h", "smtpd_sasl_type", "smtpd_sasl_path").split(),
                         ["dovecot", "private/auth"])

        r = self.assert_auth(pf, "alice", "alice-pw", 235, "PLAIN")
        # Postfix advertises what mailauthd offered in its handshake.
        self.assertIn("AUTH PLAIN LOGIN SCRAM-SHA-256", r.ehlo)
        self.assert_auth(pf, "alice", "alice-pw", 235, "LOGIN")
        self.assert_auth(pf, "plain", "plain-pw", 235, "LOGIN")
        for mech in ("PLAIN", "LOGIN"):
            r = self.assert_auth(pf, "alice", "wrong-pw", 535, mech)
            self.assertIn("5.7.8", r.text)
            self.assert_auth(pf, "alice", "alice-pw ", 535, mech)
            self.assert_auth(pf, "nobody", "alice-pw", 535, mech)

        log = d.log()
        self.assertIn("result=ok proto=dovecot mech=PLAIN user=alice service=smtp", log)
        self.assertIn("result=ok proto=dovecot mech=LOGIN user=alice service=smtp", log)
        self.assertIn("result=fail proto=dovecot mech=LOGIN user=alice", log)
        self.assertIn("rip=127.0.0.1", log)
        self.assertNotIn("alice-pw", log)
        self.assertIn("SASL LOGIN authentication failed", pf.log())
        self.stop_postfix(pf)

    def test_what_postfix_really_sends_matches_the_golden_transcripts(self):
        """A recording proxy between Postfix and mailauthd: the bytes the real
        smtpd sends have the shape the golden transcripts (replayed in
        test_dovecot) assume, and mailauthd answers them."""
        pf = self.dovecot_postfix()
        real = self.path("run/auth-real")
        cfg = self.config(pf).replace(f'socket = "{pf.queue_dir}/private/auth"', f'socket = "{real}"')
        self.daemon(cfg, socket_path=real)
        proxy = RecordingProxy(self.dovecot_socket(pf), real)
        try:
            pf.start()
            self.assert_auth(pf, "alice", "alice-pw", 235, "PLAIN")
            self.assert_auth(pf, "alice", "wrong", 535, "LOGIN")
        finally:
            self.stop_postfix(pf)
            proxy.close()
        stream = proxy.recorded()
        with open(self.path("postfix-recording.txt"), "w") as f:
            f.write(stream)
        lines = stream.splitlines()
        self.assertRegex(lines[0], r"^VERSION\t1\t\d+$")
        self.assertRegex(lines[1], r"^CPID\t[1-9]\d*$")
        auths = [l for l in lines if l.startswith("AUTH\t")]
        self.assertEqual(len(auths), 2, stream)
        # Postfix's AUTH line: AUTH id MECH service=smtp nologin lip= rip= [secured] [resp=]
        shape = re.compile(r"^AUTH\t(\d+)\t(PLAIN|LOGIN)\tservice=smtp\tnologin\t"
                           r"lip=127\.0\.0\.1\trip=127\.0\.0\.1(\tsecured)?(\tresp=(\S*))?$")
        plain = shape.match(auths[0])
        self.assertIsNotNone(plain, auths[0])
        self.assertTrue(base64.b64decode(plain.group(5)).endswith(b"alice\0alice-pw"))
        self.assertIsNotNone(shape.match(auths[1]), auths[1])
        self.assertTrue(any(l.startswith("CONT\t") for l in lines), "LOGIN continues with CONT")
        # The golden transcript's Postfix AUTH lines have exactly this shape.
        source = os.environ.get("MAILAUTH_SOURCE") or os.path.join(os.path.dirname(__file__), "..", "..")
        with open(os.path.join(source, "tests", "data", "transcripts", "postfix-plain.txt")) as f:
            golden = [l[3:].replace("\\t", "\t") for l in f.read().splitlines()
                      if l.startswith(r"C: AUTH\t") and r"\tplain\t" not in l]
        self.assertTrue(golden)
        for l in golden:
            self.assertIsNotNone(shape.match(l.replace("127.0.0.2", "127.0.0.1")), l)

    def test_dovecot_scram_sha_256_with_gsasl(self):
        self.write("passwd", "bob:" + doveadm_pw("bob-scram-pw") + "\n")
        pf = self.dovecot_postfix()
        d = self.start_mailauthd(pf)
        pf.start()

        r = gsasl_smtp_auth(pf.port, "bob", "bob-scram-pw", "SCRAM-SHA-256")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("AUTH SCRAM-SHA-256", r.stdout)
        self.assertRegex(r.stdout, r"(?m)^235 2\.7\.0 ")
        # The server's final message (v=...) was checked by gsasl: it proves
        # mailauthd knows the ServerKey, not just that Postfix said 235.
        self.assertIn("Client authentication finished (server trusted)", r.stderr)

        r = gsasl_smtp_auth(pf.port, "bob", "not-bobs-pw", "SCRAM-SHA-256")
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^535 5\.7\.8 ")
        self.assertNotRegex(r.stdout, r"(?m)^235 ")

        r = gsasl_smtp_auth(pf.port, "nobody", "bob-scram-pw", "SCRAM-SHA-256")
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^535 ")

        # The same stored verifier also checks a plaintext password (PLAIN).
        self.assert_auth(pf, "bob", "bob-scram-pw", 235, "PLAIN")
        self.assert_auth(pf, "bob", "not-bobs-pw", 535, "PLAIN")

        log = d.log()
        self.assertIn("result=ok proto=dovecot mech=SCRAM-SHA-256 user=bob", log)
        self.assertIn("result=fail proto=dovecot mech=SCRAM-SHA-256 user=bob", log)
        self.stop_postfix(pf)

    def test_dovecot_outage_with_temp_failure_disconnect_is_454(self):
        pf = self.dovecot_postfix()
        d = self.start_mailauthd(pf, temp_failure="disconnect")
        pf.start()
        self.assert_auth(pf, "alice", "alice-pw", 235)

        self.take_pwdfile_away()
        for mech in ("PLAIN", "LOGIN"):
            for password in ("alice-pw", "wrong-pw"):
                r = self.assert_auth(pf, "alice", password, 454, mech)
                self.assertIn("4.7.0", r.text)
                self.assertIn("Temporary authentication failure", r.text)
        self.assertIn("result=tempfail proto=dovecot", d.log())

        # Back to normal once the file is back; Postfix reconnects by itself.
        self.bring_pwdfile_back()
        self.assert_auth(pf, "alice", "alice-pw", 235)
        self.assert_auth(pf, "alice", "wrong-pw", 535)
        self.stop_postfix(pf)

    def test_dovecot_outage_with_temp_failure_fail_is_535(self):
        pf = self.dovecot_postfix()
        d = self.start_mailauthd(pf, temp_failure="disconnect")
        pf.start()
        self.assert_auth(pf, "alice", "alice-pw", 235)

        # Restart mailauthd with temp_failure = "fail"; the running smtpd
        # loses its auth connection and must get a fresh one.
        self.assertEqual(d.stop(), 0)
        d = self.start_mailauthd(pf, temp_failure="fail")
        self.assert_auth(pf, "alice", "alice-pw", 235)

        # mailauthd answers FAIL (with "temp"); Postfix has no temporary FAIL:
        # every FAIL is a permanent 535.
        self.take_pwdfile_away()
        for mech in ("PLAIN", "LOGIN"):
            r = self.assert_auth(pf, "alice", "alice-pw", 535, mech)
            self.assertIn("5.7.8", r.text)
        self.assertIn("result=tempfail proto=dovecot", d.log())

        self.bring_pwdfile_back()
        self.assert_auth(pf, "alice", "alice-pw", 235)
        self.stop_postfix(pf)

    # --- smtpd_sasl_type = cyrus (libsasl2 -> saslauthd protocol) -----------

    def test_cyrus_saslauthd_plain_login_and_outage(self):
        pf = self.postfix(cyrus_conf=(
            "pwcheck_method: saslauthd\n"
            f"saslauthd_path: {self.mux}\n"
            "mech_list: PLAIN LOGIN\n"))
        d = self.daemon(self.config(pf), socket_path=self.mux)
        pf.start()
        self.assertEqual(pf.postconf("-h", "smtpd_sasl_type").strip(), "cyrus")

        r = self.assert_auth(pf, "alice", "alice-pw", 235, "PLAIN")
        self.assertIn("AUTH PLAIN LOGIN", r.ehlo)   # mech_list from our smtpd.conf
        self.assert_auth(pf, "alice", "alice-pw", 235, "LOGIN")
        self.assert_auth(pf, "alice", "wrong-pw", 535, "PLAIN")
        self.assert_auth(pf, "alice", "wrong-pw", 535, "LOGIN")
        self.assert_auth(pf, "nobody", "alice-pw", 535, "PLAIN")

        self.take_pwdfile_away()
        for mech in ("PLAIN", "LOGIN"):
            r = self.assert_auth(pf, "alice", "alice-pw", 454, mech)
            self.assertIn("4.7.0 Temporary authentication failure", r.text)
        self.assertIn("result=tempfail proto=mux", d.log())

        self.bring_pwdfile_back()
        self.assert_auth(pf, "alice", "alice-pw", 235, "PLAIN")

        log = d.log()
        self.assertIn("result=ok proto=mux user=alice service=smtp", log)
        self.assertIn("result=fail proto=mux user=alice service=smtp", log)
        self.stop_postfix(pf)


if __name__ == "__main__":
    unittest.main()
