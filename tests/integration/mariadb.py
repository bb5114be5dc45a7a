"""A private MariaDB server for tests and benchmarks.

Each instance has its own datadir (made with mariadb-install-db), its own UNIX
socket and a loopback TCP port chosen free, and runs as a child process
(mariadbd --no-defaults, so no /etc/mysql file applies) that is stopped by
PID.  The system's MariaDB, /var/lib/mysql and /run/mysqld are never touched.

    db = MariaDB("/tmp/x/db1")
    db.bootstrap()              # once: about a second
    db.start()
    db.sql("CREATE DATABASE mail")
    db.stop()                   # SIGTERM, wait; db.start() again reuses the datadir

As a program, for scripts (scripts/bench-mysql.sh):

    python3 mariadb.py serve DIR [--port N]   bootstrap if needed, start, print
                                              "socket=PATH port=N pid=PID", run
                                              until SIGTERM/SIGINT, stop
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time


def free_port():
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(*names):
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if path:
            return path
    raise AssertionError(f"{names[0]} is not installed (mariadb-server, mariadb-client); "
                         "run scripts/install-deps.sh")


class MariaDB:
    ROOT_USER = "root"  # no password, over the private socket only

    def __init__(self, basedir, port=None, extra_args=()):
        self.dir = os.path.abspath(basedir)
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.pid_file = os.path.join(self.dir, "mysqld.pid")
        self.log_path = os.path.join(self.dir, "mariadbd.log")
        self.port = port or free_port()
        self.extra_args = list(extra_args)  # more mariadbd options, e.g. --ssl-cert=...
        self.proc = None
        self._out = None
        os.makedirs(self.dir, exist_ok=True)
        if len(self.socket) > 107:
            raise AssertionError(f"socket path too long for AF_UNIX: {self.socket}")

    def _server_args(self):
        args = [
            "--no-defaults",  # must come first
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.log_path}",
            f"--tmpdir={self.dir}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=8M",
            "--innodb-flush-log-at-trx-commit=2",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--max-connections=300",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")  # mariadbd refuses to run as root otherwise
        return args + self.extra_args

    def bootstrap(self):
        """Create the datadir with the system tables; root has no password."""
        if os.path.isdir(os.path.join(self.datadir, "mysql")):
            return self
        args = [_tool("mariadb-install-db", "mysql_install_db"), "--no-defaults",
                f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
                "--skip-test-db", "--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M"]
        if os.geteuid() == 0:
            args.append("--user=root")
        r = subprocess.run(args, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise AssertionError(f"mariadb-install-db failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _ready_count(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().count(b"ready for connections")
        except FileNotFoundError:
            return 0

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout=60):
        if self.running:
            return self
        before = self._ready_count()
        self._out = open(os.path.join(self.dir, "mariadbd.out"), "ab")
        self.proc = subprocess.Popen([_tool("mariadbd", "mysqld")] + self._server_args(),
                                     stdout=self._out, stderr=self._out,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mariadbd exited with {self.proc.returncode}:\n"
                                     + "\n".join(self.log().splitlines()[-30:]))
            if self._ready_count() > before:
                return self
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise AssertionError("mariadbd did not become ready:\n" + self.log()[-3000:])

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Stop the server by PID; SIGKILL is a crash.  Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig != signal.SIGKILL:
                self.resume()  # a stopped process cannot handle SIGTERM
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        if self._out:
            self._out.close()
            self._out = None
        return rc

    def pause(self):
        """SIGSTOP: the server hangs (its TCP backlog still accepts connections)."""
        if self.running:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.running:
            self.proc.send_signal(signal.SIGCONT)

    def client_args(self, database=None):
        args = [_tool("mariadb", "mysql"), "--no-defaults", f"--socket={self.socket}",
                f"--user={self.ROOT_USER}", "--batch", "--skip-column-names"]
        if database:
            args.append(f"--database={database}")
        return args

    def sql(self, text, database=None, check=True):
        """Run SQL through the mariadb client; returns its output (tab-separated rows)."""
        r = subprocess.run(self.client_args(database), input=text, capture_output=True,
                           text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"SQL failed: {r.stderr.strip()}\n--- SQL ---\n{text}")
        return r.stdout

    def rows(self, text, database=None):
        return [line.split("\t") for line in self.sql(text, database).splitlines()]

    def load_file(self, path, database):
        with open(path) as f:
            return self.sql(f.read(), database)


def _serve(argv):
    import argparse
    p = argparse.ArgumentParser(prog="mariadb.py serve")
    p.add_argument("dir")
    p.add_argument("--port", type=int, default=None)
    a = p.parse_args(argv)
    db = MariaDB(a.dir, a.port).bootstrap().start()
    print(f"socket={db.socket} port={db.port} pid={db.pid}", flush=True)
    done = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.append(1))
    while not done and db.running:
        time.sleep(0.2)
    db.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        sys.exit(_serve(sys.argv[2:]))
    print(__doc__)
    sys.exit(2)
