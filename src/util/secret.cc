#include "src/util/secret.h"

#include <sodium.h>

#include <cstring>

namespace mailauth {

Secret::Secret(std::string_view bytes) {
  if (bytes.empty()) return;
  data_ = std::make_unique<char[]>(bytes.size());
  std::memcpy(data_.get(), bytes.data(), bytes.size());
  size_ = bytes.size();
}

Secret::Secret(Secret&& other) noexcept : data_(std::move(other.data_)), size_(other.size_) {
  other.size_ = 0;
}

Secret& Secret::operator=(Secret&& other) noexcept {
  if (this != &other) {
    clear();
    data_ = std::move(other.data_);
    size_ = other.size_;
    other.size_ = 0;
  }
  return *this;
}

Secret::~Secret() { clear(); }

void Secret::clear() {
  if (data_) sodium_memzero(data_.get(), size_);
  data_.reset();
  size_ = 0;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Compare equal-length prefixes without branching on content, then fold in
  // the length check, so that the time depends on the lengths only.
  const std::size_t n = a.size() < b.size() ? a.size() : b.size();
  int differ = 0;
  if (n > 0) differ = sodium_memcmp(a.data(), b.data(), n);
  return (differ == 0) & (a.size() == b.size());
}

void wipe(void* data, std::size_t size) { sodium_memzero(data, size); }

}  // namespace mailauth
