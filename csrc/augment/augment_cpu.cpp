// CPU kernels of the augment ops: at::parallel_for over the samples of a batch; each sample runs its own op.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "augment/augment.h"
#include "augment/augment_kernels.h"
#include "common/error_format.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(ETRAIN_NO_SIMD)
#include <immintrin.h>
#define ETRAIN_AUGMENT_AVX 1
#endif

namespace etrain::augment {

namespace {

// Histogram with four interleaved sub-histograms (avoids store-to-load stalls on runs of equal values).
void histogram(const uint8_t* s, int64_t n, int32_t* h) {
  int32_t sub[4][256] = {};
  int64_t o = 0;
  for (; o + 4 <= n; o += 4) {
    ++sub[0][s[o]];
    ++sub[1][s[o + 1]];
    ++sub[2][s[o + 2]];
    ++sub[3][s[o + 3]];
  }
  for (; o < n; ++o) ++sub[0][s[o]];
  for (int i = 0; i < 256; ++i) h[i] = sub[0][i] + sub[1][i] + sub[2][i] + sub[3][i];
}

#ifdef ETRAIN_AUGMENT_AVX
// AVX2 kernels of the affine warp (chosen at run time when the CPU has AVX2; ETRAIN_NO_SIMD disables them):
// bilinear, bicubic for row-preserving warps (x shears/translations), column-preserving warps (y shears/
// translations) and the general case (rotations). Four output pixels of a row per step, one per lane of a
// __m256d. Every lane performs the same IEEE double operations in the same order as detail::affine_pixel_c and
// detail::cubic (separate multiplies and adds; target("avx2") does not enable FMA, so nothing is contracted), so
// the results are bit-identical to the scalar path and to Pillow (the tests compare with Pillow). Groups of four
// with a pixel that needs the fill colour or edge clamping go through the scalar code, which is force-inlined
// here (an out-of-line call into non-VEX code with dirty upper AVX state costs a transition penalty per call;
// it made these kernels 6x slower before the helpers were force-inlined).
#define ETRAIN_AVX2 __attribute__((target("avx2")))

ETRAIN_AVX2 inline __m256d neg4(__m256d v) { return _mm256_xor_pd(v, _mm256_set1_pd(-0.0)); }

// The bytes s[base[i] + off] of the four lanes, as doubles.
ETRAIN_AVX2 inline __m256d load_lanes(const uint8_t* s, const int64_t base[4], int64_t off) {
  return _mm256_cvtepi32_pd(_mm_setr_epi32(s[base[0] + off], s[base[1] + off], s[base[2] + off], s[base[3] + off]));
}

// Four consecutive bytes as doubles.
ETRAIN_AVX2 inline __m256d load4u8(const uint8_t* p) {
  int32_t w;
  std::memcpy(&w, p, 4);
  return _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(w)));
}

// clip_trunc of four lanes, stored as four bytes.
ETRAIN_AVX2 inline void store4(uint8_t* d, __m256d v) {
  v = _mm256_min_pd(_mm256_max_pd(v, _mm256_setzero_pd()), _mm256_set1_pd(255.0));
  const __m128i i = _mm256_cvttpd_epi32(v);
  const __m128i b = _mm_packus_epi16(_mm_packus_epi32(i, i), _mm_setzero_si128());
  const int32_t w = _mm_cvtsi128_si32(b);
  std::memcpy(d, &w, 4);
}


// Source coordinates of four consecutive output pixels of a row, shared by the warps below: PIL's inverse affine
// map at pixel centres in its order of operations (m0*xo + m1*yo + m2, m3*xo + m4*yo + m5), so every lane equals
// detail::affine_pixel_c's scalar bit for bit.
struct AffineRow {
  __m256d m1yo, m4yo;
  double m1yo_s, m4yo_s;
};

struct AffineLanes {
  __m256d m0, m2, m3, m5, wd, hd;
  int H, W;

  ETRAIN_AVX2 AffineLanes(const double m[6], int H_, int W_)
      : m0(_mm256_set1_pd(m[0])), m2(_mm256_set1_pd(m[2])), m3(_mm256_set1_pd(m[3])), m5(_mm256_set1_pd(m[5])),
        wd(_mm256_set1_pd(static_cast<double>(W_))), hd(_mm256_set1_pd(static_cast<double>(H_))), H(H_), W(W_) {}

  ETRAIN_AVX2 AffineRow row(const double m[6], int y) const {
    const double yo = static_cast<double>(y) + 0.5;
    const double m1yo = m[1] * yo, m4yo = m[4] * yo;
    return {_mm256_set1_pd(m1yo), _mm256_set1_pd(m4yo), m1yo, m4yo};
  }

