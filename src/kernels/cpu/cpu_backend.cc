// kernels/cpu/cpu_backend.cc — the CPU implementation of kernels/backend.h: OpenMP threads,
// OpenBLAS sgemm for attention and Gram matrices, LAPACK for Cholesky, Highway SIMD for exp and
// SiLU. Its memory is the host's.
#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/half.h"
#include "core/status.h"
#include "formats/int_grid.h"
#include "kernels/backend.h"
#include "kernels/cpu/activations.h"
#include "kernels/cpu/widen.h"

namespace qf {
namespace {

// A per-thread buffer that lives across calls: attention scores cost no allocation per block.
float* scores_buffer(int64_t n) {
  static thread_local std::vector<float> b;
  if (int64_t(b.size()) < n) b.resize(size_t(n));
  return b.data();
}

double log_sum_exp(const float* l, int n) {
  float mx = *std::max_element(l, l + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(double(l[i]) - mx);
  return std::log(sum) + mx;
}

// One scored position: model logits q, base logits b (may be null), target token.
PositionStats score_position(const float* q, const float* b, int vocab, int32_t target) {
  PositionStats s;
  const double lse_q = log_sum_exp(q, vocab);
  s.nll = lse_q - q[target];
  if (!b) return s;
  const double lse_b = log_sum_exp(b, vocab);
  s.base_nll = lse_b - b[target];
  for (int v = 0; v < vocab; ++v) {
    const double lb = b[v] - lse_b, lq = q[v] - lse_q;
    s.kld += std::exp(lb) * (lb - lq);
  }
  s.agree = std::max_element(q, q + vocab) - q == std::max_element(b, b + vocab) - b;
  return s;
}

// The Gram matrix in fp32 per call, column blocks in parallel, accumulated in double.
class CpuGram final : public GramAccumulator {
 public:
  CpuGram(const Backend& be, int d) : be_(be), d_(d), scratch_(size_t(d) * size_t(d)) {}
  void add(const float* x, int n) override {
    const int d = d_;
#pragma omp parallel for schedule(dynamic)
    for (int j0 = 0; j0 < d; j0 += 64)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, std::min(64, d - j0), n, 1.0f, x, d, x + j0, d,
                  0.0f, scratch_.data() + j0, d);
    double* h = sum().data();
    for (size_t i = 0; i < scratch_.size(); ++i) h[i] += scratch_[i];
  }
  Buffer<double> take(double scale) override {
    Buffer<double> h = std::move(sum());
    for (int64_t i = 0; i < h.size(); ++i) h.data()[i] *= scale;
    return h;
  }

 private:
  Buffer<double>& sum() {  // allocated (zero) at the first use after a take
    if (!H_.size()) {
      H_ = Buffer<double>(be_, int64_t(scratch_.size()));
      std::fill_n(H_.data(), H_.size(), 0.0);
    }
    return H_;
  }
  const Backend& be_;
  int d_;
  Buffer<double> H_;
  std::vector<float> scratch_;
};

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  bool on_device() const override { return false; }

  void* alloc(int64_t bytes) const override {
    void* p = std::aligned_alloc(64, size_t((std::max<int64_t>(bytes, 1) + 63) / 64 * 64));
    QF_CHECK(p, "out of memory allocating {} bytes", bytes);
    return p;
  }
  void release(void* p) const override { std::free(p); }
  void to_device(void* dst, const void* host, int64_t bytes) const override {
    std::memcpy(dst, host, size_t(bytes));
  }
  void to_host(void* host, const void* src, int64_t bytes) const override {
    std::memcpy(host, src, size_t(bytes));
  }
  void copy(void* dst, const void* src, int64_t bytes) const override {
    std::memmove(dst, src, size_t(bytes));
  }
  void copy_2d(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width, int64_t rows,
               Copy) const override {
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch,
                  size_t(width));
  }
  float* scratch(int slot, int64_t n) const override {
    static thread_local std::vector<float> buffers[kScratchSlots];
    QF_CHECK(slot >= 0 && slot < kScratchSlots, "scratch slot {} out of range", slot);
    std::vector<float>& b = buffers[slot];
    if (int64_t(b.size()) < n) b.resize(size_t(n));
    return b.data();
  }

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

