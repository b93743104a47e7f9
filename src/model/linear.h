// model/linear.h — y = x·Wᵀ (+ b). The forward pass never knows how a weight is stored.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "formats/bnb4.h"
#include "formats/e8p.h"
#include "formats/int8_rowwise.h"
#include "formats/int_grid.h"
#include "formats/tensor.h"
#include "kernels/backend.h"
#include "kernels/cpu/hadamard.h"
#include "kernels/cpu/qmatvec.h"

namespace qf {

class Linear {
 public:
  virtual ~Linear() = default;
  // x: (tokens, n_in) row-major; y: (tokens, n_out) row-major, overwritten.
  virtual void forward(const float* x, float* y, int64_t tokens) const = 0;
  virtual int64_t n_in() const = 0;
  virtual int64_t n_out() const = 0;
  // Bytes of weight data one forward pass reads (as stored: codes, scales, zeros, bias).
  virtual int64_t weight_bytes() const = 0;
  // The weights as forward() applies them: (n_out, n_in) fp32, and the bias (n_out) or empty.
  // By default forward() over rows of the identity, the bias subtracted (exact where forward is
  // exact on one-hot inputs; otherwise within fp32 rounding of the product).
  virtual std::vector<float> dense_weights() const;
  virtual std::vector<float> bias_values() const { return {}; }
};

// Any Linear's weights as one dense fp32 matrix in a backend's memory, multiplied there by the
// backend's `linear` (cuBLAS sgemm on CUDA). weight_bytes() stays the stored format's, so bits
// per weight report what the file holds. LLM.int8()'s activation quantization is not applied:
// its weights are used dequantized.
class BackendLinear final : public Linear {
 public:
  BackendLinear(const Linear& host, const Backend& be);
  // From dense weights w (n_out, n_in) and bias (n_out, or empty) on the host; stored_bytes: the
  // size it stands for.
  BackendLinear(const Backend& be, int64_t n_out, int64_t n_in, const std::vector<float>& w,
                const std::vector<float>& bias, int64_t stored_bytes);
  // Adopting w (n_out, n_in) fp32, already in be's memory.
  BackendLinear(const Backend& be, int64_t n_out, int64_t n_in, Buffer<float> w,
                const std::vector<float>& bias, int64_t stored_bytes);
  // A dense F32/F16/BF16 weight copied to be's memory as stored and widened there (no fp32 copy on
  // the host); null for other types (and F16 when the backend keeps bf16).
  static std::unique_ptr<BackendLinear> from_stored(const Backend& be, const TensorView& weight,
                                                    const TensorView& bias);
  // The fp32 weights in the backend's memory, or null when it keeps bf16 ones.
  const float* fp32_weights() const { return w_.size() ? w_.data() : nullptr; }
  void forward(const float* x, float* y, int64_t tokens) const override;
  int64_t n_in() const override { return n_in_; }
  int64_t n_out() const override { return n_out_; }
  int64_t weight_bytes() const override { return stored_bytes_; }
  std::vector<float> dense_weights() const override;
  std::vector<float> bias_values() const override { return b_.to_host(); }

 private:
  BackendLinear(const Backend& be, int64_t n_out, int64_t n_in, const std::vector<float>& bias,
                int64_t stored_bytes);  // weights not yet set
  const Backend& be_;
  int64_t n_out_, n_in_, stored_bytes_;
  Buffer<float> w_;       // (n_out, n_in), or empty when
  Buffer<uint16_t> w16_;  // the backend keeps bf16 weights (Backend::bf16_weights)
  Buffer<float> b_;       // (n_out) or empty
};

// A dense F32/F16/BF16 weight in be's memory as fp32: copied as stored and widened there.
Buffer<float> widened_on(const Backend& be, const TensorView& weight);

// `l` itself on the CPU backend (host Linears compute there); a BackendLinear on a device.
std::unique_ptr<Linear> on_backend(std::unique_ptr<Linear> l, const Backend& be);

// A Linear over weights that stay in their stored (usually quantized) format. One token (or
// a few) goes through the fused dequantize-and-multiply kernels (kernels/cpu/qmatvec.h),
// threads splitting the rows; a prompt decodes cache-sized tiles of rows to fp32 into a
// per-thread buffer and multiplies them with single-threaded BLAS sgemm, threads splitting
// the tiles. Weights already in fp32 are used in place. Subclasses say how rows are stored:
// a QMatrix the kernels read, or — for shapes the kernels do not take — their own decoder.
class TiledLinear : public Linear {
 public:
  void forward(const float* x, float* y, int64_t tokens) const override;
  int64_t n_in() const override { return n_in_; }
  int64_t n_out() const override { return n_out_; }
  std::vector<float> dense_weights() const override;
  std::vector<float> bias_values() const override { return b_; }
  // Up to this many tokens, each is a matrix-vector product.
  static constexpr int64_t kMatvecTokens = 4;

 protected:
  TiledLinear(int64_t n_out, int64_t n_in, const TensorView& bias);
  // Fallback decoder of rows [r0, r0 + rows) into dst (rows, n_in), for matrices without a kernel.
  virtual void decode_rows(int64_t r0, int64_t rows, float* dst) const;
  // (n_out, n_in) fp32 weights usable in place, or null.
  virtual const float* f32_weights() const { return nullptr; }
  int64_t bias_bytes() const { return int64_t(b_.size()) * 4; }
  // Hands the rows to the fused kernels when they take this matrix; true if they do.
  bool set_kernel(const QMatrix& m);
  bool has_kernel() const { return kernel_.data != nullptr; }
  // The stored columns are x's columns in this order (act-order checkpoints), or empty.
  std::vector<int32_t> perm_;

