#include "backends/pwdfile/pwdfile_backend.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include "src/password/schemes.h"
#include "src/util/fd.h"
#include "src/util/log.h"

namespace mailauth::backend {

namespace {
bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}
}  // namespace

bool PwdfileBackend::FileId::operator==(const FileId& o) const {
  return dev == o.dev && ino == o.ino && size == o.size && same_time(mtime, o.mtime) &&
         same_time(ctime, o.ctime);
}

std::unique_ptr<Backend> PwdfileBackend::create(const config::BackendSpec& spec) {
  const auto& s = spec.section;
  std::string path = s.require_string("path");
  std::string scheme = s.get_string("default_scheme", "CRYPT");
  for (char& c : scheme) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (scheme != "CRYPT" && scheme != "PLAIN")
    s.fail("default_scheme", "must be \"CRYPT\" or \"PLAIN\"");
  std::string rehash = s.get_string("rehash", "");
  if (!rehash.empty()) {
    if (rehash != "argon2id" && rehash != "yescrypt" && rehash != "bcrypt" &&
        rehash != "sha512-crypt" && rehash != "sha256-crypt")
      s.fail("rehash", "must be argon2id, yescrypt, bcrypt, sha512-crypt or sha256-crypt");
  }
  auto b = std::make_unique<PwdfileBackend>(spec.name, path, scheme);
  b->set_rehash_scheme(rehash);
  if (std::string problem = b->check(); !problem.empty()) s.fail("path", problem);
  return b;
}

PwdfileBackend::PwdfileBackend(std::string name, std::string path, std::string default_scheme)
    : Backend("pwdfile", std::move(name)), path_(std::move(path)),
      default_scheme_(std::move(default_scheme)) {}

std::string PwdfileBackend::check() {
  std::string error;
  if (!current(&error)) return error;
  return {};
}

std::shared_ptr<const PwdfileBackend::Table> PwdfileBackend::current(std::string* error) {
  struct stat st {};
  FileId id;
  if (::stat(path_.c_str(), &st) == 0) {
    id = FileId{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
  } else {
    *error = "cannot read " + path_ + ": " + std::strerror(errno);
  }
  std::lock_guard lock(mutex_);
  if (error->empty() && table_ && id == loaded_) return table_;
  if (error->empty()) {
    bool read_error = false;
    auto table = load(id, error, &read_error);
    if (table) {
      if (!failure_.empty()) log::info("pwdfile " + name() + ": " + path_ + " is readable again");
      failure_.clear();
      table_ = table;
      loaded_ = id;
      return table_;
    }
    if (read_error && table_) {
      // The file opens but does not read to its end (EIO, ...): what was read
      // is not the table, and taking it for one would make every user after
      // the error "unknown" -- the chain would ask the next backend.  The
      // last complete table stays in force; loaded_ is not updated, so the
      // next lookup reads again.
      const std::string message = *error + "; serving the last complete table (" +
                                  std::to_string(table_->users.size()) +
                                  " users) until a read succeeds";
      if (message != failure_) log::error("pwdfile " + name() + ": " + message);
      failure_ = message;
      error->clear();
      return table_;
    }
  }
  // Missing or unopenable (or never read completely): a temporary failure.
  // Serving the old table would accept a password that may have been changed
  // or an account that was removed.
  if (*error != failure_) log::error("pwdfile " + name() + ": " + *error);
  failure_ = *error;
  table_.reset();
  return nullptr;
}

bool PwdfileBackend::read_file(std::string* contents, std::string* error, bool* read_error,
                               int open_flags) const {
  *read_error = false;
  contents->clear();
  UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | open_flags));
  if (!fd) {
    *error = "cannot read " + path_ + ": " + std::strerror(errno);
    return false;
  }
  // Room for the whole file at once: the hashes are not left behind in
  // buffers a growing string would free.
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && st.st_size > 0)
    contents->reserve(static_cast<std::size_t>(st.st_size) + 1);
  char buf[16384];
  for (;;) {
    const ssize_t n = read_ ? read_(fd.get(), buf, sizeof buf) : ::read(fd.get(), buf, sizeof buf);
    if (n == 0) break;  // the end of the file, and only that
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = "error reading " + path_ + ": " + std::strerror(errno);
      *read_error = true;
      wipe(buf, sizeof buf);
      wipe(contents->data(), contents->size());
      contents->clear();
      return false;
    }
    contents->append(buf, static_cast<std::size_t>(n));
  }
  wipe(buf, sizeof buf);
  return true;
}

