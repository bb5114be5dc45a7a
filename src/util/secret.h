// Secret: a move-only byte buffer for passwords and other credentials.
//
// The bytes live in one heap allocation that is wiped (sodium_memzero) when the
// Secret is destroyed or reassigned, so a password never lingers in freed
// memory or in a std::string's small-string buffer.  A Secret cannot be copied
// by accident, has no operator<< and is never formatted into a log line.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

namespace mailauth {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string_view bytes);
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  Secret(Secret&& other) noexcept;
  Secret& operator=(Secret&& other) noexcept;
  ~Secret();

  // Explicit deep copy, for the few places that need two owners.
  Secret clone() const { return Secret(view()); }

  std::string_view view() const { return {data_.get(), size_}; }
  const char* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear();

 private:
  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
};

// Constant-time equality of two byte strings.  The running time depends only
// on the lengths, never on where the first difference is.
bool constant_time_equal(std::string_view a, std::string_view b);

// Wipe a buffer that held secret bytes.
void wipe(void* data, std::size_t size);

}  // namespace mailauth
