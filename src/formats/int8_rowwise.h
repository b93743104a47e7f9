// formats/int8_rowwise.h — LLM.int8() weights as bitsandbytes stores them (Int8Params):
// SCB[r] = max_i |W[r, i]| (fp32), CB[r, i] = round(W[r, i] · 127 / SCB[r]) in int8, and
// Ŵ = CB · SCB / 127. A row of zeros has SCB 0 and codes 0.
//
// The activations of LLM.int8() use the same rule per token at run time (model/linear.h).
#pragma once

#include <cstdint>
#include <vector>

namespace qf {

struct Int8Rowwise {
  int64_t n_out = 0, n_in = 0;
  std::vector<int8_t> codes;  // CB (n_out, n_in)
  std::vector<float> scb;     // (n_out) row absmax
  double bits_per_weight() const { return 8.0 + 32.0 / double(n_in); }
};

Int8Rowwise quantize_int8_rowwise(const float* w, int64_t n_out, int64_t n_in);

// Absmax int8 quantization of one row of n values: returns the absmax, writes the codes.
float quantize_row_absmax_int8(const float* x, int64_t n, int8_t* q);

}  // namespace qf
