"""A private Postfix instance for integration tests, and SMTP AUTH clients.

Everything lives under one directory the test owns: config_directory
(main.cf, master.cf), queue_directory, data_directory, the Cyrus SASL
application config and the mail log.  Postfix's master(8) is started
directly (``master -c DIR -d``), in its own session, so that:

  * the system's main.cf, master.cf and /var/spool/postfix are never used
    and nothing under /etc/postfix is written (``postfix -c DIR start`` would
    want DIR in the default main.cf's alternate_config_directories and runs
    postfix-script's checks; master(8) needs neither);
  * the instance is stopped by the master's PID, and every process left in
    its session afterwards is found in /proc and killed by PID.  The test
    process makes itself the subreaper of the orphans (master exits without
    waiting for its children), so they are reaped here, not left as zombies.

smtpd listens on 127.0.0.1 only, on a free port picked here; it runs
unchrooted, so no chroot set-up is needed.  Postfix's own log goes to a file
inside the directory (maillog_file, written by postlogd(8)).
"""
import ctypes
import grp
import os
import pwd
import re
import signal
import socket
import subprocess
import time
import unittest

from harness import DaemonTestCase, which

def free_port():
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def make_traversable(path, root):
    """Let the postfix user reach path: chmod go+rx on path and its parents up
    to root (a directory the test created); above root, only check."""
    path, root = os.path.abspath(path), os.path.abspath(root)
    while True:
        st = os.stat(path)
        if st.st_mode & 0o005 != 0o005:
            if path != root and not path.startswith(root + os.sep):
                raise AssertionError(f"{path} is not searchable by other users")
            os.chmod(path, (st.st_mode & 0o7777) | 0o055)
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _session_members(sid, zombies=False):
    """(pid, comm) of the processes in session sid; zombies (dead, not yet
    reaped) only when asked."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may contain spaces.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and (zombies or fields[0] not in ("Z", "X")):
            members.append((int(entry), comm))
    return members


def _reap(pid):
    """Collect a dead process that was re-parented to us (see _subreaper)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


_SUBREAPER = None


def _subreaper():
    """Make this process the reaper of orphaned descendants (Linux
    PR_SET_CHILD_SUBREAPER).  master(8) exits right after signalling its
    children; they are then re-parented to us instead of to PID 1, so that
    stop() can collect them and nothing, not even a zombie, is left."""
    global _SUBREAPER
    if _SUBREAPER is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _SUBREAPER = libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            _SUBREAPER = False
    return _SUBREAPER