 private:
  void decode(int64_t r0, int64_t rows, float* dst) const;
  int64_t n_out_, n_in_;
  std::vector<float> b_;  // (n_out) or empty
  QMatrix kernel_;
};

// Weights kept in their stored format (usually an mmap'd view: no copy, no load time).
class StoredLinear : public TiledLinear {
 public:
  // weight: (n_out, n_in); bias: (n_out), or an invalid view for none.
  StoredLinear(const TensorView& weight, const TensorView& bias);
  int64_t weight_bytes() const override { return w_.nbytes + bias_bytes(); }

 private:
  void decode_rows(int64_t r0, int64_t rows, float* dst) const override;
  const float* f32_weights() const override { return f32_; }
  TensorView w_;
  int64_t row_bytes_;
  std::vector<float> owned_;  // fp32 copy, only when a stored fp32 tensor is misaligned
  const float* f32_ = nullptr;
};

// Integer-grid weights (RTN/GPTQ/AWQ codes with per-group scales and zeros). The kernels'
// layout: codes of ≤ 4 bits one per nibble, wider ones one per byte, act-order columns sorted
// by group (x is permuted to match); scale and zero per (row, group) in fp32. Shapes the
// kernels do not take keep the bit-packed PackedInt.
class IntLinear : public TiledLinear {
 public:
  IntLinear(const IntQuantized& q, const TensorView& bias);
  int64_t weight_bytes() const override;

 private:
  void decode_rows(int64_t r0, int64_t rows, float* dst) const override {
    fallback_->dequantize_rows(r0, rows, dst);
  }
  int bits_;
  int64_t n_groups_;
  std::vector<uint8_t> codes_;
  std::vector<float> scales_, zeros_;
  std::optional<PackedInt> fallback_;
};

// bitsandbytes NF4/FP4 weights (codes two per byte, one absmax per block).
class Bnb4Linear : public TiledLinear {
 public:
  Bnb4Linear(Bnb4Quantized q, int64_t n_out, int64_t n_in, const TensorView& bias);
  int64_t weight_bytes() const override {
    return int64_t(q_.bits_per_weight() * double(q_.n) / 8) + bias_bytes();
  }

 private:
  void decode_rows(int64_t r0, int64_t rows, float* dst) const override {
    dequantize_bnb4(q_, r0 * n_in(), rows * n_in(), dst);
  }
  Bnb4Quantized q_;
};

// LLM.int8() (bitsandbytes Linear8bitLt): int8 weights with one absmax per row. Each call
// quantizes the activations per token (absmax → int8) and multiplies with exact integer
// accumulation; activation columns holding a value with |x| ≥ threshold are taken out of
// the int8 product and multiplied in floating point against the dequantized weights (the
// paper's mixed-precision decomposition). threshold 0 disables it: plain dynamic W8A8.
class Int8Linear : public Linear {
 public:
  Int8Linear(Int8Rowwise q, float threshold, const TensorView& bias);
  void forward(const float* x, float* y, int64_t tokens) const override;
  int64_t n_in() const override { return q_.n_in; }
  int64_t n_out() const override { return q_.n_out; }
  int64_t weight_bytes() const override { return q_.n_out * (q_.n_in + 4) + int64_t(b_.size()) * 4; }
  std::vector<float> bias_values() const override { return b_; }

 private:
  Int8Rowwise q_;
  float threshold_;
  std::vector<float> b_;
};

// QuIP# weights W̃ in E8P codes (formats/e8p.h), decoded tile by tile for the matrix products.
class E8Linear : public TiledLinear {
 public:
  explicit E8Linear(e8p::E8Codes q);
  // Up to kMatvecTokens tokens: rows decoded 8 weights at a time straight into the dot
  // products, threads splitting the rows; more: TiledLinear's decoded tiles and sgemm.
  void forward(const float* x, float* y, int64_t tokens) const override;
  int64_t weight_bytes() const override;

 private:
  void decode_rows(int64_t r0, int64_t rows, float* dst) const override {
    e8p::decode_rows(q_, r0, rows, dst);
  }
  e8p::E8Codes q_;
};

// QuIP/QuIP#: W = diag(sₒ)·Hₒ·W̃·Hᵢᵀ·diag(sᵢ) with W̃ held by `inner` (an E8Linear or an
// IntLinear). The activations go through Hᵢᵀ·diag(sᵢ) on the way in and the outputs through
// diag(sₒ)·Hₒ on the way out (kernels/cpu/hadamard.h); W itself is never formed.
class QuipLinear : public Linear {
 public:
  QuipLinear(Hadamard h_in, Hadamard h_out, std::vector<float> s_in, std::vector<float> s_out,
             std::unique_ptr<Linear> inner, const TensorView& bias);
  void forward(const float* x, float* y, int64_t tokens) const override;
  int64_t n_in() const override { return inner_->n_in(); }
  int64_t n_out() const override { return inner_->n_out(); }
  // diag(sₒ)·Hₒ·W̃·Hᵢᵀ·diag(sᵢ) from W̃'s decoded rows: two transforms, no product.
  std::vector<float> dense_weights() const override;
  int64_t weight_bytes() const override;
  std::vector<float> bias_values() const override { return b_; }

 private:
  Hadamard h_in_, h_out_;
  std::vector<float> s_in_, s_out_, b_;
  std::unique_ptr<Linear> inner_;
};

}  // namespace qf
