// Per-pixel and per-LUT math of the augment ops, shared by the CPU (.cpp) and CUDA (.cu) kernels so that both
// produce bit-identical results. It reproduces Pillow's C code (Blend.c, Convert.c, Filter.c, Geometry.c and the
// LUTs of ImageOps/ImageEnhance): float32 blends that truncate, double-precision affine sampling at pixel
// centres with edge clamping, truncating bilinear and clipped bicubic (a = -1) interpolation. Multiplications
// and additions go through dmul/dadd/fmul/fadd so that nvcc cannot contract them into FMAs (which round
// differently from Pillow's separate operations). GaussianBlur replays BoxBlur.c (see gaussian_blur_params).
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

#include "augment/augment.h"

// Everything here is force-inlined: the CPU's AVX code paths (augment_cpu.cpp) call these helpers, and an
// out-of-line call into non-VEX (SSE) code with dirty upper AVX registers costs a state-transition penalty per call.
#if defined(__CUDACC__)
#define ETRAIN_FORCE_INLINE __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define ETRAIN_FORCE_INLINE inline __attribute__((always_inline))
#else
#define ETRAIN_FORCE_INLINE inline
#endif

// Loop unrolling hint for nvcc; host compilers unroll the constant-trip loops on their own.
#if defined(__CUDACC__)
#define ETRAIN_UNROLL _Pragma("unroll")
#else
#define ETRAIN_UNROLL
#endif