  // xin, yin of output pixels x..x+3 of the row; true when all four lie inside the source image.
  ETRAIN_AVX2 bool source(const AffineRow& r, int x, __m256d& xin, __m256d& yin) const {
    const __m128i xi = _mm_add_epi32(_mm_set1_epi32(x), _mm_setr_epi32(0, 1, 2, 3));
    const __m256d xo = _mm256_add_pd(_mm256_cvtepi32_pd(xi), _mm256_set1_pd(0.5));
    xin = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(m0, xo), r.m1yo), m2);
    yin = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(m3, xo), r.m4yo), m5);
    const __m256d zero = _mm256_setzero_pd();
    const __m256d in = _mm256_and_pd(
        _mm256_and_pd(_mm256_cmp_pd(xin, zero, _CMP_GE_OQ), _mm256_cmp_pd(xin, wd, _CMP_LT_OQ)),
        _mm256_and_pd(_mm256_cmp_pd(yin, zero, _CMP_GE_OQ), _mm256_cmp_pd(yin, hd, _CMP_LT_OQ)));
    return _mm256_movemask_pd(in) == 0xF;
  }

  // Pillow's split of xin - 0.5, yin - 0.5 into integer corners xs, ys (floor) and fractions dx, dy; true when
  // every lane's window [corner - before, corner + after] lies inside the image on both axes (no edge clamping).
  ETRAIN_AVX2 bool window(__m256d xin, __m256d yin, int before, int after, __m256d& dx, __m256d& dy, int32_t xs[4],
                          int32_t ys[4]) const {
    const __m256d mhalf = _mm256_set1_pd(-0.5);
    xin = _mm256_add_pd(xin, mhalf);
    yin = _mm256_add_pd(yin, mhalf);
    const __m256d xfl = _mm256_floor_pd(xin), yfl = _mm256_floor_pd(yin);
    dx = _mm256_add_pd(xin, neg4(xfl));
    dy = _mm256_add_pd(yin, neg4(yfl));
    const __m128i xf = _mm256_cvttpd_epi32(xfl), yf = _mm256_cvttpd_epi32(yfl);
    _mm_store_si128(reinterpret_cast<__m128i*>(xs), xf);
    _mm_store_si128(reinterpret_cast<__m128i*>(ys), yf);
    const __m128i lo = _mm_set1_epi32(before);
    const __m128i out = _mm_or_si128(
        _mm_or_si128(_mm_cmpgt_epi32(lo, xf), _mm_cmpgt_epi32(xf, _mm_set1_epi32(W - 1 - after))),
        _mm_or_si128(_mm_cmpgt_epi32(lo, yf), _mm_cmpgt_epi32(yf, _mm_set1_epi32(H - 1 - after))));
    return _mm_movemask_epi8(out) == 0;
  }
};

template <int NC>
ETRAIN_AVX2 void bilinear_avx2(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst, int H, int W,
                             const double m[6], const uint8_t fill[NC]) {
  using namespace detail;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const AffineLanes lanes(m, H, W);
  const __m256d zero = _mm256_setzero_pd();
  alignas(16) int32_t xs[4], ys[4];
  for (int y = 0; y < H; ++y) {
    const AffineRow row = lanes.row(m, y);
    const double m1yo_s = row.m1yo_s, m4yo_s = row.m4yo_s;
    int x = 0;
    for (; x + 4 <= W; x += 4) {
      const int64_t o = static_cast<int64_t>(y) * W + x;
      __m256d xin, yin, dx, dy;
      // fill, or a 2x2 window that needs edge clamping (image borders only): the scalar path
      if (!lanes.source(row, x, xin, yin) || !lanes.window(xin, yin, 0, 1, dx, dy, xs, ys)) {
        for (int i = 0; i < 4; ++i) affine_pixel_c<NC>(src, dst, H, W, x + i, y, m, m1yo_s, m4yo_s, kBilinear, fill);
        continue;
      }
      // a + (b - a) * 0 == a exactly: skip the second column (dx == 0) or row (dy == 0) for whole groups.
      const bool flat_x = _mm256_movemask_pd(_mm256_cmp_pd(dx, zero, _CMP_EQ_OQ)) == 0xF;
      const bool flat_y = _mm256_movemask_pd(_mm256_cmp_pd(dy, zero, _CMP_EQ_OQ)) == 0xF;
      // One source row and consecutive columns (x translations and shears): 4-byte loads.
      const bool contiguous = ys[0] == ys[1] && ys[0] == ys[2] && ys[0] == ys[3] && xs[1] == xs[0] + 1 &&
                              xs[2] == xs[0] + 2 && xs[3] == xs[0] + 3;
      int64_t base[4];
      for (int i = 0; i < 4; ++i) base[i] = static_cast<int64_t>(ys[i]) * W + xs[i];
      for (int c = 0; c < NC; ++c) {
        const uint8_t* s = src + c * plane;
        __m256d a0, b0, a1, b1;
        if (contiguous) {
          const uint8_t* r = s + base[0];
          a0 = load4u8(r);
          b0 = flat_x ? a0 : load4u8(r + 1);
          a1 = flat_y ? a0 : load4u8(r + W);
          b1 = (flat_x || flat_y) ? a1 : load4u8(r + W + 1);
        } else {
          a0 = load_lanes(s, base, 0);
          b0 = flat_x ? a0 : load_lanes(s, base, 1);
          a1 = flat_y ? a0 : load_lanes(s, base, W);
          b1 = (flat_x || flat_y) ? a1 : load_lanes(s, base, W + 1);
        }
        const __m256d v1 = flat_x ? a0 : _mm256_add_pd(a0, _mm256_mul_pd(_mm256_sub_pd(b0, a0), dx));
        if (flat_y) {
          store4(dst + c * plane + o, v1);
          continue;
        }
        const __m256d v2 = flat_x ? a1 : _mm256_add_pd(a1, _mm256_mul_pd(_mm256_sub_pd(b1, a1), dx));
        store4(dst + c * plane + o, _mm256_add_pd(v1, _mm256_mul_pd(_mm256_add_pd(v2, neg4(v1)), dy)));
      }
    }
    for (; x < W; ++x) affine_pixel_c<NC>(src, dst, H, W, x, y, m, m1yo_s, m4yo_s, kBilinear, fill);
  }
}

