// formats/qtype.h — every storage format qforge reads, one traits row each (ggml type_traits).
//
// A format is a block of `block` weights stored in `bytes_per_block` bytes. The scalar
// reference codec is the specification; fast kernels are tested against it. The numeric ids
// of the GGML types are llama.cpp's `enum ggml_type` values, as stored in GGUF tensor infos.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace qf {

// F32..Q8_0 and Q4_0..IQ4_XS: weight formats (the ggml ones' blocks in formats/ggml_quants.h);
// I8, U8, I16, I32: raw integer tensors of checkpoint layouts (packed codes, zeros, indices) —
// "decoding" them converts each integer to float. GRID4, GRID8, BNB4: the forms the kernels run
// the HF layouts in (their scales live beside the blocks, in formats/packed.h's QMatrix):
// integer-grid codes (GPTQ/AWQ/RTN; ≤ 4 bits: per 32 weights 16 bytes, code j in the low nibble
// of byte j and code 16 + j in its high nibble, Q4_0's order; ≤ 8 bits: one byte each) and
// bitsandbytes NF4/FP4 codes (two per byte, first in the high nibble). io/hf_layouts.h lists
// the checkpoint layouts that decode to them.
enum class QType : uint8_t {
  F32,
  F16,
  BF16,
  Q8_0,
  I8,
  U8,
  I32,
  Q4_0,
  Q4_1,
  Q5_0,
  Q5_1,
  Q2_K,
  Q3_K,
  Q4_K,
  Q5_K,
  Q6_K,
  IQ4_NL,
  IQ4_XS,
  IQ2_XXS,
  IQ2_XS,
  IQ3_XXS,
  I16,
  GRID4,
  GRID8,
  BNB4
};

struct QTypeTraits {
  QType type;
  std::string_view name;
  int ggml_id;  // ggml_type value in GGUF files, -1 if none
  int block;    // weights per block
  int bytes_per_block;
  // Decodes n weights (n a multiple of block) from src into dst.
  void (*dequantize_ref)(const void* src, float* dst, int64_t n);
  // Encodes n floats (n a multiple of block) into blocks at dst. With `imatrix` (importance
  // of each weight, llama.cpp's quant_weights), src must be one matrix row; formats without an
  // importance-weighted search ignore it. Null for the types qforge reads but does not write.
  void (*quantize_ref)(const float* src, void* dst, int64_t n, const float* imatrix);
  // Block formats with one code per weight: how many code values there are, and the packer
  // that stores a block's codes under scales already set (formats/ggml_quants.h). Else 0/null.
  int n_codes = 0;
  void (*pack_codes)(const uint8_t* codes, void* block) = nullptr;
  double bits_per_weight() const { return 8.0 * bytes_per_block / block; }
};

const QTypeTraits& traits(QType t);
// I8, U8, I16, I32: the integer tensors of checkpoint layouts, never a weight by themselves.
inline bool is_raw_integer(QType t) {
  return t == QType::I8 || t == QType::U8 || t == QType::I16 || t == QType::I32;
}
std::optional<QType> qtype_from_ggml_id(uint32_t id);
// The type whose table name is `name` ("F32", "BF16", "I8", ...; safetensors uses the same).
std::optional<QType> qtype_from_name(std::string_view name);
// Name of a ggml type id, also for the types qforge does not read yet ("Q4_K", ...).
std::string_view ggml_type_name(uint32_t id);

// Bytes needed for n elements; n must be a multiple of the block size.
inline int64_t qtype_row_bytes(QType t, int64_t n) {
  const auto& tr = traits(t);
  return n / tr.block * tr.bytes_per_block;
}

// Q8_0 (llama.cpp block_q8_0): 32 int8 weights and one fp16 scale d = absmax / 127.
struct BlockQ8_0 {
  uint16_t d;     // fp16 scale
  int8_t qs[32];  // weights = d * qs
};
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes in llama.cpp");

}  // namespace qf