namespace etrain::augment::detail {

C10_HOST_DEVICE ETRAIN_FORCE_INLINE double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
C10_HOST_DEVICE ETRAIN_FORCE_INLINE double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
C10_HOST_DEVICE ETRAIN_FORCE_INLINE float fmul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
C10_HOST_DEVICE ETRAIN_FORCE_INLINE float fadd(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

C10_HOST_DEVICE ETRAIN_FORCE_INLINE float fdiv(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
C10_HOST_DEVICE ETRAIN_FORCE_INLINE double dsqrt(double a) {
#ifdef __CUDA_ARCH__
  return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

// double -> int as CUDA's cvt.rzi.s32 does for every input: truncation towards zero, saturation at INT_MIN /
// INT_MAX, NaN -> 0. A plain static_cast is undefined outside int's range (x86 gives INT_MIN, so a threshold of
// 3e9 would become negative on the CPU only); every magnitude-derived cast goes through this.
C10_HOST_DEVICE ETRAIN_FORCE_INLINE int sat_int(double v) {
  if (!(v == v)) return 0;
  if (v >= 2147483647.0) return 2147483647;
  if (v <= -2147483648.0) return -2147483647 - 1;
  return static_cast<int>(v);
}

// ceil(v) as an int, saturating like sat_int (NaN -> 0). Solarize thresholds: "v < thresh" for integer pixel values
// v equals "v < ceil(thresh)", which PIL's float comparison gives (truncating would flip v = 128 at 128.5).
C10_HOST_DEVICE ETRAIN_FORCE_INLINE int ceil_int(double v) {
  const int t = sat_int(v);
  return (static_cast<double>(t) < v && t < 2147483647) ? t + 1 : t;
}

C10_HOST_DEVICE ETRAIN_FORCE_INLINE int floor_int(double v) {
  const int i = static_cast<int>(v);
  return (v < 0.0 && static_cast<double>(i) != v) ? i - 1 : i;
}
C10_HOST_DEVICE ETRAIN_FORCE_INLINE int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Image.blend(degenerate=a, image=b, alpha) for one uint8 value (Blend.c): float32 a + alpha * (b - a),
// truncated, clipped to [0, 255] (the clip only matters when extrapolating, alpha outside [0, 1]). A non-finite
// factor saturates (+-inf * (b - a)); where that is NaN (inf * 0, or a NaN factor) the result is 0, as in the AVX2
// lanes (max_ps(NaN, 0) = 0) and on every device, instead of an undefined NaN -> uint8 conversion.
C10_HOST_DEVICE ETRAIN_FORCE_INLINE uint8_t blend(int a, int b, float alpha) {
  const float t = fadd(static_cast<float>(a), fmul(alpha, static_cast<float>(b - a)));
  if (!(t > 0.0f)) return 0;  // also NaN
  if (t >= 255.0f) return 255;
  return static_cast<uint8_t>(t);
}

// Pillow's RGB -> L conversion (Convert.c, L24): ITU-R 601-2 luma in 16-bit fixed point, rounded.
C10_HOST_DEVICE ETRAIN_FORCE_INLINE int gray(int r, int g, int b) { return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; }

// Whether an op reads histograms (channel histograms, or the luma histogram for Contrast).
C10_HOST_DEVICE ETRAIN_FORCE_INLINE bool needs_hist(int64_t op) {
  return op == kContrast || op == kAutoContrast || op == kEqualize;
}
C10_HOST_DEVICE ETRAIN_FORCE_INLINE bool is_lut_op(int64_t op) {
  return op == kInvert || op == kPosterize || op == kSolarize || op == kSolarizeAdd || op == kBrightness ||
         op == kContrast || op == kAutoContrast || op == kEqualize;
}

// The 256-entry LUT of channel c for a LUT op. hc: that channel's histogram; hl: the luma histogram (Contrast).
C10_HOST_DEVICE ETRAIN_FORCE_INLINE void build_lut(int64_t op, const double* p, const int32_t* hc, const int32_t* hl,
                                      uint8_t* lut) {
  switch (op) {
    case kInvert:
      for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(255 - i);
      return;
    case kPosterize: {
      const int bits = clampi(sat_int(p[0]), 1, 8);
      const int mask = ~((1 << (8 - bits)) - 1);
      for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i & mask);
      return;
    }
    case kSolarize: {
      const int thresh = ceil_int(p[0]);
      for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i < thresh ? i : 255 - i);
      return;
    }
    case kSolarizeAdd: {
      // |add| > 256 saturates every output anyway; clamping first keeps i + add from overflowing
      const int add = clampi(sat_int(p[0]), -256, 256), thresh = ceil_int(p[1]);
      for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i < thresh ? clampi(i + add, 0, 255) : i);
      return;
    }
    case kBrightness: {
      const float f = static_cast<float>(p[0]);
      for (int i = 0; i < 256; ++i) lut[i] = blend(0, i, f);
      return;
    }
    case kContrast: {
      // ImageEnhance.Contrast: degenerate = int(mean of the luma histogram + 0.5).
      int64_t count = 0, sum = 0;
      for (int i = 0; i < 256; ++i) {
        count += hl[i];
        sum += static_cast<int64_t>(i) * hl[i];
      }
      const double mean = count > 0 ? static_cast<double>(sum) / static_cast<double>(count) : 0.0;
      const int m = static_cast<int>(mean + 0.5);
      const float f = static_cast<float>(p[0]);
      for (int i = 0; i < 256; ++i) lut[i] = blend(m, i, f);
      return;
    }
    case kAutoContrast: {
      // ImageOps.autocontrast(cutoff=0): stretch [lo, hi] to [0, 255], int() truncation, clip.
      int lo = 0, hi = 255;
      while (lo < 256 && hc[lo] == 0) ++lo;
      while (hi >= 0 && hc[hi] == 0) --hi;
      if (hi <= lo) {
        for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i);
        return;
      }
      const double scale = 255.0 / static_cast<double>(hi - lo);
      const double offset = -static_cast<double>(lo) * scale;
      for (int i = 0; i < 256; ++i) {
        const double v = dadd(dmul(static_cast<double>(i), scale), offset);
        const int iv = static_cast<int>(v);  // Python int(): truncation towards zero
        lut[i] = static_cast<uint8_t>(clampi(iv, 0, 255));
      }
      return;
    }
    case kEqualize: {
      // ImageOps.equalize: step = (sum(nonzero bins) - last nonzero bin) // 255.
      int64_t total = 0, last = 0, nonzero = 0;
      for (int i = 0; i < 256; ++i) {
        if (hc[i]) {
          total += hc[i];
          last = hc[i];
          ++nonzero;
        }
      }
      const int64_t step = nonzero <= 1 ? 0 : (total - last) / 255;
      if (step == 0) {
        for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i);
        return;
      }
      int64_t n = step / 2;
      for (int i = 0; i < 256; ++i) {
        const int64_t v = n / step;
        lut[i] = static_cast<uint8_t>(v > 255 ? 255 : v);
        n += hc[i];
      }
      return;
    }
    default:
      for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i);
      return;
  }
}

