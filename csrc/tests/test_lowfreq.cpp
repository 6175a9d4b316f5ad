// C++ tests of the etrain low-frequency ops, without Python (built and run by CMake/ctest; see docs/cmake.md).
//
//   test_lowfreq <case>     case: crop_vs_fft | dispatcher | adjoint | errors | bands | cuda | all
//
// Exit status 0 = pass, 1 = fail, 77 = skipped (ctest's SKIP_RETURN_CODE; used by `cuda` without a GPU or
// without the CUDA kernels).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "lowfreq/lowfreq.h"

namespace {

int g_failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++g_failures;
    std::printf("  FAIL: %s\n", what.c_str());
  }
}

std::string shape_str(int64_t H, int64_t W, int64_t bh, int64_t bw) {
  return std::to_string(H) + "x" + std::to_string(W) + " -> " + std::to_string(bh) + "x" + std::to_string(bw);
}

// Unshifted FFT indices of the kept band: 0..ceil(b/2)-1 and -floor(b/2)..-1 (mod n).
torch::Tensor band_indices(int64_t n, int64_t b) {
  std::vector<int64_t> idx;
  for (int64_t k = 0; k < (b + 1) / 2; ++k) idx.push_back(k);
  for (int64_t k = n - b / 2; k < n; ++k) idx.push_back(k);
  return torch::tensor(idx, torch::kLong);
}

// Reference from the definition, in float64: Re(ifft2(band(fft2(x)))) * (bh*bw)/(H*W).
torch::Tensor ref_crop(const torch::Tensor& x, int64_t bh, int64_t bw) {
  const int64_t H = x.size(-2), W = x.size(-1);
  auto spec = torch::fft::fft2(x.to(torch::kDouble));
  auto kept = spec.index_select(-2, band_indices(H, bh)).index_select(-1, band_indices(W, bw));
  return torch::real(torch::fft::ifft2(kept)) * (double(bh * bw) / double(H * W));
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble).cpu() - b.to(torch::kDouble).cpu()).abs().max().item<double>();
}

struct Case {
  int64_t H, W, bh, bw;
};

// Even/odd/mixed/non-square bands, the identity (band = input) and the mean (1x1).
const std::vector<Case> kCases = {
    {8, 8, 4, 4},   {16, 16, 6, 6}, {9, 7, 5, 3},   {9, 9, 4, 4},    {16, 12, 6, 10},
    {15, 20, 8, 7}, {12, 9, 1, 1},  {10, 10, 10, 10}, {32, 24, 32, 12}, {7, 16, 6, 15},
};

torch::Tensor call_crop_dispatcher(const torch::Tensor& x, int64_t bh, int64_t bw) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("etrain::lowfreq_crop", "")
                       .typed<at::Tensor(const at::Tensor&, c10::SymIntArrayRef)>();
  const std::vector<c10::SymInt> size{c10::SymInt(bh), c10::SymInt(bw)};
  return op.call(x, size);
}

torch::Tensor call_pad_dispatcher(const torch::Tensor& y, int64_t H, int64_t W) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("etrain::lowfreq_pad", "")
                       .typed<at::Tensor(const at::Tensor&, c10::SymIntArrayRef)>();
  const std::vector<c10::SymInt> size{c10::SymInt(H), c10::SymInt(W)};
  return op.call(y, size);
}

// lowfreq_crop_cpu against the torch.fft reference, float64 (tight) and float32 (loose), batched input.
void test_crop_vs_fft() {
  for (const auto& c : kCases) {
    const auto name = shape_str(c.H, c.W, c.bh, c.bw);
    auto x = torch::randn({2, 3, c.H, c.W}, torch::kDouble);
    auto ref = ref_crop(x, c.bh, c.bw);
    auto y64 = etrain::lowfreq::lowfreq_crop_cpu(x, {c.bh, c.bw});
    expect(y64.sizes() == torch::IntArrayRef({2, 3, c.bh, c.bw}), name + ": float64 output shape");
    expect(y64.scalar_type() == torch::kDouble, name + ": float64 output dtype");
    const double e64 = max_abs_diff(y64, ref);
    expect(e64 < 1e-10, name + ": float64 error " + std::to_string(e64));
    auto y32 = etrain::lowfreq::lowfreq_crop_cpu(x.to(torch::kFloat), {c.bh, c.bw});
    expect(y32.scalar_type() == torch::kFloat, name + ": float32 output dtype");
    const double e32 = max_abs_diff(y32, ref);
    expect(e32 < 1e-4, name + ": float32 error " + std::to_string(e32));
    std::printf("  %-18s max|err| float64 %.2e  float32 %.2e\n", name.c_str(), e64, e32);
  }
  // A non-contiguous input (transposed planes) gives the same result as its contiguous copy.
  auto x = torch::randn({3, 20, 16}, torch::kDouble).transpose(-2, -1);
  auto y = etrain::lowfreq::lowfreq_crop_cpu(x, {8, 10});
  expect(max_abs_diff(y, ref_crop(x.contiguous(), 8, 10)) < 1e-10, "non-contiguous input");
}

