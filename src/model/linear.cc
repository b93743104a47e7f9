#include "model/linear.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "core/status.h"
#include "kernels/cpu/widen.h"

namespace qf {

StoredLinear::StoredLinear(const TensorView& weight, const TensorView& bias)
    : w_(weight), n_in_(weight.cols()), n_out_(weight.rows()), row_bytes_(qtype_row_bytes(weight.type, n_in_)) {
  if (w_.type == QType::F32) {
    if (reinterpret_cast<uintptr_t>(w_.data) % alignof(float) == 0) {
      f32_ = reinterpret_cast<const float*>(w_.data);
    } else {
      owned_ = w_.to_f32();
      f32_ = owned_.data();
    }
  }
  if (bias.valid()) {
    QF_CHECK(bias.numel() == n_out_, "bias '{}' has {} values for {} outputs", bias.name, bias.numel(), n_out_);
    b_ = bias.to_f32();
  }
}

// y[:, 0:rows] (row stride n_out) = x (tokens, n_in) · w (rows, n_in)ᵀ
void StoredLinear::multiply(const float* x, const float* w, float* y, int64_t tokens, int64_t rows) const {
  if (tokens == 1)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, int(rows), int(n_in_), 1.0f, w, int(n_in_), x, 1, 0.0f, y, 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(rows), int(n_in_), 1.0f, x, int(n_in_),
                w, int(n_in_), 0.0f, y, int(n_out_));
}

void StoredLinear::forward(const float* x, float* y, int64_t tokens) const {
  const int64_t threads = omp_get_max_threads();
  // fp32 in place: one slice per thread, so BLAS packs x once per thread. Otherwise tiles of
  // widened rows small enough to stay in cache (≤ 1 Mi floats), a multiple of 16 rows.
  int64_t tile = (n_out_ / threads + 15) / 16 * 16;
  if (!f32_) tile = std::min(tile, std::max<int64_t>(16, (int64_t(1) << 20) / n_in_ / 16 * 16));
  tile = std::max<int64_t>(16, tile);
  const int64_t n_tiles = (n_out_ + tile - 1) / tile;
#pragma omp parallel
  {
    static thread_local std::vector<float> buffer;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tiles; ++t) {
      const int64_t o0 = t * tile, rows = std::min(tile, n_out_ - o0);
      const float* w = f32_ ? f32_ + o0 * n_in_ : nullptr;
      if (!w) {
        buffer.resize(size_t(tile * n_in_));
        widen_to_f32(w_.type, w_.data + o0 * row_bytes_, buffer.data(), rows * n_in_);
        w = buffer.data();
      }
      multiply(x, w, y + o0, tokens, rows);
      if (!b_.empty())
        for (int64_t i = 0; i < tokens; ++i)
          for (int64_t o = o0; o < o0 + rows; ++o) y[i * n_out_ + o] += b_[size_t(o)];
    }
  }
}

}  // namespace qf
