// Exact low-frequency cropping (EfficientTrain) and its adjoint, as separable real matrix products.
//
// Per plane x (H x W): y = Re(ifft2(crop_band(fft2(x)))) * (bh*bw)/(H*W), band = frequency rows
// {0..ceil(bh/2)-1} u {-floor(bh/2)..-1}, columns likewise. Writing C_h[m,p] = (1/H) sum_f
// exp(2*pi*i*f*(m/bh - p/H)) over the kept frequencies f, y = Re(C_h x C_w^T). C = R + iI, where I comes
// only from the unpaired Nyquist frequency -b/2 of an even band and is rank one: I[m,p] = (-1)^m v[p],
// v[p] = sin(pi*b*p/n)/n. Hence
//     y = R_h x R_w^T - (-1)^(m+n) (v_h^T x v_w).
// Appending v as an extra row to R gives one "band matrix" per axis; the product then carries the scalar
// v_h^T x v_w in its corner, and an elementwise epilogue applies the correction. The adjoint (lowfreq_pad)
// is the same structure transposed, with a prologue that puts -sum (-1)^(m+n) y[m,n] in the corner.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>

namespace etrain::lowfreq {

// Validates x and size for crop (target <= input) or pad (target >= input); returns {bh, bw} / {H, W}.
std::array<int64_t, 2> check_args(const at::Tensor& t, at::IntArrayRef size, const char* op, bool crop);

// True when the rank-one Nyquist correction is non-zero for this pair of axes.
bool needs_correction(int64_t n_h, int64_t b_h, int64_t n_w, int64_t b_w);

// (b [+1 when with_nyquist]) x n band matrix in double on the CPU, each entry from the closed form.
at::Tensor make_band_matrix(int64_t n, int64_t b, bool with_nyquist);
// The same matrix built on `device` with tensor ops in double: no host-to-device copy and no synchronisation, so
// it can be recorded into a CUDA graph.
at::Tensor make_band_matrix_on(int64_t n, int64_t b, bool with_nyquist, at::Device device);
// m in `dtype` with zero rows appended up to a multiple of row_multiple (aligned GEMM leading dimensions).
at::Tensor pad_rows(const at::Tensor& m, at::ScalarType dtype, int64_t row_multiple);

// A bounded, thread-safe cache of band matrices. Each entry carries a tag (CUDA: the stream it was built on).
// Past `capacity` entries the oldest is dropped: a caller still using it holds its own reference, and CUDA
// callers on other streams record their stream on it (see lowfreq_cuda.cu), so dropping never frees in-flight data;
// they also wait on the entry's `ready` event, so they never read a matrix before its build has run.
class BandCache {
 public:
  using Key = std::tuple<int64_t, int64_t, bool, int, int, int, int64_t>;  // n, b, nyquist, dtype, device, rows
  struct Entry {
    at::Tensor matrix;
    int64_t tag = 0;
    // CUDA: an at::cuda::CUDAEvent recorded on the building stream after the build (type-erased: this header is
    // also compiled without CUDA). A hit on another stream waits on it before using the matrix.
    std::shared_ptr<void> ready;
  };
  explicit BandCache(size_t capacity = 256) : capacity_(capacity) {}
  std::optional<Entry> find(const Key& key) const;
  // Keeps the first entry when two threads built the same key; returns the cached one.
  Entry insert(const Key& key, Entry entry);
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<Key, Entry> map_;
  std::deque<Key> order_;  // insertion order, for eviction
  size_t capacity_;
};

BandCache::Key band_key(int64_t n, int64_t b, bool with_nyquist, at::ScalarType dtype, at::Device device,
                        int64_t row_multiple);

// Device hooks: the only device-specific parts; the GEMMs go through ATen (MKL/oneDNN or cuBLAS).
struct DeviceHooks {
  // q: [P, >=bh(+1), >=bw(+1)] compute dtype -> y: [P, bh, bw] (any float dtype); with `correction`, subtracts
  // (-1)^(m+n) q[bh, bw].
  void (*crop_epilogue)(const at::Tensor& q, at::Tensor& y, bool correction);
  // y: [P, bh, bw] (any float dtype) -> [P, rows, cols] compute dtype, zero outside y; with `correction`,
  // -sum (-1)^(m+n) y[m, n] at [bh, bw].
  at::Tensor (*pad_prologue)(const at::Tensor& y, at::ScalarType compute, int64_t rows, int64_t cols, bool correction);
  // (b [+1]) x n band matrix in `dtype` on the tensor's device, rows padded to row_multiple; cached per device.
  at::Tensor (*band_matrix)(int64_t n, int64_t b, bool with_nyquist, at::ScalarType dtype, at::Device device,
                            int64_t row_multiple);
  // Band matrices get rows padded to this multiple (aligned GEMM operands and leading dimensions).
  int64_t row_multiple;
  // Of two association orders with equal FLOPs (square planes), take rows first (L @ x, then @ M^T). MKL/oneDNN
  // runs the row-first pair ~1.5x faster at 224 -> 160 (a batched L @ x_p, then one tall GEMM); cuBLAS was
  // measured with columns first.
  bool rows_first_on_tie;
};

at::Tensor lowfreq_crop_generic(const at::Tensor& x, at::IntArrayRef size, const DeviceHooks& hooks);
at::Tensor lowfreq_pad_generic(const at::Tensor& y, at::IntArrayRef size, const DeviceHooks& hooks);

// The CPU crop and pad by folded GEMMs (half the FLOPs, lowfreq_cpu.cpp); the *_gemm_cpu ones: the plain GEMM form.
at::Tensor lowfreq_crop_cpu(const at::Tensor& x, at::IntArrayRef size);
at::Tensor lowfreq_pad_cpu(const at::Tensor& y, at::IntArrayRef size);
at::Tensor lowfreq_crop_gemm_cpu(const at::Tensor& x, at::IntArrayRef size);
at::Tensor lowfreq_pad_gemm_cpu(const at::Tensor& y, at::IntArrayRef size);
#ifdef ETRAIN_WITH_CUDA
at::Tensor lowfreq_crop_cuda(const at::Tensor& x, at::IntArrayRef size);
at::Tensor lowfreq_pad_cuda(const at::Tensor& y, at::IntArrayRef size);
#endif

}  // namespace etrain::lowfreq
