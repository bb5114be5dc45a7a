// mailauthd configuration: the TOML file of interface.md, parsed and checked.
//
// Every error names the file, the line and the key ("mailauthd.conf:12: key
// 'daemon.workers': must be between 1 and 256"), so an admin can fix a typo
// without reading source.  Unknown keys are errors too: a misspelt key that
// is silently ignored is a security bug waiting to happen.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "src/util/log.h"

namespace toml {
inline namespace v3 {
class table;
class node;
}  // namespace v3
}  // namespace toml

namespace mailauth::config {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A view of one TOML table with typed accessors that report errors with the
// file, line and dotted key.  Remembers which keys were read, so that
// reject_unknown_keys() can name any key nobody asked for.
class Section {
 public:
  Section(std::shared_ptr<const toml::table> doc, const toml::table* table, std::string file,
          std::string path, int line);

  const std::string& path() const { return path_; }
  const std::string& file() const { return file_; }
  int line() const { return line_; }
  bool has(std::string_view key) const;

  std::string get_string(std::string_view key, std::string_view def) const;
  std::optional<std::string> opt_string(std::string_view key) const;
  std::string require_string(std::string_view key) const;
  long long get_int(std::string_view key, long long def, long long min, long long max) const;
  bool get_bool(std::string_view key, bool def) const;
  std::chrono::milliseconds get_duration(std::string_view key, std::chrono::milliseconds def) const;
  std::vector<std::string> get_string_list(std::string_view key,
                                           const std::vector<std::string>& def) const;
  mode_t get_mode(std::string_view key, mode_t def) const;

  // Throws ConfigError "FILE:LINE: key 'PATH.KEY': MESSAGE", with the line of
  // the key's value when the key is present, else of the table.
  [[noreturn]] void fail(std::string_view key, std::string_view message) const;
  void reject_unknown_keys() const;

