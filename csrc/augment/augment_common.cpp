// Device-independent part of the augment ops: argument checks.
#include <string>

#include "augment/augment.h"
#include "common/error_format.h"

namespace etrain::augment {

using etrain::dims;

namespace {

std::string dtype_name(const at::Tensor& t) { return std::string(c10::toString(t.scalar_type())); }

std::string device_name(const at::Tensor& t) { return t.device().str(); }

}  // namespace

int64_t check_args(const at::Tensor& x, const at::Tensor& op, const at::Tensor& params, const at::Tensor& interp,
                   const at::Tensor& fill, at::OptionalIntArrayRef present, bool chain) {
  const std::string pre = chain ? "augment_chain: " : "augment_slot: ";
  TORCH_CHECK_VALUE(x.dim() == 4, pre + "expected an image batch of shape [N, C, H, W], got shape " + dims(x.sizes()));
  TORCH_CHECK_VALUE(x.scalar_type() == at::kByte, pre + "expected a uint8 batch, got dtype " + dtype_name(x));
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(C == 1 || C == 3, pre + "expected 1 or 3 channels, got shape " + dims(x.sizes()));
  TORCH_CHECK_VALUE(H < (int64_t{1} << 30) && W < (int64_t{1} << 30),
                    pre + "image side too large, got shape " + dims(x.sizes()));
  int64_t L = 1;
  if (chain) {
    TORCH_CHECK_VALUE(op.dim() == 2, pre + "op must have shape [N, L], got " + dims(op.sizes()));
    L = op.size(1);
  }
  struct Spec {
    const at::Tensor* t;
    const char* name;
    at::ScalarType dtype;
    std::vector<int64_t> shape;
  };
  const Spec specs[] = {
      {&op, "op", at::kLong, chain ? std::vector<int64_t>{N, L} : std::vector<int64_t>{N}},
      {&params, "params", at::kDouble,
       chain ? std::vector<int64_t>{N, L, kNumParams} : std::vector<int64_t>{N, kNumParams}},
      {&interp, "interp", at::kLong, chain ? std::vector<int64_t>{N, L} : std::vector<int64_t>{N}},
      {&fill, "fill", at::kByte, {N, C}}};
  for (const auto& s : specs) {
    TORCH_CHECK_VALUE(s.t->scalar_type() == s.dtype, pre + s.name + " must have dtype " +
                                                         std::string(c10::toString(s.dtype)) + ", got " +
                                                         dtype_name(*s.t));
    TORCH_CHECK_VALUE(s.t->sizes().vec() == s.shape,
                      pre + s.name + " must have shape " + dims(s.shape) + ", got " + dims(s.t->sizes()));
    TORCH_CHECK_VALUE(s.t->device() == x.device(), pre + s.name + " must be on the batch's device " +
                                                       device_name(x) + ", got " + device_name(*s.t));
  }
  if (present.has_value()) {
    const auto masks = *present;
    TORCH_CHECK_VALUE(static_cast<int64_t>(masks.size()) == L, pre + "present must have one op-code bitmask per slot (" +
                                                                    std::to_string(L) + "), got " +
                                                                    std::to_string(masks.size()));
    for (const int64_t m : masks) {
      TORCH_CHECK_VALUE(m >= 0 && m <= kAllOps, pre + "present masks must be in [0, " + std::to_string(kAllOps) +
                                                    "] (bit k = op code k), got " + std::to_string(m));
    }
  }
  return L;
}

}  // namespace etrain::augment