// PIL's BICUBIC on four lanes, operation for operation as detail::cubic.
ETRAIN_AVX2 inline __m256d cubic4(__m256d v1, __m256d v2, __m256d v3, __m256d v4, __m256d d) {
  const __m256d p2 = _mm256_add_pd(neg4(v1), v3);
  const __m256d p3 =
      _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(2.0), _mm256_add_pd(v1, neg4(v2))), v3), neg4(v4));
  const __m256d p4 = _mm256_add_pd(_mm256_add_pd(_mm256_add_pd(neg4(v1), v2), neg4(v3)), v4);
  return _mm256_add_pd(v2, _mm256_mul_pd(d, _mm256_add_pd(p2, _mm256_mul_pd(d, _mm256_add_pd(p3, _mm256_mul_pd(d, p4))))));
}


// Warps that keep rows (m = (a, b, c, 0, 1, 0): x shears and x translations): the source row is the output row
// and dy == 0, so each output pixel is one horizontal cubic (cubic(..., 0) == second row exactly) or lerp
// (a + (b - a) * 0 == a: Pillow's second bilinear step is exact). Four output pixels per step whose windows are
// consecutive read their source bytes with 4-byte loads; other groups (image borders, fill, rounding steps) take
// the scalar path. Bit-identical to it.
template <int NC, bool Cubic>
ETRAIN_AVX2 void rowshift_avx2(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst, int H, int W,
                                       const double m[6], const uint8_t fill[NC]) {
  using namespace detail;
  constexpr int64_t kInterp = Cubic ? kBicubic : kBilinear;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const AffineLanes lanes(m, H, W);
  const __m256d mhalf = _mm256_set1_pd(-0.5), zero = _mm256_setzero_pd();
  const __m128i lane = _mm_setr_epi32(0, 1, 2, 3);
  for (int y = 0; y < H; ++y) {
    const AffineRow row = lanes.row(m, y);
    const double m1yo_s = row.m1yo_s, m4yo_s = row.m4yo_s;
    int x = 0;
    for (; x + 4 <= W; x += 4) {
      const int64_t o = static_cast<int64_t>(y) * W + x;
      __m256d xin, yin;  // yin = the output row, always inside
      bool fast = lanes.source(row, x, xin, yin);
      __m256d dx = zero;
      int x0 = 0;
      if (fast) {
        const __m256d xs = _mm256_add_pd(xin, mhalf);
        const __m256d xfl = _mm256_floor_pd(xs);
        dx = _mm256_add_pd(xs, neg4(xfl));
        const __m128i xf = _mm256_cvttpd_epi32(xfl);
        x0 = _mm_cvtsi128_si32(xf);
        const __m128i seq = _mm_add_epi32(_mm_set1_epi32(x0), lane);
        // taps x0-1..x0+5 (cubic) or x0..x0+4 (bilinear) inside the row: no edge clamping
        fast = _mm_movemask_epi8(_mm_cmpeq_epi32(xf, seq)) == 0xFFFF && x0 - (Cubic ? 1 : 0) >= 0 &&
               x0 + (Cubic ? 5 : 4) <= W - 1;
      }
      if (!fast) {
        for (int i = 0; i < 4; ++i) affine_pixel_c<NC>(src, dst, H, W, x + i, y, m, m1yo_s, m4yo_s, kInterp, fill);
        continue;
      }
      for (int c = 0; c < NC; ++c) {
        const uint8_t* r = src + c * plane + static_cast<int64_t>(y) * W + x0;
        if constexpr (Cubic) {
          store4(dst + c * plane + o, cubic4(load4u8(r - 1), load4u8(r), load4u8(r + 1), load4u8(r + 2), dx));
        } else {
          const __m256d a = load4u8(r);
          store4(dst + c * plane + o, _mm256_add_pd(a, _mm256_mul_pd(_mm256_sub_pd(load4u8(r + 1), a), dx)));
        }
      }
    }
    for (; x < W; ++x) affine_pixel_c<NC>(src, dst, H, W, x, y, m, m1yo_s, m4yo_s, kInterp, fill);
  }
}