// Geometry.c FIX(v) = FLOOR(v * 65536 + 0.5): 16.16 fixed point.
C10_HOST_DEVICE ETRAIN_FORCE_INLINE int64_t fix16(double v) {
  const double t = dadd(dmul(v, 65536.0), 0.5);
  // bounded to +-2^40 (far outside any image; keeps the cast and the stepping below within int64 on CPU and CUDA)
  constexpr double kMax = 1099511627776.0;
  if (!(t == t)) return 0;
  if (t >= kMax) return static_cast<int64_t>(kMax);
  if (t <= -kMax) return -static_cast<int64_t>(kMax);
  return t < 0.0 ? static_cast<int64_t>(floor(t)) : static_cast<int64_t>(t);
}

// PIL's BICUBIC macro (a = -1): v = p1 + d * (p2 + d * (p3 + d * p4)).
C10_HOST_DEVICE ETRAIN_FORCE_INLINE double cubic(double v1, double v2, double v3, double v4, double d) {
  const double p1 = v2;
  const double p2 = dadd(-v1, v3);
  const double p3 = dadd(dadd(dmul(2.0, dadd(v1, -v2)), v3), -v4);
  const double p4 = dadd(dadd(dadd(-v1, v2), -v3), v4);
  return dadd(p1, dmul(d, dadd(p2, dmul(d, dadd(p3, dmul(d, p4))))));
}

C10_HOST_DEVICE ETRAIN_FORCE_INLINE uint8_t clip_trunc(double v) {
  return v <= 0.0 ? 0 : (v >= 255.0 ? 255 : static_cast<uint8_t>(v));
}

