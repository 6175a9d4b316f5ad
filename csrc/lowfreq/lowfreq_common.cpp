// Device-independent part of the low-frequency ops: argument checks, cached band matrices, the two GEMMs.
#include "lowfreq/lowfreq.h"

#include "common/error_format.h"

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <cmath>
#include <numbers>
#include <string>

namespace etrain::lowfreq {

using etrain::dims;

std::array<int64_t, 2> check_args(const at::Tensor& t, at::IntArrayRef size, const char* op, bool crop) {
  TORCH_CHECK_VALUE(t.dim() >= 2, op, ": expected a tensor of shape [..., H, W] with at least 2 dims, got shape ",
                    dims(t.sizes()));
  const auto st = t.scalar_type();
  TORCH_CHECK_VALUE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
                    ": expected a real floating dtype (float32, float64, float16 or bfloat16), got ", st);
  TORCH_CHECK_VALUE(size.size() == 2, op, ": size must have 2 entries (h, w), got ", dims(size));
  const int64_t H = t.size(-2), W = t.size(-1);
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK_VALUE(size[i] >= 1, op, ": size entries must be >= 1, got ", dims(size));
  }
  TORCH_CHECK_VALUE(H >= 1 && W >= 1, op, ": input spatial size must be >= 1, got ", dims(t.sizes()));
  const std::string hw = dims({H, W});
  if (crop) {
    TORCH_CHECK_VALUE(size[0] <= H && size[1] <= W, op, ": size ", dims(size), " must not exceed the input's (H, W) = ",
                      hw);
  } else {
    TORCH_CHECK_VALUE(size[0] >= H && size[1] >= W, op, ": size ", dims(size),
                      " must be at least the input's (h, w) = ", hw);
  }
  return {size[0], size[1]};
}

bool needs_correction(int64_t n_h, int64_t b_h, int64_t n_w, int64_t b_w) {
  // Only an even band below full size has an unpaired Nyquist frequency with a non-zero sine part.
  return b_h % 2 == 0 && b_w % 2 == 0 && b_h < n_h && b_w < n_w;
}

at::Tensor make_band_matrix(int64_t n, int64_t b, bool with_nyquist) {
  const int64_t rows = b + (with_nyquist ? 1 : 0);
  auto m = at::empty({rows, n}, at::TensorOptions().dtype(at::kDouble));
  auto a = m.accessor<double, 2>();
  const int64_t f_lo = -(b / 2), f_hi = (b + 1) / 2 - 1;  // kept signed frequencies
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t p = 0; p < n; ++p) {
      // Dirichlet kernel: sum_{f=f_lo}^{f_hi} cos(2*pi*f*t) = sin(pi*b*t) cos(pi*(f_lo+f_hi)*t) / sin(pi*t),
      // t = r/b - p/n = num/(b*n) reduced to one period in integers so large sizes keep full precision.
      const int64_t bn = b * n;
      const int64_t num = ((r * n - p * b) % bn + bn) % bn;
      double acc;
      if (num == 0) {
        acc = static_cast<double>(b);
      } else {
        const double t = static_cast<double>(num) / static_cast<double>(bn);
        acc = std::sin(std::numbers::pi * b * t) * std::cos(std::numbers::pi * (f_lo + f_hi) * t) /
              std::sin(std::numbers::pi * t);
      }
      a[r][p] = acc / static_cast<double>(n);
    }
  }
  if (with_nyquist) {
    for (int64_t p = 0; p < n; ++p) {
      const int64_t num = (b * p) % (2 * n);  // sin(pi*b*p/n)
      a[b][p] = std::sin(std::numbers::pi * static_cast<double>(num) / static_cast<double>(n)) / static_cast<double>(n);
    }
  }
  return m;
}

at::Tensor make_band_matrix_on(int64_t n, int64_t b, bool with_nyquist, at::Device device) {
  // The closed form of make_band_matrix as tensor ops (same integer reduction of t to one period).
  const auto i64 = at::TensorOptions().dtype(at::kLong).device(device);
  const auto r = at::arange(b, i64).unsqueeze(1), p = at::arange(n, i64).unsqueeze(0);
  const auto num = at::remainder(r * n - p * b, b * n);
  const auto t = num.to(at::kDouble) / static_cast<double>(b * n);
  const int64_t f_sum = -(b / 2) + (b + 1) / 2 - 1;
  const double pi = std::numbers::pi;
  const auto dirichlet = at::sin(t * (pi * b)) * at::cos(t * (pi * f_sum)) / at::sin(t * pi);
  auto m = at::where(num == 0, at::full_like(t, static_cast<double>(b)), dirichlet) / static_cast<double>(n);
  if (with_nyquist) {
    const auto q = at::arange(n, i64);
    const auto v = at::sin(at::remainder(q * b, 2 * n).to(at::kDouble) * (pi / n)) / static_cast<double>(n);
    m = at::cat({m, v.unsqueeze(0)}, 0);
  }
  return m;
}

at::Tensor pad_rows(const at::Tensor& m, at::ScalarType dtype, int64_t row_multiple) {
  const int64_t rows = (m.size(0) + row_multiple - 1) / row_multiple * row_multiple;
  return at::constant_pad_nd(m, {0, 0, 0, rows - m.size(0)}).to(dtype);
}

