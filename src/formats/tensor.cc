#include "formats/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/status.h"
#include "kernels/cpu/widen.h"

namespace qf {

TensorView TensorView::owning(std::string name, QType type, std::vector<int64_t> shape,
                              std::vector<uint8_t> bytes) {
  auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  TensorView v{std::move(name), type, std::move(shape), buf->data(), int64_t(buf->size()), buf};
  QF_CHECK(v.nbytes == qtype_row_bytes(type, v.cols()) * v.rows(), "{}: {} bytes for a {} {} tensor", v.name,
           v.nbytes, traits(type).name, v.shape_str());
  return v;
}

TensorView TensorView::owning_f32(std::string name, std::vector<int64_t> shape,
                                  const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return owning(std::move(name), QType::F32, std::move(shape), std::move(bytes));
}

TensorView TensorView::aligned() const {
  const uintptr_t block = uintptr_t(traits(type).bytes_per_block);
  const uintptr_t align = std::min<uintptr_t>(block & (~block + 1), 8);
  if (reinterpret_cast<uintptr_t>(data) % align == 0) return *this;
  return owning(name, type, shape, std::vector<uint8_t>(data, data + nbytes));
}

std::string TensorView::shape_str() const {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += 'x';
    s += std::to_string(shape[i]);
  }
  return s.empty() ? "scalar" : s;
}

std::vector<float> TensorView::to_f32() const {
  QF_CHECK(valid(), "tensor '{}' has no data", name);
  const int64_t n = numel(), block = traits(type).block,
                chunk = ((int64_t(1) << 18) + block - 1) / block * block;
  std::vector<float> out(static_cast<size_t>(n));
  // Chunks of whole blocks in parallel (an 8B model's MLP matrix is 58 M values).
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n; c += chunk)
    widen_to_f32(type, data + c / block * traits(type).bytes_per_block, out.data() + c,
                 std::min(chunk, n - c));
  return out;
}

Expected<std::vector<float>> TensorView::to_f32_finite() const {
  std::vector<float> w = to_f32();
  int64_t first = int64_t(w.size());
#pragma omp parallel for reduction(min : first)
  for (int64_t i = 0; i < int64_t(w.size()); ++i)
    if (!std::isfinite(w[size_t(i)])) first = std::min(first, i);
  if (first < int64_t(w.size())) return nonfinite_weight(name, first, w[size_t(first)]);
  return w;
}

Status nonfinite_weight(const std::string& name, int64_t i, float v) {
  return error("tensor '{}': element {} is {}, expected a finite weight", name, i, v);
}

}  // namespace qf