// Warps that keep columns (m = (1, 0, 0, d, e, f): y shears and y translations): xin = x + 0.5, so dx == 0 and each
// output pixel is one vertical cubic (cubic(..., 0) == second column exactly) or lerp on its own column. Four
// output pixels per step; rows are read with one 4-byte load per row when the four windows start on the same row
// (y translations), else byte by byte. Groups touching the top/bottom border or the fill take the scalar path.
template <int NC, bool Cubic>
ETRAIN_AVX2 void colshift_avx2(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst, int H, int W,
                                       const double m[6], const uint8_t fill[NC]) {
  using namespace detail;
  constexpr int64_t kInterp = Cubic ? kBicubic : kBilinear;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const AffineLanes lanes(m, H, W);
  const __m256d mhalf = _mm256_set1_pd(-0.5), zero = _mm256_setzero_pd();
  alignas(16) int32_t yf[4];
  for (int y = 0; y < H; ++y) {
    const AffineRow row = lanes.row(m, y);
    const double m1yo_s = row.m1yo_s, m4yo_s = row.m4yo_s;
    int x = 0;
    for (; x + 4 <= W; x += 4) {
      const int64_t o = static_cast<int64_t>(y) * W + x;
      __m256d xin, yin;  // xin = the output column, always inside
      bool fast = lanes.source(row, x, xin, yin);
      __m256d dy = zero;
      if (fast) {
        const __m256d ys = _mm256_add_pd(yin, mhalf);
        const __m256d yfl = _mm256_floor_pd(ys);
        dy = _mm256_add_pd(ys, neg4(yfl));
        const __m128i yfi = _mm256_cvttpd_epi32(yfl);
        _mm_store_si128(reinterpret_cast<__m128i*>(yf), yfi);
        // rows yf-1..yf+2 (cubic) or yf..yf+1 (bilinear) inside the image: no edge clamping
        const __m128i lo = _mm_cmpgt_epi32(_mm_set1_epi32(Cubic ? 1 : 0), yfi);
        const __m128i hi = _mm_cmpgt_epi32(yfi, _mm_set1_epi32(H - (Cubic ? 3 : 2)));
        fast = _mm_movemask_epi8(_mm_or_si128(lo, hi)) == 0;
      }
      if (!fast) {
        for (int i = 0; i < 4; ++i) affine_pixel_c<NC>(src, dst, H, W, x + i, y, m, m1yo_s, m4yo_s, kInterp, fill);
        continue;
      }
      constexpr int kTaps = Cubic ? 4 : 2, kFirst = Cubic ? -1 : 0;
      const bool same = yf[0] == yf[1] && yf[0] == yf[2] && yf[0] == yf[3];
      for (int c = 0; c < NC; ++c) {
        const uint8_t* s = src + c * plane + x;
        __m256d v[kTaps];
        if (same) {
          for (int k = 0; k < kTaps; ++k) v[k] = load4u8(s + static_cast<int64_t>(yf[0] + kFirst + k) * W);
        } else {
          for (int k = 0; k < kTaps; ++k) {
            v[k] = _mm256_cvtepi32_pd(_mm_setr_epi32(s[static_cast<int64_t>(yf[0] + kFirst + k) * W],
                                                      s[static_cast<int64_t>(yf[1] + kFirst + k) * W + 1],
                                                      s[static_cast<int64_t>(yf[2] + kFirst + k) * W + 2],
                                                      s[static_cast<int64_t>(yf[3] + kFirst + k) * W + 3]));
          }
        }
        if constexpr (Cubic) {
          store4(dst + c * plane + o, cubic4(v[0], v[1], v[2], v[3], dy));
        } else {
          store4(dst + c * plane + o, _mm256_add_pd(v[0], _mm256_mul_pd(_mm256_sub_pd(v[1], v[0]), dy)));
        }
      }
    }
    for (; x < W; ++x) affine_pixel_c<NC>(src, dst, H, W, x, y, m, m1yo_s, m4yo_s, kInterp, fill);
  }
}