def ps_session(sid):
    """What ps(1) shows of session sid: lines 'pid stat comm'."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid=,stat=,comm="], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and int(parts[1]) == sid:
            rows.append(f"{parts[0]} {parts[2]} {parts[3]}")
    return rows


class PostfixError(AssertionError):
    pass


class Postfix:
    """One private Postfix instance (master + smtpd on 127.0.0.1:port)."""

    def __init__(self, basedir, port=None, main=None, cyrus_conf=None, root=None):
        """basedir: where the instance lives (created);
        root: the test's own directory (basedir or a parent of it), which may
        be opened up (chmod go+rx) for the postfix user;
        main: extra main.cf settings {name: value}, over the defaults below;
        cyrus_conf: text of the Cyrus SASL smtpd.conf; switches smtpd to
        smtpd_sasl_type = cyrus (default: dovecot, private/auth)."""
        self.basedir = basedir
        self.root = root or basedir
        self.port = port or free_port()
        self.config_dir = os.path.join(basedir, "etc")
        self.queue_dir = os.path.join(basedir, "spool")
        self.data_dir = os.path.join(basedir, "data")
        # Debian's Postfix reads the Cyrus SASL application config
        # (smtpd.conf) from $config_directory/sasl, whatever
        # cyrus_sasl_config_path says; upstream's reads cyrus_sasl_config_path.
        # Point both at the same place.
        self.sasl_dir = os.path.join(self.config_dir, "sasl")
        self.log_path = os.path.join(basedir, "maillog")
        self.master_log_path = os.path.join(basedir, "master.out")
        self.extra_main = dict(main or {})
        self.cyrus_conf = cyrus_conf
        self.proc = None
        self.sid = None
        self.uid = pwd.getpwnam("postfix").pw_uid
        self.postdrop_gid = grp.getgrnam("postdrop").gr_gid

    # --- set-up ------------------------------------------------------------

    def main_cf(self):
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": "postfix-mailauth-it",
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.basedir,
            "myhostname": "mx.mailauth-it.test",
            "mydomain": "mailauth-it.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.1/32",
            "relayhost": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            "smtputf8_enable": "no",
            "smtpd_banner": "$myhostname ESMTP mailauth-it",
            "smtpd_peername_lookup": "no",
            "smtpd_error_sleep_time": "0s",
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "smtpd_relay_restrictions":
                "permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": "private/auth",
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_tls_auth_only": "no",
            "broken_sasl_auth_clients": "no",
        }
        if self.cyrus_conf is not None:
            settings.update({
                "smtpd_sasl_type": "cyrus",
                "smtpd_sasl_path": "smtpd",
                "cyrus_sasl_config_path": self.sasl_dir,
            })
        settings.update(self.extra_main)
        return "".join(f"{k} = {v}\n" for k, v in settings.items())

    def master_cf(self):
        # Only what an SMTP session up to AUTH needs: smtpd (unchrooted), the
        # connection-count server it asks, and the log writer.
        return (
            f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
            "anvil     unix  -       -       n       -       1       anvil\n"
            "postlog   unix-dgram n  -       n       -       1       postlogd\n"
        )

    def _mkdir(self, path, mode, uid=0, gid=0):
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)

    @staticmethod
    def _write(path, text):
        with open(path, "w") as f:
            f.write(text)
        # Postfix re-reads a main.cf younger than a second or so, in 300 ms
        # steps, until it looks stable: date the files back to save that.
        past = time.time() - 60
        os.utime(path, (past, past))

    def setup(self):
        os.makedirs(self.basedir, exist_ok=True)
        make_traversable(self.basedir, self.root)
        self._mkdir(self.config_dir, 0o755)
        self._mkdir(self.queue_dir, 0o755)
        # As post-install lays them out: private/ and public/ for the
        # services' sockets, pid/ for master.pid.
        self._mkdir(os.path.join(self.queue_dir, "pid"), 0o755)
        self._mkdir(os.path.join(self.queue_dir, "private"), 0o700, self.uid)
        self._mkdir(os.path.join(self.queue_dir, "public"), 0o710, self.uid, self.postdrop_gid)
        self._mkdir(self.data_dir, 0o700, self.uid)
        self._write(os.path.join(self.config_dir, "main.cf"), self.main_cf())
        self._write(os.path.join(self.config_dir, "master.cf"), self.master_cf())
        if self.cyrus_conf is not None:
            self._mkdir(self.sasl_dir, 0o755)
            self._write(os.path.join(self.sasl_dir, "smtpd.conf"), self.cyrus_conf)
        # The postlogd(8) opens maillog_file itself; create it so that a
        # failure to start can always be shown.
        open(self.log_path, "a").close()
        return self

    def postconf(self, *args):
        r = subprocess.run([which("postconf"), "-c", self.config_dir, *args],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise PostfixError(f"postconf {' '.join(args)} failed: {r.stderr}")
        return r.stdout

    # --- start / stop ------------------------------------------------------

    def start(self, timeout=20):
        self.setup()
        # Catch typos in the settings before starting anything.
        warnings = subprocess.run([which("postconf"), "-c", self.config_dir, "-n"],
                                  capture_output=True, text=True, timeout=30).stderr
        if "warning" in warnings or "fatal" in warnings:
            raise PostfixError(f"postconf complains about main.cf:\n{warnings}")
        master = os.path.join(self.postconf("-dh", "daemon_directory").strip(), "master")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MAIL_CONFIG": self.config_dir}
        _subreaper()
        self.master_out = open(self.master_log_path, "ab")
        # -d: stay in the foreground (the PID we hold is the master's);
        # start_new_session: every child stays in a session we can sweep.
        self.proc = subprocess.Popen([master, "-c", self.config_dir, "-d"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.master_out,
                                     stderr=self.master_out, start_new_session=True)
        self.sid = self.proc.pid
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PostfixError(f"postfix master exited with {self.proc.returncode}:\n"
                                   f"{self.diagnostics()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.settimeout(10)
                    banner = s.recv(512).decode(errors="replace")
                    if banner.startswith("220 "):
                        s.sendall(b"QUIT\r\n")
                        return self
                    last_error = f"banner {banner!r}"
            except OSError as e:
                last_error = str(e)
            time.sleep(0.05)
        self.stop()
        raise PostfixError(f"postfix did not answer on 127.0.0.1:{self.port} ({last_error}):\n"
                           f"{self.diagnostics()}")

    def processes(self, zombies=False):
        """(pid, comm) of every process of this instance still alive."""
        if self.sid is None:
            return []
        return _session_members(self.sid, zombies)

    def stop(self, timeout=15):
        """Stop master by PID, wait for it, then kill by PID whatever of
        this instance is left.  Returns the leftovers [(pid, comm)]: the
        processes that were still running when master had gone and that had
        to be killed (an empty list is a clean stop)."""
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # master: SIGTERM its children, exit
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.master_out.close()
        leftovers = []
        deadline = time.monotonic() + 5
        while True:
            for pid, _ in self.processes(zombies=True):
                _reap(pid)
            leftovers = self.processes()
            if not leftovers or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        for pid, _ in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Collect the last ones (ours if we are their subreaper; otherwise
        # PID 1 does it, a little later).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            members = self.processes(zombies=_SUBREAPER)
            if not members:
                break
            for pid, _ in members:
                _reap(pid)
            time.sleep(0.02)
        return leftovers

    # --- inspection --------------------------------------------------------

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def diagnostics(self, lines=40):
        out = []
        for path in (self.master_log_path, self.log_path):
            try:
                with open(path, "rb") as f:
                    text = f.read().decode(errors="replace")
            except OSError:
                continue
            out.append(f"--- last lines of {path} ---")
            out.extend(text.splitlines()[-lines:])
        return "\n".join(out)


# --- SMTP AUTH clients -----------------------------------------------------

REPLY_RE = re.compile(r"^\s*<(?:-|~|\*\*|~\*)\s+(\d{3})(?:[ -](.*))?$")
SENT_RE = re.compile(r"^\s*(?:->|~>|\*\*>|~\*>)\s+(.*)$")


class SwaksResult:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.code, self.text, self.ehlo = self._parse(proc.stdout)

    @staticmethod
    def _parse(transcript):
        """The first final reply to AUTH (not a 334 challenge), its text, and
        the EHLO reply lines."""
        code = text = None
        ehlo = []
        state = None
        for line in transcript.splitlines():
            sent = SENT_RE.match(line)
            if sent:
                cmd = sent.group(1).upper()
                if cmd.startswith("EHLO"):
                    state = "ehlo"
                elif cmd.startswith("AUTH ") and code is None:
                    state = "auth"
                elif state == "ehlo":
                    state = None
                continue
            reply = REPLY_RE.match(line.rstrip("\r"))
            if not reply:
                continue
            if state == "ehlo":
                ehlo.append(reply.group(2))
            elif state == "auth" and reply.group(1) != "334":
                code, text = int(reply.group(1)), reply.group(2)
                state = None
        return code, text, ehlo

    def __repr__(self):
        return (f"swaks rc={self.returncode} auth={self.code} {self.text!r}\n"
                f"{self.stdout}\n{self.stderr}")


def swaks_auth(port, user, password, mech="PLAIN", timeout=60):
    """One SMTP session up to AUTH with swaks; returns a SwaksResult."""
    proc = subprocess.run(
        [which("swaks"), "--server", f"127.0.0.1:{port}", "--helo", "client.mailauth-it.test",
         "--auth", mech, "--auth-user", user, "--auth-password", password,
         "--quit-after", "AUTH", "--timeout", "30"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return SwaksResult(proc)


def gsasl_smtp_auth(port, user, password, mech="SCRAM-SHA-256", timeout=60):
    """One SMTP AUTH with GNU SASL's gsasl as the client.  Returns the
    CompletedProcess; rc 0 means the server said 235."""
    return subprocess.run(
        [which("gsasl"), "--client", "--smtp", "--connect", f"127.0.0.1:{port}",
         "--hostname", "localhost", "--no-starttls", "--mechanism", mech,
         "--authentication-id", user, "--password", password, "--verbose"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


class PostfixTestCase(DaemonTestCase):
    """DaemonTestCase plus private Postfix instances, stopped (by PID) before
    the daemons and before the temporary directory goes away."""

    def setUp(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("a private Postfix master must run as root")
        super().setUp()
        self.postfixes = []
        # mkdtemp makes it 0700 root; the postfix user must reach the queue,
        # the sockets and the Cyrus SASL config below it.
        os.chmod(self.tmp, 0o755)

    def postfix(self, name="postfix", **kw):
        """A Postfix instance under self.tmp/name, set up but not started
        (start it once the auth sockets it needs exist)."""
        pf = Postfix(self.path(name), root=self.tmp, **kw)
        self.postfixes.append(pf)
        return pf.setup()

    def stop_postfix(self, pf):
        """Stop pf and assert that none of its processes is left, as ps(1)
        sees it (no zombie either when we could be their subreaper)."""
        leftovers = pf.stop()
        self.assertEqual(leftovers, [], "postfix processes outlived the master")
        self.assertEqual(pf.processes(), [])
        if _SUBREAPER:
            self.assertEqual(ps_session(pf.sid), [])

    def tearDown(self):
        leftovers = []
        for pf in self.postfixes:
            try:
                leftovers += pf.stop()
            except Exception as e:  # keep going: the rest must stop too
                leftovers.append((None, repr(e)))
        failed = self._problem_count() != self._problems_before
        if failed or leftovers:
            for pf in self.postfixes:
                print("\n" + pf.diagnostics())
        super().tearDown()
        if leftovers:
            raise AssertionError(f"postfix processes left after the master stopped "
                                 f"(killed by PID): {leftovers}")
