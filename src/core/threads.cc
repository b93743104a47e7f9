#include "core/threads.h"

#include <omp.h>

#include <mutex>

extern "C" void openblas_set_num_threads(int);

namespace qf {

void init_blas_threads() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void set_num_threads(int n) {
  init_blas_threads();
  omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace qf
