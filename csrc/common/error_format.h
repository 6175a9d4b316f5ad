// Helpers for error messages shared by the op families.
#pragma once

#include <ATen/ATen.h>

#include <charconv>
#include <string>

namespace etrain {

// Error messages are built from strings only: streaming an ArrayRef or an int64_t through c10::str crashed
// (SIGSEGV) with torch 2.11 built by GCC 13 in C++20 mode; strings and ScalarType are fine.
inline std::string dims(at::IntArrayRef v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + "]";
}

// A double for an error message, without iostreams: std::ostringstream << double crashed (SIGSEGV) the same way on
// the GPU image (torch 2.11, 2026-12-04: a CPU augment call with a NaN blur radius killed the process while raising
// its ValueError). std::to_chars touches no locale; shortest round-trip form ("nan", "-1", "1e+07").
inline std::string num(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

}  // namespace etrain
