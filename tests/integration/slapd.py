"""A private OpenLDAP slapd for tests.

Each instance has its own cn=config directory (made with slapadd -n0 from an
LDIF written here), its own mdb database directory, an ldapi:// socket in
its directory and loopback ports chosen free (ldap://, and ldaps:// when
TLS files are given).  It runs as a child process (slapd -d, in the
foreground) that is stopped by PID.  The system's slapd, /etc/ldap/slapd.d
and /var/lib/ldap are never touched.

    ldap = Slapd("/tmp/x/ldap1")
    ldap.bootstrap(tree_ldif)   # once: config + data, about a second
    ldap.start()
    ldap.modify(ldif)           # as the rootdn over ldapi://
    ldap.stop()                 # SIGTERM, wait; start() again reuses the database

The tree the tests use is `tree()`: users in two domains under
dc=example,dc=com, inetOrgPerson + posixAccount, with {SSHA}, {CRYPT}$6$,
{CRYPT}$y$ and {ARGON2} passwords, a disabled user, namesakes in both
domains, a locked and an expired user (ppolicy), and service accounts.
"""
import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

SUFFIX = "dc=example,dc=com"
ROOT_DN = "cn=admin," + SUFFIX
ROOT_PW = "root-secret-71"
SERVICE_DN = "cn=mailauth,ou=services," + SUFFIX
SERVICE_PW = "svc-secret-3a9"
# A service account that may search but not read userPassword.
SEARCH_DN = "cn=search,ou=services," + SUFFIX
SEARCH_PW = "search-secret-8c"
MODULE_PATH = "/usr/lib/ldap"
SCHEMAS = ["core", "cosine", "inetorgperson", "nis"]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise AssertionError(f"{name} is not installed (slapd, ldap-utils); "
                             "run scripts/install-deps.sh")
    return path


def have_module(name):
    return os.path.exists(os.path.join(MODULE_PATH, name + ".so"))


def ssha(password, salt=b"s4lt"):
    """{SSHA} as slappasswd makes it: SHA-1(password + salt) + salt, base64."""
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def mkpasswd(password, method):
    out = subprocess.run([_tool("mkpasswd"), "-m", method, "--stdin"], input=password.encode(),
                         capture_output=True, check=True)
    return out.stdout.decode().strip()


