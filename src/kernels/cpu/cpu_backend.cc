// kernels/cpu/cpu_backend.cc — the CPU implementation of kernels/backend.h: OpenMP threads,
// OpenBLAS sgemm for attention and Gram matrices, Highway SIMD for exp and SiLU.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/backend.h"
#include "kernels/cpu/activations.h"

namespace qf {
namespace {

// A per-thread buffer that lives across calls: attention scores cost no allocation per block.
float* scores_buffer(int64_t n) {
  static thread_local std::vector<float> b;
  if (int64_t(b.size()) < n) b.resize(size_t(n));
  return b.data();
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  void rms_norm(const float* x, const float* w, float* y, int n, int dim, float eps) const override {
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; ++t) {
      const float* xr = x + int64_t(t) * dim;
      float* yr = y + int64_t(t) * dim;
      double ss = 0;
      for (int i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
      const float inv = 1.0f / std::sqrt(float(ss / dim) + eps);
      for (int i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * inv);
    }
  }

  void rope(float* x, int n, int n_heads, int hd, bool inter, const float* cs) const override {
    const int half = hd / 2;
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; ++t)
      for (int h = 0; h < n_heads; ++h) {
        float* v = x + (int64_t(t) * n_heads + h) * hd;
        for (int i = 0; i < half; ++i) {
          const float c = cs[2 * (t * half + i)], s = cs[2 * (t * half + i) + 1];
          const int a = inter ? 2 * i : i, b = inter ? 2 * i + 1 : i + half;
          const float x0 = v[a], x1 = v[b];
          v[a] = x0 * c - x1 * s;
          v[b] = x1 * c + x0 * s;
        }
      }
  }

  void attention(const AttentionArgs& a) const override {
    const int hd = a.head_dim, qd = a.n_head * hd, kvd = a.n_head_kv * hd, p = a.n_past;
    const int group = a.n_head / a.n_head_kv;
    const float scale = 1.0f / std::sqrt(float(hd));
    // Causal: a block of queries [t0, t1) sees keys [0, p + t1) at most, so only those are
    // multiplied. Tasks are (head, query block) pairs.
    const int qblock = 64, n_blocks = (a.n + qblock - 1) / qblock;
#pragma omp parallel for schedule(dynamic)
    for (int task = 0; task < a.n_head * n_blocks; ++task) {
      const int h = task / n_blocks, g = h / group, t0 = task % n_blocks * qblock,
                rows = std::min(qblock, a.n - t0);
      const int keys = p + t0 + rows;
      float* scores = scores_buffer(int64_t(rows) * keys);
      // scores (rows, keys) = Q_h[t0 : t0 + rows] (rows, hd) · K_g[0 : keys] (keys, hd)ᵀ · scale
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, hd, scale,
                  a.q + int64_t(t0) * qd + h * hd, qd, a.k + g * hd, kvd, 0.0f, scores, keys);
      for (int r = 0; r < rows; ++r) {  // causal softmax: query t0 + r sees positions first .. p + t0 + r
        float* row = scores + int64_t(r) * keys;
        const int visible = p + t0 + r + 1;
        const int first = a.sliding_window > 0 ? std::max(0, visible - a.sliding_window) : 0;
        float mx = -std::numeric_limits<float>::infinity();
        for (int j = first; j < visible; ++j) mx = std::max(mx, row[j]);
        const float inv = float(1.0 / exp_shifted(row + first, visible - first, mx));
        for (int j = 0; j < first; ++j) row[j] = 0.0f;
        for (int j = first; j < visible; ++j) row[j] *= inv;
        for (int j = visible; j < keys; ++j) row[j] = 0.0f;
      }
      // out_h[t0 : t0 + rows] (rows, hd) = P (rows, keys) · V_g[0 : keys] (keys, hd)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, keys, 1.0f, scores, keys, a.v + g * hd,
                  kvd, 0.0f, a.out + int64_t(t0) * qd + h * hd, qd);
    }
  }

  void silu_mul(float* gate, const float* up, int64_t n) const override {
    const int64_t chunk = 4096;  // threads over chunks
#pragma omp parallel for schedule(static) if (n > chunk)
    for (int64_t i = 0; i < n; i += chunk) qf::silu_mul(gate + i, up + i, std::min(chunk, n - i));
  }

  void add(float* x, const float* y, int64_t n) const override {
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
  }

  // The Gram matrix in fp32 per call, column blocks in parallel, accumulated in double.
  void add_gram(const float* x, int n, int d, std::vector<double>& H,
                std::vector<float>& scratch) const override {
    scratch.resize(size_t(d) * size_t(d));
#pragma omp parallel for schedule(dynamic)
    for (int j0 = 0; j0 < d; j0 += 64)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, std::min(64, d - j0), n, 1.0f, x, d, x + j0, d,
                  0.0f, scratch.data() + j0, d);
    for (size_t i = 0; i < H.size(); ++i) H[i] += scratch[i];
  }
};

}  // namespace

const Backend& cpu_backend() {
  static const CpuBackend backend;
  return backend;
}

}  // namespace qf
