// formats/ggml_quants.h — llama.cpp's legacy and k-quant block formats (ggml-common.h), with
// reference codecs that follow ggml-quants.c's algorithms: the plain `_ref` rounding when no
// importance weights are given, and the importance-weighted search (`quant_weights`, from an
// imatrix) when they are. Blocks are byte-for-byte llama.cpp's; the QType table (qtype.h)
// holds one row per format and points here.
//
// Legacy types cover 32 weights: d (and m) fp16 + packed codes. k-quants cover a super-block
// of 256 weights cut into sub-blocks of 16 or 32 whose scales (and mins) are themselves
// quantized to 4, 6 or 8 bits against the fp16 super-block scale(s).
#pragma once

#include <cstdint>

namespace qf {

constexpr int kQK = 256;  // QK_K

struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ2_K {
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d, dmin;
};
struct BlockQ3_K {
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
// IQ4_NL / IQ4_XS: 4-bit indices into a fixed non-linear grid (kIq4nlValues); IQ4_XS adds
// 6-bit scales per 32 weights under one fp16 scale per 256.
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[16];
};
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[4];
  uint8_t qs[128];
};
extern const int8_t kIq4nlValues[16];
// IQ2_XXS / IQ2_XS / IQ3_XXS (read only): 8- or 4-weight lattice points from fixed grids
// (formats/iq_grids.cc) with per-32 scales and parity-completed sign bits.
struct BlockIQ2_XXS {
  uint16_t d;
  uint16_t qs[32];
};
struct BlockIQ2_XS {
  uint16_t d;
  uint16_t qs[32];
  uint8_t scales[8];
};
struct BlockIQ3_XXS {
  uint16_t d;
  uint8_t qs[96];
};
extern const uint64_t kIq2xxsGrid[256];
extern const uint64_t kIq2xsGrid[512];
extern const uint32_t kIq3xxsGrid[256];
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
                  sizeof(BlockQ5_1) == 24,
              "legacy block sizes as in ggml-common.h");
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
                  sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockIQ4_NL) == 18 &&
                  sizeof(BlockIQ4_XS) == 136 && sizeof(BlockIQ2_XXS) == 66 && sizeof(BlockIQ2_XS) == 74 &&
                  sizeof(BlockIQ3_XXS) == 98,
              "k- and i-quant block sizes as in ggml-common.h");

// Each codec: n weights (a multiple of its block), src → blocks at dst. `imatrix`, when not
// null, holds one importance weight per weight and src is exactly one matrix row (llama.cpp
// derives the row's σ² from it). pack_codes stores one block's codes into a block whose
// scales are already set: unsigned, one per weight in weight order, as the format stores them
// before any offset (Q4_0: 0..15 for d·(q − 8); Q3_K: 0..7 for d·(q − 4); IQ4: grid index).
#define QF_GGML_CODEC(T)                                                           \
  void quantize_##T(const float* src, void* dst, int64_t n, const float* imatrix); \
  void dequantize_##T(const void* src, float* dst, int64_t n);                     \
  void pack_codes_##T(const uint8_t* codes, void* block);
QF_GGML_CODEC(q4_0)
QF_GGML_CODEC(q4_1)
QF_GGML_CODEC(q5_0)
QF_GGML_CODEC(q5_1)
QF_GGML_CODEC(q2_K)
QF_GGML_CODEC(q3_K)
QF_GGML_CODEC(q4_K)
QF_GGML_CODEC(q5_K)
QF_GGML_CODEC(q6_K)
QF_GGML_CODEC(iq4_nl)
QF_GGML_CODEC(iq4_xs)
#undef QF_GGML_CODEC
void dequantize_iq2_xxs(const void* src, float* dst, int64_t n);
void dequantize_iq2_xs(const void* src, float* dst, int64_t n);
void dequantize_iq3_xxs(const void* src, float* dst, int64_t n);

}  // namespace qf
