// pwdfile: a lookup backend over a pam_pwdfile-style file.
//
//   # comment
//   alice:$y$j9T$...            user:hash
//   bob:$6$...:extra:fields     anything after the second ':' is ignored
//   carol:!$y$j9T$...           a leading '!' disables the account
//
// The file is re-read automatically when it changes (its inode, size, mtime
// or ctime differ from what was loaded), checked on every lookup, so a
// rewritten file takes effect on the next login with no restart.  A malformed
// line is logged once, with its line number, and skipped.  If the file is
// missing or cannot be opened, lookups are a temporary failure (never a stale
// accept).  A read error (read(2) fails after the open: EIO, ...) is never
// taken for the end of the file: the table is read completely or not at all.
// Until a complete read succeeds the last complete table stays in force (the
// error is logged once, the read retried at every lookup); with no complete
// table yet, lookups are a temporary failure, never "unknown user".
//
// Config keys: path (required), default_scheme ("CRYPT", or "PLAIN" for a
// file of plaintext passwords), rehash (a mailauth-user scheme: upgrade a
// user's hash to it at their next successful login).
//
// Writes (mailauth-user) keep every other line as it was (comments, order,
// extra fields) and are safe against concurrent writers and the reading
// daemon: an exclusive flock on PATH.lock, a temporary file in the same
// directory written and fsync'ed, chown/chmod to the old file's owner, group
// and mode (a writer that cannot -- not root, nor the owner in the file's
// group -- writes nothing and says why), rename over the old file, fsync of
// the directory.  A reader sees
// the old file or the new one, never a mix.  Hashes are written bare, as
// pam_pwdfile reads them; a disabled account has '!' in front of its hash.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"

namespace mailauth::backend {

class PwdfileBackend final : public Backend, public AccountStore {
 public:
  // What the type offers (registered in backends/backend.cc).
  static const TypeInfo kTypeInfo;
  static std::unique_ptr<Backend> create(const config::BackendSpec& spec);
  // saslauthd's -a pwdfile -O OPTION (TypeInfo::saslauthd).
  static config::SaslauthdBackends saslauthd_form(const std::string& option);
  // mailauth-user add before the file exists (TypeInfo::create_empty_store).
  static std::string create_empty_store(const config::BackendSpec& spec);

  PwdfileBackend(std::string name, std::string path, std::string default_scheme);

  Kind kind() const override { return Kind::Lookup; }
  LookupResult lookup(const Query& query) override;
  // From the table in memory when the file is the one loaded (one stat(2));
  // nullopt when it changed, cannot be read, or a worker is reading it.
  std::optional<LookupResult> lookup_now(const Query& query) override;
  std::string check() override;

  const std::string& path() const { return path_; }

  AccountStore* accounts() override { return this; }
  Result add(std::string_view user, std::string_view stored, std::string_view name,
             bool enabled) override;
  Result set_password(std::string_view user, std::string_view stored) override;
  Result replace_password(std::string_view user, std::string_view expected,
                          std::string_view stored) override;
  Result remove(std::string_view user) override;
  Result set_enabled(std::string_view user, bool enabled) override;
  Result list(std::string_view domain, std::vector<Account>* out) override;
  Result import(const std::vector<NewAccount>& entries, bool update,
                std::vector<Result>* results) override;
  bool wants_scheme_prefix() const override { return false; }
  bool stores_names() const override { return false; }

  // The read(2) used on the users file; tests inject read errors with it.
  using ReadFunction = std::function<ssize_t(int fd, void* buf, std::size_t count)>;
  void set_read_function(ReadFunction read) { read_ = std::move(read); }

 private:
  // The whole file, or false with `error` set ("cannot read PATH: ..." when it
  // cannot be opened, "error reading PATH: ..." on a read error).
  bool read_file(std::string* contents, std::string* error, bool* read_error,
                 int open_flags = 0) const;

  // Runs `edit` on the file's lines under the write lock and replaces the
  // file if it returns Done.
  Result rewrite(const std::function<Result(std::vector<std::string>& lines)>& edit);

  struct Entry {
    Secret stored;
    int line = 0;
  };
  // Looked up by string_view: no allocation per lookup.
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Table {
    std::unordered_map<std::string, Entry, NameHash, std::equal_to<>> users;
  };
  struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = -1;
    timespec mtime{};
    timespec ctime{};
    bool operator==(const FileId& o) const;
  };

  // Returns the current table, re-reading the file if it changed; nullptr
  // with `error` set if it cannot be read.
  std::shared_ptr<const Table> current(std::string* error);
  LookupResult find(const Table& table, const Query& query) const;
  std::shared_ptr<const Table> load(const FileId& id, std::string* error, bool* read_error,
                                    int attempt = 0);

  const std::string path_;
  const std::string default_scheme_;
  std::mutex mutex_;
  std::shared_ptr<const Table> table_;
  FileId loaded_{};
  std::string failure_;    // why the file did not read last time, as logged ("": it did)
  ReadFunction read_;      // empty: ::read
};

}  // namespace mailauth::backend
