#include "formats/tensor.h"

#include <cmath>

#include "core/status.h"

namespace qf {

std::string TensorView::shape_str() const {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s.empty() ? "scalar" : s;
}

std::vector<float> TensorView::to_f32() const {
  QF_CHECK(valid(), "tensor '{}' has no data", name);
  std::vector<float> out(static_cast<size_t>(numel()));
  traits(type).dequantize_ref(data, out.data(), numel());
  return out;
}

Expected<std::vector<float>> TensorView::to_f32_finite() const {
  std::vector<float> w = to_f32();
  for (size_t i = 0; i < w.size(); ++i)
    if (!std::isfinite(w[i])) return error("tensor '{}': element {} is {}, expected a finite weight", name, i, w[i]);
  return w;
}

}  // namespace qf
