// Helpers for error messages shared by the op families.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace etrain {

// Error messages are built from strings only: streaming an ArrayRef or an int64_t through c10::str crashed
// (SIGSEGV) with torch 2.11 built by GCC 13 in C++20 mode; strings and ScalarType are fine.
inline std::string dims(at::IntArrayRef v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + "]";
}

}  // namespace etrain
