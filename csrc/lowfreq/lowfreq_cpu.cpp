// CPU hooks of the low-frequency ops: the GEMMs run in MKL/oneDNN (multi-threaded), the epilogue and
// prologue are threaded over planes with at::parallel_for.
#include "lowfreq/lowfreq.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

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

// Rows padded to multiples of 8 as on CUDA: a band of 161 rows (160 + the Nyquist row) made MKL's tall GEMM ~1.3x
// slower than 168 (unaligned leading dimensions).
constexpr DeviceHooks kCpuHooks{&crop_epilogue_cpu, &pad_prologue_cpu, &band_matrix_cpu, /*row_multiple=*/8,
                                /*rows_first_on_tie=*/true};

}  // namespace

// ---- the crop and the pad by folded GEMMs (CPU) ----
// The band matrix R [b (+1 Nyquist row), n] is centro-symmetric: R[-r mod b, -p mod n] = R[r, p] (the kept
// frequencies are symmetric), and the Nyquist row v is antisymmetric (v[-p] = -v[p]). With u_p = x_p + x_{n-p} and
// w_p = x_p - x_{n-p} over the pairs p = 1..(n-1)/2 (u_0 = x_0, and u_{n/2} = x_{n/2} for even n):
//     y[r] = E_r . u + O_r . w,   y[b - r] = E_r . u - O_r . w,
// E = (R + R[:, -p]) / 2 on rows 0..b/2, O = (R - R[:, -p]) / 2 on rows 1..(b-1)/2 (+ the Nyquist row), each on
// half the columns. Folding both axes of x once (one elementwise pass) halves the FLOPs of both GEMMs; the epilogue
// unfolds the four products (E x E, E x O, O x E, O x O) and applies the Nyquist correction (the O x O corner).
// Every dimension is zero-padded to a multiple of 8 (aligned leading dimensions for MKL).
namespace {

int64_t pad8(int64_t k) { return (k + 7) / 8 * 8; }

struct FoldedAxis {
  int64_t n = 0, b = 0;
  int64_t ne = 0, no = 0;  // u and w entries: n/2 + 1 and (n-1)/2
  int64_t re = 0, rp = 0;  // E rows (outputs 0..b/2) and paired outputs (1..(b-1)/2; output b - r mirrors r)
  int64_t ro = 0;          // O rows: rp, + the Nyquist row
  at::Tensor E, O;         // [pad8(re), pad8(ne)], [pad8(ro), pad8(no)], compute dtype
};

FoldedAxis folded_axis(int64_t n, int64_t b, bool nyq, at::ScalarType dtype) {
  FoldedAxis a;
  a.n = n, a.b = b, a.ne = n / 2 + 1, a.no = (n - 1) / 2, a.re = b / 2 + 1, a.rp = (b - 1) / 2;
  a.ro = a.rp + (nyq ? 1 : 0);
  static auto* cache = new BandCache();  // E and O per (n, b, nyq, dtype), tagged -1 / -2 in the row field
  const auto cpu = at::Device(at::kCPU);
  const auto ke = band_key(n, b, nyq, dtype, cpu, -1), ko = band_key(n, b, nyq, dtype, cpu, -2);
  auto e = cache->find(ke), o = cache->find(ko);
  if (e && o) {
    a.E = e->matrix, a.O = o->matrix;
    return a;
  }
  const auto R = make_band_matrix(n, b, nyq);  // [b (+1), n] double
  const auto flip = at::remainder(at::arange(n, at::kLong).neg(), n);
  const auto Rf = R.index_select(1, flip);
  const auto Ep = (R + Rf) * 0.5, Op = (R - Rf) * 0.5;
  auto E = at::zeros({pad8(a.re), pad8(a.ne)}, at::kDouble);
  auto O = at::zeros({pad8(a.ro), pad8(a.no)}, at::kDouble);
  E.narrow(0, 0, a.re).narrow(1, 0, a.ne).copy_(Ep.narrow(0, 0, a.re).narrow(1, 0, a.ne));
  if (a.no > 0) {
    if (a.rp > 0) O.narrow(0, 0, a.rp).narrow(1, 0, a.no).copy_(Op.narrow(0, 1, a.rp).narrow(1, 1, a.no));
    if (nyq) O[a.rp].narrow(0, 0, a.no).copy_(Op[b].narrow(0, 1, a.no));
  }
  a.E = cache->insert(ke, {E.to(dtype)}).matrix;
  a.O = cache->insert(ko, {O.to(dtype)}).matrix;
  return a;
}

// n values <-> their fold: e = n/2 + 1 "u" entries (v_0; v_p + v_{n-p} for p = 1..pairs; v_{n/2} for even n) and
// pairs = (n-1)/2 "w" entries (v_p - v_{n-p}), stored as blocks of e8 and o8 (zero-padded; o8 may hold the Nyquist
// row too). The crop folds x by (n = H or W) and unfolds its output by (n = b); the pad the other way round.
struct Layout {
  int64_t n, e, pairs, e8, o8;
};
Layout layout(int64_t n, int64_t o8) { return {n, n / 2 + 1, (n - 1) / 2, pad8(n / 2 + 1), o8}; }

// One row t (n values) folded into out (e8 + o8 values).
template <typename acc_t>
inline void fold_row(const acc_t* t, acc_t* out, const Layout& a) {
  const int64_t n = a.n;
  out[0] = t[0];
  for (int64_t c = 1; c <= a.pairs; ++c) out[c] = t[c] + t[n - c];
  if (n % 2 == 0) out[n / 2] = t[n / 2];
  std::fill(out + a.e, out + a.e8, acc_t(0));
  acc_t* w = out + a.e8;
  for (int64_t k = 0; k < a.pairs; ++k) w[k] = t[k + 1] - t[n - 1 - k];
  std::fill(w + a.pairs, w + a.o8, acc_t(0));
}

// v [P, h.n, w.n] -> va [P, h.e8, width] (row folds u) and vb [P, h.o8, width] (row folds w), each row folded along
// the columns as well (width = w.e8 + w.o8).
template <typename in_t, typename acc_t>
void fold_kernel(const in_t* v, acc_t* va, acc_t* vb, int64_t P, const Layout& h, const Layout& w) {
  const int64_t H = h.n, W = w.n, width = w.e8 + w.o8;
  at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> t(W);
    for (int64_t p = begin; p < end; ++p) {
      const in_t* vp = v + p * H * W;
      acc_t* ap = va + p * h.e8 * width;
      acc_t* bp = vb + p * h.o8 * width;
      for (int64_t i = 0; i < h.e; ++i) {
        const int64_t j = (H - i) % H;
        const in_t* ri = vp + i * W;
        const in_t* rj = vp + j * W;
        if (j == i) {
          for (int64_t c = 0; c < W; ++c) t[c] = static_cast<acc_t>(ri[c]);
        } else {
          for (int64_t c = 0; c < W; ++c) t[c] = static_cast<acc_t>(ri[c]) + static_cast<acc_t>(rj[c]);
        }
        fold_row(t.data(), ap + i * width, w);
      }
      std::fill(ap + h.e * width, ap + h.e8 * width, acc_t(0));
      for (int64_t k = 0; k < h.pairs; ++k) {
        const in_t* ri = vp + (k + 1) * W;
        const in_t* rj = vp + (H - 1 - k) * W;
        for (int64_t c = 0; c < W; ++c) t[c] = static_cast<acc_t>(ri[c]) - static_cast<acc_t>(rj[c]);
        fold_row(t.data(), bp + k * width, w);
      }
      std::fill(bp + h.pairs * width, bp + h.o8 * width, acc_t(0));
    }
  });
}