namespace {
// The lines of a file's contents, as getline gives them: split at '\n', no
// empty line after a final '\n'.
template <typename F>
void for_each_line(std::string& contents, F&& f) {
  std::size_t pos = 0;
  while (pos < contents.size()) {
    std::size_t nl = contents.find('\n', pos);
    if (nl == std::string::npos) nl = contents.size();
    f(std::string_view(contents.data() + pos, nl - pos));
    pos = nl + 1;
  }
}
}  // namespace

std::shared_ptr<const PwdfileBackend::Table> PwdfileBackend::load(const FileId& id,
                                                                  std::string* error,
                                                                  bool* read_error,
                                                                  int attempt) {
  std::string contents;
  if (!read_file(&contents, error, read_error)) return nullptr;
  auto table = std::make_shared<Table>();
  int lineno = 0;
  int bad = 0;
  for_each_line(contents, [&](std::string_view line) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::size_t start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos || line[start] == '#') return;
    const auto colon = line.find(':');
    const auto end = line.find(':', colon == std::string_view::npos ? 0 : colon + 1);
    std::string problem;
    if (colon == std::string_view::npos) problem = "no ':' between user and hash";
    else if (colon == 0) problem = "empty user name";
    else if (end == colon + 1 || colon + 1 == line.size()) problem = "empty hash";
    if (!problem.empty()) {
      // The line may hold a password or a hash: log its number, never its text.
      log::warning("pwdfile " + name() + ": " + path_ + ":" + std::to_string(lineno) + ": " +
                   problem + "; line skipped");
      ++bad;
      return;
    }
    std::string user(line.substr(0, colon));
    std::string_view hash = line.substr(colon + 1, (end == std::string_view::npos ? line.size() : end) - colon - 1);
    auto [it, inserted] = table->users.try_emplace(user, Entry{Secret(hash), lineno});
    if (!inserted)
      log::warning("pwdfile " + name() + ": " + path_ + ":" + std::to_string(lineno) +
                   ": user " + log::sanitize(user) + " already defined on line " +
                   std::to_string(it->second.line) + "; the first one is used");
  });
  wipe(contents.data(), contents.size());
  // A writer that rewrites the file in place (instead of rename) could have
  // changed it while we read; read again on the next lookup in that case.
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) {
    FileId after{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
    if (!(after == id) && attempt < 3) {
      log::debug("pwdfile " + name() + ": " + path_ + " changed while being read; re-reading");
      return load(after, error, read_error, attempt + 1);
    }
  }
  log::info("pwdfile " + name() + ": loaded " + std::to_string(table->users.size()) +
            " users from " + path_ +
            (bad ? " (" + std::to_string(bad) + " malformed lines skipped)" : ""));
  return table;
}

LookupResult PwdfileBackend::lookup(const Query& query) {
  std::string error;
  auto table = current(&error);
  if (!table) return {backend::Status::TempFail, {}, error};
  return find(*table, query);
}

std::optional<LookupResult> PwdfileBackend::lookup_now(const Query& query) {
  // The event loop: one stat(2) to see the file is the one loaded, and the
  // table if no worker holds it (a worker re-reading the file holds the
  // lock for the read).  Anything else -- changed, unreadable, being read --
  // is lookup()'s job on a worker.
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return std::nullopt;
  const FileId id{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
  std::shared_ptr<const Table> table;
  {
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock() || !table_ || !(id == loaded_) || !failure_.empty()) return std::nullopt;
    table = table_;
  }
  return find(*table, query);
}

LookupResult PwdfileBackend::find(const Table& table, const Query& query) const {
  auto it = table.users.find(query.user);
  if (it == table.users.end()) return {backend::Status::Unknown, {}, {}};
  LookupResult r;
  r.status = backend::Status::Found;
  std::string_view stored = it->second.stored.view();
  if (!stored.empty() && stored.front() == '!') {
    // Disabled, as in shadow: keep the hash behind the '!' so the check
    // still costs what a real one does.
    r.credential.disabled = true;
    stored.remove_prefix(1);
  }
  r.credential.stored = Secret(stored);
  r.credential.default_scheme = default_scheme_;
  return r;
}

}  // namespace mailauth::backend

// ---- writes (mailauth-user) ---------------------------------------------------

