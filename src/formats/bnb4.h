// formats/bnb4.h — bitsandbytes' 4-bit formats: NF4 and FP4 code books, blockwise absmax
// scaling, and double quantization of the absmax values (QLoRA).
//
// A tensor of n weights is cut into blocks of `blocksize` (a power of two, 32..4096); each
// block stores absmax = max|x| and one 4-bit code per weight for the code-book value nearest
// to x / absmax (ties go to the smaller value, as bitsandbytes' decision trees do). Codes are
// packed two per byte, the first weight in the high nibble (bitsandbytes kQuantizeBlockwise).
// Double quantization: offset = mean(absmax); (absmax − offset) is quantized with 8-bit
// blockwise dynamic quantization (create_dynamic_map(signed=True), blocksize 256).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace qf {

enum class Bnb4Type { NF4, FP4 };

// The 16 values of each code book, indexed by code.
const std::array<float, 16>& bnb4_code(Bnb4Type t);
// bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 sorted values.
const std::array<float, 256>& dynamic_map_signed();

struct Bnb4Quantized {
  Bnb4Type type = Bnb4Type::NF4;
  int blocksize = 64;
  int64_t n = 0;
  std::vector<uint8_t> packed;  // (n / 2) two codes per byte, first in the high nibble
  std::vector<float> absmax;    // (n / blocksize) — as decoded (after double quant, if any)
  bool double_quant = false;
  std::vector<uint8_t> absmax_q;     // (n / blocksize) 8-bit codes into dynamic_map_signed()
  std::vector<float> nested_absmax;  // (ceil(n_blocks / 256))
  float offset = 0;                  // mean of the absmax values
  double bits_per_weight() const;
};

Status validate_bnb4(int blocksize, int64_t n, const std::string& tensor);
// mean of the block absmax values: the double-quantization offset.
float bnb4_absmax_offset(const float* x, int64_t n, int blocksize);
Bnb4Quantized quantize_bnb4(const float* x, int64_t n, Bnb4Type type, int blocksize, bool double_quant);
// Decodes weights [begin, begin + count) into dst; begin and count multiples of 2.
void dequantize_bnb4(const Bnb4Quantized& q, int64_t begin, int64_t count, float* dst);

}  // namespace qf