// Unfolds the four products AA [P, h.e8, w.e8], AB [P, h.e8, w.o8], BA [P, h.o8, w.e8], BB [P, h.o8, w.o8] into
// y [P, h.n, w.n]: y[i] = A[i] + B[i - 1], y[n - i] = A[i] - B[i - 1] per axis. With `correction` (the crop),
// subtracts (-1)^(m+n) BB[nyq_h, nyq_w], the product of the two Nyquist rows.
template <typename out_t, typename acc_t>
void unfold_kernel(const acc_t* AA, const acc_t* AB, const acc_t* BA, const acc_t* BB, out_t* y, int64_t P,
                   const Layout& h, const Layout& w, bool correction) {
  const int64_t bh = h.n, bw = w.n;
  at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> ea(w.e), o(w.pairs + 1), row(bw);
    for (int64_t p = begin; p < end; ++p) {
      const acc_t* aa = AA + p * h.e8 * w.e8;
      const acc_t* ab = AB + p * h.e8 * w.o8;
      const acc_t* ba = BA + p * h.o8 * w.e8;
      const acc_t* bb = BB + p * h.o8 * w.o8;
      const acc_t c = correction ? bb[h.pairs * w.o8 + w.pairs] : acc_t(0);
      out_t* yp = y + p * bh * bw;
      for (int64_t m = 0; m < bh; ++m) {
        // output row m: A row i (and B row i - 1 with sign s when row m is paired, mirrored for m >= e)
        const bool mirrored = m >= h.e;
        const int64_t i = mirrored ? bh - m : m;
        const bool paired = i >= 1 && i <= h.pairs;
        const acc_t s = mirrored ? acc_t(-1) : acc_t(1);
        for (int64_t j = 0; j < w.e; ++j) ea[j] = aa[i * w.e8 + j];
        for (int64_t k = 0; k < w.pairs; ++k) o[k] = ab[i * w.o8 + k];
        if (paired) {
          for (int64_t j = 0; j < w.e; ++j) ea[j] += s * ba[(i - 1) * w.e8 + j];
          for (int64_t k = 0; k < w.pairs; ++k) o[k] += s * bb[(i - 1) * w.o8 + k];
        }
        row[0] = ea[0];
        for (int64_t r = 1; r <= w.pairs; ++r) {
          row[r] = ea[r] + o[r - 1];
          row[bw - r] = ea[r] - o[r - 1];
        }
        if (bw % 2 == 0) row[bw / 2] = ea[bw / 2];
        const acc_t cm = (m & 1) ? -c : c;
        out_t* yr = yp + m * bw;
        for (int64_t n = 0; n < bw; n += 2) yr[n] = static_cast<out_t>(row[n] - cm);
        for (int64_t n = 1; n < bw; n += 2) yr[n] = static_cast<out_t>(row[n] + cm);
      }
    }
  });
}

