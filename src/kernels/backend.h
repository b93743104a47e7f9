// kernels/backend.h — the seam between the model and the hardware.
//
// The forward pass (model/transformer.cc), calibration (quant/calibration.cc), GPTQ's matrix work
// (quant/gptq.cc) and eval's scoring (eval/perplexity.cc) call only these operations and the
// Linear objects' forward(); none of them includes BLAS, OpenMP, intrinsics or CUDA. The CPU
// backend (kernels/cpu/cpu_backend.cc) is the reference; the CUDA backend
// (kernels/cuda/cuda_backend.cu) implements the same interface over device memory. A backend's
// buffers live where it computes (`on_device()`): pointers passed to its operations are then
// device pointers, and host data crosses only through to_device/to_host. All buffers are
// row-major fp32 unless a comment says otherwise. Backends are stateless for their callers and
// thread-safe; each call may use every thread or stream the backend owns, and operations on one
// backend run in the order they are called.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace qf {

// Causal grouped-query attention over a KV cache for one block.
struct AttentionArgs {
  const float* q;  // (n, n_head · head_dim), RoPE applied
  const float* k;  // (n_past + n, n_head_kv · head_dim) cache rows, the new ones included
  const float* v;  // (n_past + n, n_head_kv · head_dim)
  float* out;      // (n, n_head · head_dim)
  int n, n_past;   // new positions; positions already in the cache
  int n_head, n_head_kv, head_dim;
  int sliding_window;  // 0: unlimited; else a query sees at most this many positions (Mistral)
};

// GPTQ's lazy batch on an integer grid, every row at once, as quant/gptq.cc's round_row_batch
// does it row by row: columns [i1, i1 + cnt) of w rounded in place, each group's scale and zero
// fitted where the group starts from w's columns there (min/max, no clip search).
struct IntGridBatch {
  float* w;                 // (rows, n_in), columns in processing order
  const float* u;           // U (n_in, n_in), upper triangular
  float* err;               // (rows, cnt) out: the scaled errors the trailing update needs
  uint8_t* codes;           // (rows, n_in) out: position c's code at column code_col[c]
  const int32_t* code_col;  // (n_in)
  float *scales, *zeros;    // (rows, n_in / group) out: position c is in group c / group
  double* loss;             // (rows) += Σ (w − q)² / U_cc² / 2 over the batch
  int64_t rows, n_in, i1, cnt, group;
  int maxq;
  bool sym;
};

// AWQ's fake quantization onto an integer grid: for each row and group of `group` columns of src
// (rows, n_in), x = src · col_scale[j] (when col_scale) or clamp(src, ±group_max[r, g] · shrink)
// (when group_max) or src; the group's scale and zero from x's min/max (formats/int_grid.h's
// find_group_params without the clip search); dst = dequantize(quantize(x)), divided by
// col_scale[j] when given. dst may equal src.
struct FakeQuantArgs {
  const float* src;
  float* dst;
  int64_t rows, n_in, group;
  int bits;
  bool sym;
  const float* col_scale;  // (n_in) or null
  const float* group_max;  // (rows, n_in / group) or null
  float shrink;
};

// One scored position of eval: −log p(target) under the model (and the base), KL(base ‖ model)
// of the next-token distributions, and whether both argmaxes agree (lowest index on ties).
struct PositionStats {
  double nll = 0, base_nll = 0, kld = 0;
  int agree = 0;
};

template <typename T>
class Buffer;

// Σ xᵀ·x over calls, for x (n, d): each call's product in fp32, the running sum in double
// (calibration Hessians). Lives in its backend's memory.
class GramAccumulator {
 public:
  virtual ~GramAccumulator() = default;
  virtual void add(const float* x, int n) = 0;  // x (n, d) in the backend's memory
  // scale · the sum, (d, d) symmetric in the backend's memory; the sum restarts at zero.
  virtual Buffer<double> take(double scale) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // True when the operations take device pointers (data must cross with to_device/to_host).
  virtual bool on_device() const = 0;
  // Waits for every operation called so far (for timing; results never need it).
  virtual void synchronize() const {}

