// CPU hooks of the low-frequency ops: the GEMMs run in MKL/oneDNN (multi-threaded), the epilogue and
// prologue are threaded over planes with at::parallel_for.
#include "lowfreq/lowfreq.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

namespace etrain::lowfreq {
namespace {

template <typename out_t, typename acc_t>
void crop_epilogue_kernel(const acc_t* q, out_t* y, int64_t P, int64_t bh, int64_t bw, int64_t qh, int64_t qw,
                          bool correction) {
  at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const acc_t* qp = q + p * qh * qw;
      out_t* yp = y + p * bh * bw;
      const acc_t c = correction ? qp[bh * qw + bw] : acc_t(0);
      for (int64_t m = 0; m < bh; ++m) {
        const acc_t cm = (m & 1) ? -c : c;
        const acc_t* qr = qp + m * qw;
        out_t* yr = yp + m * bw;
        // Even and odd columns in separate loops keep both branch-free (vectorisable).
        for (int64_t n = 0; n < bw; n += 2) yr[n] = static_cast<out_t>(qr[n] - cm);
        for (int64_t n = 1; n < bw; n += 2) yr[n] = static_cast<out_t>(qr[n] + cm);
      }
    }
  });
}

void crop_epilogue_cpu(const at::Tensor& q, at::Tensor& y, bool correction) {
  const auto qc = q.contiguous();
  const int64_t P = y.size(0), bh = y.size(1), bw = y.size(2);
  AT_DISPATCH_FLOATING_TYPES(qc.scalar_type(), "lowfreq_crop_epilogue", [&] {
    using acc_t = scalar_t;
    const acc_t* qp = qc.const_data_ptr<acc_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "lowfreq_crop_epilogue_out", [&] {
      crop_epilogue_kernel<scalar_t, acc_t>(qp, y.mutable_data_ptr<scalar_t>(), P, bh, bw, qc.size(1), qc.size(2),
                                            correction);
    });
  });
}

template <typename in_t, typename acc_t>
void pad_prologue_kernel(const in_t* y, acc_t* out, int64_t P, int64_t bh, int64_t bw, int64_t rows, int64_t cols,
                         bool correction) {
  at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const in_t* yp = y + p * bh * bw;
      acc_t* op = out + p * rows * cols;
      acc_t s = 0;
      for (int64_t m = 0; m < bh; ++m) {
        acc_t row = 0;
        for (int64_t n = 0; n < bw; ++n) {
          const acc_t v = static_cast<acc_t>(yp[m * bw + n]);
          op[m * cols + n] = v;
          row += (n & 1) ? -v : v;
        }
        for (int64_t n = bw; n < cols; ++n) op[m * cols + n] = 0;
        s += (m & 1) ? -row : row;
      }
      for (int64_t i = bh * cols; i < rows * cols; ++i) op[i] = 0;
      if (correction) op[bh * cols + bw] = -s;
    }
  });
}

at::Tensor pad_prologue_cpu(const at::Tensor& y, at::ScalarType compute, int64_t rows, int64_t cols, bool correction) {
  const auto yc = y.contiguous();
  const int64_t P = yc.size(0), bh = yc.size(1), bw = yc.size(2);
  auto out = at::empty({P, rows, cols}, yc.options().dtype(compute));
  AT_DISPATCH_FLOATING_TYPES(compute, "lowfreq_pad_prologue", [&] {
    using acc_t = scalar_t;
    acc_t* op = out.mutable_data_ptr<acc_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, yc.scalar_type(), "lowfreq_pad_prologue_in", [&] {
      pad_prologue_kernel<scalar_t, acc_t>(yc.const_data_ptr<scalar_t>(), op, P, bh, bw, rows, cols, correction);
    });
  });
  return out;
}

at::Tensor band_matrix_cpu(int64_t n, int64_t b, bool with_nyquist, at::ScalarType dtype, at::Device device,
                           int64_t row_multiple) {
  static auto* cache = new BandCache();  // never destroyed: callers may run during static destruction
  const auto key = band_key(n, b, with_nyquist, dtype, device, row_multiple);
  if (auto hit = cache->find(key)) return hit->matrix;
  return cache->insert(key, {pad_rows(make_band_matrix(n, b, with_nyquist), dtype, row_multiple)}).matrix;
}

constexpr DeviceHooks kCpuHooks{&crop_epilogue_cpu, &pad_prologue_cpu, &band_matrix_cpu, /*row_multiple=*/1};

}  // namespace

// The GEMMs are whole-batch calls so that MKL/oneDNN thread them; an earlier variant ran both GEMMs per plane
// inside at::parallel_for and slowed down ~50x when another process competed for the cores.
at::Tensor lowfreq_crop_cpu(const at::Tensor& x, at::IntArrayRef size) { return lowfreq_crop_generic(x, size, kCpuHooks); }
at::Tensor lowfreq_pad_cpu(const at::Tensor& y, at::IntArrayRef size) { return lowfreq_pad_generic(y, size, kCpuHooks); }

}  // namespace etrain::lowfreq
