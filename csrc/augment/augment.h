// Batched, per-sample RandAugment ops on uint8 images [N, C, H, W] (C = 1 or 3), PIL/timm semantics.
//
// One call of `augment_slot` applies one "op slot" to a whole batch: sample n gets op[n] with its own
// parameters params[n, 0..5], interpolation interp[n] and fill colour fill[n, :]. CPU: at::parallel_for over
// samples. CUDA: up to five launches per slot (histograms, per-sample LUTs, one pass over the pixels, and the
// GaussianBlur row and column passes); `present` (optional, one op-code bitmask per slot) lets the launcher skip
// the ones no sample of the slot needs.
#pragma once

#include <ATen/ATen.h>

namespace etrain::augment {

// Op codes (the Python side, efficienttrain_ext/augment/functional.py, mirrors them).
enum OpCode : int64_t {
  kIdentity = 0,
  kAffine = 1,        // params[0..5] = PIL's inverse affine matrix (a, b, c, d, e, f): output -> input coords
  kInvert = 2,        //
  kPosterize = 3,     // params[0] = bits to keep, 1..8
  kSolarize = 4,      // params[0] = threshold (values >= threshold are inverted)
  kSolarizeAdd = 5,   // params[0] = add, params[1] = threshold
  kBrightness = 6,    // params[0] = factor
  kContrast = 7,      // params[0] = factor
  kColor = 8,         // params[0] = factor
  kSharpness = 9,     // params[0] = factor
  kAutoContrast = 10, //
  kEqualize = 11,     //
  kGaussianBlur = 12, // params[0] = radius (ImageFilter.GaussianBlur: 3 box-blur passes per direction, Pillow's
                      // BoxBlur.c); must be in [0, kMaxBlurRadius]
  kNumOps = 13
};

// Largest GaussianBlur radius the kernels accept (keeps Pillow's int/uint32 arithmetic free of overflow UB).
// The CPU kernel rejects radii outside [0, kMaxBlurRadius] (and NaN) with a ValueError; the CUDA kernel leaves
// such samples unchanged (checking would need a device sync; the Python front end validates).
constexpr double kMaxBlurRadius = 1.0e6;

enum Interp : int64_t { kNearest = 0, kBilinear = 1, kBicubic = 2 };

constexpr int64_t kNumParams = 6;

// present[l]: bit k set when some sample of slot l may have op code k. Any superset of the codes used is valid
// (all bits = no skipping). The CPU kernels check that it covers every code; CUDA cannot without a device sync: there
// an op that the mask leaves out gives its own result or, where its pass was skipped, the identity (it never reads
// a scratch buffer that was not allocated).
constexpr int64_t kAllOps = (int64_t{1} << kNumOps) - 1;
constexpr int64_t op_bit(int64_t op) { return int64_t{1} << op; }

// Validates x [N, C, H, W] uint8 (C 1|3), fill uint8 [N, C] and, for a slot (chain = false), op int64 [N],
// params float64 [N, 6], interp int64 [N]; for a chain of L slots, op [N, L], params [N, L, 6], interp [N, L].
// All on x's device; present, when given, has L masks in [0, kAllOps]. Returns L (1 for a slot). Throws ValueError
// (c10::ValueError) naming the problem. The code ranges are checked by the CPU kernels (on CUDA that would need a
// device sync; the Python front end checks them).
int64_t check_args(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params, const at::Tensor& interp,
                   const at::Tensor& fill, at::OptionalIntArrayRef present, bool chain);

// One op slot: sample n gets op[n].
at::Tensor augment_slot_cpu(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params,
                            const at::Tensor& interp, const at::Tensor& fill, at::OptionalIntArrayRef present);
// L slots in sequence (RandAugment's n ops per image): sample n gets op[n, 0], then op[n, 1], ... On the CPU each
// sample runs its chain in one go (ping-pong between the output and a scratch image, identity slots skipped).
at::Tensor augment_chain_cpu(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params,
                             const at::Tensor& interp, const at::Tensor& fill, at::OptionalIntArrayRef present);
#ifdef ETRAIN_WITH_CUDA
at::Tensor augment_slot_cuda(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params,
                             const at::Tensor& interp, const at::Tensor& fill, at::OptionalIntArrayRef present);
// On CUDA: one slot after the other (up to 5 launches each; slots whose mask is identity-only cost nothing).
at::Tensor augment_chain_cuda(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params,
                              const at::Tensor& interp, const at::Tensor& fill, at::OptionalIntArrayRef present);
#endif

}  // namespace etrain::augment
