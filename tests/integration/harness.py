"""Test harness for mailauth integration tests.

Starts real processes (mailauthd, and later MariaDB, Postfix, ...) in a
private temporary directory, talks to them over UNIX sockets, and stops them
by PID.  Nothing here touches the system's own services or /etc.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

BUILD = os.environ.get("MAILAUTH_BUILD") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "build"))
MAILAUTHD = os.path.join(BUILD, "mailauthd")
MAILAUTH_TEST = os.path.join(BUILD, "mailauth-test")
MAILAUTH_USER = os.path.join(BUILD, "mailauth-user")


def which(tool):
    """Path of a tool; tests need it (make check installs it)."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise AssertionError(f"{tool} is not installed; run scripts/install-deps.sh")
    return path


def mkpasswd(password, method="sha512crypt"):
    """A crypt(3) hash made by an independent tool (whois's mkpasswd)."""
    out = subprocess.run([which("mkpasswd"), "-m", method, "--stdin"], input=password.encode(),
                         capture_output=True, check=True)
    return out.stdout.decode().strip()


def counted(value):
    if isinstance(value, str):
        value = value.encode()
    return struct.pack(">H", len(value)) + value


def mux_frame(*fields):
    return b"".join(counted(f) for f in fields)


def mux_exchange(path, data, timeout=10.0, shutdown_write=False):
    """Send raw bytes, return the raw reply (b"" when closed without one)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        if data:
            s.sendall(data)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        s.close()


def mux_reply_text(raw):
    if len(raw) < 2:
        return None
    (n,) = struct.unpack(">H", raw[:2])
    return raw[2:2 + n].decode(errors="replace")


def insist_on_root(text):
    """Add user = "root" to the [daemon] table unless it names a user.  The
    key goes on the line after [daemon] (or a [daemon] table is prepended)."""
    lines = text.split("\n")
    start = next((i for i, l in enumerate(lines) if l.strip() == "[daemon]"), None)
    if start is None:
        return '[daemon]\nuser = "root"\n' + text
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
               len(lines))
    if any(l.split("=")[0].strip() == "user" for l in lines[start + 1:end]):
        return text
    lines.insert(start + 1, 'user = "root"')
    return "\n".join(lines)


class Daemon:
    """One mailauthd process with its own directory, config and log."""

    def __init__(self, workdir, config, args=(), name="mailauthd", wrapper=(), program=None):
        self.wrapper = list(wrapper)  # e.g. ["prlimit", "--nofile=64"]
        self.program = program or MAILAUTHD  # e.g. the installed /usr/sbin/mailauthd
        self.dir = workdir
        self.config_path = os.path.join(workdir, f"{name}.conf")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.args = list(args)
        self.proc = None
        self.write_config(config)

    def write_config(self, text):
        # mailauthd refuses to keep running as root unless a backend needs it
        # or the config insists; the tests run as root in CI and insist.
        if os.geteuid() == 0:
            text = insist_on_root(text)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config_path)

    def start(self, wait_for=None, timeout=15):
        self.logfile = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.wrapper + [self.program, "--foreground", "--config", self.config_path]
                                     + self.args, stdout=self.logfile, stderr=self.logfile)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mailauthd exited with {self.proc.returncode}:\n{self.log()}")
            if "ready" in self.log() and (wait_for is None or os.path.exists(wait_for)):
                return self
            time.sleep(0.02)
        raise AssertionError(f"mailauthd did not become ready:\n{self.log()}")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, text, timeout=10, start=0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log()[start:]:
                return
            time.sleep(0.02)
        raise AssertionError(f"log never showed {text!r}:\n{self.log()}")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self):
        mark = len(self.log())
        self.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            tail = self.log()[mark:]
            if "reload: done" in tail or "reload failed" in tail:
                return tail
            time.sleep(0.02)
        raise AssertionError("no reload result in the log")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"mailauthd did not stop on {sig}:\n{self.log()}")
        self.logfile.close()
        rc = self.proc.returncode
        self.proc = None
        return rc


class DaemonTestCase(unittest.TestCase):
    """Gives each test a temporary directory; stops every daemon it started."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mailauth-it-")
        self.daemons = []
        self._problems_before = self._problem_count()

    def _problem_count(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        return len(result.failures) + len(result.errors) if result else 0

    def tearDown(self):
        for d in self.daemons:
            try:
                d.stop()
            except AssertionError:
                pass
        if self._problem_count() == self._problems_before:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        print(f"\n(kept {self.tmp} for inspection)")
        for d in self.daemons:
            print(f"--- last lines of {d.log_path} ---")
            print("\n".join(d.log().splitlines()[-40:]))

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, text, mode=0o644):
        p = self.path(name)
        with open(p + ".tmp", "w") as f:
            f.write(text)
        os.chmod(p + ".tmp", mode)
        os.rename(p + ".tmp", p)
        return p

    def daemon(self, config, args=(), name="mailauthd", socket_path=None, wrapper=(), program=None):
        d = Daemon(self.tmp, config, args, name, wrapper, program)
        self.daemons.append(d)
        return d.start(wait_for=socket_path)

    def mailauth_test(self, *args, input=None, timeout=60):
        return subprocess.run([MAILAUTH_TEST, *args], input=input, capture_output=True,
                              text=True, timeout=timeout)


class DovecotConnection:
    """A raw client connection to a Dovecot-protocol socket."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        """The next line without LF; None on EOF."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def handshake(self, version="VERSION\t1\t0\nCPID\t4242\n"):
        self.send(version)
        lines = []
        while True:
            l = self.line()
            if l is None:
                raise AssertionError(f"EOF during handshake after {lines}")
            lines.append(l)
            if l == "DONE":
                return lines

    def closed(self):
        """True if the server closed the connection (reads EOF)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def control(path, command, timeout=10.0):
    """Send one command to mailauthd's control socket, return the reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        s.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        s.close()


def prometheus_value(text, name, **labels):
    """The value of one sample in Prometheus text format (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == name or (labels and key.startswith(name + "{") and all(
                f'{k}="{v}"' in key for k, v in labels.items())):
            if not labels and "{" in key:
                continue
            return float(value)
    return 0.0


class RecordingProxy:
    """A UNIX-socket proxy that forwards to `upstream` and records every byte
    the clients send: what a real client (Postfix, doveadm) puts on the wire."""

    def __init__(self, path, upstream, mode=0o666):
        self.upstream = upstream
        self.chunks = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        os.chmod(path, mode)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _pump(self, src, dst, record):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record:
                    with self.lock:
                        self.chunks.append(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # The first direction to finish ends both.
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            src.close()

    def _serve(self):
        while not self.stop_event.is_set():
            try:
                client, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX)
            up.connect(self.upstream)
            threading.Thread(target=self._pump, args=(client, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, False), daemon=True).start()

    def recorded(self):
        with self.lock:
            return b"".join(self.chunks).decode(errors="replace")

    def close(self):
        self.stop_event.set()
        self.thread.join(5)
        self.sock.close()
