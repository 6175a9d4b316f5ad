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

namespace etrain::lowfreq {

// Validates x and size for crop (target <= input) or pad (target >= input); returns {bh, bw} / {H, W}.
std::array<int64_t, 2> check_args(const at::Tensor& t, at::IntArrayRef size, const char* op, bool crop);

// True when the rank-one Nyquist correction is non-zero for this pair of axes.
bool needs_correction(int64_t n_h, int64_t b_h, int64_t n_w, int64_t b_w);

// (b [+1 when with_nyquist]) x n band matrix in `dtype` on `device`, computed once in double and cached;
// zero rows pad it to a multiple of row_multiple (aligned leading dimensions for the GEMM libraries).
at::Tensor band_matrix(int64_t n, int64_t b, bool with_nyquist, at::ScalarType dtype, at::Device device,
                       int64_t row_multiple = 1);

// Device hooks: the only device-specific parts; the GEMMs go through ATen (MKL/oneDNN or cuBLAS).
struct DeviceHooks {
  // q: [P, >=bh(+1), >=bw(+1)] compute dtype -> y: [P, bh, bw] (any float dtype); with `correction`, subtracts
  // (-1)^(m+n) q[bh, bw].
  void (*crop_epilogue)(const at::Tensor& q, at::Tensor& y, bool correction);
  // y: [P, bh, bw] (any float dtype) -> [P, rows, cols] compute dtype, zero outside y; with `correction`,
  // -sum (-1)^(m+n) y[m, n] at [bh, bw].
  at::Tensor (*pad_prologue)(const at::Tensor& y, at::ScalarType compute, int64_t rows, int64_t cols, bool correction);
  // Band matrices get rows padded to this multiple (CUDA: aligned GEMM operands).
  int64_t row_multiple;
};

at::Tensor lowfreq_crop_generic(const at::Tensor& x, at::IntArrayRef size, const DeviceHooks& hooks);
at::Tensor lowfreq_pad_generic(const at::Tensor& y, at::IntArrayRef size, const DeviceHooks& hooks);

at::Tensor lowfreq_crop_cpu(const at::Tensor& x, at::IntArrayRef size);
at::Tensor lowfreq_pad_cpu(const at::Tensor& y, at::IntArrayRef size);
#ifdef ETRAIN_WITH_CUDA
at::Tensor lowfreq_crop_cuda(const at::Tensor& x, at::IntArrayRef size);
at::Tensor lowfreq_pad_cuda(const at::Tensor& y, at::IntArrayRef size);
#endif

}  // namespace etrain::lowfreq
