// What mailauth-migrate found: every setting it carried over into the new
// mailauthd.conf and every one it could not, each with the FILE:LINE it came
// from.  Pure data; the program prints it.
#pragma once

#include <string>
#include <vector>

namespace mailauth::migrate {

struct Note {
  enum class Kind {
    Carried,      // translated into the new configuration
    Ignored,      // not translated, and it does not change who can log in
                  // (logging, a session line, a tuning knob mailauthd lacks)
    Unsupported,  // not translated, and logins may be decided differently:
                  // the migration is partial
  };
  Kind kind = Kind::Carried;
  std::string file;  // where it came from ("" when not from one place)
  int line = 0;      // 0: the whole file
  std::string message;
};

class Report {
 public:
  void carried(std::string file, int line, std::string message) {
    add(Note::Kind::Carried, std::move(file), line, std::move(message));
  }
  void ignored(std::string file, int line, std::string message) {
    add(Note::Kind::Ignored, std::move(file), line, std::move(message));
  }
  void unsupported(std::string file, int line, std::string message) {
    add(Note::Kind::Unsupported, std::move(file), line, std::move(message));
  }
  void add(Note::Kind kind, std::string file, int line, std::string message) {
    notes_.push_back(Note{kind, std::move(file), line, std::move(message)});
  }
  const std::vector<Note>& notes() const { return notes_; }
  bool partial() const {
    for (const auto& n : notes_)
      if (n.kind == Note::Kind::Unsupported) return true;
    return false;
  }
  // "FILE:LINE: " (or "FILE: ", or "") for a note.
  static std::string where(const Note& n) {
    if (n.file.empty()) return "";
    return n.file + (n.line > 0 ? ":" + std::to_string(n.line) : std::string()) + ": ";
  }

 private:
  std::vector<Note> notes_;
};

}  // namespace mailauth::migrate
