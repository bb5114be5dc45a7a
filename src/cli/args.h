// Command-line parsing shared by mailauthd, mailauth-test and mailauth-user.
//
// One convention everywhere: a usage error prints one line on stderr naming
// the flag or value, plus a hint to --help, and exits with status 2.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mailauth::cli {

inline constexpr int kExitUsage = 2;

class Args {
 public:
  Args(int argc, char** argv);

  const std::string& program() const { return program_; }
  bool done() const { return pos_ >= args_.size(); }
  // The next argument.  For "--name=value", returns "--name" and keeps the
  // value for value().
  std::string next();
  // The value of the flag just returned by next(): the "=value" part or the
  // following argument.  Usage error if there is none.
  std::string value(std::string_view flag);
  // Number or fraction values, with range checks; usage error otherwise.
  long long int_value(std::string_view flag, long long min, long long max);
  double double_value(std::string_view flag, double min, double max);
  // The rest of the arguments, unparsed.
  std::vector<std::string> rest();

  [[noreturn]] void usage_error(std::string_view message) const;
  // --help/-h prints `help`, --version/-v prints "PROGRAM VERSION"; both
  // exit 0.  Any other flag: returns and does nothing.
  void help_or_version(const std::string& flag, const char* help) const;

 private:
  std::string program_;
  std::vector<std::string> args_;
  std::size_t pos_ = 0;
  bool has_inline_ = false;
  std::string inline_value_;
};

// Read a password: from the terminal without echo (asking twice when
// `confirm`), or one line from stdin when it is not a terminal.  Returns
// false (with `error` set) on EOF, mismatch or an empty password.
bool read_password(const std::string& prompt, bool confirm, bool force_stdin, std::string* out,
                   std::string* error);

}  // namespace mailauth::cli