// The registered op, called through the dispatcher, matches the reference and the direct call (crop and pad).
void test_dispatcher() {
  for (const auto& c : kCases) {
    const auto name = shape_str(c.H, c.W, c.bh, c.bw);
    auto x = torch::randn({4, c.H, c.W}, torch::kDouble);
    auto y = call_crop_dispatcher(x, c.bh, c.bw);
    expect(max_abs_diff(y, ref_crop(x, c.bh, c.bw)) < 1e-10, name + ": dispatcher crop vs fft reference");
    expect(max_abs_diff(y, etrain::lowfreq::lowfreq_crop_cpu(x, {c.bh, c.bw})) == 0.0,
           name + ": dispatcher crop vs direct call");
    auto g = torch::randn({4, c.bh, c.bw}, torch::kDouble);
    expect(max_abs_diff(call_pad_dispatcher(g, c.H, c.W), etrain::lowfreq::lowfreq_pad_cpu(g, {c.H, c.W})) == 0.0,
           name + ": dispatcher pad vs direct call");
  }
  auto built = c10::Dispatcher::singleton().findSchemaOrThrow("etrain::built_with_cuda", "").typed<bool()>();
  std::printf("  etrain::built_with_cuda() = %s\n", built.call() ? "true" : "false");
}

// lowfreq_pad is the exact adjoint: <crop(x), y> == <x, pad(y)>, and pad(y) has the input's shape.
void test_adjoint() {
  for (const auto& c : kCases) {
    const auto name = shape_str(c.H, c.W, c.bh, c.bw);
    auto x = torch::randn({2, 2, c.H, c.W}, torch::kDouble);
    auto y = torch::randn({2, 2, c.bh, c.bw}, torch::kDouble);
    auto px = etrain::lowfreq::lowfreq_pad_cpu(y, {c.H, c.W});
    expect(px.sizes() == x.sizes(), name + ": pad output shape");
    const double lhs = (etrain::lowfreq::lowfreq_crop_cpu(x, {c.bh, c.bw}) * y).sum().item<double>();
    const double rhs = (x * px).sum().item<double>();
    const double rel = std::abs(lhs - rhs) / std::max(1.0, std::abs(lhs));
    expect(rel < 1e-12, name + ": <crop(x), y> = " + std::to_string(lhs) + " vs <x, pad(y)> = " + std::to_string(rhs));
    // float32 pad agrees with float64 pad to float32 accuracy.
    auto px32 = etrain::lowfreq::lowfreq_pad_cpu(y.to(torch::kFloat), {c.H, c.W});
    expect(px32.scalar_type() == torch::kFloat && max_abs_diff(px32, px) < 1e-4, name + ": float32 pad");
    std::printf("  %-18s adjoint relative gap %.2e\n", name.c_str(), rel);
  }
}

// Returns true when f throws a c10::Error (ValueError derives from it); prints the message's first line.
bool throws_c10_error(const std::function<void()>& f, const std::string& what) {
  try {
    f();
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    std::printf("  %-40s -> c10::Error: %s\n", what.c_str(), msg.substr(0, msg.find('\n')).c_str());
    return true;
  } catch (const std::exception& e) {
    std::printf("  %-40s -> other exception: %s\n", what.c_str(), e.what());
    return false;
  }
  std::printf("  %-40s -> no exception\n", what.c_str());
  return false;
}

void test_errors() {
  using etrain::lowfreq::lowfreq_crop_cpu;
  using etrain::lowfreq::lowfreq_pad_cpu;
  auto x = torch::randn({2, 8, 8});
  const std::vector<std::pair<std::string, std::function<void()>>> bad = {
      {"crop to a larger size (9x8 from 8x8)", [&] { lowfreq_crop_cpu(x, {9, 8}); }},
      {"crop to size 0", [&] { lowfreq_crop_cpu(x, {0, 4}); }},
      {"crop with 3 size entries", [&] { lowfreq_crop_cpu(x, {4, 4, 4}); }},
      {"crop of a 1-D tensor", [&] { lowfreq_crop_cpu(torch::randn({8}), {4, 4}); }},
      {"crop of an int64 tensor", [&] { lowfreq_crop_cpu(torch::ones({8, 8}, torch::kLong), {4, 4}); }},
      {"pad to a smaller size (4x4 from 8x8)", [&] { lowfreq_pad_cpu(x, {4, 4}); }},
      {"dispatcher crop to a larger size", [&] { call_crop_dispatcher(x, 16, 16); }},
  };
  for (const auto& [what, f] : bad) expect(throws_c10_error(f, what), what + ": expected c10::Error");
  // A valid call after the errors still works (no state left behind).
  expect(lowfreq_crop_cpu(x, {4, 4}).sizes() == torch::IntArrayRef({2, 4, 4}), "valid call after errors");
}