// General bicubic warp (rotations), four output pixels per step, each lane its own 4x4 window.
template <int NC>
ETRAIN_AVX2 void bicubic_avx2(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst, int H, int W,
                              const double m[6], const uint8_t fill[NC]) {
  using namespace detail;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const AffineLanes lanes(m, H, W);
  alignas(16) int32_t xs[4], ys[4];
  for (int y = 0; y < H; ++y) {
    const AffineRow row = lanes.row(m, y);
    const double m1yo_s = row.m1yo_s, m4yo_s = row.m4yo_s;
    int x = 0;
    for (; x + 4 <= W; x += 4) {
      const int64_t o = static_cast<int64_t>(y) * W + x;
      __m256d xin, yin, dx, dy;
      // fill, or a 4x4 window that needs edge clamping: the scalar path
      if (!lanes.source(row, x, xin, yin) || !lanes.window(xin, yin, 1, 2, dx, dy, xs, ys)) {
        for (int i = 0; i < 4; ++i) affine_pixel_c<NC>(src, dst, H, W, x + i, y, m, m1yo_s, m4yo_s, kBicubic, fill);
        continue;
      }
      // top-left corner of each lane's window
      int64_t base[4];
      for (int i = 0; i < 4; ++i) base[i] = static_cast<int64_t>(ys[i] - 1) * W + (xs[i] - 1);
      for (int c = 0; c < NC; ++c) {
        const uint8_t* s = src + c * plane;
        __m256d rows[4];
        for (int k = 0; k < 4; ++k) {
          __m256d v[4];
          for (int j = 0; j < 4; ++j) {
            const int64_t off = static_cast<int64_t>(k) * W + j;
            v[j] = _mm256_cvtepi32_pd(
                _mm_setr_epi32(s[base[0] + off], s[base[1] + off], s[base[2] + off], s[base[3] + off]));
          }
          rows[k] = cubic4(v[0], v[1], v[2], v[3], dx);
        }
        store4(dst + c * plane + o, cubic4(rows[0], rows[1], rows[2], rows[3], dy));
      }
    }
    for (; x < W; ++x) affine_pixel_c<NC>(src, dst, H, W, x, y, m, m1yo_s, m4yo_s, kBicubic, fill);
  }
}

// ---- colour ops, 8 pixels per step in float32 lanes: the same float operations as detail::blend ----
ETRAIN_AVX2 inline __m256i load8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// detail::blend for 8 lanes: float(a) + f * float(b - a), clipped to [0, 255], truncated.
ETRAIN_AVX2 inline __m256i blend8(__m256i a, __m256i b, __m256 f) {
  const __m256 t = _mm256_add_ps(_mm256_cvtepi32_ps(a), _mm256_mul_ps(f, _mm256_cvtepi32_ps(_mm256_sub_epi32(b, a))));
  return _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), _mm256_set1_ps(255.0f)));
}

ETRAIN_AVX2 inline void store8(uint8_t* d, __m256i v) {
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(d), _mm_packus_epi16(w, w));
}

ETRAIN_AVX2 void color_rgb_avx2(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst, int64_t plane, float f) {
  using namespace detail;
  const uint8_t *r = src, *g = src + plane, *b = src + 2 * plane;
  const __m256 fv = _mm256_set1_ps(f);
  int64_t o = 0;
  for (; o + 8 <= plane; o += 8) {
    const __m256i rv = load8(r + o), gv = load8(g + o), bv = load8(b + o);
    const __m256i l = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(_mm256_mullo_epi32(rv, _mm256_set1_epi32(19595)),
                                          _mm256_mullo_epi32(gv, _mm256_set1_epi32(38470))),
                         _mm256_add_epi32(_mm256_mullo_epi32(bv, _mm256_set1_epi32(7471)), _mm256_set1_epi32(0x8000))),
        16);
    store8(dst + o, blend8(l, rv, fv));
    store8(dst + plane + o, blend8(l, gv, fv));
    store8(dst + 2 * plane + o, blend8(l, bv, fv));
  }
  for (; o < plane; ++o) {
    const int l = gray(r[o], g[o], b[o]);
    dst[o] = blend(l, r[o], f);
    dst[plane + o] = blend(l, g[o], f);
    dst[2 * plane + o] = blend(l, b[o], f);
  }
}

