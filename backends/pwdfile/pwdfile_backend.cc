#include "backends/pwdfile/pwdfile_backend.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

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
  auto b = std::make_unique<PwdfileBackend>(spec.name, path, scheme);
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
    auto table = load(id, error);
    if (table) {
      if (failing_) log::info("pwdfile " + name() + ": " + path_ + " is readable again");
      failing_ = false;
      table_ = table;
      loaded_ = id;
      return table_;
    }
  }
  // Unreadable: a temporary failure.  Serving the old table would accept a
  // password that may have been changed or an account that was removed.
  if (!failing_) log::error("pwdfile " + name() + ": " + *error);
  failing_ = true;
  table_.reset();
  return nullptr;
}

std::shared_ptr<const PwdfileBackend::Table> PwdfileBackend::load(const FileId& id,
                                                                  std::string* error,
                                                                  int attempt) {
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    *error = "cannot read " + path_ + ": " + std::strerror(errno);
    return nullptr;
  }
  auto table = std::make_shared<Table>();
  std::string line;
  int lineno = 0;
  int bad = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    const auto colon = line.find(':');
    const auto end = line.find(':', colon == std::string::npos ? 0 : colon + 1);
    std::string problem;
    if (colon == std::string::npos) problem = "no ':' between user and hash";
    else if (colon == 0) problem = "empty user name";
    else if (end == colon + 1 || colon + 1 == line.size()) problem = "empty hash";
    if (!problem.empty()) {
      // The line may hold a password or a hash: log its number, never its text.
      log::warning("pwdfile " + name() + ": " + path_ + ":" + std::to_string(lineno) + ": " +
                   problem + "; line skipped");
      ++bad;
      wipe(line.data(), line.size());
      continue;
    }
    std::string user = line.substr(0, colon);
    std::string_view hash(line.data() + colon + 1,
                          (end == std::string::npos ? line.size() : end) - colon - 1);
    auto [it, inserted] = table->users.try_emplace(user, Entry{Secret(hash), lineno});
    if (!inserted)
      log::warning("pwdfile " + name() + ": " + path_ + ":" + std::to_string(lineno) +
                   ": user " + log::sanitize(user) + " already defined on line " +
                   std::to_string(it->second.line) + "; the first one is used");
    wipe(line.data(), line.size());
  }
  if (in.bad()) {
    *error = "error reading " + path_ + ": " + std::strerror(errno);
    return nullptr;
  }
  // A writer that rewrites the file in place (instead of rename) could have
  // changed it while we read; read again on the next lookup in that case.
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) {
    FileId after{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
    if (!(after == id) && attempt < 3) {
      log::debug("pwdfile " + name() + ": " + path_ + " changed while being read; re-reading");
      return load(after, error, attempt + 1);
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
  if (!table) return {Status::TempFail, {}, error};
  auto it = table->users.find(std::string(query.user));
  if (it == table->users.end()) return {Status::Unknown, {}, {}};
  LookupResult r;
  r.status = Status::Found;
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