  // Memory in the backend's space. alloc never returns null (an out-of-memory is fatal, with the
  // size in the message); release takes what alloc gave, or null.
  virtual void* alloc(int64_t bytes) const = 0;
  virtual void release(void* p) const = 0;
  virtual void to_device(void* dst, const void* host, int64_t bytes) const = 0;
  virtual void to_host(void* host, const void* src, int64_t bytes) const = 0;
  virtual void copy(void* dst, const void* src, int64_t bytes) const = 0;
  // rows × width bytes between pitched 2-D regions (a block of columns of a row-major matrix).
  enum class Copy { kToDevice, kToHost, kWithin };
  virtual void copy_2d(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width,
                       int64_t rows, Copy direction) const = 0;
  // A per-thread buffer of at least n floats, kept across calls: slot s has one user at a time;
  // growing a slot discards its contents.
  static constexpr int kScratchSlots = 12;
  virtual float* scratch(int slot, int64_t n) const = 0;

  // y (n, dim) = x / sqrt(mean(x²) + eps) · w (HF RMSNorm; the mean accumulated in double).
  // y may equal x.
  virtual void rms_norm(const float* x, const float* w, float* y, int n, int dim, float eps) const = 0;
  // Rotates x (n, n_heads · head_dim) in place by cs (n, head_dim / 2) pairs (cos, sin); pairs are
  // (i, i + head_dim/2) (HF rotate_half), or (2i, 2i+1) when interleaved (llama.cpp LLaMA files).
  virtual void rope(float* x, int n, int n_heads, int head_dim, bool interleaved, const float* cs) const = 0;
  virtual void attention(const AttentionArgs& a) const = 0;
  // gate (n) = SiLU(gate) · up.
  virtual void silu_mul(float* gate, const float* up, int64_t n) const = 0;
  // x (n) += y.
  virtual void add(float* x, const float* y, int64_t n) const = 0;
  // y (tokens, n_out) = x (tokens, n_in) · wᵀ + bias; w (n_out, n_in); bias (n_out) or null.
  virtual void linear(const float* x, const float* w, const float* bias, float* y, int64_t tokens,
                      int64_t n_in, int64_t n_out) const = 0;
  // Whether Linear weights live in bf16 on this backend (a device asked with QFORGE_CUDA_MATH=bf16,
  // read when a BackendLinear is made): half the memory, bf16 tensor cores.
  virtual bool bf16_weights() const { return false; }
  // linear() with w (n_out, n_in) as bf16 bits and x rounded to bf16 (nearest even) first; the
  // products (exact) and sums in fp32.
  virtual void linear_bf16(const float* x, const uint16_t* w, const float* bias, float* y, int64_t tokens,
                           int64_t n_in, int64_t n_out) const = 0;
  // For g < groups: C[:, g·n, (g+1)·n) = A[:, g·k, (g+1)·k) · B[:, g·k, (g+1)·k)ᵀ — A (m, ≥ groups·k),
  // B (n, ≥ groups·k), C (m, ≥ groups·n), each with its row pitch in elements (AWQ's per-group
  // outputs, all groups in one call; the forward pass's precision: TF32 on a device unless
  // QFORGE_CUDA_MATH=fp32).
  virtual void gemm_nt(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                       int64_t m, int64_t n, int64_t k, int64_t groups) const = 0;
  // out (n, on the host) = Σ_t (a[t, i] − b[t, i])² for a, b (rows, n): the difference in fp32, the
  // square and the sum (t in order) in fp64.
  virtual void column_squared_distances(const float* a, const float* b, int64_t rows, int64_t n,
                                        double* out) const = 0;
  // C (m, n) −= A (m, k) · B (k, n), each with its row pitch in elements (GPTQ's trailing update).
  virtual void gemm_sub(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                        int64_t m, int64_t n, int64_t k) const = 0;
  // H (n, n) symmetric positive definite, fp64 (read on its upper triangle) → U upper triangular
  // with UᵀU = H⁻¹, the strict lower triangle zeroed (the CPU: Cholesky, inverse from the factor,
  // Cholesky again, as GPTQ's reference; a device may reach the same factor by fewer flops). False,
  // H garbage, when a factorization fails.
  virtual bool inverse_cholesky(double* H, int64_t n) const = 0;
  // dst (n) fp32 = src (n) fp64.
  virtual void narrow(const double* src, float* dst, int64_t n) const = 0;
  // out (d) fp64, in the backend's memory = Σ_t |x[t, i]|^power (power 1 or 2) over the rows of
  // x (n, d), each column summed in row order (imatrix and AWQ statistics).
  virtual void column_sums(const float* x, int64_t n, int64_t d, int power, double* out) const = 0;
  // start + Σ (a[i] − b[i])², the difference in fp32, its square and the sum in fp64, i in order
  // (on a device, in the device's order); a and b in the backend's memory.
  virtual double squared_distance(const float* a, const float* b, int64_t n, double start) const = 0;
  // out (n, on the host) = the diagonal of H (n, n).
  virtual void diagonal(const double* H, int64_t n, double* out) const = 0;
  // H (n, n) diagonal += v.
  virtual void add_diagonal(double* H, int64_t n, double v) const = 0;
  // dst (n, n) = src[perm[i], perm[j]]; perm (n) on the host; dst ≠ src.
  virtual void permute_symmetric(const double* src, const int64_t* perm, double* dst, int64_t n) const = 0;
  // dst (rows, n) = src[r, idx[c]] for src (rows, n); idx (n) on the host; dst ≠ src (GPTQ's
  // column orders).
  virtual void gather_columns(const float* src, const int64_t* idx, float* dst, int64_t rows,
                              int64_t n) const = 0;
  // dst (n) fp32 = src (n) IEEE half (bf16 false) or bfloat16 bits, exactly (weights widened where
  // they are used).
  virtual void widen_16(const uint16_t* src, bool bf16, float* dst, int64_t n) const = 0;
  // The lowest i with x[i] NaN or ±Inf, n when there is none.
  virtual int64_t first_nonfinite(const float* x, int64_t n) const = 0;
  virtual std::unique_ptr<GramAccumulator> gram(int d) const = 0;
  // Every value rounded as formats/int_grid.h rounds it on the host, op by op.
  virtual void fake_quantize_int(const FakeQuantArgs& a) const = 0;
  // Device backends: rounds one integer-grid batch in their memory (pointers there) and returns
  // true. The CPU backend returns false: quant/gptq.cc rounds on the host.
  virtual bool round_int_batch(const IntGridBatch&) const { return false; }
  // Scores `rows` positions: logits (rows, vocab) and base (rows, vocab) or null in the backend's
  // memory; targets (rows) and out (rows) on the host.
  virtual void score(const float* logits, const float* base, const int32_t* targets, int rows, int vocab,
                     PositionStats* out) const = 0;
};