// The pad's Nyquist term, the adjoint of the crop's correction: -sum (-1)^(m+n) y[m, n] into the folded corner
// (B row nyq_h, B column nyq_w) of each plane.
template <typename in_t, typename acc_t>
void pad_corner_kernel(const in_t* y, acc_t* yb, int64_t P, const Layout& h, const Layout& w) {
  const int64_t bh = h.n, bw = w.n, width = w.e8 + w.o8;
  at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const in_t* yp = y + p * bh * bw;
      acc_t s = 0;
      for (int64_t m = 0; m < bh; ++m) {
        acc_t r = 0;
        for (int64_t n = 0; n < bw; ++n) {
          const acc_t v = static_cast<acc_t>(yp[m * bw + n]);
          r += (n & 1) ? -v : v;
        }
        s += (m & 1) ? -r : r;
      }
      yb[p * h.o8 * width + h.pairs * width + w.e8 + w.pairs] = -s;
    }
  });
}

// The shared body: fold `in` [P, Hi, Wi] by (hi, wi), the four half-size GEMMs (rows first: the left matrices are
// batched against the shared matrix, the right ones run as tall GEMMs over all planes), unfold by (ho, wo) into out.
// Left: EL [ho.e8, hi.e8], OL [ho.o8, hi.o8]; right: ER [wi.e8, wo.e8], OR [wi.o8, wo.o8] (out = L in R).
void folded_product(const at::Tensor& in, at::Tensor& out, const Layout& hi, const Layout& wi, const Layout& ho,
                    const Layout& wo, const at::Tensor& EL, const at::Tensor& OL, const at::Tensor& ER,
                    const at::Tensor& OR, bool crop_correction, bool pad_corner) {
  const int64_t P = in.size(0), width = wi.e8 + wi.o8;
  const auto ct = EL.scalar_type();
  auto va = at::empty({P, hi.e8, width}, in.options().dtype(ct));
  auto vb = at::empty({P, hi.o8, width}, in.options().dtype(ct));
  AT_DISPATCH_FLOATING_TYPES(ct, "lowfreq_fold", [&] {
    using acc_t = scalar_t;
    acc_t* a = va.mutable_data_ptr<acc_t>();
    acc_t* b = vb.mutable_data_ptr<acc_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "lowfreq_fold_in", [&] {
      fold_kernel<scalar_t, acc_t>(in.const_data_ptr<scalar_t>(), a, b, P, hi, wi);
      if (pad_corner) pad_corner_kernel<scalar_t, acc_t>(in.const_data_ptr<scalar_t>(), b, P, hi, wi);
    });
  });
  const auto sA = at::bmm(EL.expand({P, EL.size(0), EL.size(1)}), va).view({-1, width});
  const auto sB = at::bmm(OL.expand({P, OL.size(0), OL.size(1)}), vb).view({-1, width});
  const auto AA = at::mm(sA.narrow(1, 0, wi.e8), ER), AB = at::mm(sA.narrow(1, wi.e8, wi.o8), OR);
  const auto BA = at::mm(sB.narrow(1, 0, wi.e8), ER), BB = at::mm(sB.narrow(1, wi.e8, wi.o8), OR);
  AT_DISPATCH_FLOATING_TYPES(ct, "lowfreq_unfold", [&] {
    using acc_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "lowfreq_unfold_out", [&] {
      unfold_kernel<scalar_t, acc_t>(AA.const_data_ptr<acc_t>(), AB.const_data_ptr<acc_t>(),
                                     BA.const_data_ptr<acc_t>(), BB.const_data_ptr<acc_t>(),
                                     out.mutable_data_ptr<scalar_t>(), P, ho, wo, crop_correction);
    });
  });
}

