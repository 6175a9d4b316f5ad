// CUDA kernels of the augment ops: up to five launches per op slot for the whole batch (plus the histogram
// memset): (1) per-sample channel and luma histograms for the samples whose op needs them, (2) one block per
// sample builds its per-channel 256-entry LUTs, (3) one pass over all pixels in which each sample runs its own
// op (LUT lookup, Color, Sharpness or the affine warp), (4) GaussianBlur's row passes (one thread per row of the
// blurred samples) and (5) its column passes (one thread per column). With a `present` mask per slot (computed on
// the host from the op codes) the passes, memsets and scratch buffers that no sample of the slot needs are not
// launched or allocated, and a slot that is all identity costs nothing. Per-sample op/params/interp are read
// through their strides, so the chain's slot l (a strided view of [N, L] / [N, L, 6]) needs no copy. Op codes
// outside the known range, and GaussianBlur radii outside [0, kMaxBlurRadius], act as the identity (the Python
// front end validates them; checking here would need a device sync).
#include <algorithm>

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "augment/augment.h"
#include "augment/augment_kernels.h"

namespace etrain::augment {
namespace {

using namespace detail;

constexpr int kThreads = 256;

// One slot's per-sample arguments, each read through its strides: op[n * op_s], params[n * p_s + j * p_k],
// interp[n * i_s]; fill is contiguous [N, C].
struct Slot {
  const int64_t* op;
  int64_t op_s;
  const double* p;
  int64_t p_s, p_k;
  const int64_t* interp;
  int64_t i_s;
  const uint8_t* fill;

