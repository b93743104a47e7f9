// kernels/backend.h — the seam between the model and the hardware.
//
// The forward pass (model/transformer.cc) and calibration (quant/calibration.cc) call only these
// operations and the Linear objects' forward(); neither includes BLAS, OpenMP or intrinsics. The
// CPU backend (kernels/cpu/cpu_backend.cc) is the reference; a CUDA backend implements the same
// interface over device buffers (issue: CUDA backend, part 1) — its pointers are then device
// pointers and `name()` says so. All buffers are row-major fp32 unless a comment says otherwise.
// Backends are stateless and thread-safe; each call may use every thread the backend owns.
#pragma once

#include <cstdint>
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

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

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
  // H (d, d) += xᵀ·x for x (n, d), accumulated in double (calibration Hessians); scratch is the
  // backend's fp32 staging buffer, kept by the caller across calls.
  virtual void add_gram(const float* x, int n, int d, std::vector<double>& H,
                        std::vector<float>& scratch) const = 0;
};

// The CPU backend (BLAS, OpenMP, Highway).
const Backend& cpu_backend();

}  // namespace qf
