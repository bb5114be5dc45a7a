#include "src/config/config.h"

#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <vector>

#include "backends/backend.h"

namespace mailauth::config {
namespace {

constexpr const char* kMinimal = R"([saslauthd]
socket = "/tmp/x/mux"

[[backend]]
type = "pwdfile"
path = "/etc/hostname"
)";

std::string error_of(const std::string& text) {
  try {
    Config c = load_string(text, "test.conf");
    for (const auto& spec : c.backends) backend::create(spec);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, MinimalConfigHasDefaults) {
  Config c = load_string(kMinimal, "test.conf");
  EXPECT_EQ(c.daemon.workers, 4);
  EXPECT_FALSE(c.daemon.log_target.has_value());
  EXPECT_EQ(c.daemon.log_level, log::Level::Info);
  ASSERT_TRUE(c.mux);
  EXPECT_EQ(c.mux->socket.path, "/tmp/x/mux");
  EXPECT_EQ(c.mux->socket.mode, 0660u);
  EXPECT_FALSE(c.mux->join_realm);
  EXPECT_EQ(c.mux->request_timeout.count(), 10000);
  ASSERT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.backends[0].type, "pwdfile");
  EXPECT_EQ(c.backends[0].name, "pwdfile");
}

TEST(Config, VerifyOnlyTtlDefaultsTo30sAndIsCappedAt60s) {
  Config c = load_string(std::string(kMinimal) + "[cache]\nttl = \"8h\"\n", "test.conf");
  ASSERT_TRUE(c.cache);
  EXPECT_EQ(c.cache->verify_only_ttl, std::chrono::seconds(30));
  c = load_string(std::string(kMinimal) + "[cache]\nverify_only_ttl = \"1m\"\n", "test.conf");
  EXPECT_EQ(c.cache->verify_only_ttl, std::chrono::seconds(60));
  EXPECT_EQ(error_of(std::string(kMinimal) + "[cache]\nverify_only_ttl = \"61s\"\n"),
            "test.conf:8: key 'cache.verify_only_ttl': must be at most 60s: PAM cannot tell the "
            "cache a password changed");
}

TEST(Config, FullDaemonAndSaslauthdTables) {
  Config c = load_string(R"([daemon]
user = "mailauth"
group = "mailauth"
workers = 8
log = "stderr"
log_level = "debug"
control_socket = "/run/mailauth/control"

[saslauthd]
socket = "/var/spool/postfix/var/run/saslauthd/mux"
mode = "0660"
owner = "root"
group = "postfix"
join_realm = true
request_timeout = "500ms"

[[backend]]
type = "pwdfile"
name = "users"
path = "/etc/hostname"
)",
                         "full.conf");
  EXPECT_EQ(c.daemon.user, "mailauth");
  EXPECT_EQ(c.daemon.workers, 8);
  EXPECT_EQ(c.daemon.log_target, log::Target::Stderr);
  EXPECT_EQ(c.daemon.log_level, log::Level::Debug);
  EXPECT_EQ(c.mux->socket.group, "postfix");
  EXPECT_TRUE(c.mux->join_realm);
  EXPECT_EQ(c.mux->request_timeout.count(), 500);
  EXPECT_EQ(c.backends[0].name, "users");
}

TEST(Config, ErrorsNameFileLineAndKey) {
  EXPECT_EQ(error_of("[daemon]\nworkers = 0\n[saslauthd]\nsocket=\"/x\"\n"),
            "test.conf:2: key 'daemon.workers': must be between 1 and 256");
  EXPECT_EQ(error_of("[daemon]\nworkers = \"four\"\n"),
            "test.conf:2: key 'daemon.workers': must be an integer");
  EXPECT_EQ(error_of("[daemon]\n\nlog = \"file\"\n"),
            "test.conf:3: key 'daemon.log': must be \"syslog\" or \"stderr\"");
  EXPECT_EQ(error_of("[saslauthd]\nsocket = \"/x\"\nmode = \"0999\"\n"),
            "test.conf:3: key 'saslauthd.mode': must be an octal mode such as \"0660\"");
  EXPECT_EQ(error_of("[saslauthd]\nsocket = \"/x\"\nrequest_timeout = \"soon\"\n"),
            "test.conf:3: key 'saslauthd.request_timeout': must be a duration such as \"2s\" or "
            "\"500ms\"");
}

TEST(Config, UnknownKeysAreErrorsWithTheirLine) {
  EXPECT_EQ(error_of("[daemon]\nworkers = 2\nwokrers = 3\n"),
            "test.conf:3: key 'daemon.wokrers': unknown key");
  EXPECT_EQ(error_of(std::string(kMinimal) + "paht = \"/x\"\n"),
            "test.conf:7: key 'backend[1].paht': unknown key");
  EXPECT_EQ(error_of("[deamon]\nworkers = 2\n"), "test.conf:1: key 'deamon': unknown table or key");
}

