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
};

// Dense fp32 weights (any stored format is decoded once through its reference codec), BLAS sgemm.
class DenseLinear : public Linear {
 public:
  DenseLinear(const TensorView& weight, const TensorView* bias);
  void forward(const float* x, float* y, int64_t tokens) const override;
  int64_t n_in() const override { return n_in_; }
  int64_t n_out() const override { return n_out_; }

 private:
  int64_t n_in_, n_out_;
  std::vector<float> w_;  // (n_out, n_in)
  std::vector<float> b_;  // (n_out) or empty
};

}  // namespace qf
