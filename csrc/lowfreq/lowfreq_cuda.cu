// CUDA hooks of the low-frequency ops: the GEMMs run in cuBLAS through ATen; these kernels fuse the
// Nyquist correction with the dtype conversion (epilogue) and the corner reduction with the upcast (prologue).
#include "lowfreq/lowfreq.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraphsUtils.cuh>
#include <c10/cuda/CUDAGuard.h>

namespace etrain::lowfreq {
namespace {

// One block per plane (grid.x allows 2^31-1 planes), 32x8 threads striding over rows and columns so that
// consecutive threads touch consecutive columns.
template <typename out_t, typename acc_t>
__global__ void crop_epilogue_kernel(const acc_t* __restrict__ q, out_t* __restrict__ y, int bh, int bw, int qh,
                                     int qw, bool correction) {
  const int64_t p = blockIdx.x;
  const acc_t* qp = q + p * qh * qw;
  out_t* yp = y + p * bh * bw;
  const acc_t c = correction ? qp[bh * qw + bw] : acc_t(0);
  for (int m = threadIdx.y; m < bh; m += blockDim.y) {
    const acc_t cm = (m & 1) ? -c : c;
    for (int n = threadIdx.x; n < bw; n += blockDim.x) {
      yp[m * bw + n] = static_cast<out_t>(qp[m * qw + n] - ((n & 1) ? -cm : cm));
    }
  }
}

void crop_epilogue_cuda(const at::Tensor& q, at::Tensor& y, bool correction) {
  const auto qc = q.contiguous();
  auto stream = at::cuda::getCurrentCUDAStream();
  const dim3 block(32, 8);
  AT_DISPATCH_FLOATING_TYPES(qc.scalar_type(), "lowfreq_crop_epilogue", [&] {
    using acc_t = scalar_t;
    const acc_t* qp = qc.const_data_ptr<acc_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "lowfreq_crop_epilogue_out", [&] {
      crop_epilogue_kernel<scalar_t, acc_t><<<y.size(0), block, 0, stream>>>(
          qp, y.mutable_data_ptr<scalar_t>(), y.size(1), y.size(2), qc.size(1), qc.size(2), correction);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// One block per plane: copy/upcast y into the zero-padded rows x cols frame and, with the correction, put
// -sum (-1)^(m+n) y in its [bh, bw] corner.
template <typename in_t, typename acc_t>
__global__ void pad_prologue_kernel(const in_t* __restrict__ y, acc_t* __restrict__ out, int bh, int bw, int rows,
                                    int cols, bool correction) {
  const int64_t p = blockIdx.x;
  const in_t* yp = y + p * bh * bw;
  acc_t* op = out + p * rows * cols;
  const int tid = threadIdx.y * blockDim.x + threadIdx.x, nthreads = blockDim.x * blockDim.y;
  acc_t s = 0;
  for (int m = threadIdx.y; m < rows; m += blockDim.y) {
    for (int n = threadIdx.x; n < cols; n += blockDim.x) {
      const acc_t v = (m < bh && n < bw) ? static_cast<acc_t>(yp[m * bw + n]) : acc_t(0);
      op[m * cols + n] = v;
      s += ((m + n) & 1) ? -v : v;
    }
  }
  if (!correction) return;
  // Block reduction of s: warp shuffles, then one value per warp through shared memory.
  for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
  __shared__ acc_t warp_sums[32];
  const int lane = tid & 31, warp = tid >> 5;
  if (lane == 0) warp_sums[warp] = s;
  __syncthreads();  // also orders the corner's zero write above before the final write below
  if (warp == 0) {
    s = lane < (nthreads >> 5) ? warp_sums[lane] : acc_t(0);
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) op[bh * cols + bw] = -s;
  }
}

at::Tensor pad_prologue_cuda(const at::Tensor& y, at::ScalarType compute, int64_t rows, int64_t cols,
                             bool correction) {
  const auto yc = y.contiguous();
  const int64_t P = yc.size(0), bh = yc.size(1), bw = yc.size(2);
  auto out = at::empty({P, rows, cols}, yc.options().dtype(compute));
  auto stream = at::cuda::getCurrentCUDAStream();
  const dim3 block(32, 8);
  AT_DISPATCH_FLOATING_TYPES(compute, "lowfreq_pad_prologue", [&] {
    using acc_t = scalar_t;
    acc_t* op = out.mutable_data_ptr<acc_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, yc.scalar_type(), "lowfreq_pad_prologue_in", [&] {
      pad_prologue_kernel<scalar_t, acc_t>
          <<<P, block, 0, stream>>>(yc.const_data_ptr<scalar_t>(), op, bh, bw, rows, cols, correction);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// Band matrices per device, built on the device (make_band_matrix_on: no pageable host copy, no sync).
// - During CUDA graph capture every call is a miss: the matrix is built inside the graph (recomputed at each replay)
//   and not cached, and no cached matrix is handed out either. The graph would otherwise keep reading a cache-owned
//   tensor that a later eviction frees, or record its own private-pool memory in the cache.
// - A hit on another stream than the one the entry was built on waits on the entry's event (recorded after the
//   build), so it never reads a matrix whose build has not run; the same holds for a thread that loses the insert
//   race to a build on another stream. It is also recorded on that stream, so that evicting it from the cache cannot
//   free memory that a kernel on that stream still reads.
at::Tensor band_matrix_cuda(int64_t n, int64_t b, bool with_nyquist, at::ScalarType dtype, at::Device device,
                            int64_t row_multiple) {
  static auto* cache = new BandCache();  // never destroyed: CUDA memory must not be freed after runtime shutdown
  if (at::cuda::currentStreamCaptureStatus() != at::cuda::CaptureStatus::None) {
    return pad_rows(make_band_matrix_on(n, b, with_nyquist, device), dtype, row_multiple);
  }
  const auto key = band_key(n, b, with_nyquist, dtype, device, row_multiple);
  const auto stream = at::cuda::getCurrentCUDAStream(device.index());
  const auto stream_tag = reinterpret_cast<int64_t>(stream.stream());
  auto use = [&](const BandCache::Entry& e) {
    if (e.tag != stream_tag) {
      if (e.ready) std::static_pointer_cast<at::cuda::CUDAEvent>(e.ready)->block(stream);
      e.matrix.record_stream(stream.unwrap());
    }
    return e.matrix;
  };
  if (auto hit = cache->find(key)) return use(*hit);
  auto m = pad_rows(make_band_matrix_on(n, b, with_nyquist, device), dtype, row_multiple);
  auto ready = std::make_shared<at::cuda::CUDAEvent>();
  ready->record(stream);
  return use(cache->insert(key, {m, stream_tag, std::move(ready)}));
}

// Rows padded to multiples of 8 keep every GEMM operand's leading dimension 16-byte aligned, which lets cuBLAS
// use its vectorised kernels (an odd width such as 161 forces its slow unaligned ones).
constexpr DeviceHooks kCudaHooks{&crop_epilogue_cuda, &pad_prologue_cuda, &band_matrix_cuda, /*row_multiple=*/8,
                                 /*rows_first_on_tie=*/false};

}  // namespace

at::Tensor lowfreq_crop_cuda(const at::Tensor& x, at::IntArrayRef size) {
  const c10::cuda::CUDAGuard guard(x.device());
  return lowfreq_crop_generic(x, size, kCudaHooks);
}

at::Tensor lowfreq_pad_cuda(const at::Tensor& y, at::IntArrayRef size) {
  const c10::cuda::CUDAGuard guard(y.device());
  return lowfreq_pad_generic(y, size, kCudaHooks);
}

}  // namespace etrain::lowfreq