// Interior of one sharpness row (x in [1, W - 2]); the caller handles the borders. (n * 5042) >> 16 == n / 13
// for 0 <= n <= 13 * 255 + 6 (checked exhaustively).
ETRAIN_AVX2 void sharpness_row_avx2(const uint8_t* __restrict__ rp, const uint8_t* __restrict__ rc,
                                    const uint8_t* __restrict__ rn, uint8_t* __restrict__ out, int W, float f) {
  using namespace detail;
  const __m256 fv = _mm256_set1_ps(f);
  int x = 1;
  for (; x + 8 <= W - 1; x += 8) {
    const __m256i c = load8(rc + x);
    __m256i sum = _mm256_add_epi32(_mm256_add_epi32(load8(rp + x - 1), load8(rp + x)), load8(rp + x + 1));
    sum = _mm256_add_epi32(sum, _mm256_add_epi32(load8(rc + x - 1), load8(rc + x + 1)));
    sum = _mm256_add_epi32(sum, _mm256_add_epi32(_mm256_add_epi32(load8(rn + x - 1), load8(rn + x)), load8(rn + x + 1)));
    sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(c, _mm256_set1_epi32(5)));
    const __m256i d = _mm256_srli_epi32(_mm256_mullo_epi32(_mm256_add_epi32(sum, _mm256_set1_epi32(6)),
                                                           _mm256_set1_epi32(5042)), 16);
    store8(out + x, blend8(d, c, fv));
  }
  for (; x < W - 1; ++x) {
    const int sum = rp[x - 1] + rp[x] + rp[x + 1] + rc[x - 1] + 5 * rc[x] + rc[x + 1] + rn[x - 1] + rn[x] + rn[x + 1];
    out[x] = blend((sum + 6) / 13, rc[x], f);
  }
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

// ImageEnhance.Sharpness on one plane; same arithmetic as detail::sharpness_pixel, as row loops.
void sharpness_plane(const uint8_t* __restrict__ s, uint8_t* __restrict__ d, int H, int W, float f, bool simd) {
  using namespace detail;
  for (int y = 0; y < H; ++y) {
    const uint8_t* rc = s + static_cast<int64_t>(y) * W;
    uint8_t* out = d + static_cast<int64_t>(y) * W;
    if (y == 0 || y == H - 1 || W < 3) {
      for (int x = 0; x < W; ++x) out[x] = blend(rc[x], rc[x], f);
      continue;
    }
    const uint8_t* rp = rc - W;
    const uint8_t* rn = rc + W;
    out[0] = blend(rc[0], rc[0], f);
    if (simd) {
#ifdef ETRAIN_AUGMENT_AVX
      sharpness_row_avx2(rp, rc, rn, out, W, f);
#endif
    } else {
      for (int x = 1; x < W - 1; ++x) {
        const int sum = rp[x - 1] + rp[x] + rp[x + 1] + rc[x - 1] + 5 * rc[x] + rc[x + 1] + rn[x - 1] + rn[x] + rn[x + 1];
        out[x] = blend((sum + 6) / 13, rc[x], f);
      }
    }
    out[W - 1] = blend(rc[W - 1], rc[W - 1], f);
  }
}

// Whether the AVX2 kernels can run (compiled in and supported by this CPU).
bool have_simd() {
#ifdef ETRAIN_AUGMENT_AVX
  return cpu_has_avx2();
#else
  return false;
#endif
}

template <int NC>
void affine_image(const uint8_t* src, uint8_t* dst, int H, int W, const double* p, int64_t interp,
                  const uint8_t* fill_in) {
  using namespace detail;
  // Local copies: stores through uint8_t* may alias anything, so the compiler would reload them per pixel.
  const double m[6] = {p[0], p[1], p[2], p[3], p[4], p[5]};
  uint8_t fill[NC];
  for (int c = 0; c < NC; ++c) fill[c] = fill_in[c];
#ifdef ETRAIN_AUGMENT_AVX
  // The vector paths use 32-bit offsets within a sample (always enough for training images).
  if (cpu_has_avx2() && static_cast<int64_t>(NC) * H * W < (int64_t{1} << 31) && W >= 4) {
    const bool row_preserving = m[3] == 0.0 && m[4] == 1.0 && m[5] == 0.0;
    const bool col_preserving = m[0] == 1.0 && m[1] == 0.0 && m[2] == 0.0;
    if (interp == kBilinear && row_preserving) {
      rowshift_avx2<NC, false>(src, dst, H, W, m, fill);
      return;
    }
    if (interp == kBilinear && col_preserving) {
      colshift_avx2<NC, false>(src, dst, H, W, m, fill);
      return;
    }
    if (interp == kBicubic && row_preserving) {
      rowshift_avx2<NC, true>(src, dst, H, W, m, fill);
      return;
    }
    if (interp == kBicubic && col_preserving) {
      colshift_avx2<NC, true>(src, dst, H, W, m, fill);
      return;
    }
    if (interp == kBicubic) {
      bicubic_avx2<NC>(src, dst, H, W, m, fill);
      return;
    }
    if (interp == kBilinear) {
      bilinear_avx2<NC>(src, dst, H, W, m, fill);
      return;
    }
  }
#endif
  for (int y = 0; y < H; ++y) {
    const double yo = static_cast<double>(y) + 0.5;
    const double m1yo = dmul(m[1], yo), m4yo = dmul(m[4], yo);
    if (interp == kBicubic) {
      for (int x = 0; x < W; ++x) affine_pixel_c<NC>(src, dst, H, W, x, y, m, m1yo, m4yo, kBicubic, fill);
    } else if (interp == kBilinear) {
      for (int x = 0; x < W; ++x) affine_pixel_c<NC>(src, dst, H, W, x, y, m, m1yo, m4yo, kBilinear, fill);
    } else {
      for (int x = 0; x < W; ++x) affine_pixel_c<NC>(src, dst, H, W, x, y, m, m1yo, m4yo, kNearest, fill);
    }
  }
}