// One output pixel (all NC channels) of PIL's Image.transform(AFFINE, m, resample, fillcolor) on a contiguous
// [NC, H, W] image `src`: input coordinate = m applied to the output pixel centre (x + 0.5, y + 0.5).
// `m1yo` = m[1] * (y + 0.5) and `m4yo` = m[4] * (y + 0.5), hoisted by row loops (same value, same rounding).
template <int NC>
C10_HOST_DEVICE ETRAIN_FORCE_INLINE void affine_pixel_c(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst, int H, int W,
                                           int x, int y, const double m[6], double m1yo, double m4yo,
                                           int64_t interp, const uint8_t fill[NC]) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t o = static_cast<int64_t>(y) * W + x;
  const double xo = static_cast<double>(x) + 0.5;
  double xin = dadd(dadd(dmul(m[0], xo), m1yo), m[2]);
  double yin = dadd(dadd(dmul(m[3], xo), m4yo), m[5]);
  if (interp == kNearest) {
    int xi, yi;
    if (m[1] == 0.0 && m[3] == 0.0) {
      // Geometry.c, no rotation/shear: COORD(v) = v < 0 ? -1 : (int)v of the centre's coordinate.
      xi = xin < 0.0 ? -1 : sat_int(xin);
      yi = yin < 0.0 ? -1 : sat_int(yin);
    } else {
      // Geometry.c affine_fixed: 16.16 fixed-point coefficients, exact integer stepping, floor by >> 16.
      const int64_t a0 = fix16(m[0]), a1 = fix16(m[1]), a3 = fix16(m[3]), a4 = fix16(m[4]);
      const int64_t a2 = fix16(dadd(dadd(m[2], dmul(m[0], 0.5)), dmul(m[1], 0.5)));
      const int64_t a5 = fix16(dadd(dadd(m[5], dmul(m[3], 0.5)), dmul(m[4], 0.5)));
      xi = static_cast<int>((a2 + y * a1 + x * a0) >> 16);
      yi = static_cast<int>((a5 + y * a4 + x * a3) >> 16);
    }
    const bool inside = xi >= 0 && xi < W && yi >= 0 && yi < H;
    const int64_t si = inside ? static_cast<int64_t>(yi) * W + xi : 0;
ETRAIN_UNROLL
    for (int c = 0; c < NC; ++c) dst[c * plane + o] = inside ? src[c * plane + si] : fill[c];
    return;
  }
  if (!(xin >= 0.0 && xin < static_cast<double>(W) && yin >= 0.0 && yin < static_cast<double>(H))) {
ETRAIN_UNROLL
    for (int c = 0; c < NC; ++c) dst[c * plane + o] = fill[c];
    return;
  }
  xin = dadd(xin, -0.5);
  yin = dadd(yin, -0.5);
  const int xf = floor_int(xin), yf = floor_int(yin);
  const double dx = dadd(xin, -static_cast<double>(xf)), dy = dadd(yin, -static_cast<double>(yf));
  if (interp == kBilinear) {
    // Rows/columns outside the image are clamped to the edge (XCLIP/YCLIP, "v2 = v1").
    const int x0 = clampi(xf, 0, W - 1), x1 = clampi(xf + 1, 0, W - 1);
    const int64_t r0 = static_cast<int64_t>(clampi(yf, 0, H - 1)) * W;
    const int64_t r1 = static_cast<int64_t>(clampi(yf + 1, 0, H - 1)) * W;
    if (dy == 0.0) {
      // Shortcut, bit-identical: v1 + (v2 - v1) * 0 == v1 (shears along x and x translations hit this).
ETRAIN_UNROLL
      for (int c = 0; c < NC; ++c) {
        const uint8_t* s = src + c * plane;
        const double a0 = s[r0 + x0];
        dst[c * plane + o] = clip_trunc(dadd(a0, dmul(static_cast<double>(s[r0 + x1]) - a0, dx)));
      }
      return;
    }
ETRAIN_UNROLL
    for (int c = 0; c < NC; ++c) {
      const uint8_t* s = src + c * plane;
      const double a0 = s[r0 + x0], a1 = s[r1 + x0];
      const double v1 = dadd(a0, dmul(static_cast<double>(s[r0 + x1]) - a0, dx));
      const double v2 = dadd(a1, dmul(static_cast<double>(s[r1 + x1]) - a1, dx));
      dst[c * plane + o] = clip_trunc(dadd(v1, dmul(dadd(v2, -v1), dy)));
    }
    return;
  }
  // Bicubic (a = -1): v = p1 + d * (p2 + d * (p3 + d * p4)); all channels' rows interleaved for ILP.
  int xs[4];
  int64_t rs[4];
ETRAIN_UNROLL
  for (int k = 0; k < 4; ++k) {
    xs[k] = clampi(xf - 1 + k, 0, W - 1);
    rs[k] = static_cast<int64_t>(clampi(yf - 1 + k, 0, H - 1)) * W;
  }
  // Shortcuts, bit-identical to the full evaluation: cubic(v1, v2, v3, v4, 0) == v2 exactly (p1 + 0 * finite).
  // dy == 0 (x shears, x translations): only the second row is needed; dx == 0 (y shears, y translations):
  // each row's value is its second sample.
  if (dy == 0.0) {
ETRAIN_UNROLL
    for (int c = 0; c < NC; ++c) {
      const uint8_t* r = src + c * plane + rs[1];
      dst[c * plane + o] = clip_trunc(cubic(r[xs[0]], r[xs[1]], r[xs[2]], r[xs[3]], dx));
    }
    return;
  }
  if (dx == 0.0) {
ETRAIN_UNROLL
    for (int c = 0; c < NC; ++c) {
      const uint8_t* s = src + c * plane + xs[1];
      dst[c * plane + o] = clip_trunc(cubic(s[rs[0]], s[rs[1]], s[rs[2]], s[rs[3]], dy));
    }
    return;
  }
  double rows[NC][4];