def slappasswd_argon2(password):
    """{ARGON2} made by slapd's own argon2 module (slappasswd -o module-load)."""
    out = subprocess.run([_tool("slappasswd"), "-o", f"module-path={MODULE_PATH}",
                          "-o", "module-load=argon2", "-h", "{ARGON2}", "-s", password],
                         capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.startswith("{ARGON2}"):
        return None
    return out.stdout.strip()


def ldif_value(attr, value):
    """One attribute line, base64 when LDIF needs it."""
    raw = value.encode()
    safe = (raw and all(0x20 <= b < 0x7f for b in raw) and raw[:1] not in (b" ", b":", b"<")
            and not raw.endswith(b" "))
    if safe:
        return f"{attr}: {value}"
    return f"{attr}:: {base64.b64encode(raw).decode()}"


def user_entry(uid, domain, password, uid_number, extra=()):
    dn = f"uid={uid},ou={domain},{SUFFIX}"
    lines = [f"dn: {dn}", "objectClass: inetOrgPerson", "objectClass: posixAccount",
             ldif_value("uid", uid), ldif_value("cn", uid.capitalize()), ldif_value("sn", uid),
             ldif_value("mail", f"{uid}@{domain}"), f"uidNumber: {uid_number}",
             "gidNumber: 5000", f"homeDirectory: /var/mail/{domain}/{uid}"]
    if password is not None:
        lines.append(ldif_value("userPassword", password))
    lines.extend(extra)
    return "\n".join(lines) + "\n"


class Tree:
    """The users of tree(): {mail: password}, and what each one is for."""

    def __init__(self):
        self.argon2 = slappasswd_argon2("frank-pw")
        self.users = {}       # mail -> password
        self.entries = []

    def add(self, uid, domain, password, stored, extra=()):
        n = 10000 + len(self.entries)
        self.entries.append(user_entry(uid, domain, stored, n, extra))
        if password is not None:
            self.users[f"{uid}@{domain}"] = password

    def ldif(self):
        head = f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {SERVICE_DN}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: mailauth
userPassword: {ssha(SERVICE_PW)}

dn: {SEARCH_DN}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: search
userPassword: {ssha(SEARCH_PW)}

dn: ou=policies,{SUFFIX}
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,{SUFFIX}
objectClass: person
objectClass: pwdPolicy
cn: default
sn: default
pwdAttribute: userPassword
pwdMaxAge: 0
pwdLockout: TRUE
pwdMaxFailure: 0

dn: cn=expiring,ou=policies,{SUFFIX}
objectClass: person
objectClass: pwdPolicy
cn: expiring
sn: expiring
pwdAttribute: userPassword
pwdMaxAge: 86400
pwdGraceAuthnLimit: 0

dn: ou=example.com,{SUFFIX}
objectClass: organizationalUnit
ou: example.com

dn: ou=example.org,{SUFFIX}
objectClass: organizationalUnit
ou: example.org

"""
        return head + "\n".join(self.entries)


def tree():
    t = Tree()
    t.add("alice", "example.com", "alice-pw", ssha("alice-pw"))
    t.add("bob", "example.com", "bob pw 2", "{CRYPT}" + mkpasswd("bob pw 2", "sha512crypt"))
    t.add("erin", "example.com", "erin-pw", "{CRYPT}" + mkpasswd("erin-pw", "yescrypt"))
    if t.argon2:
        t.add("frank", "example.com", "frank-pw", t.argon2)
    t.add("grace", "example.com", "grace-pw", "grace-pw")  # clear text: CRAM-MD5 can use it
    # Disabled: a pwdfile later in the chain holds an old password for her.
    t.add("carol", "example.com", "carol-pw", ssha("carol-pw"), ["employeeType: disabled"])
    # Namesakes: (uid=%n) matches both.
    t.add("sam", "example.com", "sam-com-pw", ssha("sam-com-pw"))
    t.add("sam", "example.org", "sam-org-pw", ssha("sam-org-pw"))
    t.add("dave", "example.org", "dave-pw", ssha("dave-pw"))
    # ppolicy: locked for good, and a password that expired long ago.
    t.add("lock", "example.org", "lock-pw", ssha("lock-pw"),
          ["pwdAccountLockedTime: 000001010000Z"])
    t.add("old", "example.org", "old-pw", ssha("old-pw"),
          [f"pwdPolicySubentry: cn=expiring,ou=policies,{SUFFIX}",
           "pwdChangedTime: 20000101000000Z"])
    # A user without a password: the search finds her, nothing verifies.
    t.add("nopw", "example.org", None, None)
    return t


class Slapd:
    def __init__(self, basedir, port=None, tls=None):
        """tls: None, or dict(ca=..., cert=..., key=...) for StartTLS and ldaps://."""
        self.dir = os.path.abspath(basedir)
        self.confdir = os.path.join(self.dir, "slapd.d")
        self.dbdir = os.path.join(self.dir, "db")
        self.socket = os.path.join(self.dir, "ldapi")
        self.pid_file = os.path.join(self.dir, "slapd.pid")
        self.log_path = os.path.join(self.dir, "slapd.log")
        self.port = port or free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.proc = None
        self._out = None
        os.makedirs(self.dir, exist_ok=True)
        if len(self.socket) > 107:
            raise AssertionError(f"socket path too long for AF_UNIX: {self.socket}")

    @property
    def ldapi(self):
        return "ldapi://" + urllib.parse.quote(self.socket, safe="")

    @property
    def uri(self):
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self):
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def config_ldif(self):
        modules = ["back_mdb"]
        for m in ("argon2", "ppolicy"):
            if have_module(m):
                modules.append(m)
        tls = ""
        if self.tls:
            tls = (f"olcTLSCACertificateFile: {self.tls['ca']}\n"
                   f"olcTLSCertificateFile: {self.tls['cert']}\n"
                   f"olcTLSCertificateKeyFile: {self.tls['key']}\n")
        schemas = "".join(f"include: file:///etc/ldap/schema/{s}.ldif\n\n" for s in SCHEMAS)
        ppolicy = ""
        if have_module("ppolicy"):
            ppolicy = f"""
dn: olcOverlay={{0}}ppolicy,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {{0}}ppolicy
olcPPolicyDefault: cn=default,ou=policies,{SUFFIX}
olcPPolicyUseLockout: TRUE
"""
        return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {self.pid_file}
