// CUDA kernels of the augment ops: a fixed five launches per op slot for the whole batch (plus the histogram
// memset): (1) per-sample channel and luma histograms for the samples whose op needs them, (2) one block per
// sample builds its per-channel 256-entry LUTs, (3) one pass over all pixels in which each sample runs its own
// op (LUT lookup, Color, Sharpness or the affine warp), (4) GaussianBlur's row passes (one thread per row of the
// blurred samples) and (5) its column passes (one thread per column). Op codes outside the known range, and
// GaussianBlur radii outside [0, kMaxBlurRadius], act as the identity (the Python front end validates them;
// checking here would need a device sync).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "augment/augment.h"
#include "augment/augment_kernels.h"

namespace etrain::augment {
namespace {

using namespace detail;

constexpr int kThreads = 256;

// grid (chunks, N); hist: [N, 4, 256] int32 (channels 0..2, luma at 3).
__global__ void hist_kernel(const uint8_t* __restrict__ x, const int64_t* __restrict__ ops, int32_t* __restrict__ hist,
                            int C, int64_t plane) {
  const int64_t n = blockIdx.y;
  const int64_t op = ops[n];
  if (!needs_hist(op)) return;
  __shared__ int32_t h[4][256];
  for (int i = threadIdx.x; i < 4 * 256; i += blockDim.x) (&h[0][0])[i] = 0;
  __syncthreads();
  const uint8_t* s = x + n * C * plane;
  const bool luma = op == kContrast && C == 3;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < plane;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    for (int c = 0; c < C; ++c) atomicAdd(&h[c][s[c * plane + o]], 1);
    if (luma) atomicAdd(&h[3][gray(s[o], s[plane + o], s[2 * plane + o])], 1);
  }
  __syncthreads();
  int32_t* g = hist + n * 4 * 256;
  for (int i = threadIdx.x; i < 4 * 256; i += blockDim.x) {
    const int c = i / 256;
    if (c < C || (luma && c == 3)) {
      const int32_t v = (&h[0][0])[i];
      if (v) atomicAdd(&g[i], v);
    }
  }
}

// grid N, block 32: thread c < C builds channel c's LUT. lut: [N, 3, 256].
__global__ void lut_kernel(const int64_t* __restrict__ ops, const double* __restrict__ params,
                           int32_t* __restrict__ hist, uint8_t* __restrict__ lut, int C) {
  const int64_t n = blockIdx.x;
  const int64_t op = ops[n];
  if (!is_lut_op(op)) return;
  const int c = threadIdx.x;
  if (c >= C) return;
  int32_t* h = hist + n * 4 * 256;
  const int32_t* hl = C == 3 ? h + 3 * 256 : h;  // a 1-channel image is its own luma
  build_lut(op, params + n * kNumParams, h + c * 256, hl, lut + (n * 3 + c) * 256);
}

// grid (ceil(H*W / kThreads), N): one thread per output pixel, all channels.
__global__ void apply_kernel(const uint8_t* __restrict__ x, uint8_t* __restrict__ out, const int64_t* __restrict__ ops,
                             const double* __restrict__ params, const int64_t* __restrict__ interp,
                             const uint8_t* __restrict__ fill, const uint8_t* __restrict__ lut, int C, int H, int W) {
  const int64_t n = blockIdx.y;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (o >= plane) return;
  const int64_t op = ops[n];
  const uint8_t* src = x + n * C * plane;
  uint8_t* dst = out + n * C * plane;
  const double* p = params + n * kNumParams;
  const int y = static_cast<int>(o / W), xx = static_cast<int>(o % W);
  if (blur_active(op, p)) return;  // written by blur_cols_kernel
  if (op == kAffine) {
    affine_pixel(src, dst, C, H, W, xx, y, p, interp[n], fill + n * C);
  } else if (op == kColor) {
    color_pixel(src, dst, C, plane, o, static_cast<float>(p[0]));
  } else if (op == kSharpness) {
    sharpness_pixel(src, dst, C, H, W, xx, y, static_cast<float>(p[0]));
  } else if (is_lut_op(op)) {
    const uint8_t* l = lut + n * 3 * 256;
    for (int c = 0; c < C; ++c) dst[c * plane + o] = l[c * 256 + src[c * plane + o]];
  } else {
    for (int c = 0; c < C; ++c) dst[c * plane + o] = src[c * plane + o];
  }
}

// GaussianBlur (detail::blur_row / blur_col): rows, grid (ceil(C*H / kBlurThreads), N), one thread per row of a
// blurred sample; then columns, grid (ceil(C*W / kBlurThreads), N), one thread per column (adjacent threads read
// adjacent bytes). out and tmp are written and read back by the same thread: no __restrict__ (see box_blur_line).
constexpr int kBlurThreads = 128;

__global__ void blur_rows_kernel(const uint8_t* __restrict__ x, uint8_t* out, uint8_t* tmp,
                                 const int64_t* __restrict__ ops, const double* __restrict__ params, int C, int H,
                                 int W) {
  const int64_t n = blockIdx.y;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= static_cast<int64_t>(C) * H) return;
  if (ops[n] != kGaussianBlur) return;
  const BoxBlur b = gaussian_blur_params(params[n * kNumParams]);
  if (!b.active) return;
  const int64_t off = n * C * static_cast<int64_t>(H) * W;
  blur_row(x + off, out + off, tmp + off, r, W, b);
}