std::vector<int64_t> with_last_two(at::IntArrayRef sizes, int64_t h, int64_t w) {
  std::vector<int64_t> out(sizes.begin(), sizes.end());
  out[out.size() - 2] = h;
  out[out.size() - 1] = w;
  return out;
}

at::ScalarType compute_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace

at::Tensor lowfreq_crop_cpu(const at::Tensor& x, at::IntArrayRef size) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const auto [bh, bw] = check_args(x, size, "lowfreq_crop", /*crop=*/true);
  const int64_t H = x.size(-2), W = x.size(-1);
  auto y = at::empty(with_last_two(x.sizes(), bh, bw), x.options().memory_format(at::MemoryFormat::Contiguous));
  if (y.numel() == 0) return y;
  const int64_t P = x.numel() / (H * W);
  const bool corr = needs_correction(H, bh, W, bw);
  const auto h = folded_axis(H, bh, corr, compute_type(x)), w = folded_axis(W, bw, corr, compute_type(x));
  auto yv = y.view({P, bh, bw});
  folded_product(x.contiguous().view({P, H, W}), yv, layout(H, pad8(h.no)), layout(W, pad8(w.no)),
                 layout(bh, pad8(h.ro)), layout(bw, pad8(w.ro)), h.E, h.O, w.E.t(), w.O.t(), corr, false);
  return y;
}

at::Tensor lowfreq_pad_cpu(const at::Tensor& y, at::IntArrayRef size) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const auto [H, W] = check_args(y, size, "lowfreq_pad", /*crop=*/false);
  const int64_t bh = y.size(-2), bw = y.size(-1);
  auto x = at::empty(with_last_two(y.sizes(), H, W), y.options().memory_format(at::MemoryFormat::Contiguous));
  if (x.numel() == 0) return x;
  const int64_t P = y.numel() / (bh * bw);
  const bool corr = needs_correction(H, bh, W, bw);
  const auto h = folded_axis(H, bh, corr, compute_type(y)), w = folded_axis(W, bw, corr, compute_type(y));
  auto xv = x.view({P, H, W});
  // the adjoint: fold y by the band sizes (the Nyquist term into the corner), E^T / O^T products, unfold by H, W
  folded_product(y.contiguous().view({P, bh, bw}), xv, layout(bh, pad8(h.ro)), layout(bw, pad8(w.ro)),
                 layout(H, pad8(h.no)), layout(W, pad8(w.no)), h.E.t(), h.O.t(), w.E, w.O, false, corr);
  return x;
}

// The GEMM form runs whole-batch GEMMs so that MKL/oneDNN thread them; an earlier variant ran both GEMMs per plane
// inside at::parallel_for and slowed down ~50x when another process competed for the cores.
at::Tensor lowfreq_crop_gemm_cpu(const at::Tensor& x, at::IntArrayRef size) {
  return lowfreq_crop_generic(x, size, kCpuHooks);
}
at::Tensor lowfreq_pad_gemm_cpu(const at::Tensor& y, at::IntArrayRef size) {
  return lowfreq_pad_generic(y, size, kCpuHooks);
}

}  // namespace etrain::lowfreq