olcArgsFile: {os.path.join(self.dir, 'slapd.args')}
olcLogLevel: none
{tls}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULE_PATH}
""" + "".join(f"olcModuleLoad: {m}\n" for m in modules) + f"""
dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcPasswordHash: {{SSHA}}
olcSizeLimit: 500

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by dn.exact=gidNumber={os.getgid()}+uidNumber={os.getuid()},cn=peercred,cn=external,cn=auth manage by * break

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {self.dbdir}
olcSuffix: {SUFFIX}
olcRootDN: {ROOT_DN}
olcRootPW: {ROOT_PW}
olcDbMaxSize: 67108864
olcDbIndex: objectClass eq
olcDbIndex: uid,mail eq
olcAccess: {{0}}to attrs=userPassword by dn.exact="{SERVICE_DN}" write by self write by anonymous auth by * none
olcAccess: {{1}}to * by * read
{ppolicy}"""

    def bootstrap(self, data_ldif):
        """Write cn=config and load the data (slapadd, offline)."""
        if os.path.isdir(self.confdir):
            return self
        os.makedirs(self.confdir)
        os.makedirs(self.dbdir)
        conf = os.path.join(self.dir, "config.ldif")
        with open(conf, "w") as f:
            f.write(self.config_ldif())
        r = subprocess.run([_tool("slapadd"), "-n0", "-F", self.confdir, "-l", conf],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"slapadd (config) failed:\n{r.stdout}\n{r.stderr}")
        data = os.path.join(self.dir, "data.ldif")
        with open(data, "w") as f:
            f.write(data_ldif)
        r = subprocess.run([_tool("slapadd"), "-F", self.confdir, "-b", SUFFIX, "-l", data],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"slapadd (data) failed:\n{r.stdout}\n{r.stderr}")
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def urls(self):
        urls = [self.ldapi, self.uri + "/"]
        if self.tls:
            urls.append(self.ldaps_uri + "/")
        return " ".join(urls)

    def start(self, timeout=30):
        if self.running:
            return self
        self._out = open(self.log_path, "ab")
        # -d 0: stay in the foreground (a child we stop by PID), log nothing.
        self.proc = subprocess.Popen([_tool("slapd"), "-d", "0", "-F", self.confdir,
                                      "-h", self.urls()],
                                     stdout=self._out, stderr=self._out, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"slapd exited with {self.proc.returncode}:\n{self.log()}")
            if self.whoami(check=False):
                return self
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise AssertionError("slapd did not become ready:\n" + self.log()[-3000:])

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig != signal.SIGKILL:
                self.resume()
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
        """SIGSTOP: the server hangs (the kernel still accepts TCP connections)."""
        if self.running:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.running:
            self.proc.send_signal(signal.SIGCONT)

    def whoami(self, check=True):
        r = subprocess.run([_tool("ldapwhoami"), "-x", "-H", self.uri, "-D", ROOT_DN,
                            "-w", ROOT_PW], capture_output=True, text=True, timeout=10)
        if check and r.returncode != 0:
            raise AssertionError(f"ldapwhoami failed: {r.stderr}")
        return r.returncode == 0

    def modify(self, ldif, add=False):
        """ldapmodify as the rootdn over the ldapi:// socket."""
        args = [_tool("ldapmodify"), "-x", "-H", self.ldapi, "-D", ROOT_DN, "-w", ROOT_PW]
        if add:
            args.append("-a")
        r = subprocess.run(args, input=ldif, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"ldapmodify failed ({r.returncode}): {r.stderr}\n{ldif}")
        return r.stdout

    def search(self, base, filt, *attrs):
        r = subprocess.run([_tool("ldapsearch"), "-x", "-LLL", "-o", "ldif-wrap=no", "-H",
                            self.ldapi, "-D", ROOT_DN, "-w", ROOT_PW, "-b", base, filt, *attrs],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"ldapsearch failed: {r.stderr}")
        return r.stdout


def make_ca(directory, names=("127.0.0.1", "localhost")):
    """A CA and a server certificate for `names` (openssl), in `directory`.
    Returns dict(ca=, cert=, key=)."""
    os.makedirs(directory, exist_ok=True)
    p = lambda n: os.path.join(directory, n)  # noqa: E731
    openssl = _tool("openssl")

    def run(*args):
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mailauth test CA",
        "-keyout", p("ca.key"), "-out", p("ca.pem"))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", p("server.key"), "-out", p("server.csr"))
    san = ",".join(("IP:" if n[0].isdigit() else "DNS:") + n for n in names)
    with open(p("ext.cnf"), "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-days", "2", "-out", p("server.pem"), "-extfile", p("ext.cnf"))
    os.chmod(p("server.key"), 0o600)
    return {"ca": p("ca.pem"), "cert": p("server.pem"), "key": p("server.key")}