BandCache::Key band_key(int64_t n, int64_t b, bool with_nyquist, at::ScalarType dtype, at::Device device,
                        int64_t row_multiple) {
  return {n, b, with_nyquist, static_cast<int>(dtype), static_cast<int>(device.type()), device.index(), row_multiple};
}

std::optional<BandCache::Entry> BandCache::find(const Key& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

BandCache::Entry BandCache::insert(const Key& key, Entry entry) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = map_.emplace(key, std::move(entry));
  if (inserted) {
    order_.push_back(key);
    while (map_.size() > capacity_) {  // bound memory for callers sweeping many sizes
      map_.erase(order_.front());
      order_.pop_front();
    }
  }
  return it->second;
}

size_t BandCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

namespace {

// out[p] = L @ in[p] @ M^T for every plane p, in the cheaper of the two association orders. The per-plane
// product with the shared matrix is a bmm against a stride-0 expansion of it (no copy).
at::Tensor separable(const at::Tensor& in, const at::Tensor& L, const at::Tensor& M, std::optional<at::Tensor> out,
                     bool rows_first_on_tie) {
  const int64_t P = in.size(0), ri = in.size(1), ci = in.size(2), ro = L.size(0), co = M.size(0);
  auto result = out.has_value() ? *out : at::empty({P, ro, co}, in.options());
  const double cols_first = double(ri) * ci * co + double(ro) * ri * co;
  const double rows_first = double(ro) * ri * ci + double(ro) * ci * co;
  if (rows_first_on_tie ? cols_first < rows_first : cols_first <= rows_first) {
    auto z = at::mm(in.reshape({P * ri, ci}), M.t()).view({P, ri, co});
    at::bmm_out(result, L.expand({P, ro, ri}), z);
  } else {
    auto s = at::bmm(L.expand({P, ro, ri}), in);
    auto flat = result.view({P * ro, co});
    at::mm_out(flat, s.view({P * ro, ci}), M.t());
  }
  return result;
}

at::ScalarType compute_type(at::ScalarType st) { return st == at::kDouble ? at::kDouble : at::kFloat; }

std::vector<int64_t> with_last_two(at::IntArrayRef sizes, int64_t h, int64_t w) {
  std::vector<int64_t> out(sizes.begin(), sizes.end());
  out[out.size() - 2] = h;
  out[out.size() - 1] = w;
  return out;
}

}  // namespace

namespace {

// What both ops need for one (full H x W, band bh x bw) pair: compute dtype, correction flag, band matrices.
struct Bands {
  at::ScalarType compute;
  bool correction;
  at::Tensor L, M;  // [>= bh(+1), H], [>= bw(+1), W]
};

Bands bands_for(const at::Tensor& t, int64_t H, int64_t W, int64_t bh, int64_t bw, const DeviceHooks& hooks) {
  const auto ct = compute_type(t.scalar_type());
  const bool corr = needs_correction(H, bh, W, bw);
  return {ct, corr, hooks.band_matrix(H, bh, corr, ct, t.device(), hooks.row_multiple),
          hooks.band_matrix(W, bw, corr, ct, t.device(), hooks.row_multiple)};
}

}  // namespace

at::Tensor lowfreq_crop_generic(const at::Tensor& x, at::IntArrayRef size, const DeviceHooks& hooks) {
  // The op keeps its input's dtype under torch.autocast: its inner GEMMs must not be autocast (they write into
  // fp32 buffers, and bf16 band matrices would lose the op's accuracy).
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const auto [bh, bw] = check_args(x, size, "lowfreq_crop", /*crop=*/true);
  const int64_t H = x.size(-2), W = x.size(-1);
  auto y = at::empty(with_last_two(x.sizes(), bh, bw), x.options().memory_format(at::MemoryFormat::Contiguous));
  if (y.numel() == 0) return y;
  const int64_t P = x.numel() / (H * W);
  const auto b = bands_for(x, H, W, bh, bw, hooks);
  auto xin = x.to(b.compute).reshape({P, H, W});
  auto yv = y.view({P, bh, bw});
  if (!b.correction && b.compute == x.scalar_type() && b.L.size(0) == bh && b.M.size(0) == bw) {
    separable(xin, b.L, b.M, yv, hooks.rows_first_on_tie);  // nothing to correct, convert or strip: the GEMM writes the output
  } else {
    hooks.crop_epilogue(separable(xin, b.L, b.M, std::nullopt, hooks.rows_first_on_tie), yv, b.correction);
  }
  return y;
}

at::Tensor lowfreq_pad_generic(const at::Tensor& y, at::IntArrayRef size, const DeviceHooks& hooks) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const auto [H, W] = check_args(y, size, "lowfreq_pad", /*crop=*/false);
  const int64_t bh = y.size(-2), bw = y.size(-1);
  const auto out_sizes = with_last_two(y.sizes(), H, W);
  if (y.numel() == 0) return at::empty(out_sizes, y.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t P = y.numel() / (bh * bw);
  const auto b = bands_for(y, H, W, bh, bw, hooks);
  auto yin = (!b.correction && b.L.size(0) == bh && b.M.size(0) == bw)
                 ? y.to(b.compute).reshape({P, bh, bw})
                 : hooks.pad_prologue(y.reshape({P, bh, bw}), b.compute, b.L.size(0), b.M.size(0), b.correction);
  return separable(yin, b.L.t(), b.M.t(), std::nullopt, hooks.rows_first_on_tie).to(y.scalar_type()).view(out_sizes);
}

}  // namespace etrain::lowfreq
