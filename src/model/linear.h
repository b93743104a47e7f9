// model/linear.h — y = x·Wᵀ (+ b). The forward pass never knows how a weight is stored.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "formats/tensor.h"

namespace qf {

class Linear {
 public:
  virtual ~Linear() = default;
  // x: (tokens, n_in) row-major; y: (tokens, n_out) row-major, overwritten.
  virtual void forward(const float* x, float* y, int64_t tokens) const = 0;
  virtual int64_t n_in() const = 0;
  virtual int64_t n_out() const = 0;
  // Bytes of weight data one forward pass reads.
  virtual int64_t weight_bytes() const = 0;
};

// Weights kept in their stored format (usually an mmap'd view: no copy, no load time) and
// multiplied with fp32 BLAS. fp32 weights are used in place; F16/BF16/Q8_0 rows are widened
// to fp32 one tile at a time into a per-thread buffer that stays in cache. Threads split the
// output rows; BLAS runs single-threaded inside each.
class StoredLinear : public Linear {
 public:
  // weight: (n_out, n_in); bias: (n_out), or an invalid view for none.
  StoredLinear(const TensorView& weight, const TensorView& bias);
  void forward(const float* x, float* y, int64_t tokens) const override;
  int64_t n_in() const override { return n_in_; }
  int64_t n_out() const override { return n_out_; }
  int64_t weight_bytes() const override { return w_.nbytes + int64_t(b_.size()) * 4; }

 private:
  void multiply(const float* x, const float* w, float* y, int64_t tokens, int64_t rows) const;
  TensorView w_;
  int64_t n_in_, n_out_, row_bytes_;
  std::vector<float> owned_;  // fp32 copy, only when a stored fp32 tensor is misaligned
  const float* f32_ = nullptr;  // (n_out, n_in) fp32 weights usable in place, else null
  std::vector<float> b_;        // (n_out) or empty
};

}  // namespace qf
