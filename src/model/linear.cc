#include "model/linear.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/status.h"
#include "kernels/cpu/widen.h"

namespace qf {

TiledLinear::TiledLinear(int64_t n_out, int64_t n_in, const TensorView& bias) : n_out_(n_out), n_in_(n_in) {
  if (bias.valid()) {
    QF_CHECK(bias.numel() == n_out_, "bias '{}' has {} values for {} outputs", bias.name, bias.numel(), n_out_);
    b_ = bias.to_f32();
  }
}

void TiledLinear::forward(const float* x, float* y, int64_t tokens) const {
  const int64_t threads = omp_get_max_threads();
  const float* f32 = f32_weights();
  // fp32 in place: one slice per thread, so BLAS packs x once per thread. Otherwise tiles of
  // decoded rows small enough to stay in cache (≤ 1 Mi floats), a multiple of 16 rows.
  int64_t tile = (n_out_ / threads + 15) / 16 * 16;
  if (!f32) tile = std::min(tile, std::max<int64_t>(16, (int64_t(1) << 20) / n_in_ / 16 * 16));
  tile = std::max<int64_t>(16, tile);
  const int64_t n_tiles = (n_out_ + tile - 1) / tile;
#pragma omp parallel
  {
    static thread_local std::vector<float> buffer;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tiles; ++t) {
      const int64_t o0 = t * tile, rows = std::min(tile, n_out_ - o0);
      const float* w = f32 ? f32 + o0 * n_in_ : nullptr;
      if (!w) {
        buffer.resize(size_t(tile * n_in_));
        decode_rows(o0, rows, buffer.data());
        w = buffer.data();
      }
      // y[:, o0 : o0 + rows] = x (tokens, n_in) · w (rows, n_in)ᵀ
      if (tokens == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, int(rows), int(n_in_), 1.0f, w, int(n_in_), x, 1, 0.0f, y + o0, 1);
      else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(rows), int(n_in_), 1.0f, x,
                    int(n_in_), w, int(n_in_), 0.0f, y + o0, int(n_out_));
      if (!b_.empty())
        for (int64_t i = 0; i < tokens; ++i)
          for (int64_t o = o0; o < o0 + rows; ++o) y[i * n_out_ + o] += b_[size_t(o)];
    }
  }
}

StoredLinear::StoredLinear(const TensorView& weight, const TensorView& bias)
    : TiledLinear(weight.rows(), weight.cols(), bias), w_(weight), row_bytes_(qtype_row_bytes(weight.type, weight.cols())) {
  if (w_.type == QType::F32) {
    if (reinterpret_cast<uintptr_t>(w_.data) % alignof(float) == 0) {
      f32_ = reinterpret_cast<const float*>(w_.data);
    } else {
      owned_ = w_.to_f32();
      f32_ = owned_.data();
    }
  }
}

void StoredLinear::decode_rows(int64_t r0, int64_t rows, float* dst) const {
  widen_to_f32(w_.type, w_.data + r0 * row_bytes_, dst, rows * n_in());
}

IntLinear::IntLinear(const IntQuantized& q, const TensorView& bias) : TiledLinear(q.n_out, q.n_in, bias), q_(q) {}

int64_t IntLinear::weight_bytes() const {
  // As stored in a packed checkpoint: bits per code, fp16 scale and packed zero per group.
  const int64_t groups = q_.n_out() * q_.n_groups();
  return (q_.n_out() * q_.n_in() * q_.bits() + groups * (16 + q_.bits())) / 8 + bias_bytes();
}

Int8Linear::Int8Linear(Int8Rowwise q, float threshold, const TensorView& bias) : q_(std::move(q)), threshold_(threshold) {
  if (bias.valid()) {
    QF_CHECK(bias.numel() == q_.n_out, "bias '{}' has {} values for {} outputs", bias.name, bias.numel(), q_.n_out);
    b_ = bias.to_f32();
  }
}

void Int8Linear::forward(const float* x, float* y, int64_t tokens) const {
  const int64_t n_in = q_.n_in, n_out = q_.n_out;
  std::vector<int64_t> outliers;  // columns with some |x| ≥ threshold in this call's activations
  if (threshold_ > 0) {
    std::vector<uint8_t> is_outlier(size_t(n_in), 0);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t i = 0; i < n_in; ++i) is_outlier[size_t(i)] |= uint8_t(std::fabs(x[t * n_in + i]) >= threshold_);
    for (int64_t i = 0; i < n_in; ++i)
      if (is_outlier[size_t(i)]) outliers.push_back(i);
  }
  // Per-token int8 activations of the other columns, held as doubles: integer products summed
  // in double are exact (|sum| < 127² · n_in ≪ 2^53), so dgemm gives the int32 accumulation.
  std::vector<double> xq(size_t(tokens * n_in));
  std::vector<float> sx(static_cast<size_t>(tokens));
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(n_in));
    std::vector<int8_t> q(static_cast<size_t>(n_in));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tokens; ++t) {
      std::copy(x + t * n_in, x + (t + 1) * n_in, row.begin());
      for (int64_t c : outliers) row[size_t(c)] = 0;
      sx[size_t(t)] = quantize_row_absmax_int8(row.data(), n_in, q.data());
      for (int64_t i = 0; i < n_in; ++i) xq[size_t(t * n_in + i)] = q[size_t(i)];
    }
  }
  const int64_t tile = std::max<int64_t>(16, (int64_t(1) << 19) / n_in / 16 * 16);
  const int64_t n_tiles = (n_out + tile - 1) / tile;
#pragma omp parallel
  {
    std::vector<double> w(size_t(tile * n_in)), acc(size_t(tokens * tile));
#pragma omp for schedule(static)
    for (int64_t k = 0; k < n_tiles; ++k) {
      const int64_t o0 = k * tile, rows = std::min(tile, n_out - o0);
      for (int64_t i = 0; i < rows * n_in; ++i) w[size_t(i)] = q_.codes[size_t(o0 * n_in + i)];
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(rows), int(n_in), 1.0, xq.data(),
                  int(n_in), w.data(), int(n_in), 0.0, acc.data(), int(rows));
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t o = o0 + r;
          const float scb = q_.scb[size_t(o)];
          float v = float(acc[size_t(t * rows + r)]) * (sx[size_t(t)] * scb / (127.0f * 127.0f));
          for (int64_t c : outliers) v += x[t * n_in + c] * (float(q_.codes[size_t(o * n_in + c)]) * scb / 127.0f);
          y[t * n_out + o] = v + (b_.empty() ? 0.0f : b_[size_t(o)]);
        }
    }
  }
}

}  // namespace qf
