// formats/int_grid.h — the integer grid of round-to-nearest and GPTQ quantization, as the
// reference GPTQ `Quantizer` (IST-DASLab quant.py) defines it, in fp32:
//   asymmetric: xmin = min(min x, 0), xmax = max(max x, 0), scale = (xmax − xmin) / maxq,
//               zero = round(−xmin / scale);
//   symmetric:  xmax = max(|xmin|, xmax), xmin = −xmax, zero = (maxq + 1) / 2;
//   a group of zeros gets xmin = −1, xmax = +1;
//   q = clamp(round(x / scale) + zero, 0, maxq), x̂ = scale · (q − zero).
// round() is round-half-to-even, as torch.round. maxq = 2^bits − 1.
// Optional MSE clipping (`--clip mse`): shrink [xmin, xmax] by p = 1 − i/100 for i < 80 and
// keep the p with the least Σ|x̂ − x|^2.4 (the reference's grid=100, maxshrink=0.8, norm=2.4).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace qf {

struct IntGridSpec {
  int bits = 4;     // 2..8
  int group = 128;  // weights per group along the input dimension; -1 = per output channel
  bool sym = false;
  bool clip_mse = false;
  int maxq() const { return (1 << bits) - 1; }
  int group_len(int64_t n_in) const { return group < 0 ? int(n_in) : group; }
  std::string describe() const;
};

// Checks a spec against a matrix row length; the error names `tensor` and the rule broken.
Status validate(const IntGridSpec& spec, int64_t n_in, const std::string& tensor);

struct GroupParams {
  float scale = 1.0f;
  float zero = 0.0f;  // an integer value, kept as float as the reference does
};

// Scale and zero for one group of weights.
GroupParams find_group_params(std::span<const float> x, const IntGridSpec& spec);

inline int quantize_value(float x, const GroupParams& p, int maxq) {
  float q = std::nearbyint(x / p.scale) + p.zero;
  return int(std::min(std::max(q, 0.0f), float(maxq)));
}
inline float dequantize_value(int q, const GroupParams& p) { return p.scale * (float(q) - p.zero); }

// A matrix on the integer grid as quantizers produce it: codes row-major (n_out, n_in), one
// byte each; scales/zeros (n_out, n_groups). Checkpoint layouts (GPTQ, AWQ) convert from it.
struct IntQuantized {
  IntGridSpec spec;
  int64_t n_out = 0, n_in = 0;
  std::vector<uint8_t> codes;  // (n_out, n_in)
  std::vector<float> scales;   // (n_out, n_groups)
  std::vector<float> zeros;    // (n_out, n_groups)
  std::vector<int32_t> g_idx;  // (n_in) group of each input column (act-order), or empty: column / group
  int64_t n_groups() const { return n_in / spec.group_len(n_in); }
  int64_t group_of(int64_t col) const {
    return g_idx.empty() ? col / spec.group_len(n_in) : g_idx[size_t(col)];
  }
  // Decodes rows [r0, r0 + rows) into dst (rows, n_in).
  void dequantize_rows(int64_t r0, int64_t rows, float* dst) const;
};

// The same matrix as a quantized Linear holds it in memory: each row's codes bit-packed (a
// little-endian bit stream of `bits` per code), scales and zeros beside them.
class PackedInt {
 public:
  explicit PackedInt(const IntQuantized& q);
  void dequantize_rows(int64_t r0, int64_t rows, float* dst) const;
  int64_t n_out() const { return n_out_; }
  int64_t n_in() const { return n_in_; }
  int64_t n_groups() const { return n_groups_; }
  int bits() const { return bits_; }

 private:
  int bits_;
  int64_t n_out_, n_in_, n_groups_, group_, row_bytes_;
  std::vector<uint8_t> packed_;  // (n_out, row_bytes) + 1 byte of padding for 16-bit reads
  std::vector<float> scales_, zeros_;
  std::vector<int32_t> g_idx_;
};

// Round-to-nearest quantization of a (n_out, n_in) fp32 matrix.
IntQuantized quantize_rtn(const float* w, int64_t n_out, int64_t n_in, const IntGridSpec& spec);

}  // namespace qf