ETRAIN_UNROLL
  for (int k = 0; k < 4; ++k) {
ETRAIN_UNROLL
    for (int c = 0; c < NC; ++c) {
      const uint8_t* r = src + c * plane + rs[k];
      rows[c][k] = cubic(r[xs[0]], r[xs[1]], r[xs[2]], r[xs[3]], dx);
    }
  }
ETRAIN_UNROLL
  for (int c = 0; c < NC; ++c) dst[c * plane + o] = clip_trunc(cubic(rows[c][0], rows[c][1], rows[c][2], rows[c][3], dy));
}

C10_HOST_DEVICE ETRAIN_FORCE_INLINE void affine_pixel(const uint8_t* src, uint8_t* dst, int C, int H, int W, int x, int y,
                                         const double* m, int64_t interp, const uint8_t* fill) {
  const double yo = static_cast<double>(y) + 0.5;
  const double mm[6] = {m[0], m[1], m[2], m[3], m[4], m[5]};
  if (C == 3) {
    affine_pixel_c<3>(src, dst, H, W, x, y, mm, dmul(mm[1], yo), dmul(mm[4], yo), interp, fill);
  } else {
    affine_pixel_c<1>(src, dst, H, W, x, y, mm, dmul(mm[1], yo), dmul(mm[4], yo), interp, fill);
  }
}

// ImageEnhance.Color: blend each channel with the pixel's luma (C = 3; C = 1 is the identity in PIL).
C10_HOST_DEVICE ETRAIN_FORCE_INLINE void color_pixel(const uint8_t* src, uint8_t* dst, int C, int64_t plane, int64_t o, float f) {
  if (C == 1) {
    dst[o] = src[o];
    return;
  }
  const int l = gray(src[o], src[plane + o], src[2 * plane + o]);
  for (int c = 0; c < C; ++c) dst[c * plane + o] = blend(l, src[c * plane + o], f);
}

// ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH ([[1,1,1],[1,5,1],[1,1,1]] / 13, rounded to nearest as
// Pillow's Filter.c does; verified bit-exact on photos); border pixels of the smoothed image are the input's.
C10_HOST_DEVICE ETRAIN_FORCE_INLINE void sharpness_pixel(const uint8_t* src, uint8_t* dst, int C, int H, int W, int x, int y,
                                            float f) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t o = static_cast<int64_t>(y) * W + x;
  const bool border = x == 0 || y == 0 || x == W - 1 || y == H - 1;
  for (int c = 0; c < C; ++c) {
    const uint8_t* s = src + c * plane;
    const int v = s[o];
    int d = v;
    if (!border) {
      const uint8_t* rp = s + o - W;  // row y - 1
      const uint8_t* rc = s + o;
      const uint8_t* rn = s + o + W;  // row y + 1
      const int sum = rp[-1] + rp[0] + rp[1] + rc[-1] + 5 * rc[0] + rc[1] + rn[-1] + rn[0] + rn[1];
      d = (sum + 6) / 13;  // round(sum / 13); sum / 13 is never exactly k + 0.5
    }
    dst[c * plane + o] = blend(d, v, f);
  }
}

