// formats/tensor.h — a named, typed, shaped view of weights stored somewhere else (usually an
// mmap'd checkpoint). Views never own the bytes; `keepalive` holds the mapping open.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/qtype.h"

namespace qf {

struct TensorView {
  std::string name;
  QType type = QType::F32;
  std::vector<int64_t> shape;  // row-major, outermost first: a matrix is (rows=n_out, cols=n_in)
  const uint8_t* data = nullptr;
  int64_t nbytes = 0;
  std::shared_ptr<const void> keepalive;

  // A view that owns its bytes (weights computed in memory rather than mapped from a file).
  static TensorView owning(std::string name, QType type, std::vector<int64_t> shape,
                           std::vector<uint8_t> bytes);
  static TensorView owning_f32(std::string name, std::vector<int64_t> shape,
                               const std::vector<float>& values);

  // The view itself when its bytes sit at the alignment its element type needs (the largest power
  // of two dividing the block size, at most 8), else a copy that does: files may place tensors at
  // any offset (safetensors after odd-sized uint8 tensors, GGUF with general.alignment 1).
  TensorView aligned() const;

  bool valid() const { return data != nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t rows() const { return shape.size() < 2 ? 1 : numel() / shape.back(); }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  std::string shape_str() const;
  // Decodes the whole tensor to fp32 through the format's reference codec.
  std::vector<float> to_f32() const;
  // The same, refusing NaN/Inf (weights about to be quantized); the error names the element.
  Expected<std::vector<float>> to_f32_finite() const;
};

// The error for element i (value v) of tensor `name` when a finite weight was expected.
Status nonfinite_weight(const std::string& name, int64_t i, float v);

}  // namespace qf