__global__ void blur_cols_kernel(uint8_t* out, uint8_t* tmp, const int64_t* __restrict__ ops,
                                 const double* __restrict__ params, int C, int H, int W) {
  const int64_t n = blockIdx.y;
  const int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (k >= static_cast<int64_t>(C) * W) return;
  if (ops[n] != kGaussianBlur) return;
  const BoxBlur b = gaussian_blur_params(params[n * kNumParams]);
  if (!b.active) return;
  const int64_t off = n * C * static_cast<int64_t>(H) * W;
  blur_col(out + off, tmp + off, k, H, W, b);
}

}  // namespace

at::Tensor augment_slot_cuda(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params,
                             const at::Tensor& interp, const at::Tensor& fill) {
  check_args(x, op, params, interp, fill, /*chain=*/false);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  const auto opc = op.contiguous();
  const auto pc = params.contiguous();
  const auto ic = interp.contiguous();
  const auto fc = fill.contiguous();
  auto out = at::empty_like(xc, at::MemoryFormat::Contiguous);
  const int64_t N = xc.size(0);
  const int C = static_cast<int>(xc.size(1)), H = static_cast<int>(xc.size(2)), W = static_cast<int>(xc.size(3));
  const int64_t plane = static_cast<int64_t>(H) * W;
  if (N == 0 || plane == 0) return out;
  // The sample index is grid.y, at most 65535 per launch: larger batches run in chunks of that many samples.
  constexpr int64_t kMaxGridY = 65535;
  if (N > kMaxGridY) {
    for (int64_t s = 0; s < N; s += kMaxGridY) {
      const int64_t n = std::min(kMaxGridY, N - s);
      out.narrow(0, s, n).copy_(augment_slot_cuda(xc.narrow(0, s, n), opc.narrow(0, s, n), pc.narrow(0, s, n),
                                                  ic.narrow(0, s, n), fc.narrow(0, s, n)));
    }
    return out;
  }
  auto stream = at::cuda::getCurrentCUDAStream();
  auto hist = at::zeros({N, 4, 256}, xc.options().dtype(at::kInt));
  auto lut = at::empty({N, 3, 256}, xc.options());
  const int64_t blocks = (plane + kThreads - 1) / kThreads;
  // Histograms: enough blocks per sample to fill the GPU, each strides over its share of the pixels.
  const int hist_chunks = static_cast<int>(std::min<int64_t>(blocks, 16));
  hist_kernel<<<dim3(hist_chunks, N), kThreads, 0, stream>>>(xc.const_data_ptr<uint8_t>(),
                                                             opc.const_data_ptr<int64_t>(),
                                                             hist.mutable_data_ptr<int32_t>(), C, plane);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  lut_kernel<<<N, 32, 0, stream>>>(opc.const_data_ptr<int64_t>(), pc.const_data_ptr<double>(),
                                   hist.mutable_data_ptr<int32_t>(), lut.mutable_data_ptr<uint8_t>(), C);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  TORCH_CHECK_VALUE(blocks <= 2147483647, "augment_slot: image too large");
  apply_kernel<<<dim3(static_cast<unsigned>(blocks), N), kThreads, 0, stream>>>(
      xc.const_data_ptr<uint8_t>(), out.mutable_data_ptr<uint8_t>(), opc.const_data_ptr<int64_t>(),
      pc.const_data_ptr<double>(), ic.const_data_ptr<int64_t>(), fc.const_data_ptr<uint8_t>(),
      lut.const_data_ptr<uint8_t>(), C, H, W);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // GaussianBlur (samples whose op is not a blur return at once; the scratch comes from the caching allocator).
  auto tmp = at::empty_like(xc, at::MemoryFormat::Contiguous);
  const int64_t row_blocks = (static_cast<int64_t>(C) * H + kBlurThreads - 1) / kBlurThreads;
  const int64_t col_blocks = (static_cast<int64_t>(C) * W + kBlurThreads - 1) / kBlurThreads;
  TORCH_CHECK_VALUE(row_blocks <= 2147483647 && col_blocks <= 2147483647, "augment_slot: image too large");
  blur_rows_kernel<<<dim3(static_cast<unsigned>(row_blocks), N), kBlurThreads, 0, stream>>>(
      xc.const_data_ptr<uint8_t>(), out.mutable_data_ptr<uint8_t>(), tmp.mutable_data_ptr<uint8_t>(),
      opc.const_data_ptr<int64_t>(), pc.const_data_ptr<double>(), C, H, W);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  blur_cols_kernel<<<dim3(static_cast<unsigned>(col_blocks), N), kBlurThreads, 0, stream>>>(
      out.mutable_data_ptr<uint8_t>(), tmp.mutable_data_ptr<uint8_t>(), opc.const_data_ptr<int64_t>(),
      pc.const_data_ptr<double>(), C, H, W);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor augment_chain_cuda(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params,
                              const at::Tensor& interp, const at::Tensor& fill) {
  const int64_t L = check_args(x, op, params, interp, fill, /*chain=*/true);
  const c10::cuda::CUDAGuard guard(x.device());
  if (L == 0) return x.contiguous().clone();
  at::Tensor cur = x;
  for (int64_t l = 0; l < L; ++l) {
    cur = augment_slot_cuda(cur, op.select(1, l).contiguous(), params.select(1, l).contiguous(),
                            interp.select(1, l).contiguous(), fill);
  }
  return cur;
}

}  // namespace etrain::augment
