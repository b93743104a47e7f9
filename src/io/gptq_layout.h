// io/gptq_layout.h — the HF GPTQ checkpoint layout (AutoGPTQ / GPTQModel "gptq" v1 format,
// loaded by transformers and vLLM), per quantized Linear `<prefix>`:
//   <prefix>.qweight  int32 (n_in·bits/32, n_out)   codes packed along n_in
//   <prefix>.qzeros   int32 (n_groups, n_out·bits/32) zero − 1, packed along n_out
//   <prefix>.scales   fp16  (n_groups, n_out)
//   <prefix>.g_idx    int32 (n_in)                   group of each input column
// Packing is a little-endian bit stream: value k of a column occupies bits [bits·k, bits·k +
// bits) of consecutive 32-bit words. For 2/4/8 bits that is 32/bits values per word; for 3
// bits it is AutoGPTQ's 32-values-in-3-words scheme (value 10 straddles words 0 and 1, value
// 21 words 1 and 2). 5 and 6 bits continue the same stream: qforge reads and writes them, the
// GPTQ runtimes (which stop at 2/3/4/8) do not. With act-order (desc_act) the codes stay in
// column order and g_idx maps each column to its group. v1 stores zero − 1, so a zero of 0 wraps to maxq (the
// format's known limitation, fixed by GPTQModel's internal v2); qforge counts such groups and says so.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "formats/int_grid.h"
#include "formats/tensor.h"

namespace qf {

struct GptqTensors {
  std::vector<int32_t> qweight;  // (n_in·bits/32, n_out)
  std::vector<int32_t> qzeros;   // (n_groups, n_out·bits/32)
  std::vector<uint16_t> scales;  // (n_groups, n_out) fp16 bits
  std::vector<int32_t> g_idx;    // (n_in)
  int64_t zero_wraps = 0;        // groups whose zero of 0 cannot be stored in v1
};

// Checks that the shape can be packed: n_in·bits and n_out·bits multiples of 32. The error names `tensor`.
Status check_gptq_packable(const IntGridSpec& spec, int64_t n_out, int64_t n_in, const std::string& tensor);

GptqTensors pack_gptq(const IntQuantized& q);

// Rebuilds the in-memory form from checkpoint tensors; every shape and g_idx entry is checked.
Expected<IntQuantized> unpack_gptq(const TensorView& qweight, const TensorView& qzeros,
                                   const TensorView& scales, const TensorView& g_idx, int bits,
                                   const std::string& prefix);

// Little-endian bit-stream helpers (exposed for tests).
void pack_bits(const uint8_t* values, int64_t count, int stride, int bits, int32_t* words, int word_stride);
uint8_t unpack_bits(const int32_t* words, int word_stride, int64_t k, int bits);

}  // namespace qf