  __device__ __forceinline__ int64_t op_at(int64_t n) const { return op[n * op_s]; }
  // The kernels' helpers index params as p[0..5]: gather the strided row into registers.
  __device__ __forceinline__ void params_at(int64_t n, double* out) const {
    const double* r = p + n * p_s;
#pragma unroll
    for (int j = 0; j < kNumParams; ++j) out[j] = r[j * p_k];
  }
  __device__ __forceinline__ double param0(int64_t n) const { return p[n * p_s]; }
  // The same slot for samples s.. (a chunk of the batch).
  Slot from(int64_t s, int C) const {
    return Slot{op + s * op_s, op_s, p + s * p_s, p_s, p_k, interp + s * i_s, i_s, fill + s * C};
  }
};

constexpr int64_t kHistOps = op_bit(kContrast) | op_bit(kAutoContrast) | op_bit(kEqualize);
constexpr int64_t kLutOps = kHistOps | op_bit(kInvert) | op_bit(kPosterize) | op_bit(kSolarize) |
                            op_bit(kSolarizeAdd) | op_bit(kBrightness);

// grid (chunks, N); hist: [N, 4, 256] int32 (channels 0..2, luma at 3).
__global__ void hist_kernel(const uint8_t* __restrict__ x, Slot a, int32_t* __restrict__ hist, int C, int64_t plane) {
  const int64_t n = blockIdx.y;
  const int64_t op = a.op_at(n);
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

// grid N, block 32: thread c < C builds channel c's LUT. lut: [N, 3, 256]. hist is null when the slot's mask has no
// histogram op; a histogram op that the mask left out then gets the identity LUT (never a read of unallocated memory).
__global__ void lut_kernel(Slot a, int32_t* __restrict__ hist, uint8_t* __restrict__ lut, int C) {
  const int64_t n = blockIdx.x;
  const int64_t op = a.op_at(n);
  if (!is_lut_op(op)) return;
  const int c = threadIdx.x;
  if (c >= C) return;
  double p[kNumParams];
  a.params_at(n, p);
  uint8_t* l = lut + (n * 3 + c) * 256;
  if (needs_hist(op) && hist == nullptr) {
    for (int i = 0; i < 256; ++i) l[i] = static_cast<uint8_t>(i);
    return;
  }
  const int32_t* h = hist ? hist + n * 4 * 256 : nullptr;  // only read by histogram ops
  const int32_t* hc = h ? h + c * 256 : nullptr;
  const int32_t* hl = h ? (C == 3 ? h + 3 * 256 : h) : nullptr;  // a 1-channel image is its own luma
  build_lut(op, p, hc, hl, l);
}

// grid (ceil(H*W / kThreads), N): one thread per output pixel, all channels. lut is null and blur_pass false when
// the slot's mask has no LUT op / no blur: an op that the mask left out is then copied (the identity).
__global__ void apply_kernel(const uint8_t* __restrict__ x, uint8_t* __restrict__ out, Slot a,
                             const uint8_t* __restrict__ lut, bool blur_pass, int C, int H, int W) {
  const int64_t n = blockIdx.y;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (o >= plane) return;
  const int64_t op = a.op_at(n);
  const uint8_t* src = x + n * C * plane;
  uint8_t* dst = out + n * C * plane;
  const int y = static_cast<int>(o / W), xx = static_cast<int>(o % W);
  if (blur_pass && op == kGaussianBlur && gaussian_blur_params(a.param0(n)).active) return;  // blur_cols_kernel's
  if (op == kAffine) {
    double p[kNumParams];
    a.params_at(n, p);
    affine_pixel(src, dst, C, H, W, xx, y, p, a.interp[n * a.i_s], a.fill + n * C);
  } else if (op == kColor) {
    color_pixel(src, dst, C, plane, o, static_cast<float>(a.param0(n)));
  } else if (op == kSharpness) {
    sharpness_pixel(src, dst, C, H, W, xx, y, static_cast<float>(a.param0(n)));
  } else if (is_lut_op(op) && lut != nullptr) {
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

__global__ void blur_rows_kernel(const uint8_t* __restrict__ x, uint8_t* out, uint8_t* tmp, Slot a, int C, int H,
                                 int W) {
  const int64_t n = blockIdx.y;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= static_cast<int64_t>(C) * H) return;
  if (a.op_at(n) != kGaussianBlur) return;
  const BoxBlur b = gaussian_blur_params(a.param0(n));
  if (!b.active) return;
  const int64_t off = n * C * static_cast<int64_t>(H) * W;
  blur_row(x + off, out + off, tmp + off, r, W, b);
}

__global__ void blur_cols_kernel(uint8_t* out, uint8_t* tmp, Slot a, int C, int H, int W) {
  const int64_t n = blockIdx.y;
  const int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (k >= static_cast<int64_t>(C) * W) return;
  if (a.op_at(n) != kGaussianBlur) return;
  const BoxBlur b = gaussian_blur_params(a.param0(n));
  if (!b.active) return;
  const int64_t off = n * C * static_cast<int64_t>(H) * W;
  blur_col(out + off, tmp + off, k, H, W, b);
}

// The slot (op, params, interp: the [N] / [N, 6] views of one slot) as kernel arguments; fill is contiguous.
Slot slot_of(const at::Tensor& op, const at::Tensor& params, const at::Tensor& interp, const at::Tensor& fill) {
  return Slot{op.const_data_ptr<int64_t>(), op.stride(0),     params.const_data_ptr<double>(), params.stride(0),
              params.stride(1),             interp.const_data_ptr<int64_t>(), interp.stride(0),
              fill.const_data_ptr<uint8_t>()};
}

// One slot over the contiguous batch x -> out (both [N, C, H, W]), launching only the passes that `mask` (the op
// codes the slot may contain) needs. The sample index is grid.y, at most 65535 per launch: larger batches run in
// chunks of that many samples (the scratch buffers are sized for one chunk and reused in stream order).
void run_slot(const at::Tensor& x, at::Tensor& out, const Slot& slot, int64_t mask) {
  const int64_t N = x.size(0);
  const int C = static_cast<int>(x.size(1)), H = static_cast<int>(x.size(2)), W = static_cast<int>(x.size(3));
  const int64_t plane = static_cast<int64_t>(H) * W;
  if (N == 0 || plane == 0) return;
  if ((mask & ~op_bit(kIdentity)) == 0) {  // every sample is the identity
    out.copy_(x);
    return;
  }
  constexpr int64_t kMaxGridY = 65535;
  const int64_t chunk = std::min(N, kMaxGridY);
  const int64_t per = static_cast<int64_t>(C) * plane;
  const int64_t blocks = (plane + kThreads - 1) / kThreads;
  const int64_t row_blocks = (static_cast<int64_t>(C) * H + kBlurThreads - 1) / kBlurThreads;
  const int64_t col_blocks = (static_cast<int64_t>(C) * W + kBlurThreads - 1) / kBlurThreads;
  TORCH_CHECK_VALUE(blocks <= 2147483647 && row_blocks <= 2147483647 && col_blocks <= 2147483647,
                    "augment_slot: image too large");
  const bool hist_pass = (mask & kHistOps) != 0, lut_pass = (mask & kLutOps) != 0;
  const bool blur_pass = (mask & op_bit(kGaussianBlur)) != 0;
  auto stream = at::cuda::getCurrentCUDAStream();
  const auto opts = x.options();
  at::Tensor hist, lut, tmp;
  if (hist_pass) hist = at::empty({chunk, 4, 256}, opts.dtype(at::kInt));
  if (lut_pass) lut = at::empty({chunk, 3, 256}, opts);
  if (blur_pass) tmp = at::empty({chunk, C, H, W}, opts);
  // Histograms: enough blocks per sample to fill the GPU, each strides over its share of the pixels.
  const int hist_chunks = static_cast<int>(std::min<int64_t>(blocks, 16));
  for (int64_t s = 0; s < N; s += chunk) {
    const unsigned n = static_cast<unsigned>(std::min(chunk, N - s));
    const Slot a = slot.from(s, C);
    const uint8_t* xs = x.const_data_ptr<uint8_t>() + s * per;
    uint8_t* os = out.mutable_data_ptr<uint8_t>() + s * per;
    if (hist_pass) {
      C10_CUDA_CHECK(cudaMemsetAsync(hist.mutable_data_ptr<int32_t>(), 0, sizeof(int32_t) * 4 * 256 * n, stream));
      hist_kernel<<<dim3(hist_chunks, n), kThreads, 0, stream>>>(xs, a, hist.mutable_data_ptr<int32_t>(), C, plane);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (lut_pass) {
      lut_kernel<<<n, 32, 0, stream>>>(a, hist_pass ? hist.mutable_data_ptr<int32_t>() : nullptr,
                                       lut.mutable_data_ptr<uint8_t>(), C);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    apply_kernel<<<dim3(static_cast<unsigned>(blocks), n), kThreads, 0, stream>>>(
        xs, os, a, lut_pass ? lut.const_data_ptr<uint8_t>() : nullptr, blur_pass, C, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (blur_pass) {
      blur_rows_kernel<<<dim3(static_cast<unsigned>(row_blocks), n), kBlurThreads, 0, stream>>>(
          xs, os, tmp.mutable_data_ptr<uint8_t>(), a, C, H, W);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      blur_cols_kernel<<<dim3(static_cast<unsigned>(col_blocks), n), kBlurThreads, 0, stream>>>(
          os, tmp.mutable_data_ptr<uint8_t>(), a, C, H, W);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
}

int64_t mask_of(at::OptionalIntArrayRef present, int64_t l) { return present.has_value() ? (*present)[l] : kAllOps; }

}  // namespace

at::Tensor augment_slot_cuda(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params,
                             const at::Tensor& interp, const at::Tensor& fill, at::OptionalIntArrayRef present) {
  check_args(x, op, params, interp, fill, present, /*chain=*/false);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  const auto fc = fill.contiguous();
  auto out = at::empty_like(xc, at::MemoryFormat::Contiguous);
  run_slot(xc, out, slot_of(op, params, interp, fc), mask_of(present, 0));
  return out;
}

at::Tensor augment_chain_cuda(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params,
                              const at::Tensor& interp, const at::Tensor& fill, at::OptionalIntArrayRef present) {
  const int64_t L = check_args(x, op, params, interp, fill, present, /*chain=*/true);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto fc = fill.contiguous();
  at::Tensor cur = x.contiguous();
  bool fresh = false;  // whether cur is a buffer of this call (else it is x, which must not be returned)
  for (int64_t l = 0; l < L; ++l) {
    const int64_t mask = mask_of(present, l);
    if ((mask & ~op_bit(kIdentity)) == 0) continue;  // an all-identity slot: nothing to do
    auto next = at::empty_like(cur, at::MemoryFormat::Contiguous);
    run_slot(cur, next, slot_of(op.select(1, l), params.select(1, l), interp.select(1, l), fc), mask);
    cur = next;
    fresh = true;
  }
  return fresh ? cur : cur.clone();
}

}  // namespace etrain::augment