// A typed buffer in a backend's memory (RAII).
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Backend& be, int64_t n)
      : be_(&be), p_(static_cast<T*>(be.alloc(n * int64_t(sizeof(T))))), n_(n) {}
  Buffer(const Backend& be, const std::vector<T>& host) : Buffer(be, int64_t(host.size())) {
    be.to_device(p_, host.data(), n_ * int64_t(sizeof(T)));
  }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(be_, o.be_);
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~Buffer() {
    if (be_) be_->release(p_);
  }
  T* data() const { return p_; }
  int64_t size() const { return n_; }
  const Backend& backend() const { return *be_; }
  Buffer copy() const {
    Buffer c(*be_, n_);
    if (n_) be_->copy(c.p_, p_, n_ * int64_t(sizeof(T)));
    return c;
  }
  std::vector<T> to_host() const {
    std::vector<T> h(static_cast<size_t>(n_));
    if (n_) be_->to_host(h.data(), p_, n_ * int64_t(sizeof(T)));
    return h;
  }
  // Grows to at least n elements, keeping the first size() ones.
  void grow(int64_t n) {
    if (n <= n_) return;
    Buffer bigger(*be_, n);
    if (n_) be_->copy(bigger.p_, p_, n_ * int64_t(sizeof(T)));
    *this = std::move(bigger);
  }

 private:
  const Backend* be_ = nullptr;
  T* p_ = nullptr;
  int64_t n_ = 0;
};

// The diagonal of H (n, n) in its backend's memory, on the host.
inline std::vector<double> diagonal(const Buffer<double>& H, int64_t n) {
  std::vector<double> d(static_cast<size_t>(n));
  H.backend().diagonal(H.data(), n, d.data());
  return d;
}

// The CPU backend (BLAS, LAPACK, OpenMP, Highway).
const Backend& cpu_backend();

}  // namespace qf
