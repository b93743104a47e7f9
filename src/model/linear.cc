#include "model/linear.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "core/status.h"

namespace qf {

DenseLinear::DenseLinear(const TensorView& weight, const TensorView* bias)
    : n_in_(weight.cols()), n_out_(weight.rows()), w_(weight.to_f32()) {
  if (bias && bias->valid()) {
    QF_CHECK(bias->numel() == n_out_, "bias '{}' has {} values for {} outputs", bias->name, bias->numel(), n_out_);
    b_ = bias->to_f32();
  }
}

// Threads split the output columns; each calls single-threaded BLAS on its slice (BLAS's own
// thread pool is switched off so it never competes with OpenMP's for the cores).
void DenseLinear::forward(const float* x, float* y, int64_t tokens) const {
  // One slice per thread (BLAS packs x once per call), rounded to a multiple of 16 rows.
  const int64_t threads = omp_get_max_threads();
  const int64_t slice = std::max<int64_t>(16, (n_out_ / threads + 15) / 16 * 16);
  const int64_t n_slices = (n_out_ + slice - 1) / slice;
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < n_slices; ++s) {
    const int64_t o0 = s * slice, no = std::min(slice, n_out_ - o0);
    const float* w = w_.data() + o0 * n_in_;
    if (tokens == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, int(no), int(n_in_), 1.0f, w, int(n_in_), x, 1, 0.0f, y + o0, 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(no), int(n_in_), 1.0f, x,
                  int(n_in_), w, int(n_in_), 0.0f, y + o0, int(n_out_));
    }
    if (!b_.empty())
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t o = o0; o < o0 + no; ++o) y[t * n_out_ + o] += b_[size_t(o)];
  }
}

}  // namespace qf
