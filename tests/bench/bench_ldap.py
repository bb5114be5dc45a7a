#!/usr/bin/env python3
"""make bench-ldap: mailauthd's ldap backend beside saslauthd -a ldap and
Dovecot's ldap passdb, in one run, against one private slapd, on the same
users, with the same client (mailauth-test --bench).  Started by
scripts/bench-ldap.sh, which installs the dependencies and builds first.

One slapd (tests/integration/slapd.py) holds N users twice: userI@bench.test
with {SSHA} passwords (a hash that costs microseconds, so the LDAP round
trips are what is measured) and userI@crypt.test with {CRYPT}$5$ (sha256-crypt,
5,000 rounds, the strings make bench uses: the hash dominates again, and in
bind mode it is slapd that computes it).  Every daemon asks the same slapd on
the same ldap://127.0.0.1 URI, as the same service DN, with the same filter
(mail=%u):

  mailauthd auth = "bind" and auth = "lookup"  mux and Dovecot sockets,
                                              cache off, failure delay off
  saslauthd -a ldap, ldap_auth_method bind and custom          mux
  Dovecot's ldap passdb, auth_bind = yes and a password lookup
  (pass_attrs userPassword=password), each with blocking = no
  (one connection) and yes (auth-worker processes)             Dovecot socket

Before a daemon is measured, one wrong and one right password must give NO
and OK on each of its sockets; a daemon that fails that is reported as not
working and left out, never measured.  The tables give auth/s, the ratio
mailauthd/peer, each daemon's CPU per authentication and slapd's (its CPU
per authentication and its share of the machine during the cell).

Reuses bench_compare.Bench: users, processes, the client, PID-based stops.
"""
import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from bench_compare import SERVICE, Bench, bad, cpu_ticks, log, ticks_spent  # noqa: E402
import slapd  # noqa: E402
from slapd import SERVICE_DN, SERVICE_PW, SUFFIX, Slapd  # noqa: E402

# The sets of users: name -> (domain, label for the tables).
SETS = {"ssha": ("bench.test", "{SSHA}"), "crypt": ("crypt.test", "{CRYPT}$5$")}