TEST(Config, SyntaxErrorsNameTheLine) {
  const std::string e = error_of("[daemon]\nworkers = = 2\n");
  EXPECT_EQ(e.rfind("test.conf:2: syntax error:", 0), 0u) << e;
}

TEST(Config, BackendErrors) {
  EXPECT_EQ(error_of("[saslauthd]\nsocket = \"/x\"\n[[backend]]\npath = \"/x\"\n"),
            "test.conf:3: key 'backend[1].type': is required");
  const std::string unknown =
      error_of("[saslauthd]\nsocket = \"/x\"\n[[backend]]\ntype = \"sasldb\"\n");
  EXPECT_EQ(unknown.rfind("test.conf:4: key 'backend[1].type': unknown backend type \"sasldb\"", 0), 0u)
      << unknown;
  EXPECT_EQ(error_of("[saslauthd]\nsocket = \"/x\"\n[[backend]]\ntype = \"pwdfile\"\n"),
            "test.conf:3: key 'backend[1].path': is required");
  const std::string missing = error_of(
      "[saslauthd]\nsocket = \"/x\"\n[[backend]]\ntype = \"pwdfile\"\npath = \"/nonexistent/pw\"\n");
  EXPECT_EQ(missing,
            "test.conf:5: key 'backend[1].path': cannot read /nonexistent/pw: No such file or directory");
  EXPECT_EQ(error_of(std::string(kMinimal) + "[[backend]]\ntype = \"pwdfile\"\npath = \"/etc/hostname\"\n"),
            "test.conf:7: key 'backend[2].name': \"pwdfile\" is used by another backend; give each a "
            "unique name");
}

TEST(Config, NeedsABackendAndAListener) {
  EXPECT_EQ(error_of("[saslauthd]\nsocket = \"/x\"\n"),
            "test.conf: no [[backend]] is configured; add at least one");
  EXPECT_EQ(error_of("[[backend]]\ntype = \"pwdfile\"\npath = \"/etc/hostname\"\n"),
            "test.conf: no listener is configured; add a [saslauthd] or [dovecot] table");
}

// mailauth-user needs the backends only: no listener is fine, the rest is
// checked as for the daemon.
TEST(Config, TheAccountToolNeedsNoListener) {
  const Reader tool = Reader::AccountTool;
  Config c = load_string("[daemon]\ncontrol_socket = \"/run/c\"\n\n"
                         "[[backend]]\ntype = \"pwdfile\"\npath = \"/etc/hostname\"\n",
                         "test.conf", tool);
  EXPECT_FALSE(c.mux);
  EXPECT_FALSE(c.dovecot);
  ASSERT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.backends[0].type, "pwdfile");
  EXPECT_EQ(c.daemon.control_socket, "/run/c");
  auto tool_error = [&](std::string_view text) {
    try {
      load_string(text, "test.conf", tool);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(tool_error("[daemon]\nworkers = 0\n[[backend]]\ntype = \"pwdfile\"\n"),
            "test.conf:2: key 'daemon.workers': must be between 1 and 256");
  EXPECT_EQ(tool_error("[daemon]\ncontrol_socket = \"/run/c\"\n"),
            "test.conf: no [[backend]] is configured; add at least one");
}

}  // namespace
}  // namespace mailauth::config

