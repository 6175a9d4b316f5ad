// The one place where the etrain operator library is defined and its kernels are registered.
// ETRAIN_NO_PYTHON (set by the CMake build) leaves out the Python module init, for libtorch-only C++ users.
#ifndef ETRAIN_NO_PYTHON
#include <Python.h>
#endif

#include <torch/library.h>

#include "augment/augment.h"
#include "lowfreq/lowfreq.h"

#ifndef ETRAIN_NO_PYTHON
extern "C" {
// `import efficienttrain_ext._C` loads this shared library, whose static initialisers register the ops.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
#endif

namespace etrain {

bool built_with_cuda() {
#ifdef ETRAIN_WITH_CUDA
  return true;
#else
  return false;
#endif
}

#ifndef ETRAIN_WITH_CUDA
[[noreturn]] void fail_no_cuda() {
  TORCH_CHECK(false,
              "efficienttrain_ext was built without CUDA kernels, so this op cannot run on a CUDA tensor; rebuild "
              "with a CUDA toolkit present (or FORCE_CUDA=1), or move the tensor to the CPU");
  std::abort();  // unreachable: TORCH_CHECK(false) throws
}

// Registered for CUDA in a CPU-only build, with each op family's signature.
at::Tensor no_cuda(const at::Tensor&, at::IntArrayRef) { fail_no_cuda(); }
at::Tensor no_cuda_augment(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, at::OptionalIntArrayRef) {
  fail_no_cuda();
}
#endif

TORCH_LIBRARY(etrain, m) {
  m.def("lowfreq_crop(Tensor x, SymInt[2] size) -> Tensor");
  m.def("lowfreq_pad(Tensor y, SymInt[2] size) -> Tensor");
  // The GEMM form of the two ops under their own names: on CUDA, Python may replace the kernels above with the
  // Triton backend (efficienttrain_ext/ops/lowfreq.py) and reaches the cuBLAS form through these.
  m.def("lowfreq_crop_gemm(Tensor x, SymInt[2] size) -> Tensor");
  m.def("lowfreq_pad_gemm(Tensor y, SymInt[2] size) -> Tensor");
  m.def("built_with_cuda() -> bool", &built_with_cuda);
  // One RandAugment op slot over a uint8 batch, every sample with its own op/params (see augment/augment.h).
  // present: optional op-code bitmask per slot, so that CUDA skips the passes no sample needs.
  m.def("augment_slot(Tensor x, Tensor op, Tensor params, Tensor interp, Tensor fill, int[]? present=None) -> Tensor");
  // L slots in sequence (op [N, L], params [N, L, 6], interp [N, L]): one call per RandAugment batch.
  m.def("augment_chain(Tensor x, Tensor op, Tensor params, Tensor interp, Tensor fill, int[]? present=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(etrain, CPU, m) {
  m.impl("lowfreq_crop", &lowfreq::lowfreq_crop_cpu);
  m.impl("lowfreq_pad", &lowfreq::lowfreq_pad_cpu);
  m.impl("lowfreq_crop_gemm", &lowfreq::lowfreq_crop_gemm_cpu);
  m.impl("lowfreq_pad_gemm", &lowfreq::lowfreq_pad_gemm_cpu);
  m.impl("augment_slot", &augment::augment_slot_cpu);
  m.impl("augment_chain", &augment::augment_chain_cpu);
}

TORCH_LIBRARY_IMPL(etrain, CUDA, m) {
#ifdef ETRAIN_WITH_CUDA
  m.impl("lowfreq_crop", &lowfreq::lowfreq_crop_cuda);
  m.impl("lowfreq_pad", &lowfreq::lowfreq_pad_cuda);
  m.impl("lowfreq_crop_gemm", &lowfreq::lowfreq_crop_cuda);
  m.impl("lowfreq_pad_gemm", &lowfreq::lowfreq_pad_cuda);
  m.impl("augment_slot", &augment::augment_slot_cuda);
  m.impl("augment_chain", &augment::augment_chain_cuda);
#else
  m.impl("lowfreq_crop", &no_cuda);
  m.impl("lowfreq_pad", &no_cuda);
  m.impl("lowfreq_crop_gemm", &no_cuda);
  m.impl("lowfreq_pad_gemm", &no_cuda);
  m.impl("augment_slot", &no_cuda_augment);
  m.impl("augment_chain", &no_cuda_augment);
#endif
}

}  // namespace etrain