// ---- GaussianBlur: ImageFilter.GaussianBlur(radius) = Pillow's ImagingGaussianBlur (BoxBlur.c) ----
//
// Pillow turns the Gaussian radius (parsed as a C float) into the radius of an "extended box" (integer part plus
// a fractional weight for the two far pixels), then runs 3 box-blur passes along every row and then 3 along
// every column (via a transpose), each pass in 8.24 fixed point with edge-pixel replication. A box radius of
// exactly 0 (Gaussian radius 0, or so small that radius^2 underflows in float) copies the image.
struct BoxBlur {
  int radius;   // integer part of the box radius
  uint32_t ww;  // weight of each of the 2 * radius + 1 inner pixels, (1 << 24) / (2 * box + 1)
  uint32_t fw;  // weight of each of the two far pixels (the fractional part)
  bool active;  // false: the image is copied unchanged
};

// _gaussian_blur_radius(radius, passes = 3): float arithmetic, except the box length L (double sqrt).
C10_HOST_DEVICE ETRAIN_FORCE_INLINE float gaussian_box_radius(float radius) {
  const float sigma2 = fdiv(fmul(radius, radius), 3.0f);
  const float L = static_cast<float>(dsqrt(dadd(dmul(12.0, static_cast<double>(sigma2)), 1.0)));
  const float l = static_cast<float>(floor(dadd(static_cast<double>(L), -1.0) / 2.0));
  const float l1 = fadd(l, 1.0f);
  float a = fmul(fadd(fmul(2.0f, l), 1.0f), fadd(fmul(l, l1), -fmul(3.0f, sigma2)));
  a = fdiv(a, fmul(6.0f, fadd(sigma2, -fmul(l1, l1))));
  return fadd(l, a);
}

// Whether a GaussianBlur radius is one the kernels run (NaN fails both comparisons).
C10_HOST_DEVICE ETRAIN_FORCE_INLINE bool blur_radius_ok(double radius) {
  return radius >= 0.0 && radius <= kMaxBlurRadius;
}

// The box of ImagingHorizontalBoxBlur for a Gaussian radius (params[0], converted to float as PyArg "f" does).
C10_HOST_DEVICE ETRAIN_FORCE_INLINE BoxBlur gaussian_blur_params(double radius) {
  BoxBlur b{0, 0, 0, false};
  if (!blur_radius_ok(radius)) return b;
  const float box = gaussian_box_radius(static_cast<float>(radius));
  if (box == 0.0f) return b;  // ImagingBoxBlur: xradius == 0 and yradius == 0 -> copy
  b.radius = static_cast<int>(box);
  b.ww = static_cast<uint32_t>(fdiv(16777216.0f, fadd(fmul(box, 2.0f), 1.0f)));
  b.fw = ((uint32_t{1} << 24) - static_cast<uint32_t>(b.radius * 2 + 1) * b.ww) / 2u;
  b.active = true;
  return b;
}

// Whether sample's op slot blurs (the CUDA pixel pass leaves those samples to the blur passes).
C10_HOST_DEVICE ETRAIN_FORCE_INLINE bool blur_active(int64_t op, const double* p) {
  return op == kGaussianBlur && gaussian_blur_params(p[0]).active;
}