// `blur_tmp`: a scratch image of C * H * W bytes (GaussianBlur's intermediate passes), distinct from src and dst.
void one_sample(const uint8_t* src, uint8_t* dst, int C, int H, int W, int64_t op, const double* p, int64_t interp,
                const uint8_t* fill, uint8_t* blur_tmp) {
  using namespace detail;
  const int64_t plane = static_cast<int64_t>(H) * W;
  switch (op) {
    case kGaussianBlur: {
      // ImageFilter.GaussianBlur: the CUDA threads' row and column functions, in loops.
      const BoxBlur b = gaussian_blur_params(p[0]);
      if (!b.active) break;  // radius 0: copy (below)
      for (int64_t r = 0; r < static_cast<int64_t>(C) * H; ++r) blur_row(src, dst, blur_tmp, r, W, b);
      for (int64_t k = 0; k < static_cast<int64_t>(C) * W; ++k) blur_col(dst, blur_tmp, k, H, W, b);
      return;
    }
    case kAffine:
      if (C == 3) {
        affine_image<3>(src, dst, H, W, p, interp, fill);
      } else {
        affine_image<1>(src, dst, H, W, p, interp, fill);
      }
      return;
    case kColor: {
      const float f = static_cast<float>(p[0]);
      if (C == 1) {
        std::memcpy(dst, src, static_cast<size_t>(plane));
        return;
      }
#ifdef ETRAIN_AUGMENT_AVX
      if (have_simd()) {
        color_rgb_avx2(src, dst, plane, f);
        return;
      }
#endif
      // Same arithmetic as color_pixel.
      const uint8_t *r = src, *g = src + plane, *b = src + 2 * plane;
      for (int64_t o = 0; o < plane; ++o) {
        const int l = gray(r[o], g[o], b[o]);
        dst[o] = blend(l, r[o], f);
        dst[plane + o] = blend(l, g[o], f);
        dst[2 * plane + o] = blend(l, b[o], f);
      }
      return;
    }
    case kSharpness: {
      const float f = static_cast<float>(p[0]);
      for (int c = 0; c < C; ++c) sharpness_plane(src + c * plane, dst + c * plane, H, W, f, have_simd());
      return;
    }
    default:
      break;
  }
  if (!is_lut_op(op)) {
    std::memcpy(dst, src, static_cast<size_t>(C * plane));
    return;
  }
  int32_t hist[4][256];
  if (needs_hist(op)) {
    std::memset(hist, 0, sizeof(hist));
    if (op == kContrast && C == 3) {
      // Contrast needs only the luma histogram.
      const uint8_t *r = src, *g = src + plane, *b = src + 2 * plane;
      for (int64_t o = 0; o < plane; ++o) ++hist[3][gray(r[o], g[o], b[o])];
    } else {
      for (int c = 0; c < C; ++c) histogram(src + c * plane, plane, hist[c]);
      if (op == kContrast) std::memcpy(hist[3], hist[0], sizeof(hist[0]));
    }
  }
  uint8_t lut[256];
  for (int c = 0; c < C; ++c) {
    build_lut(op, p, hist[c], hist[3], lut);
    const uint8_t* s = src + c * plane;
    uint8_t* d = dst + c * plane;
    for (int64_t o = 0; o < plane; ++o) d[o] = lut[s[o]];
  }
}

}  // namespace

