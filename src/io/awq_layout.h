// io/awq_layout.h — the HF AWQ checkpoint layout, "GEMM" version (AutoAWQ's WQLinear_GEMM, which
// transformers and vLLM load), per quantized Linear `<prefix>`:
//   <prefix>.qweight  int32 (n_in, n_out/8)       codes, eight output columns per word
//   <prefix>.qzeros   int32 (n_groups, n_out/8)   zero points (as they are, not minus one), packed alike
//   <prefix>.scales   fp16  (n_groups, n_out)
// A word holds output columns 8j .. 8j+7 in AWQ's interleaved order: the value of column
// 8j + kAwqOrder[i] occupies bits [4i, 4i + 4), kAwqOrder = {0, 2, 4, 6, 1, 3, 5, 7}.
// w = scale · (q − zero). 4 bits only, groups in column order (no act-order), as AutoAWQ.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/int_grid.h"
#include "formats/tensor.h"

namespace qf {

struct AwqTensors {
  std::vector<int32_t> qweight;  // (n_in, n_out/8)
  std::vector<int32_t> qzeros;   // (n_groups, n_out/8)
  std::vector<uint16_t> scales;  // (n_groups, n_out) fp16 bits
};

// Checks that a matrix and grid can be stored: 4 bits, asymmetric, n_out a multiple of 8, no
// act-order. The error names `tensor`.
Status check_awq_packable(const IntGridSpec& spec, int64_t n_out, int64_t n_in, const std::string& tensor);

AwqTensors pack_awq(const IntQuantized& q);

// Rebuilds the in-memory form; shapes are checked against `group` (weights per group, -1 = n_in).
Expected<IntQuantized> unpack_awq(const TensorView& qweight, const TensorView& qzeros,
                                  const TensorView& scales, int bits, int group, const std::string& prefix);

}  // namespace qf
