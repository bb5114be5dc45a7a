#!/usr/bin/env python3
"""make bench: mailauthd beside saslauthd, Dovecot's auth service, the crypt(3)
limit and echo servers of both framings, in one run, on the same users and
hashes, with the same client (mailauth-test --bench).  Started by
scripts/bench-compare.sh, which installs the dependencies and builds first.

Everything runs privately under one temporary directory: each daemon on its
own socket, started in its own session and stopped by PID; MariaDB from
tests/integration/mariadb.py.  The one file outside it is the PAM service
/etc/pam.d/mailauth-bench (saslauthd has no PAM confdir option), written
only while saslauthd runs and removed at exit, on Ctrl-C and on error too.
"""
import argparse
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import base64

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from mariadb import MariaDB  # noqa: E402

SERVICE = "mailauth-bench"
PAM_FILE = "/etc/pam.d/" + SERVICE
PAM_MARK = "# written by mailauth tests/bench/bench_compare.py (make bench); removed at exit"
NOFILE = 65536


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def raise_nofile():
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def children_of():
    """{ppid: [pid, ...]} of every process now."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    kids, out, todo = children_of(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(root):
    """{pid: utime + stime} of root and every descendant now (root None: {})."""
    out = {}
    for p in (tree(root) if root else []):
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        out[p] = int(fields[11]) + int(fields[12])
    return out


def ticks_spent(before, after):
    """CPU ticks spent between two cpu_ticks() readings.  A process started in
    between (Dovecot's auth-worker, say) counts whole; one that exited in
    between is lost, which the daemons measured here do not do under load."""
    return sum(t - before.get(p, 0) for p, t in after.items())


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Bench:
    def __init__(self, a):
        self.a = a
        self.build = a.build
        self.tools = os.path.join(a.build, "tests", "mailauth-bench-tools")
        self.mtest = os.path.join(a.build, "mailauth-test")
        self.nproc = os.cpu_count() or 1
        self.work = tempfile.mkdtemp(prefix="mailauth-bench-compare.")
        os.chmod(self.work, 0o755)
        self.procs = []          # (name, Popen) started by us, stopped by PID
        self.pidfile_daemons = []  # (name, pid) that daemonised (saslauthd)
        self.pam_written = False
        self.db = None
        self.results = {}        # (daemon, proto, c) -> dict
        self.notes = []
        self.crypt = {}          # threads -> per second
        self.rss = []

    # --- processes --------------------------------------------------------------------

    def spawn(self, name, argv, **kw):
        out = open(os.path.join(self.work, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, preexec_fn=raise_nofile, **kw)
        self.procs.append((name, p))
        return p

    def stop(self, p, timeout=20):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def stop_pid(self, pid, timeout=20):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.pidfile_daemons = [(n, q) for n, q in self.pidfile_daemons if q != pid]

    def cleanup(self):
        for _, pid in list(self.pidfile_daemons):
            self.stop_pid(pid)
        for _, p in list(reversed(self.procs)):
            self.stop(p)
        if self.db is not None:
            try:
                self.db.stop()
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                log(f"stopping MariaDB: {e}")
            self.db = None
        self.remove_pam()
        if self.a.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def wait_socket(self, path, name, proc=None, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                return
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
        logf = os.path.join(self.work, name + ".log")
        tail = open(logf, errors="replace").read()[-3000:] if os.path.exists(logf) else ""
        raise SystemExit(f"bench: {name}: no socket {path}\n{tail}")

    # --- PAM service file ----------------------------------------------------------------

    def write_pam(self, text):
        if os.path.exists(PAM_FILE) and not self.pam_written:
            with open(PAM_FILE) as f:
                if PAM_MARK not in f.read():
                    raise SystemExit(f"bench: {PAM_FILE} exists and is not ours; not touching it")
        fd = os.open(PAM_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.pam_written = True
        with os.fdopen(fd, "w") as f:
            f.write(PAM_MARK + "\n" + text)

    def remove_pam(self):
        if self.pam_written:
            try:
                os.unlink(PAM_FILE)
                log(f"removed {PAM_FILE}")
            except FileNotFoundError:
                pass
            self.pam_written = False

    # --- users ---------------------------------------------------------------------------

    def make_users(self):
        n = self.a.users
        self.users_file = os.path.join(self.work, "users.txt")
        with open(self.users_file, "w") as f:
            for i in range(1, n + 1):
                f.write(f"user{i}@bench.test:pw-{i}\n")
        # sha256-crypt ($5$, 5000 rounds: what mkpasswd -m sha256crypt makes),
        # hashed once by mailauth-user; every backend gets these same strings.
        conf = os.path.join(self.work, "import.conf")
        self.passwd = os.path.join(self.work, "passwd")
        with open(conf, "w") as f:
            f.write(f'[saslauthd]\nsocket = "{self.work}/unused"\n'
                    f'[[backend]]\ntype = "pwdfile"\npath = "{self.passwd}"\n')
        r = subprocess.run([os.path.join(self.build, "mailauth-user"), "--config", conf, "import",
                            self.users_file, "--scheme", "sha256-crypt"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"bench: mailauth-user import failed:\n{r.stderr}")
        self.hashes = {}
        with open(self.passwd) as f:
            for line in f:
                user, h = line.rstrip("\n").split(":", 1)
                self.hashes[user] = h
        if len(self.hashes) != n or not all(h.startswith("$5$") for h in self.hashes.values()):
            raise SystemExit("bench: the pwdfile does not hold a $5$ hash for every user")
        self.passwd_plain = os.path.join(self.work, "passwd-plain")
        with open(self.passwd_plain, "w") as f:
            for i in range(1, n + 1):
                f.write(f"user{i}@bench.test:{{PLAIN}}pw-{i}\n")
        os.chmod(self.passwd, 0o644)
        os.chmod(self.passwd_plain, 0o644)

    # --- one measurement -----------------------------------------------------------------

    def client(self, sock, proto, c, seconds=None):
        argv = [self.mtest, "-f", sock, "-s", SERVICE, "--bench", "--users", self.users_file,
                "--concurrency", str(c), "--duration", str(seconds or self.a.seconds), "--json"]
        if proto == "dovecot":
            argv[1:1] = ["--dovecot", "--persistent"]
        r = subprocess.run(argv, capture_output=True, text=True, preexec_fn=raise_nofile)
        if not r.stdout.strip():
            raise SystemExit(f"bench: mailauth-test printed nothing: {r.stderr}")
        return json.loads(r.stdout)

    def cell(self, daemon, proto, sock, c, server_pid):
        # The SQL-backed peers also spend MariaDB's CPU: counted apart.
        db_pid = self.db.pid if self.db is not None and "sql" in daemon else None
        t0, d0 = cpu_ticks(server_pid), cpu_ticks(db_pid)
        r = self.client(sock, proto, c)
        t1, d1 = cpu_ticks(server_pid), cpu_ticks(db_pid)
        hz = os.sysconf("SC_CLK_TCK")
        per = 1e6 / hz / r["requests"] if r["requests"] else 0
        r["server_cpu_us"] = ticks_spent(t0, t1) * per
        if db_pid:
            r["db_cpu_us"] = ticks_spent(d0, d1) * per
        self.results[(daemon, proto, c)] = r
        flag = "" if r["tempfail"] + r["errors"] + r["no"] == 0 else \
            f"  !! no={r['no']} tempfail={r['tempfail']} errors={r['errors']}"
        log(f"{daemon:<28} {proto:<7} c={c:<3} {r['auth_per_s']:>10.1f}/s  client "
            f"{r['client_cpu_us_per_req']:.1f} µs/req  server {r['server_cpu_us']:.1f} µs/auth"
            + (f" + MariaDB {r['db_cpu_us']:.1f}" if "db_cpu_us" in r else "") + flag)
        return r

    def run_levels(self, daemon, protos, server_pid, check=True):
        for proto, sock in protos:
            if check:
                self.check_answers(daemon, proto, sock)
            for c in self.a.concurrency:
                self.cell(daemon, proto, sock, c, server_pid)

    def check_answers(self, daemon, proto, sock):
        """A wrong password is refused and a right one accepted before we measure.

        The wrong one goes first: mailauthd's brute-force policy counts the
        failure against user1 and the success right after clears it, so no
        penalty is left to slow the measured requests.
        """
        base = [self.mtest] + (["--dovecot"] if proto == "dovecot" else []) + ["-f", sock, "-s", SERVICE]
        if not daemon.startswith("echo"):
            no = subprocess.run(base + ["-u", "user1@bench.test", "-p", "wrong"], capture_output=True, text=True)
            if no.returncode != 1:
                raise SystemExit(f"bench: {daemon} ({proto}) does not refuse a wrong password: "
                                 f"{no.stdout}{no.stderr} (see {self.work}; --keep keeps it)")
        ok = subprocess.run(base + ["-u", "user1@bench.test", "-p", "pw-1"], capture_output=True, text=True)
        if ok.returncode != 0:
            raise SystemExit(f"bench: {daemon} ({proto}) does not accept user1's password: "
                             f"{ok.stdout}{ok.stderr} (see {self.work}; --keep keeps it)")

    def warm(self, sock):
        """Every user logs in once over the Dovecot protocol (fills a cache)."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(60)
        s.connect(sock)
        s.sendall(f"VERSION\t1\t2\nCPID\t{os.getpid()}\n".encode())
        buf = b""
        while b"DONE\n" not in buf:
            buf += s.recv(65536)
        buf = buf[buf.index(b"DONE\n") + 5:]
        users = [line.rstrip("\n").split(":", 1) for line in open(self.users_file)]
        ok = 0
        for start in range(0, len(users), 32):
            chunk = users[start:start + 32]
            out = b""
            for i, (u, p) in enumerate(chunk):
                resp = base64.b64encode(b"\0" + u.encode() + b"\0" + p.encode()).decode()
                out += f"AUTH\t{start + i + 1}\tPLAIN\tservice={SERVICE}\tnologin\tresp={resp}\n".encode()
            s.sendall(out)
            got = 0
            while got < len(chunk):
                while b"\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        raise SystemExit(f"bench: warm-up: {sock} closed the connection")
                    buf += data
                line, buf = buf.split(b"\n", 1)
                got += 1
                ok += line.startswith(b"OK\t")
        s.close()
        if ok != len(users):
            raise SystemExit(f"bench: warm-up: {ok} of {len(users)} logins succeeded")

    def warm_mux(self, sock):
        """Every user logs in once over the mux protocol (fills saslauthd -c's cache)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(line):
            u, p = line.rstrip("\n").split(":", 1)
            req = b"".join(len(x).to_bytes(2, "big") + x for x in (u.encode(), p.encode(), SERVICE.encode(), b""))
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(60)
                s.connect(sock)
                s.sendall(req)
                data = b""
                while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                    chunk = s.recv(1024)
                    if not chunk:
                        break
                    data += chunk
                return data[2:4] == b"OK"
        with ThreadPoolExecutor(8) as ex:
            ok = sum(ex.map(one, open(self.users_file).readlines()))
        if ok != self.a.users:
            raise SystemExit(f"bench: warm-up: {ok} of {self.a.users} logins succeeded")

    # --- the parts -----------------------------------------------------------------------

    def crypt_limit(self):
        h = self.hashes["user1@bench.test"]
        for t in sorted({min(c, self.nproc) for c in self.a.concurrency}):
            r = subprocess.run([self.tools, "crypt-limit", "--hash", h, "--password", "pw-1",
                                "--threads", str(t), "--seconds", str(self.a.seconds)],
                               capture_output=True, text=True, check=True)
            self.crypt[t] = json.loads(r.stdout)["per_s"]
            log(f"crypt(3) limit, {t} thread(s): {self.crypt[t]:.1f} verifications/s")

    def echo(self):
        for proto in ("mux", "dovecot"):
            sock = os.path.join(self.work, f"echo-{proto}")
            p = self.spawn(f"echo-{proto}", [self.tools, f"echo-{proto}", "--socket", sock])
            self.wait_socket(sock, f"echo-{proto}", p)
            self.run_levels(f"echo-{proto}", [(proto, sock)], p.pid)
            self.stop(p)

    def mailauthd_conf(self, name, passwd, cache):
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        user = 'user = "root"' if os.geteuid() == 0 else ""
        cache_table = '[cache]\nttl = "600s"\nnegative_ttl = "10s"\nsize = 20000\n' if cache else ""
        conf = os.path.join(d, "mailauthd.conf")
        with open(conf, "w") as f:
            f.write(f"""[daemon]
{user}
workers = {self.a.workers}
log = "stderr"
log_level = "warning"
max_connections = {max(self.a.idle) + 1000 if self.a.idle else 4096}
control_socket = "{d}/control"
[saslauthd]
socket = "{d}/mux"
mode = "0666"
failure_delay = "0s"
[dovecot]
socket = "{d}/auth"
mode = "0666"
failure_delay = "0s"
{cache_table}
[[backend]]
type = "pwdfile"
path = "{passwd}"
""")
        return d, conf

    def stats(self, d):
        r = subprocess.run([self.mtest, "--control", f"{d}/control", "stats"], capture_output=True, text=True)
        out = {}
        for line in r.stdout.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            base = name.split("{")[0]
            try:
                out[base] = out.get(base, 0) + float(value)
            except ValueError:
                pass
        return out

    def mailauthd(self):
        variants = [("mailauthd hash", self.passwd, False), ("mailauthd cache", self.passwd, True),
                    ("mailauthd {PLAIN}", self.passwd_plain, False)]
        for label, passwd, cache in variants:
            name = "mailauthd-" + label.split()[1].strip("{}").lower()
            d, conf = self.mailauthd_conf(name, passwd, cache)
            p = self.spawn(name, [os.path.join(self.build, "mailauthd"), "--foreground", "--config", conf])
            self.wait_socket(f"{d}/mux", name, p)
            self.wait_socket(f"{d}/auth", name, p)
            protos = [("mux", f"{d}/mux"), ("dovecot", f"{d}/auth")]
            for proto, sock in protos:
                self.check_answers(label, proto, sock)
            if cache:
                self.warm(f"{d}/auth")
            before = self.stats(d)
            self.run_levels(label, protos, p.pid, check=False)
            after = self.stats(d)
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            pen = delta.get("mailauth_penalties_total", 0)
            refused = delta.get("mailauth_refused_in_flight_total", 0)
            hits = delta.get("mailauth_cache_hits_total", 0)
            misses = delta.get("mailauth_cache_misses_total", 0)
            note = f"{label}: brute-force policy penalties {pen:.0f}, refused in flight {refused:.0f}"
            if cache:
                note += f"; cache hits {hits:.0f}, misses {misses:.0f}"
            self.notes.append(note)
            if pen or refused:
                log(f"WARNING: {note}")
            if label == "mailauthd hash" and self.a.idle:
                self.idle_rss("mailauthd", f"{d}/auth", p.pid, p.pid, self.a.idle)
            self.stop(p)

    def idle_rss(self, daemon, sock, pid_for_rss, tree_root, counts):
        base = rss_kib(pid_for_rss)
        self.rss.append((daemon, 0, base))
        for n in counts:
            h = subprocess.Popen([self.tools, "idle-dovecot", "--socket", sock, "--count", str(n)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 preexec_fn=raise_nofile)
            try:
                line = h.stdout.readline()
                if not line.startswith("ready"):
                    h.stdin.close()
                    h.wait()
                    self.notes.append(f"{daemon}: could not hold {n} idle connections")
                    log(f"{daemon}: could not hold {n} idle connections")
                    continue
                time.sleep(0.5)
                rss = rss_kib(pid_for_rss)
                self.rss.append((daemon, n, rss))
                log(f"{daemon} RSS with {n} idle Dovecot connections: {rss} KiB (idle: {base} KiB)")
            finally:
                if h.poll() is None:
                    h.stdin.close()
                    alive = h.stdout.read().strip()
                    h.wait()
                    if alive != f"alive {n}":
                        self.notes.append(f"{daemon}: after the RSS reading: {alive} of {n} connections")
            time.sleep(0.5)

    def mariadb(self):
        log("starting a private MariaDB")
        self.db = MariaDB(os.path.join(self.work, "db")).bootstrap().start()
        self.db_password = "bench-" + secrets.token_hex(8)
        self.db.sql("CREATE DATABASE mail")
        self.db.load_file(os.path.join(SRC, "backends", "mysql", "schema-users.sql"), "mail")
        rows = ",\n".join(f"('{u}', '{self.hashes[u]}', 'pw-{u[4:u.index('@')]}', 1)" for u in self.hashes)
        self.db.sql(f"INSERT INTO users (id, crypt, clear, enabled) VALUES\n{rows};", "mail")
        self.db.sql(f"CREATE USER 'bench'@'localhost' IDENTIFIED BY '{self.db_password}';"
                    "GRANT SELECT ON mail.* TO 'bench'@'localhost';")

    def pam_module(self, name):
        for d in ("/lib/x86_64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security",
                  f"/usr/lib/{os.uname().machine}-linux-gnu/security", "/lib/security", "/usr/lib/security"):
            if os.path.exists(f"{d}/{name}"):
                return f"{d}/{name}"
        raise SystemExit(f"bench: {name} not found (scripts/install-deps.sh installs it)")

    def start_saslauthd(self, label, args, d):
        """saslauthd ARGS -m D, daemonised (without -d, which would log every
        request to stderr); returns the PID its PID file names, once D/mux
        exists.  Stopped with stop_pid() (cleanup() does it too)."""
        argv = [shutil.which("saslauthd") or "/usr/sbin/saslauthd"] + args + ["-m", d]
        out = open(os.path.join(self.work, "saslauthd.log"), "ab")
        subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       start_new_session=True, check=True, preexec_fn=raise_nofile)
        pidfile = os.path.join(d, "saslauthd.pid")
        deadline = time.monotonic() + 30
        while not (os.path.exists(pidfile) and os.path.getsize(pidfile) > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not os.path.exists(pidfile):
            raise SystemExit(f"bench: {label}: no PID file {pidfile}\n"
                             + open(os.path.join(self.work, "saslauthd.log"), errors="replace").read()[-3000:])
        pid = int(open(pidfile).read().split()[0])
        self.pidfile_daemons.append((label, pid))
        self.wait_socket(f"{d}/mux", "saslauthd")
        return pid

    def saslauthd(self):
        pwdfile = self.pam_module("pam_pwdfile.so")
        mysql = self.pam_module("pam_mysql.so")
        common = (f"user=bench passwd={self.db_password} host={self.db.socket} db=mail table=users "
                  f"usercolumn=id where=enabled=1 verbose=0")
        stacks = {
            "pam_pwdfile": f"auth required {pwdfile} pwdfile={self.passwd}\naccount required pam_permit.so\n",
            "pam_mysql": f"auth required {mysql} {common} passwdcolumn=crypt crypt=1\n"
                         f"account required pam_permit.so\n",
            "pam_mysql clear": f"auth required {mysql} {common} passwdcolumn=clear crypt=0\n"
                               f"account required pam_permit.so\n",
        }
        variants = [("saslauthd pam_pwdfile", "pam_pwdfile", False),
                    ("saslauthd -c pam_pwdfile", "pam_pwdfile", True),
                    ("saslauthd pam_mysql", "pam_mysql", False),
                    ("saslauthd pam_mysql clear", "pam_mysql clear", False)]
        for label, stack, cache in variants:
            d = os.path.join(self.work, "saslauthd-" + secrets.token_hex(3))
            os.makedirs(d)
            self.write_pam(stacks[stack])
            pid = self.start_saslauthd(label, ["-a", "pam", "-n", str(self.a.sasl_workers)]
                                       + (["-c"] if cache else []), d)
            if cache:
                self.warm_mux(f"{d}/mux")  # saslauthd -c remembers a login after its first success
            self.run_levels(label, [("mux", f"{d}/mux")], pid)
            self.stop_pid(pid)
        self.remove_pam()

    def start_dovecot(self, passdb, cache=False):
        """A private Dovecot (auth service only) with PASSDB, the body of its
        passdb { } block; its auth cache off unless CACHE, failure delay
        off.  Returns (Popen, directory); the auth socket is directory/auth."""
        d = os.path.join(self.work, "dovecot-" + secrets.token_hex(3))
        for sub in ("run", "state"):
            os.makedirs(os.path.join(d, sub))
        os.chmod(d, 0o755)
        cache_conf = "auth_cache_size = 64M\nauth_cache_ttl = 1 hour\n" if cache else "auth_cache_size = 0\n"
        conf = os.path.join(d, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(f"""base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
instance_name = mailauth-bench-{os.path.basename(d)}
protocols =
listen = 127.0.0.1
ssl = no
auth_mechanisms = plain login
{cache_conf}auth_failure_delay = 0
passdb {{
  {passdb}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}
}}
service auth {{
  client_limit = {max(self.a.idle_dovecot, 1000) + 200}
  unix_listener {d}/auth {{
    mode = 0666
  }}
}}
""")
        p = self.spawn("dovecot", ["dovecot", "-F", "-c", conf])
        self.wait_socket(f"{d}/auth", "dovecot", p)
        return p, d

    def dovecot(self):
        sqlconf = os.path.join(self.work, "dovecot-sql.conf.ext")
        with open(sqlconf, "w") as f:
            f.write(f"driver = mysql\nconnect = host={self.db.socket} dbname=mail user=bench "
                    f"password={self.db_password}\ndefault_pass_scheme = CRYPT\n"
                    "password_query = SELECT id AS user, crypt AS password FROM users "
                    "WHERE id = '%u' AND enabled = 1\n")
        os.chmod(sqlconf, 0o600)
        passdbs = {
            "passwd-file": f"driver = passwd-file\n  args = scheme=CRYPT {self.passwd}",
            "passwd-file {PLAIN}": f"driver = passwd-file\n  args = scheme=CRYPT {self.passwd_plain}",
            "sql": f"driver = sql\n  args = {sqlconf}",
        }
        variants = [("dovecot passwd-file", "passwd-file", False),
                    ("dovecot sql", "sql", False),
                    ("dovecot passwd-file {PLAIN}", "passwd-file {PLAIN}", False),
                    ("dovecot passwd-file cache", "passwd-file", True)]
        for label, passdb, cache in variants:
            p, d = self.start_dovecot(passdbs[passdb], cache)
            if cache:
                self.warm(f"{d}/auth")
            self.run_levels(label, [("dovecot", f"{d}/auth")], p.pid)
            if label == "dovecot passwd-file" and self.a.idle_dovecot:
                auth = [q for q in tree(p.pid) if comm(q) == "auth"]
                if auth:
                    self.idle_rss("dovecot auth", f"{d}/auth", auth[0], p.pid, [self.a.idle_dovecot])
            self.stop(p)

    # --- report --------------------------------------------------------------------------

    def report(self):
        R = self.results
        out = []
        out.append(f"mailauth make bench: {self.nproc} cores, {self.a.users} users, sha256-crypt "
                   f"($5$, 5000 rounds), {self.a.seconds:g} s per cell, "
                   f"{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}; client: mailauth-test --bench "
                   "(mux: a connection per request; Dovecot: --persistent)")
        out.append("")
        rows = [
            ("hash-bound mux", "mailauthd hash", "mux",
             ["saslauthd pam_pwdfile", "saslauthd pam_mysql"], True),
            ("hash-bound Dovecot", "mailauthd hash", "dovecot",
             ["dovecot passwd-file", "dovecot sql"], True),
            ("cache-hit mux", "mailauthd cache", "mux", ["saslauthd -c pam_pwdfile"], False),
            ("cache-hit Dovecot", "mailauthd cache", "dovecot", ["dovecot passwd-file cache"], False),
            ("{PLAIN} mux", "mailauthd {PLAIN}", "mux", ["saslauthd pam_mysql clear"], False),
            ("{PLAIN} Dovecot", "mailauthd {PLAIN}", "dovecot", ["dovecot passwd-file {PLAIN}"], False),
        ]
        out.append("| path | c | mailauthd auth/s | best peer auth/s (which) | limit auth/s (which) "
                   "| mailauthd/peer | mailauthd/limit | mailauthd server CPU µs/auth "
                   "| client CPU µs/req (mailauthd run / echo run) |")
        out.append("| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |")
        for path, daemon, proto, peers, hashed in rows:
            for c in self.a.concurrency:
                m = R.get((daemon, proto, c))
                if m is None:
                    continue
                cand = [(R[(p, proto, c)]["auth_per_s"], p) for p in peers if (p, proto, c) in R]
                peer = max(cand) if cand else None
                echo = R.get((f"echo-{proto}", proto, c))
                limits = []
                if echo:
                    limits.append((echo["auth_per_s"], f"echo {proto}"))
                if hashed:
                    t = min(c, self.nproc)
                    if t in self.crypt:
                        limits.append((self.crypt[t], f"crypt(3) ×{t} thread{'s' if t > 1 else ''}"))
                limit = min(limits) if limits else None
                mr = m["auth_per_s"]
                out.append(
                    f"| {path} | {c} | {mr:.0f}{bad(m)} | "
                    + (f"{peer[0]:.0f}{bad(R[(peer[1], proto, c)])} ({peer[1]})" if peer else "–") + " | "
                    + (f"{limit[0]:.0f} ({limit[1]})" if limit else "–") + " | "
                    + (f"{mr / peer[0]:.2f}" if peer and peer[0] else "–") + " | "
                    + (f"{mr / limit[0]:.2f}" if limit and limit[0] else "–") + " | "
                    + f"{m['server_cpu_us']:.1f} | "
                    + f"{m['client_cpu_us_per_req']:.1f} / "
                    + (f"{echo['client_cpu_us_per_req']:.1f}" if echo else "–") + " |")
        out.append("")
        out.append("Every run (server CPU: the daemon's whole process tree, /proc utime+stime over the "
                   "cell ÷ answers, MariaDB's apart for the SQL-backed peers; client CPU: "
                   "mailauth-test's getrusage ÷ requests):")
        out.append("")
        out.append("| daemon | protocol | c | auth/s | p50 ms | p99 ms | ok | no | tempfail | errors "
                   "| server CPU µs/auth | client CPU µs/req |")
        out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for t in sorted(self.crypt):
            out.append(f"| crypt(3) limit ({t} thread{'s' if t > 1 else ''}) | – | – | "
                       f"{self.crypt[t]:.0f} | | | | | | | | |")
        for (daemon, proto, c), r in self.results.items():
            out.append(f"| {daemon} | {proto} | {c} | {r['auth_per_s']:.0f} | {r['p50_ms']:.3f} | "
                       f"{r['p99_ms']:.3f} | {r['ok']} | {r['no']} | {r['tempfail']} | {r['errors']} | "
                       f"{r['server_cpu_us']:.1f}"
                       + (f" (+{r['db_cpu_us']:.1f} MariaDB)" if "db_cpu_us" in r else "")
                       + f" | {r['client_cpu_us_per_req']:.1f} |")
        if self.rss:
            out.append("")
            out.append("Memory with idle Dovecot-protocol connections (handshake done, nothing in flight):")
            out.append("")
            out.append("| process | idle connections | RSS MiB | KiB per connection |")
            out.append("| --- | ---: | ---: | ---: |")
            base = {}
            for who, n, kib in self.rss:
                if n == 0:
                    base[who] = kib
                per = f"{(kib - base[who]) / n:.1f}" if n and who in base else "–"
                out.append(f"| {who} | {n} | {kib / 1024:.1f} | {per} |")
        if self.notes:
            out.append("")
            for n in self.notes:
                out.append(f"- {n}")
        out.append("")
        out.append("Ratios above 1 are mailauthd ahead.  mailauthd/limit is how close it comes to what "
                   "the machine allows: the crypt(3) limit (min(c, cores) threads doing nothing but "
                   "crypt_r) for hash-bound rows, the echo server of the same framing otherwise.  "
                   "The client shares the machine: compare its CPU per request with the servers'.  "
                   "Peers: hash-bound mux = saslauthd -a pam (pam_pwdfile, pam_mysql crypt=1), no -c; "
                   "cache-hit mux = saslauthd -c; {PLAIN} mux = saslauthd pam_mysql on the clear column "
                   "(pam_pwdfile has no plaintext form); Dovecot rows = Dovecot's auth service with "
                   "auth_cache_size = 0, except cache-hit, where its auth cache is on (it caches the "
                   "passdb lookup, and still verifies the hash on every login).")
        text = "\n".join(out)
        print(text, flush=True)
        if self.a.json:
            with open(self.a.json, "w") as f:
                json.dump({"crypt_limit": self.crypt,
                           "runs": [dict(r, daemon=d, protocol=p, c=c) for (d, p, c), r in self.results.items()],
                           "rss_kib": self.rss, "notes": self.notes}, f, indent=1)


def bad(r):
    return "!" if r["tempfail"] + r["errors"] + r["no"] else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 3)))
    ap.add_argument("--users", type=int, default=int(os.environ.get("BENCH_USERS", 1000)))
    ap.add_argument("--concurrency", default=os.environ.get("BENCH_CONCURRENCY", "1 8 64"))
    ap.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", os.cpu_count() or 1)))
    ap.add_argument("--sasl-workers", type=int,
                    default=int(os.environ.get("BENCH_SASL_WORKERS", max(5, os.cpu_count() or 1))))
    ap.add_argument("--idle", default=os.environ.get("BENCH_IDLE", "1000 10000"),
                    help="idle connection counts for mailauthd's RSS ('' skips)")
    ap.add_argument("--idle-dovecot", type=int, default=int(os.environ.get("BENCH_IDLE_DOVECOT", 1000)))
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", "crypt echo mailauthd saslauthd dovecot"),
                    help="parts to run")
    ap.add_argument("--json", default=os.environ.get("BENCH_JSON", ""))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    a.concurrency = [int(x) for x in a.concurrency.replace(",", " ").split()]
    a.idle = [int(x) for x in a.idle.replace(",", " ").split()]
    a.build = os.path.abspath(a.build)
    only = set(a.only.split())

    b = Bench(a)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        log(f"work directory {b.work}; making {a.users} users")
        b.make_users()
        if "crypt" in only:
            b.crypt_limit()
        if "echo" in only:
            b.echo()
        if "mailauthd" in only:
            b.mailauthd()
        if only & {"saslauthd", "dovecot"}:
            b.mariadb()
        if "saslauthd" in only:
            b.saslauthd()
        if "dovecot" in only:
            b.dovecot()
        b.report()
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