 private:
  const toml::node* node(std::string_view key) const;
  std::shared_ptr<const toml::table> doc_;
  const toml::table* table_;
  std::string file_;
  std::string path_;
  int line_;
  mutable std::set<std::string, std::less<>> used_;
};

struct DaemonConfig {
  std::string user;  // empty: stay as started
  std::string group;
  int workers = 4;
  // Event loop threads that accept connections and answer them; 0: one per
  // core (at most 8).  The cheap path (cache hits, plaintext, refusals) runs
  // on them; hashes and backend calls run on the workers.
  int loops = 0;
  int queue_size = 1024;  // pending jobs beyond this are a temporary failure
  // Open client connections per listener; more are refused (and logged once
  // per interval).  The systemd unit's LimitNOFILE leaves room for it.
  std::size_t max_connections = 4096;
  std::optional<log::Target> log_target;  // unset: stderr in the foreground, else syslog
  log::Level log_level = log::Level::Info;
  std::string control_socket;   // empty: none
  mode_t control_mode = 0600;   // root (or the daemon's start user) only
  std::string control_group;    // e.g. an admin group, with control_mode 0660
};

// A UNIX socket the daemon listens on, with the ownership of the socket file.
struct SocketConfig {
  std::string path;
  mode_t mode = 0660;
  // Empty: left as created, i.e. the user and group mailauthd has when it
  // binds -- root's when it starts as root and drops privileges afterwards
  // (then access is by `group` and `mode`).
  std::string owner;
  std::string group;
  // The socket's directory, if mailauthd has to create it: this mode and the
  // socket's group (an existing directory is left as it is).  Not a key: the
  // saslauthd form sets 0710.
  mode_t dir_mode = 0755;
};

struct MuxConfig {
  SocketConfig socket;
  bool join_realm = false;
  std::chrono::milliseconds request_timeout{10'000};
  std::size_t max_field = 1024;  // bytes per field; saslauthd's own limit is 256
  std::chrono::milliseconds failure_delay{0};  // NO held back this long (a timer)
};

// The Dovecot auth client protocol ([dovecot]).
struct DovecotConfig {
  SocketConfig socket;
  std::vector<std::string> mechanisms{"PLAIN", "LOGIN"};  // upper case, in advertised order
  std::chrono::milliseconds failure_delay{2000};
  bool temp_failure_disconnect = true;  // temp_failure = "disconnect" (default) or "fail"
  // A request waiting for the client's next CONT is dropped after this
  // (Dovecot's MASTER_AUTH_SERVER_TIMEOUT_SECS is 150 s).
  std::chrono::milliseconds request_timeout{150'000};
  // A connection with no request in flight and no input for this long is
  // closed (Postfix reconnects when it needs to).
  std::chrono::milliseconds idle_timeout{300'000};
};

// [cache]: present = enabled.
struct CacheConfig {
  std::chrono::milliseconds ttl{60'000};
  std::chrono::milliseconds negative_ttl{10'000};
  std::chrono::milliseconds stale_ttl{0};
  std::chrono::milliseconds verify_only_ttl{30'000};  // PAM: successes only, capped
  std::size_t size = 10000;
};

// [policy]: the brute-force policy (on unless enabled = false).
struct PolicyConfig {
  bool enabled = true;
  std::vector<std::string> trusted_networks{"127.0.0.0/8", "::1"};
  int ipv4_prefix = 32;
  int ipv6_prefix = 64;
  std::chrono::milliseconds penalty{500};
  std::chrono::milliseconds max_penalty{5000};
  std::chrono::milliseconds max_user_penalty{2000};
  std::chrono::milliseconds window{15 * 60 * 1000};
  int max_in_flight = 16;
};

struct BackendSpec {
  std::string type;
  std::string name;
  Section section;
};

struct Config {
  std::string file;
  std::shared_ptr<const toml::table> doc;
  DaemonConfig daemon;
  std::optional<MuxConfig> mux;
  std::optional<DovecotConfig> dovecot;
  std::optional<CacheConfig> cache;
  PolicyConfig policy;
  std::vector<BackendSpec> backends;
};

// saslauthd's command line (Debian's /etc/default/saslauthd produces e.g.
// "-a pam -c -m /var/spool/postfix/var/run/saslauthd -r -n 5").
struct SaslauthdArgs {
  std::string mech;                       // -a: a backend type that offers the form
  std::string option;                     // -O: that type's option (pwdfile: the path;
                                          //     mysql: a TOML file with [[backend]]
                                          //     tables; pam: a PAM confdir; …)
  std::string dir = "/var/run/saslauthd";  // -m: the socket is DIR/mux
  bool cache = false;                     // -c
  long cache_kb = 0;                      // -s
  long cache_ttl = 28800;                 // -t
  bool join_realm = false;                // -r
  int threads = 5;                        // -n
  bool debug = false;                     // -d
};

// The [[backend]] tables of a saslauthd -a/-O pair, as TOML text (made by
// the backend type: backends/backend.h TypeInfo::saslauthd).  `origin`
// names the text in error messages: the -O file when the text is that
// file, else a description ("saslauthd -a pam").
struct SaslauthdBackends {
  std::string toml;
  std::string origin;
};

// `value` as a TOML basic string, quotes included: for code that writes
// TOML text (SaslauthdBackends, mailauth-migrate).
std::string toml_quote(std::string_view value);

// The configuration a saslauthd command line means: a [saslauthd] socket at
// DIR/mux and one backend.  saslauthd itself makes its socket 0777 and
// leaves access to DIR, which Debian's init script creates root:sasl 0710;
// mailauthd, started without that script too, makes both safe itself: the
// socket 0660 and a missing DIR 0710, group saslauthd_group().  A pam
// backend gets the default allow-list of services (the command line cannot
// set `services`).  Throws ConfigError.
Config from_saslauthd_args(const SaslauthdArgs& args, const SaslauthdBackends& backends);

// The group of the saslauthd form's socket and directory: "sasl" when that
// group exists (Debian's sasl2-bin creates it; admins add postfix to it),
// else root's primary group, as a number.  Empty when not running as root
// (the files then keep the daemon's own group).
std::string saslauthd_group();

// "FILE:LINE: key 'TABLE.KEY': MESSAGE", as a ConfigError would say it, for a
// value checked after parsing (the line of the key's value when it is in the
// file, else of the table).
std::string key_message(const Config& cfg, std::string_view table, std::string_view key,
                        std::string_view message);

// Who reads the configuration.  mailauthd needs a listener ([saslauthd] or
// [dovecot]); mailauth-user needs only the backends (and the control
// socket, if any), so an admin host that only manages accounts, or a file a
// configuration tool writes just for the CLI, may have no listener table.
// Everything present is validated the same way for both.
enum class Reader { Daemon, AccountTool };

// Parse and validate a configuration file.  Throws ConfigError.
Config load_file(const std::string& path, Reader reader = Reader::Daemon);
// Parse from text (the file name is only used in messages).  Throws ConfigError.
Config load_string(std::string_view text, const std::string& file_name,
                   Reader reader = Reader::Daemon);

}  // namespace mailauth::config
