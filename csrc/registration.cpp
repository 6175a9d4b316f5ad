// The one place where the etrain operator library is defined and its kernels are registered.
// ETRAIN_NO_PYTHON (set by the CMake build) leaves out the Python module init, for libtorch-only C++ users.
#ifndef ETRAIN_NO_PYTHON
#include <Python.h>
#endif

#include <torch/library.h>

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
at::Tensor no_cuda(const at::Tensor&, at::IntArrayRef) {
  TORCH_CHECK(false,
              "efficienttrain_ext was built without CUDA kernels, so this op cannot run on a CUDA tensor; rebuild "
              "with a CUDA toolkit present (or FORCE_CUDA=1), or move the tensor to the CPU");
}
#endif

TORCH_LIBRARY(etrain, m) {
  m.def("lowfreq_crop(Tensor x, SymInt[2] size) -> Tensor");
  m.def("lowfreq_pad(Tensor y, SymInt[2] size) -> Tensor");
  m.def("built_with_cuda() -> bool", &built_with_cuda);
}

TORCH_LIBRARY_IMPL(etrain, CPU, m) {
  m.impl("lowfreq_crop", &lowfreq::lowfreq_crop_cpu);
  m.impl("lowfreq_pad", &lowfreq::lowfreq_pad_cpu);
}

TORCH_LIBRARY_IMPL(etrain, CUDA, m) {
#ifdef ETRAIN_WITH_CUDA
  m.impl("lowfreq_crop", &lowfreq::lowfreq_crop_cuda);
  m.impl("lowfreq_pad", &lowfreq::lowfreq_pad_cuda);
#else
  m.impl("lowfreq_crop", &no_cuda);
  m.impl("lowfreq_pad", &no_cuda);
#endif
}

}  // namespace etrain
