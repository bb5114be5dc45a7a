#include "src/cli/args.h"

#include <termios.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "src/util/secret.h"
#include "version.h"

namespace mailauth::cli {

Args::Args(int argc, char** argv) {
  std::string p = argc > 0 ? argv[0] : "mailauth";
  program_ = p.substr(p.rfind('/') == std::string::npos ? 0 : p.rfind('/') + 1);
  for (int i = 1; i < argc; ++i) args_.emplace_back(argv[i]);
}

std::string Args::next() {
  has_inline_ = false;
  std::string a = args_[pos_++];
  if (a.rfind("--", 0) == 0) {
    if (auto eq = a.find('='); eq != std::string::npos) {
      has_inline_ = true;
      inline_value_ = a.substr(eq + 1);
      a.resize(eq);
    }
  }
  return a;
}

std::string Args::value(std::string_view flag) {
  if (has_inline_) {
    has_inline_ = false;
    return inline_value_;
  }
  if (done()) usage_error("option " + std::string(flag) + " needs a value");
  return args_[pos_++];
}

long long Args::int_value(std::string_view flag, long long min, long long max) {
  const std::string v = value(flag);
  long long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n < min || n > max)
    usage_error("invalid value '" + v + "' for " + std::string(flag) + " (a whole number from " +
                std::to_string(min) + " to " + std::to_string(max) + ")");
  return n;
}

double Args::double_value(std::string_view flag, double min, double max) {
  const std::string v = value(flag);
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || d < min || d > max)
    usage_error("invalid value '" + v + "' for " + std::string(flag) + " (a number from " +
                std::to_string(min) + " to " + std::to_string(max) + ")");
  return d;
}

std::vector<std::string> Args::rest() {
  std::vector<std::string> out(args_.begin() + static_cast<long>(pos_), args_.end());
  pos_ = args_.size();
  return out;
}

void Args::help_or_version(const std::string& flag, const char* help) const {
  if (flag == "--help" || flag == "-h") {
    std::cout << help;
    std::exit(0);
  }
  if (flag == "--version" || flag == "-v") {
    std::cout << program_ << " " << MAILAUTH_VERSION << "\n";
    std::exit(0);
  }
}

void Args::usage_error(std::string_view message) const {
  std::cerr << program_ << ": " << message << " (try '" << program_ << " --help')\n";
  std::exit(kExitUsage);
}

namespace {
bool read_line_noecho(const std::string& prompt, std::string* out) {
  std::FILE* tty = std::fopen("/dev/tty", "r+");
  if (tty == nullptr) return false;
  const int fd = fileno(tty);
  termios old{};
  tcgetattr(fd, &old);
  termios noecho = old;
  noecho.c_lflag &= static_cast<tcflag_t>(~ECHO);
  noecho.c_lflag |= ECHONL;
  std::fputs(prompt.c_str(), tty);
  std::fflush(tty);
  tcsetattr(fd, TCSAFLUSH, &noecho);
  out->clear();
  int c;
  bool ok = false;
  while ((c = std::fgetc(tty)) != EOF) {
    if (c == '\n') {
      ok = true;
      break;
    }
    out->push_back(static_cast<char>(c));
  }
  tcsetattr(fd, TCSAFLUSH, &old);
  std::fclose(tty);
  return ok;
}
}  // namespace

bool read_password(const std::string& prompt, bool confirm, bool force_stdin, std::string* out,
                   std::string* error) {
  if (!force_stdin && isatty(STDIN_FILENO)) {
    if (!read_line_noecho(prompt, out)) {
      *error = "no password entered";
      return false;
    }
    if (confirm) {
      std::string again;
      const bool ok = read_line_noecho("Retype password: ", &again);
      const bool same = ok && constant_time_equal(*out, again);
      wipe(again.data(), again.size());
      if (!same) {
        wipe(out->data(), out->size());
        out->clear();
        *error = "passwords do not match";
        return false;
      }
    }
  } else {
    out->clear();
    int c;
    bool got = false;
    while ((c = std::getchar()) != EOF) {
      got = true;
      if (c == '\n') break;
      out->push_back(static_cast<char>(c));
    }
    if (!out->empty() && out->back() == '\r') out->pop_back();
    if (!got) {
      *error = "no password on standard input";
      return false;
    }
  }
  if (out->empty()) {
    *error = "empty password";
    return false;
  }
  return true;
}

}  // namespace mailauth::cli