// ImagingLineBoxBlur8: one box-blur pass over a line of n pixels, in[i * is] -> out[i * os] (must not overlap).
// Unsigned 32-bit arithmetic exactly as Pillow's (acc may wrap around transiently, as there). No __restrict__:
// on CUDA the passes read lines that the same kernel wrote, which must not go through the non-coherent
// read-only cache that restrict-qualified const pointers allow.
C10_HOST_DEVICE ETRAIN_FORCE_INLINE void box_blur_line(const uint8_t* in, int64_t is, uint8_t* out, int64_t os, int n,
                                                       const BoxBlur& b) {
  const int radius = b.radius, lastx = n - 1;
  const uint32_t ww = b.ww, fw = b.fw;
  const int edgeA = radius + 1 < n ? radius + 1 : n;
  const int edgeB = n - radius - 1 > 0 ? n - radius - 1 : 0;
#define ETRAIN_IN(i) static_cast<uint32_t>(in[static_cast<int64_t>(i) * is])
#define ETRAIN_STEP(x, sub, add, left, right)                                                 \
  {                                                                                           \
    acc += ETRAIN_IN(add) - ETRAIN_IN(sub);                                                   \
    const uint32_t bulk = acc * ww + (ETRAIN_IN(left) + ETRAIN_IN(right)) * fw;              \
    out[static_cast<int64_t>(x) * os] = static_cast<uint8_t>((bulk + (uint32_t{1} << 23)) >> 24); \
  }
  // acc of pixel -1: the first pixel radius + 1 times, then pixels 0 .. edgeA - 2, the last pixel for the rest.
  uint32_t acc = ETRAIN_IN(0) * static_cast<uint32_t>(radius + 1);
  for (int x = 0; x < edgeA - 1; ++x) acc += ETRAIN_IN(x);
  acc += ETRAIN_IN(lastx) * static_cast<uint32_t>(radius - edgeA + 1);
  if (edgeA <= edgeB) {
    for (int x = 0; x < edgeA; ++x) ETRAIN_STEP(x, 0, x + radius, 0, x + radius + 1)
    for (int x = edgeA; x < edgeB; ++x) ETRAIN_STEP(x, x - radius - 1, x + radius, x - radius - 1, x + radius + 1)
    for (int x = edgeB; x <= lastx; ++x) ETRAIN_STEP(x, x - radius - 1, lastx, x - radius - 1, lastx)
  } else {
    for (int x = 0; x < edgeB; ++x) ETRAIN_STEP(x, 0, x + radius, 0, x + radius + 1)
    for (int x = edgeB; x < edgeA; ++x) ETRAIN_STEP(x, 0, lastx, 0, lastx)
    for (int x = edgeA; x <= lastx; ++x) ETRAIN_STEP(x, x - radius - 1, lastx, x - radius - 1, lastx)
  }
#undef ETRAIN_STEP
#undef ETRAIN_IN
}

// The 3 passes of one line: in -> t1 -> t2 -> out (t1, t2: scratch; Pillow passes through a line buffer).
C10_HOST_DEVICE ETRAIN_FORCE_INLINE void box_blur_line3(const uint8_t* in, int64_t is, uint8_t* t1, int64_t s1,
                                                        uint8_t* t2, int64_t s2, uint8_t* out, int64_t os, int n,
                                                        const BoxBlur& b) {
  box_blur_line(in, is, t1, s1, n, b);
  box_blur_line(t1, s1, t2, s2, n, b);
  box_blur_line(t2, s2, out, os, n, b);
}

// GaussianBlur of one sample [C, H, W] as two sweeps of independent lines, the work of one CUDA thread each (the
// CPU kernel runs the same functions in loops): first every row r of the C * H rows (src -> tmp -> dst -> tmp),
// then every column k of the C * W columns (tmp -> dst -> tmp -> dst). src, dst and tmp are distinct images; a
// line's passes touch only that line of dst and tmp, so all rows (then all columns) can run concurrently.
C10_HOST_DEVICE ETRAIN_FORCE_INLINE void blur_row(const uint8_t* src, uint8_t* dst, uint8_t* tmp, int64_t r, int W,
                                                  const BoxBlur& b) {
  const int64_t o = r * W;
  box_blur_line3(src + o, 1, tmp + o, 1, dst + o, 1, tmp + o, 1, W, b);
}
C10_HOST_DEVICE ETRAIN_FORCE_INLINE void blur_col(uint8_t* dst, uint8_t* tmp, int64_t k, int H, int W,
                                                  const BoxBlur& b) {
  const int64_t c = k / W, col = k % W;
  const int64_t o = c * static_cast<int64_t>(H) * W + col;
  box_blur_line3(tmp + o, W, dst + o, W, tmp + o, W, dst + o, W, H, b);
}

}  // namespace etrain::augment::detail