namespace mailauth::backend {

namespace {

// "user" of a line, or empty for comments, blank and malformed lines.
std::string_view user_of(std::string_view line) {
  const auto start = line.find_first_not_of(" \t");
  if (start == std::string_view::npos || line[start] == '#') return {};
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return {};
  return line.substr(0, colon);
}

// Replace the hash field (the second) of a line, keeping any extra fields.
std::string with_hash(std::string_view line, std::string_view hash) {
  const auto colon = line.find(':');
  const auto end = line.find(':', colon + 1);
  std::string out(line.substr(0, colon + 1));
  out += hash;
  if (end != std::string_view::npos) out += line.substr(end);
  return out;
}

std::string_view hash_of(std::string_view line) {
  const auto colon = line.find(':');
  const auto end = line.find(':', colon + 1);
  return line.substr(colon + 1, end == std::string_view::npos ? std::string_view::npos
                                                               : end - colon - 1);
}

bool valid_user(std::string_view user) {
  return !user.empty() && user.find_first_of(std::string_view(":\n\r\0", 4)) == std::string_view::npos &&
         user.front() != '#' && user.front() != ' ' && user.front() != '\t';
}

bool valid_stored(std::string_view stored) {
  return !stored.empty() && stored.find_first_of(std::string_view(":\n\r\0", 4)) == std::string_view::npos;
}

AccountStore::Result fail(AccountStore::Status s, std::string m) { return {s, std::move(m)}; }

}  // namespace

PwdfileBackend::Result PwdfileBackend::rewrite(
    const std::function<Result(std::vector<std::string>& lines)>& edit) {
  const std::string lock_path = path_ + ".lock";
  // flock needs no write access: read-only, so a lock file that is not ours
  // but readable still works.  Root (mailauth-user) gives the lock file the
  // users file's owner and group, so the daemon's rehash can open it too.
  // The directory may be writable by the daemon's user (the rehash needs
  // that), so nothing in it is followed or trusted when root writes: the
  // lock is opened without following a symlink and must be a regular file
  // with one link, or root's fchown below would hand any file (a symlink or
  // hard link to /etc/shadow) to that user.
  UniqueFd lock(::open(lock_path.c_str(), O_RDONLY | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC,
                       0600));
  if (!lock) return fail(Status::TempFail, "cannot open " + lock_path + ": " + std::strerror(errno));
  struct stat lst {};
  if (::fstat(lock.get(), &lst) != 0 || !S_ISREG(lst.st_mode) || lst.st_nlink != 1)
    return fail(Status::TempFail, lock_path + " is not a plain file of its own (a link?); nothing written");
  if (::geteuid() == 0) {
    struct stat users {};
    if (::lstat(path_.c_str(), &users) == 0 && S_ISREG(users.st_mode) &&
        (lst.st_uid != users.st_uid || lst.st_gid != users.st_gid))
      (void)!::fchown(lock.get(), users.st_uid, users.st_gid);
  }
  if (::flock(lock.get(), LOCK_EX) != 0)
    return fail(Status::TempFail, "cannot lock " + lock_path + ": " + std::strerror(errno));

  // Read under the lock: no other writer can be between our read and rename.
  std::vector<std::string> lines;
  struct stat st {};
  bool existed = ::lstat(path_.c_str(), &st) == 0;
  if (existed && !S_ISREG(st.st_mode))
    return fail(Status::TempFail, path_ + " is not a regular file (a symlink?); nothing written");
  if (existed) {
    // All of it or nothing: lines read up to a read error, written back,
    // would drop every user after it.  Not through a symlink put there
    // since: its target's lines would be written into the users file.
    std::string contents, error;
    bool read_error = false;
    if (!read_file(&contents, &error, &read_error, O_NOFOLLOW))
      return fail(Status::TempFail, error + "; nothing written");
    for_each_line(contents, [&](std::string_view l) { lines.emplace_back(l); });
    wipe(contents.data(), contents.size());
  } else if (errno != ENOENT) {
    return fail(Status::TempFail, "cannot read " + path_ + ": " + std::strerror(errno));
  }

  Result r = edit(lines);
  if (r.status != Status::Done) return r;

  const auto slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash == 0 ? 1 : slash);
  std::string tmpl = path_ + ".XXXXXX";
  UniqueFd tmp(::mkostemp(tmpl.data(), O_CLOEXEC));
  if (!tmp) return fail(Status::TempFail, "cannot create a file in " + dir + ": " + std::strerror(errno));
  auto cleanup = [&] { ::unlink(tmpl.c_str()); };
  if (existed) {
    // The new file gets the old one's owner, group and mode, or the file is
    // not replaced: a writer that is not root (the daemon's rehash) cannot
    // give a file away, and renaming its own file over the old one would
    // hand the users file to the daemon's user (root:adm became nobody:adm).
    // chown first: it may clear set-id bits that chmod then restores.
    const std::string owner = "owner and group (uid " + std::to_string(st.st_uid) + ", gid " +
                              std::to_string(st.st_gid) + ")";
    if (::fchown(tmp.get(), st.st_uid, st.st_gid) != 0) {
      const int e = errno;
      cleanup();
      return fail(Status::TempFail,
                  "cannot keep the " + owner + " of " + path_ + ": " + std::strerror(e) +
                      " (running as uid " + std::to_string(::geteuid()) +
                      ": only root or the file's owner, in its group, can); nothing written");
    }
    if (::fchmod(tmp.get(), st.st_mode & 07777) != 0) {
      const int e = errno;
      cleanup();
      return fail(Status::TempFail, "cannot keep the mode of " + path_ + ": " + std::strerror(e) +
                                        "; nothing written");
    }
  } else {
    ::fchmod(tmp.get(), 0640);
  }
  std::string data;
  for (const auto& l : lines) {
    data += l;
    data += '\n';
  }
  for (std::size_t off = 0; off < data.size();) {
    const ssize_t n = ::write(tmp.get(), data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      wipe(data.data(), data.size());
      cleanup();
      return fail(Status::TempFail, "cannot write " + tmpl + ": " + std::strerror(errno));
    }
    off += static_cast<std::size_t>(n);
  }
  wipe(data.data(), data.size());
  for (auto& l : lines) wipe(l.data(), l.size());
  if (::fsync(tmp.get()) != 0 || ::rename(tmpl.c_str(), path_.c_str()) != 0) {
    cleanup();
    return fail(Status::TempFail, "cannot replace " + path_ + ": " + std::strerror(errno));
  }
  UniqueFd dirfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dirfd) ::fsync(dirfd.get());
  return {Status::Done, {}};
}