namespace mailauth::config {
namespace {

TEST(SaslauthdArgs, DebiansDefaultArgvMapsToAMuxSocketAndPam) {
  SaslauthdArgs a;
  a.mech = "pam";
  a.cache = true;
  a.dir = "/var/spool/postfix/var/run/saslauthd";
  a.join_realm = true;
  a.threads = 5;
  Config c = backend::from_saslauthd_args(a);
  ASSERT_TRUE(c.mux);
  EXPECT_EQ(c.mux->socket.path, "/var/spool/postfix/var/run/saslauthd/mux");
  // Not saslauthd's 0777 (issue 11): group-only, the socket and a DIR
  // mailauthd creates, group sasl as Debian's init script makes DIR.
  EXPECT_EQ(c.mux->socket.mode, 0660u);
  EXPECT_EQ(c.mux->socket.dir_mode, 0710u);
  EXPECT_EQ(c.mux->socket.group, saslauthd_group());
  EXPECT_TRUE(c.mux->join_realm);
  EXPECT_FALSE(c.dovecot);
  EXPECT_EQ(c.daemon.workers, 5);
  ASSERT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.backends[0].type, "pam");
  auto b = backend::create(c.backends[0]);
  EXPECT_EQ(b->kind(), backend::Backend::Kind::VerifyOnly);
}

TEST(SaslauthdArgs, BackendOptionsAndErrors) {
  SaslauthdArgs a;
  a.mech = "pwdfile";
  a.option = "/etc/hostname";
  Config c = backend::from_saslauthd_args(a);
  EXPECT_EQ(c.backends[0].section.get_string("path", ""), "/etc/hostname");
  EXPECT_EQ(c.mux->socket.path, "/var/run/saslauthd/mux");

  a.option.clear();
  EXPECT_THROW(backend::from_saslauthd_args(a), ConfigError);
  a.mech = "sasldb";
  try {
    backend::from_saslauthd_args(a);
    FAIL();
  } catch (const ConfigError& e) {
    // Named from the registry: every type that offers the form.
    const std::string what = e.what();
    EXPECT_NE(what.find("-a sasldb: mailauthd supports -a "), std::string::npos) << what;
    for (const char* mech : {"pam", "shadow", "pwdfile", "mysql"})
      EXPECT_NE(what.find(mech), std::string::npos) << what;
  }
  a.mech = "shadow";
  a.dir = "relative/dir";
  EXPECT_THROW(backend::from_saslauthd_args(a), ConfigError);
  a.dir = "/run/x";
  a.threads = 0;  // saslauthd's "fork per connection": one worker at least
  EXPECT_EQ(backend::from_saslauthd_args(a).daemon.workers, 1);
  a.debug = true;
  EXPECT_EQ(backend::from_saslauthd_args(a).daemon.log_level, log::Level::Debug);
}

TEST(SaslauthdArgs, OptionsReachTheBackendVerbatim) {
  // -O goes into TOML text: quotes, backslashes and control characters in
  // it must come out as the same path, never as other keys.
  SaslauthdArgs a;
  a.mech = "pwdfile";
  a.option = "/tmp/we\"ird\\path\n[[backend]]\ttype = \"pam\"";
  Config c = backend::from_saslauthd_args(a);
  ASSERT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.backends[0].type, "pwdfile");
  EXPECT_EQ(c.backends[0].section.get_string("path", ""), a.option);
  a.option = "it's \"both\" '''\x01\n";
  EXPECT_EQ(backend::from_saslauthd_args(a).backends[0].section.get_string("path", ""), a.option);
}

TEST(BackendTypes, EveryTypeSaysWhatItOffers) {
  // What mailauth-user and the saslauthd form ask of a type comes from its
  // registration, not from its name.
  for (const auto& type : backend::types()) {
    const backend::TypeInfo* t = backend::find_type(type);
    ASSERT_NE(t, nullptr) << type;
    EXPECT_EQ(t->type, type);
    EXPECT_NE(t->create, nullptr) << type;
    // A type that keeps no accounts says how they are managed instead.
    EXPECT_TRUE(t->keeps_accounts || t->accounts_hint != nullptr) << type;
  }
  EXPECT_EQ(backend::find_type("sasldb"), nullptr);
  EXPECT_TRUE(backend::find_type("pwdfile")->keeps_accounts);
  EXPECT_FALSE(backend::find_type("shadow")->keeps_accounts);
  EXPECT_NE(backend::find_type("pwdfile")->create_empty_store, nullptr);
}

TEST(ConfigSaslauthdForm, SocketGroupIsSaslOrRootsGroup) {
  const std::string g = saslauthd_group();
  if (::geteuid() != 0) {
    EXPECT_EQ(g, "");  // cannot give the files to another group anyway
    return;
  }
  std::vector<char> buf(16384);
  group gr{};
  group* sasl = nullptr;
  if (getgrnam_r("sasl", &gr, buf.data(), buf.size(), &sasl) == 0 && sasl != nullptr) {
    EXPECT_EQ(g, "sasl");
  } else {
    passwd pw{};
    passwd* root = nullptr;
    ASSERT_EQ(getpwuid_r(0, &pw, buf.data(), buf.size(), &root), 0);
    ASSERT_NE(root, nullptr);
    EXPECT_EQ(g, std::to_string(root->pw_gid));
  }
}

TEST(ConfigSaslauthdForm, ConfigFilesKeepTheirSocketSettings) {
  Config c = load_string(kMinimal, "test.conf");
  EXPECT_EQ(c.mux->socket.mode, 0660u);
  EXPECT_EQ(c.mux->socket.group, "");
  EXPECT_EQ(c.mux->socket.dir_mode, 0755u);
}

}  // namespace
}  // namespace mailauth::config