class LdapBench(Bench):
    def __init__(self, a):
        super().__init__(a)
        os.rmdir(self.work)
        self.work = tempfile.mkdtemp(prefix="mailauth-bench-ldap.")
        os.chmod(self.work, 0o755)
        self.ldap = None
        self.failed = []         # (daemon, why): peers that could not be made to work
        self.slapd_cpu = {}      # (daemon, proto, c, set) -> (µs/auth, share of the machine)

    def cleanup(self):
        # Daemons first (they hold connections to slapd), slapd last.
        for _, pid in list(self.pidfile_daemons):
            self.stop_pid(pid)
        for _, p in list(reversed(self.procs)):
            self.stop(p)
        if self.ldap is not None:
            self.ldap.stop()
            self.ldap = None
        super().cleanup()

    # --- the directory -------------------------------------------------------------------

    def directory(self):
        """slapd with both sets of users: {SSHA} (random salt each) and the $5$
        strings mailauth-user made for make_users(), under the skeleton the
        tests use (tests/integration/slapd.py)."""
        # The test tree's skeleton (suffix, service accounts, policies), no users.
        head = slapd.Tree().ldif()
        entries = []
        for name in self.sets:
            domain = SETS[name][0]
            entries.append(f"dn: ou={domain},{SUFFIX}\nobjectClass: organizationalUnit\nou: {domain}\n")
            for i in range(1, self.a.users + 1):
                pw = f"pw-{i}"
                stored = (slapd.ssha(pw, os.urandom(4)) if name == "ssha"
                          else "{CRYPT}" + self.hashes[f"user{i}@bench.test"])
                entries.append(slapd.user_entry(f"user{i}", domain, stored, 20000 + len(entries)))
        log(f"starting a private slapd with {self.a.users} users × {len(self.sets)} set(s)")
        self.ldap = Slapd(os.path.join(self.work, "ldap")).bootstrap(head + "\n".join(entries)).start()
        for name in self.sets:
            domain = SETS[name][0]
            path = os.path.join(self.work, f"users-{name}.txt")
            with open(path, "w") as f:
                for i in range(1, self.a.users + 1):
                    f.write(f"user{i}@{domain}:pw-{i}\n")
            self.users_files[name] = path

    # --- one measurement -----------------------------------------------------------------

    def cell(self, daemon, proto, sock, c, server_pid):
        t0, s0 = cpu_ticks(server_pid), cpu_ticks(self.ldap.pid)
        w0 = time.monotonic()
        r = self.client(sock, proto, c)
        t1, s1 = cpu_ticks(server_pid), cpu_ticks(self.ldap.pid)
        wall = time.monotonic() - w0
        hz = os.sysconf("SC_CLK_TCK")
        per = 1e6 / hz / r["requests"] if r["requests"] else 0
        r["server_cpu_us"] = ticks_spent(t0, t1) * per
        slapd_ticks = ticks_spent(s0, s1)
        r["slapd_cpu_us"] = slapd_ticks * per
        r["slapd_share"] = slapd_ticks / hz / (wall * self.nproc)
        r["set"] = self.set
        self.results[(daemon, proto, c, self.set)] = r
        flag = "" if r["tempfail"] + r["errors"] + r["no"] == 0 else \
            f"  !! no={r['no']} tempfail={r['tempfail']} errors={r['errors']}"
        log(f"{SETS[self.set][1]:<11} {daemon:<26} {proto:<7} c={c:<3} {r['auth_per_s']:>9.1f}/s  "
            f"server {r['server_cpu_us']:.1f} µs/auth  slapd {r['slapd_cpu_us']:.1f} µs/auth "
            f"({100 * r['slapd_share']:.0f}% of {self.nproc} cores)  client "
            f"{r['client_cpu_us_per_req']:.1f} µs/req" + flag)
        return r

    def answers_ok(self, daemon, proto, sock):
        """One wrong and one right password: NO, then OK.  Returns None, or why not."""
        domain = SETS[self.set][0]
        base = [self.mtest] + (["--dovecot"] if proto == "dovecot" else []) + ["-f", sock, "-s", SERVICE]
        no = subprocess.run(base + ["-u", f"user1@{domain}", "-p", "wrong"], capture_output=True, text=True)
        if no.returncode != 1:
            return f"a wrong password gave exit {no.returncode} (not NO): {(no.stdout + no.stderr).strip()}"
        ok = subprocess.run(base + ["-u", f"user1@{domain}", "-p", "pw-1"], capture_output=True, text=True)
        if ok.returncode != 0:
            return f"the right password gave exit {ok.returncode} (not OK): {(ok.stdout + ok.stderr).strip()}"
        return None

    def working(self, daemon, protos, logname):
        """The (proto, sock) of PROTOS that answer NO and OK rightly; each
        other one is recorded as not working, with why and its log's tail."""
        good = []
        for proto, sock in protos:
            why = self.answers_ok(daemon, proto, sock)
            if not why:
                good.append((proto, sock))
                continue
            tail = ""
            logf = os.path.join(self.work, logname)
            if os.path.exists(logf):
                tail = " | log: " + " / ".join(open(logf, errors="replace").read().splitlines()[-3:])
            self.failed.append((f"{daemon} ({proto}, {SETS[self.set][1]})", why + tail))
            log(f"NOT MEASURED: {daemon} ({proto}): {why}{tail}")
        return good

    def measure(self, daemon, protos, server_pid, logname=None):
        """Every protocol at every concurrency; checked first unless LOGNAME
        is None (the caller has run working() itself)."""
        if logname is not None:
            protos = self.working(daemon, protos, logname)
        for proto, sock in protos:
            for c in self.a.concurrency:
                self.cell(daemon, proto, sock, c, server_pid)

    # --- the daemons ---------------------------------------------------------------------

    def mailauthd(self):
        for auth in ("bind", "lookup"):
            label = f"mailauthd {auth}"
            d = os.path.join(self.work, f"mailauthd-{auth}-{self.set}")
            os.makedirs(d)
            user = 'user = "root"' if os.geteuid() == 0 else ""
            conf = os.path.join(d, "mailauthd.conf")
            # No [cache] table: the cache is off.  The brute-force policy
            # stays at its defaults (every login here is a right one).
            with open(conf, "w") as f:
                f.write(f"""[daemon]
{user}
workers = {self.a.workers}
log = "stderr"
log_level = "warning"
control_socket = "{d}/control"
[saslauthd]
socket = "{d}/mux"
mode = "0666"
failure_delay = "0s"
[dovecot]
socket = "{d}/auth"
mode = "0666"
failure_delay = "0s"

[[backend]]
type = "ldap"
uris = ["{self.ldap.uri}"]
pool_size = {self.a.workers}
bind_dn = "{SERVICE_DN}"
password = "{SERVICE_PW}"
base = "{SUFFIX}"
filter = "(mail=%u)"
auth = "{auth}"
""")
            os.chmod(conf, 0o600)
            name = f"mailauthd-{auth}"
            p = self.spawn(name, [os.path.join(self.build, "mailauthd"), "--foreground", "--config", conf])
            self.wait_socket(f"{d}/mux", name, p)
            self.wait_socket(f"{d}/auth", name, p)
            # The checks' wrong passwords count against user1 (and the right
            # one right after clears that): read the policy's counters after them.
            protos = self.working(label, [("mux", f"{d}/mux"), ("dovecot", f"{d}/auth")], name + ".log")
            before = self.stats(d)
            self.measure(label, protos, p.pid)
            after = self.stats(d)
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            pen = delta.get("mailauth_penalties_total", 0)
            refused = delta.get("mailauth_refused_in_flight_total", 0)
            if pen or refused:
                note = (f"{label} ({SETS[self.set][1]}): brute-force policy penalties {pen:.0f}, "
                        f"refused in flight {refused:.0f}")
                self.notes.append(note)
                log(f"WARNING: {note}")
            self.stop(p)

    def saslauthd(self):
        for method in ("bind", "custom"):
            label = f"saslauthd {method}"
            d = os.path.join(self.work, f"saslauthd-{method}-{self.set}")
            os.makedirs(d)
            conf = os.path.join(d, "saslauthd.conf")
            with open(conf, "w") as f:
                f.write(f"""ldap_servers: {self.ldap.uri}
ldap_search_base: {SUFFIX}
ldap_filter: (mail=%u)
ldap_bind_dn: {SERVICE_DN}
ldap_password: {SERVICE_PW}
ldap_auth_method: {method}
ldap_timeout: 5
ldap_version: 3
""")
            os.chmod(conf, 0o600)
            pid = self.start_saslauthd(label, ["-a", "ldap", "-O", conf, "-n", str(self.a.workers)], d)
            self.measure(label, [("mux", f"{d}/mux")], pid, "saslauthd.log")
            self.stop_pid(pid)

    def dovecot(self):
        # blocking = no (the default): the auth process asks on one LDAP
        # connection; with auth_bind that connection binds as each user and
        # back as dn before the next search.  blocking = yes: auth-worker
        # processes, a connection each (and the hash checked there).
        for mode, blocking in (("auth_bind", False), ("auth_bind", True),
                               ("lookup", False), ("lookup", True)):
            label = f"dovecot {mode}" + (" blocking" if blocking else "")
            args = os.path.join(self.work, f"dovecot-ldap-{mode}-{blocking}-{self.set}.conf.ext")
            with open(args, "w") as f:
                f.write(f"""uris = {self.ldap.uri}
dn = {SERVICE_DN}
dnpass = {SERVICE_PW}
ldap_version = 3
base = {SUFFIX}
scope = subtree
pass_filter = (mail=%u)
blocking = {"yes" if blocking else "no"}
""" + ("auth_bind = yes\npass_attrs = mail=user\n" if mode == "auth_bind" else
       "auth_bind = no\npass_attrs = mail=user,userPassword=password\ndefault_pass_scheme = CRYPT\n"))
            os.chmod(args, 0o600)
            p, d = self.start_dovecot(f"driver = ldap\n  args = {args}")
            # Dovecot logs to its own file; measure() shows its tail on a failure.
            self.measure(label, [("dovecot", f"{d}/auth")], p.pid, os.path.relpath(f"{d}/dovecot.log", self.work))
            self.stop(p)

    # --- report --------------------------------------------------------------------------

    def report(self):
        R = self.results
        out = []
        out.append(f"mailauth make bench-ldap: {self.nproc} cores, {self.a.users} users per set, "
                   f"{self.a.seconds:g} s per cell, {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}; "
                   f"one slapd (ldap://127.0.0.1); mailauthd workers = pool_size = saslauthd -n = "
                   f"{self.a.workers}; client: mailauth-test --bench (mux: a connection per request; "
                   "Dovecot: --persistent)")
        out.append("")
        rows = [("bind", "mux", "mailauthd bind", ["saslauthd bind"]),
                ("bind", "dovecot", "mailauthd bind", ["dovecot auth_bind", "dovecot auth_bind blocking"]),
                ("lookup", "mux", "mailauthd lookup", ["saslauthd custom"]),
                ("lookup", "dovecot", "mailauthd lookup", ["dovecot lookup", "dovecot lookup blocking"])]
        out.append("| users | path | c | mailauthd auth/s | each peer auth/s | mailauthd/best peer "
                   "| server CPU µs/auth (mailauthd / best peer) | slapd CPU µs/auth (mailauthd / best peer) "
                   "| slapd share of the machine (mailauthd / best peer) |")
        out.append("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
        for s in self.sets:
            for auth, proto, daemon, peers in rows:
                for c in self.a.concurrency:
                    m = R.get((daemon, proto, c, s))
                    cand = [(R[(p, proto, c, s)]["auth_per_s"], p) for p in peers if (p, proto, c, s) in R]
                    peer = max(cand) if cand else None
                    if m is None and peer is None:
                        continue
                    pr = R[(peer[1], proto, c, s)] if peer else None

                    def pair(key, fmt, scale=1):
                        a = fmt.format(m[key] * scale) if m else "–"
                        b = fmt.format(pr[key] * scale) if pr else "–"
                        return f"{a} / {b}"
                    out.append(
                        f"| {SETS[s][1]} | {auth} {'Dovecot' if proto == 'dovecot' else proto} | {c} | "
                        + (f"{m['auth_per_s']:.0f}{bad(m)}" if m else "–") + " | "
                        + ("; ".join(f"{v:.0f}{bad(R[(n, proto, c, s)])} ({n})" for v, n in cand)
                           if cand else "– (not working)") + " | "
                        + (f"{m['auth_per_s'] / peer[0]:.2f}" if m and peer and peer[0] else "–") + " | "
                        + pair("server_cpu_us", "{:.0f}") + " | " + pair("slapd_cpu_us", "{:.0f}") + " | "
                        + pair("slapd_share", "{:.0f}%", 100) + " |")
        out.append("")
        out.append("Every run (server CPU: the daemon's whole process tree, /proc utime+stime over the "
                   "cell ÷ answers; slapd's apart):")
        out.append("")
        out.append("| users | daemon | protocol | c | auth/s | p50 ms | p99 ms | ok | no | tempfail | errors "
                   "| server CPU µs/auth | slapd CPU µs/auth | client CPU µs/req |")
        out.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for (daemon, proto, c, s), r in R.items():
            out.append(f"| {SETS[s][1]} | {daemon} | {proto} | {c} | {r['auth_per_s']:.0f} | {r['p50_ms']:.3f} | "
                       f"{r['p99_ms']:.3f} | {r['ok']} | {r['no']} | {r['tempfail']} | {r['errors']} | "
                       f"{r['server_cpu_us']:.1f} | {r['slapd_cpu_us']:.1f} | {r['client_cpu_us_per_req']:.1f} |")
        if self.failed:
            out.append("")
            out.append("Not measured (wrong answers before the measurement):")
            out.append("")
            for who, why in self.failed:
                out.append(f"- {who}: {why}")
        if self.notes:
            out.append("")
            for n in self.notes:
                out.append(f"- {n}")
        out.append("")
        out.append("Ratios above 1 are mailauthd ahead.  Peers: bind mux = saslauthd -a ldap "
                   "(ldap_auth_method: bind), lookup mux = saslauthd -a ldap (custom: reads userPassword "
                   "and compares itself), bind Dovecot = Dovecot's ldap passdb with auth_bind = yes, "
                   "lookup Dovecot = Dovecot's ldap passdb reading userPassword; each with blocking = no "
                   "(one LDAP connection in the auth process) and blocking = yes (auth-worker processes); "
                   "auth cache off.  "
                   "mailauthd: cache off, failure delay off; Dovecot: auth_failure_delay = 0.  "
                   "slapd shares the machine with the daemon and the client.")
        text = "\n".join(out)
        print(text, flush=True)
        if self.a.json:
            import json
            with open(self.a.json, "w") as f:
                json.dump({"runs": [dict(r, daemon=d, protocol=p, c=c) for (d, p, c, _), r in R.items()],
                           "failed": self.failed, "notes": self.notes}, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 3)))
    ap.add_argument("--users", type=int, default=int(os.environ.get("BENCH_USERS", 1000)))
    ap.add_argument("--concurrency", default=os.environ.get("BENCH_CONCURRENCY", "1 8 64"))
    ap.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", 8)),
                    help="mailauthd workers and LDAP pool_size, saslauthd -n (default 8)")
    ap.add_argument("--sets", default=os.environ.get("BENCH_SETS", "ssha crypt"),
                    help="user sets: ssha ({SSHA}) and/or crypt ({CRYPT}$5$)")
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", "mailauthd saslauthd dovecot"),
                    help="daemons to run")
    ap.add_argument("--json", default=os.environ.get("BENCH_JSON", ""))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    a.concurrency = [int(x) for x in a.concurrency.replace(",", " ").split()]
    a.build = os.path.abspath(a.build)
    a.idle, a.idle_dovecot = [], 0   # bench_compare's knobs that its helpers read
    only = set(a.only.split())
    sets = [s for s in a.sets.split() if s in SETS]
    if not sets:
        raise SystemExit(f"bench: --sets: one of {' '.join(SETS)}")

    b = LdapBench(a)
    b.sets = sets
    b.users_files = {}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        log(f"work directory {b.work}; making {a.users} users")
        b.make_users()
        b.directory()
        for s in sets:
            b.set = s
            b.users_file = b.users_files[s]
            if "mailauthd" in only:
                b.mailauthd()
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