PwdfileBackend::Result PwdfileBackend::add(std::string_view user, std::string_view stored,
                                           std::string_view /*name*/, bool enabled) {
  if (!valid_user(user)) return fail(Status::Refused, "a user name cannot contain ':' or a newline");
  if (!valid_stored(stored)) return fail(Status::Refused, "the hash cannot contain ':' or a newline");
  return rewrite([&](std::vector<std::string>& lines) -> Result {
    for (const auto& l : lines)
      if (user_of(l) == user) return fail(Status::Exists, "user " + std::string(user) + " exists already");
    lines.push_back(std::string(user) + ":" + (enabled ? "" : "!") + std::string(stored));
    return {Status::Done, {}};
  });
}

PwdfileBackend::Result PwdfileBackend::set_password(std::string_view user, std::string_view stored) {
  if (!valid_stored(stored)) return fail(Status::Refused, "the hash cannot contain ':' or a newline");
  return rewrite([&](std::vector<std::string>& lines) -> Result {
    for (auto& l : lines)
      if (user_of(l) == user) {
        // A disabled account stays disabled with its new password.
        const bool disabled = hash_of(l).rfind('!', 0) == 0;
        l = with_hash(l, (disabled ? "!" : "") + std::string(stored));
        return {Status::Done, {}};
      }
    return fail(Status::NotFound, "no user " + std::string(user));
  });
}

PwdfileBackend::Result PwdfileBackend::replace_password(std::string_view user,
                                                        std::string_view expected,
                                                        std::string_view stored) {
  if (!valid_stored(stored)) return fail(Status::Refused, "the hash cannot contain ':' or a newline");
  return rewrite([&](std::vector<std::string>& lines) -> Result {
    for (auto& l : lines)
      if (user_of(l) == user) {
        std::string_view hash = hash_of(l);
        const bool disabled = hash.rfind('!', 0) == 0;
        if (disabled) hash.remove_prefix(1);
        if (!constant_time_equal(hash, expected))
          return fail(Status::NotFound, "the credential changed meanwhile");
        l = with_hash(l, (disabled ? "!" : "") + std::string(stored));
        return {Status::Done, {}};
      }
    return fail(Status::NotFound, "no user " + std::string(user));
  });
}

PwdfileBackend::Result PwdfileBackend::remove(std::string_view user) {
  return rewrite([&](std::vector<std::string>& lines) -> Result {
    for (auto it = lines.begin(); it != lines.end(); ++it)
      if (user_of(*it) == user) {
        wipe(it->data(), it->size());
        lines.erase(it);
        return {Status::Done, {}};
      }
    return fail(Status::NotFound, "no user " + std::string(user));
  });
}