  void linear(const float* x, const float* w, const float* bias, float* y, int64_t tokens, int64_t n_in,
              int64_t n_out) const override {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(n_out), int(n_in), 1.0f, x,
                int(n_in), w, int(n_in), 0.0f, y, int(n_out));
    if (bias)
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t o = 0; o < n_out; ++o) y[t * n_out + o] += bias[o];
  }

  // The reference for a device's bf16 path (the CPU keeps fp32 weights).
  void linear_bf16(const float* x, const uint16_t* w, const float* bias, float* y, int64_t tokens,
                   int64_t n_in, int64_t n_out) const override {
    std::vector<float> xr(size_t(tokens * n_in)), wf(size_t(n_out * n_in));
    for (size_t i = 0; i < xr.size(); ++i) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
    for (size_t i = 0; i < wf.size(); ++i) wf[i] = bf16_to_f32(w[i]);
    linear(xr.data(), wf.data(), bias, y, tokens, n_in, n_out);
  }

  void gemm_nt(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t m,
               int64_t n, int64_t k, int64_t groups) const override {
    for (int64_t g = 0; g < groups; ++g)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(k), 1.0f, A + g * k, int(lda),
                  B + g * k, int(ldb), 0.0f, C + g * n, int(ldc));
  }
  void column_squared_distances(const float* a, const float* b, int64_t rows, int64_t n,
                                double* out) const override {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      double e = 0;
      for (int64_t t = 0; t < rows; ++t)
        e += double(a[t * n + i] - b[t * n + i]) * double(a[t * n + i] - b[t * n + i]);
      out[i] = e;
    }
  }

  // Threads split C's rows in chunks of ≥ 16, each chunk one single-threaded sgemm.
  void gemm_sub(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t m,
                int64_t n, int64_t k) const override {
    const int64_t rows_per = std::max<int64_t>(16, (m + 63) / 64);
#pragma omp parallel for schedule(dynamic)
    for (int64_t r0 = 0; r0 < m; r0 += rows_per)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(std::min(rows_per, m - r0)), int(n), int(k),
                  -1.0f, A + r0 * lda, int(lda), B, int(ldb), 1.0f, C + r0 * ldc, int(ldc));
  }

  // torch: cholesky → cholesky_inverse → cholesky(upper=True), as LAPACK dpotrf/dpotri/dpotrf.
  bool inverse_cholesky(double* H, int64_t n) const override {
    const lapack_int m = lapack_int(n);
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', m, H, m) != 0) return false;
    if (LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', m, H, m) != 0) return false;
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', m, H, m) != 0) return false;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < i; ++j) H[i * n + j] = 0.0;
    return true;
  }

  void narrow(const double* src, float* dst, int64_t n) const override {
    for (int64_t i = 0; i < n; ++i) dst[i] = float(src[i]);
  }

  void column_sums(const float* x, int64_t n, int64_t d, int power, double* out) const override {
    constexpr int64_t kCols = 256;  // a thread's columns, row by row
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < d; c0 += kCols) {
      const int64_t c1 = std::min(d, c0 + kCols);
      for (int64_t i = c0; i < c1; ++i) out[i] = 0;
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = c0; i < c1; ++i)
          out[i] += power == 1 ? double(std::fabs(x[t * d + i])) : double(x[t * d + i]) * x[t * d + i];
    }
  }
  double squared_distance(const float* a, const float* b, int64_t n, double start) const override {
    for (int64_t i = 0; i < n; ++i) start += double(a[i] - b[i]) * double(a[i] - b[i]);
    return start;
  }
  void diagonal(const double* H, int64_t n, double* out) const override {
    for (int64_t i = 0; i < n; ++i) out[i] = H[i * n + i];
  }
  void add_diagonal(double* H, int64_t n, double v) const override {
    for (int64_t i = 0; i < n; ++i) H[i * n + i] += v;
  }
  void permute_symmetric(const double* src, const int64_t* perm, double* dst, int64_t n) const override {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) dst[i * n + j] = src[perm[i] * n + perm[j]];
  }

  void gather_columns(const float* src, const int64_t* idx, float* dst, int64_t rows,
                      int64_t n) const override {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) dst[r * n + c] = src[r * n + idx[c]];
  }
  void widen_16(const uint16_t* src, bool bf16, float* dst, int64_t n) const override {
    constexpr int64_t kChunk = int64_t(1) << 18;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += kChunk)
      widen_to_f32(bf16 ? QType::BF16 : QType::F16, src + c, dst + c, std::min(kChunk, n - c));
  }
  int64_t first_nonfinite(const float* x, int64_t n) const override {
    int64_t first = n;
#pragma omp parallel for reduction(min : first)
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i])) first = std::min(first, i);
    return first;
  }

  void fake_quantize_int(const FakeQuantArgs& a) const override {
    const IntGridSpec spec{a.bits, int(a.group), a.sym, false};
    const int64_t ng = a.n_in / a.group;
#pragma omp parallel
    {
      std::vector<float> x(static_cast<size_t>(a.group));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < a.rows; ++r)
        for (int64_t g = 0; g < ng; ++g) {
          const float* in = a.src + r * a.n_in + g * a.group;
          const float m = a.group_max ? a.group_max[r * ng + g] * a.shrink : 0.0f;
          for (int64_t i = 0; i < a.group; ++i)
            x[size_t(i)] = a.col_scale   ? in[i] * a.col_scale[g * a.group + i]
                           : a.group_max ? std::clamp(in[i], -m, m)
                                         : in[i];
          const GroupParams p = find_group_params(x, spec);
          float* out = a.dst + r * a.n_in + g * a.group;
          for (int64_t i = 0; i < a.group; ++i) {
            const float q = dequantize_value(quantize_value(x[size_t(i)], p, spec.maxq()), p);
            out[i] = a.col_scale ? q / a.col_scale[g * a.group + i] : q;
          }
        }
    }
  }

  std::unique_ptr<GramAccumulator> gram(int d) const override { return std::make_unique<CpuGram>(*this, d); }

  void score(const float* logits, const float* base, const int32_t* targets, int rows, int vocab,
             PositionStats* out) const override {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; ++i) {
      const int64_t off = int64_t(i) * vocab;
      out[i] = score_position(logits + off, base ? base + off : nullptr, vocab, targets[i]);
    }
  }
};

}  // namespace

const Backend& cpu_backend() {
  static const CpuBackend backend;
  return backend;
}

}  // namespace qf