// The two band-matrix builders agree (the loop in double on the host, and the tensor-op form that CUDA uses to
// stay capturable), and the cache stays within its capacity, dropping the oldest entry first.
void test_bands() {
  using namespace etrain::lowfreq;
  for (auto [n, b] : std::vector<std::pair<int64_t, int64_t>>{{8, 4}, {9, 5}, {224, 160}, {7, 7}, {10, 1}, {384, 96}}) {
    for (bool nyq : {false, true}) {
      const auto host = make_band_matrix(n, b, nyq);
      const auto ops = make_band_matrix_on(n, b, nyq, torch::kCPU);
      expect(host.sizes() == ops.sizes(), "band builders: same shape");
      expect(max_abs_diff(host, ops) < 1e-14, "band builders agree for n=" + std::to_string(n) + " b=" + std::to_string(b));
    }
  }
  BandCache cache(3);
  for (int64_t b = 1; b <= 5; ++b) {
    cache.insert(band_key(8, b, false, torch::kFloat, torch::kCPU, 1), {make_band_matrix(8, b, false)});
  }
  expect(cache.size() == 3, "band cache keeps at most its capacity");
  expect(!cache.find(band_key(8, 1, false, torch::kFloat, torch::kCPU, 1)).has_value(), "oldest entry dropped");
  expect(cache.find(band_key(8, 5, false, torch::kFloat, torch::kCPU, 1)).has_value(), "newest entry kept");
  const auto first = cache.insert(band_key(8, 5, false, torch::kFloat, torch::kCPU, 1), {torch::zeros({1})});
  expect(first.matrix.size(0) == 5, "a second insert of a key keeps the first entry");
}

// CUDA kernels against the CPU ones; skipped without a GPU or without the CUDA kernels.
int test_cuda() {
  auto built = c10::Dispatcher::singleton().findSchemaOrThrow("etrain::built_with_cuda", "").typed<bool()>();
  if (!built.call()) {
    std::printf("  skipped: library built without the CUDA kernels (configure with -DETRAIN_WITH_CUDA=ON)\n");
    return 77;
  }
  if (!torch::cuda::is_available()) {
    std::printf("  skipped: no CUDA device\n");
    return 77;
  }
  for (const auto& c : kCases) {
    const auto name = shape_str(c.H, c.W, c.bh, c.bw);
    for (auto dt : {torch::kDouble, torch::kFloat, torch::kHalf}) {
      auto x = torch::randn({2, 3, c.H, c.W}).to(dt);
      const double tol = dt == torch::kDouble ? 1e-10 : (dt == torch::kFloat ? 1e-4 : 1e-2);
      auto y = call_crop_dispatcher(x.cuda(), c.bh, c.bw);
      expect(y.is_cuda() && y.scalar_type() == dt, name + ": cuda crop device/dtype");
      expect(max_abs_diff(y, ref_crop(x, c.bh, c.bw)) < tol, name + ": cuda crop vs reference");
      auto g = torch::randn({2, 3, c.bh, c.bw}).to(dt);
      auto p = call_pad_dispatcher(g.cuda(), c.H, c.W);
      expect(max_abs_diff(p, etrain::lowfreq::lowfreq_pad_cpu(g.to(torch::kDouble), {c.H, c.W})) < tol,
             name + ": cuda pad vs cpu pad");
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "all";
  torch::manual_seed(0);
  int rc = 0;
  bool ran = false;
  auto run = [&](const char* name, const std::function<void()>& f) {
    if (which != "all" && which != name) return;
    ran = true;
    std::printf("[ RUN  ] %s\n", name);
    const int before = g_failures;
    try {
      f();
    } catch (const std::exception& e) {
      ++g_failures;
      std::printf("  FAIL: unexpected exception: %s\n", e.what());
    }
    std::printf("[ %s ] %s\n", g_failures == before ? " OK " : "FAIL", name);
  };
  run("crop_vs_fft", test_crop_vs_fft);
  run("dispatcher", test_dispatcher);
  run("adjoint", test_adjoint);
  run("errors", test_errors);
  run("bands", test_bands);
  if (which == "all" || which == "cuda") {
    ran = true;
    std::printf("[ RUN  ] cuda\n");
    const int before = g_failures;
    try {
      rc = test_cuda();
    } catch (const std::exception& e) {
      ++g_failures;
      std::printf("  FAIL: unexpected exception: %s\n", e.what());
    }
    std::printf("[ %s ] cuda\n", g_failures != before ? "FAIL" : (rc == 77 ? "SKIP" : " OK "));
    if (which == "all" && rc == 77) rc = 0;
  }
  if (!ran) {
    std::printf("unknown case '%s' (crop_vs_fft | dispatcher | adjoint | errors | bands | cuda | all)\n", which.c_str());
    return 2;
  }
  if (g_failures) {
    std::printf("%d failure(s)\n", g_failures);
    return 1;
  }
  return rc;
}