PwdfileBackend::Result PwdfileBackend::set_enabled(std::string_view user, bool enabled) {
  return rewrite([&](std::vector<std::string>& lines) -> Result {
    for (auto& l : lines)
      if (user_of(l) == user) {
        std::string_view hash = hash_of(l);
        const bool disabled = hash.rfind('!', 0) == 0;
        if (disabled == !enabled) return {Status::Done, {}};  // already so
        std::string h = enabled ? std::string(hash.substr(1)) : "!" + std::string(hash);
        l = with_hash(l, h);
        return {Status::Done, {}};
      }
    return fail(Status::NotFound, "no user " + std::string(user));
  });
}

PwdfileBackend::Result PwdfileBackend::import(const std::vector<NewAccount>& entries, bool update,
                                              std::vector<Result>* results) {
  // One rewrite for the whole batch: 10,000 users are one file replacement,
  // not 10,000.
  std::vector<Result> out;
  Result r = rewrite([&](std::vector<std::string>& lines) -> Result {
    std::unordered_map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < lines.size(); ++i) {
      std::string_view u = user_of(lines[i]);
      if (!u.empty()) index.emplace(std::string(u), i);
    }
    for (const auto& e : entries) {
      if (!valid_user(e.user)) {
        out.push_back(fail(Status::Refused, "a user name cannot contain ':' or a newline"));
        continue;
      }
      if (!valid_stored(e.stored)) {
        out.push_back(fail(Status::Refused, "the hash cannot contain ':' or a newline"));
        continue;
      }
      auto it = index.find(e.user);
      if (it == index.end()) {
        index.emplace(e.user, lines.size());
        lines.push_back(e.user + ":" + e.stored);
        out.push_back({Status::Done, "added"});
      } else if (update) {
        std::string& l = lines[it->second];
        const bool disabled = hash_of(l).rfind('!', 0) == 0;
        l = with_hash(l, (disabled ? "!" : "") + e.stored);
        out.push_back({Status::Done, "updated"});
      } else {
        out.push_back(fail(Status::Exists, "exists"));
      }
    }
    return {Status::Done, {}};
  });
  if (r.status != Status::Done) {
    // Nothing was written: every entry shares the failure.
    results->assign(entries.size(), r);
    return r;
  }
  *results = std::move(out);
  return r;
}

PwdfileBackend::Result PwdfileBackend::list(std::string_view domain, std::vector<Account>* out) {
  std::string contents, error;
  bool read_error = false;
  if (!read_file(&contents, &error, &read_error)) return fail(Status::TempFail, error);
  std::vector<Account> found;
  for_each_line(contents, [&](std::string_view line) {
    std::string_view u = user_of(line);
    if (u.empty()) return;
    if (!domain.empty()) {
      const auto at = u.rfind('@');
      if (at == std::string_view::npos || u.substr(at + 1) != domain) return;
    }
    found.push_back(Account{std::string(u), "", hash_of(line).rfind('!', 0) != 0});
  });
  wipe(contents.data(), contents.size());
  for (auto& a : found) out->push_back(std::move(a));
  return {Status::Done, {}};
}

config::SaslauthdBackends PwdfileBackend::saslauthd_form(const std::string& option) {
  if (option.empty())
    throw config::ConfigError("saslauthd command line: -a pwdfile needs -O PATH (the users file)");
  return {"[[backend]]\ntype = \"pwdfile\"\npath = " + config::toml_quote(option) + "\n",
          "saslauthd -a pwdfile"};
}

std::string PwdfileBackend::create_empty_store(const config::BackendSpec& spec) {
  const std::string path = spec.section.get_string("path", "");
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) == 0 || errno != ENOENT) return {};
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) return {};  // opening it as the backend will say why
  // Root gives a new file the owner and group of its directory: in the
  // layout make install creates (/var/lib/mailauth, the daemon's user's)
  // the daemon can read it and rewrite it (rehash).
  const auto slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  struct stat dst {};
  std::string owner;
  if (::geteuid() == 0 && ::stat(dir.c_str(), &dst) == 0 &&
      ::fchown(fd, dst.st_uid, dst.st_gid) == 0 && (dst.st_uid != 0 || dst.st_gid != 0))
    owner = " (owner and group of " + dir + ")";
  ::close(fd);
  return "created " + path + owner;
}

const TypeInfo PwdfileBackend::kTypeInfo{
    .type = "pwdfile",
    .create = &PwdfileBackend::create,
    .keeps_accounts = true,
    .saslauthd = &PwdfileBackend::saslauthd_form,
    .create_empty_store = &PwdfileBackend::create_empty_store,
};

}  // namespace mailauth::backend