namespace {

// Slots (L = 1) and chains: sample n runs ops[n * L + l] for l = 0..L-1, ping-ponging between its output image and
// a scratch image so that the last op writes the output; identity ops are skipped (no copies).
at::Tensor run_cpu(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params, const at::Tensor& interp,
                   const at::Tensor& fill, at::OptionalIntArrayRef present, bool chain) {
  const char* name = chain ? "augment_chain" : "augment_slot";
  const int64_t L = check_args(x, op, params, interp, fill, present, chain);
  const auto xc = x.contiguous();
  const auto opc = op.contiguous();
  const auto pc = params.contiguous();
  const auto ic = interp.contiguous();
  const auto fc = fill.contiguous();
  auto out = at::empty_like(xc, at::MemoryFormat::Contiguous);
  const int64_t N = xc.size(0);
  const int C = static_cast<int>(xc.size(1)), H = static_cast<int>(xc.size(2)), W = static_cast<int>(xc.size(3));
  const int64_t per = static_cast<int64_t>(C) * H * W;
  const int64_t* ops = opc.const_data_ptr<int64_t>();
  const int64_t* ip = ic.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < N * L; ++i) {
    // Built only when a check fails (TORCH_CHECK evaluates its message lazily): N * L strings per call otherwise.
    const auto where = [&] {
      return " at sample " + std::to_string(i / L) + (chain ? ", slot " + std::to_string(i % L) : "");
    };
    TORCH_CHECK_VALUE(ops[i] >= 0 && ops[i] < kNumOps, std::string(name) + ": op codes must be in [0, " +
                                                           std::to_string(kNumOps) + "), got " +
                                                           std::to_string(ops[i]) + where());
    TORCH_CHECK_VALUE(ip[i] >= 0 && ip[i] <= 2, std::string(name) + ": interp codes must be 0 (nearest), 1 "
                                                "(bilinear) or 2 (bicubic), got " + std::to_string(ip[i]) + where());
    // The CUDA launcher skips the passes a mask leaves out, so a mask that misses a code would corrupt the output
    // there; here, where checking is free, it is an error.
    TORCH_CHECK_VALUE(!present.has_value() || ((*present)[i % L] & op_bit(ops[i])) != 0,
                      std::string(name) + ": present[" + std::to_string(i % L) + "] = " +
                          std::to_string((*present)[i % L]) + " leaves out op code " + std::to_string(ops[i]) +
                          where());
    if (ops[i] == kGaussianBlur) {
      const double r = pc.const_data_ptr<double>()[i * kNumParams];
      TORCH_CHECK_VALUE(detail::blur_radius_ok(r), std::string(name) + ": GaussianBlur radius (params[..., 0]) must "
                                                   "be in [0, 1e6], got " + etrain::num(r) + where());
    }
  }
  if (N == 0 || per == 0) return out;
  const uint8_t* src = xc.const_data_ptr<uint8_t>();
  uint8_t* dst = out.mutable_data_ptr<uint8_t>();
  const double* p = pc.const_data_ptr<double>();
  const uint8_t* f = fc.const_data_ptr<uint8_t>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> scratch;
    std::vector<uint8_t> blur_tmp;
    for (int64_t n = begin; n < end; ++n) {
      const int64_t* on = ops + n * L;
      int64_t k = 0;
      for (int64_t l = 0; l < L; ++l) k += on[l] != kIdentity;
      uint8_t* out_n = dst + n * per;
      if (k == 0) {
        std::memcpy(out_n, src + n * per, static_cast<size_t>(per));
        continue;
      }
      if (k > 1 && scratch.empty()) scratch.resize(static_cast<size_t>(per));
      const uint8_t* cur = src + n * per;
      bool to_out = (k % 2) == 1;  // so that the k-th (last) op writes out_n
      for (int64_t l = 0; l < L; ++l) {
        if (on[l] == kIdentity) continue;
        uint8_t* target = to_out ? out_n : scratch.data();
        const int64_t i = n * L + l;
        if (on[l] == kGaussianBlur && blur_tmp.empty()) blur_tmp.resize(static_cast<size_t>(per));
        one_sample(cur, target, C, H, W, on[l], p + i * kNumParams, ip[i], f + n * C, blur_tmp.data());
        cur = target;
        to_out = !to_out;
      }
    }
  });
  return out;
}

}  // namespace

at::Tensor augment_slot_cpu(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params,
                            const at::Tensor& interp, const at::Tensor& fill, at::OptionalIntArrayRef present) {
  return run_cpu(x, op, params, interp, fill, present, /*chain=*/false);
}

at::Tensor augment_chain_cpu(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params,
                             const at::Tensor& interp, const at::Tensor& fill, at::OptionalIntArrayRef present) {
  return run_cpu(x, op, params, interp, fill, present, /*chain=*/true);
}

}  // namespace etrain::augment
