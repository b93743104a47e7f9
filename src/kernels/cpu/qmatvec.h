// kernels/cpu/qmatvec.h — fused dequantize-and-multiply for every weight format qforge runs.
//
// Each format decodes one block at a time (32 or 256 weights) into small integers q (or
// code-book floats) plus, per 16 weights, a scale d and an offset m: w = d·q + m. The dot
// product of a row with x is then Σ_sub d·(Σ q·x) + Σ_sub m·(Σ x): the sums of x per 16 are
// computed once per call, q·x runs in fp32 SIMD lanes (Highway, runtime dispatch), and no
// dequantized weight ever leaves the registers and L1. The same decoders write fp32 tiles
// for the cache-blocked matrix-matrix path (BLAS sgemm on the decoded tile).
#pragma once

#include <cstdint>

#include "formats/qtype.h"

namespace qf {

// How a matrix's rows are stored, as the kernels see them.
enum class QLayout : uint8_t {
  Stored,      // `type`'s own blocks, rows of row_bytes (F32/F16/BF16 and the GGML types)
  IntNibbles,  // integer-grid codes < 16: per 32 weights 16 bytes, code j in the low nibble of
               // byte j and code 16 + j in its high nibble (Q4_0's order); w = s·(q − z)
  IntBytes,    // integer-grid codes < 256, one byte each; w = s·(q − z)
  Bnb4,        // bitsandbytes NF4/FP4: two codes per byte, first in the high nibble, in flat
               // tensor order; w = absmax[flat index / group] · lut[q]
};

struct QMatrix {
  QLayout layout = QLayout::Stored;
  QType type = QType::F32;     // Stored only
  const uint8_t* data = nullptr;
  int64_t n_out = 0, n_in = 0, row_bytes = 0;
  // IntNibbles/IntBytes: (n_out, n_in / group) scales and zeros. Bnb4: absmax per `group`
  // weights of the flattened tensor, lut its 16 code-book values.
  const float* scales = nullptr;
  const float* zeros = nullptr;
  int64_t group = 0;
  const float* lut = nullptr;
};

// One activation vector as the dot products read it: x, its sums per 16 and per 32, and x per
// 32 as int16 codes with one scale: x ≈ dx·xq, |error| ≤ dx / 2 = max|x of the 32| / 65534
// (qmatvec makes them; dx is stored once per 16 and once per 32; arrays of sums and scales
// padded with 16 zeros).
struct QActivations {
  const float* x;
  const float* xs16;
  const int16_t* xq;
  const float* dx;
  const float* xs32;
  const float* dx32;
  const int16_t* xq_bnb4;  // Bnb4 matrices on AVX2: xq with each 16 reordered (even, odd)
};

// Whether the fused kernels take this matrix (n_in a multiple of the block, and of 32; groups
// a multiple of 32). Callers fall back to their own decoding otherwise.
bool qmatvec_supported(const QMatrix& w);

// y[o] = Σ_i W[o, i] · x[i] for every row, OpenMP threads splitting the rows.
void qmatvec(const QMatrix& w, const float* x, float* y);

// Decodes rows [r0, r0 + rows) to fp32 into dst (rows, n_in), single-threaded.
void qdecode_rows(const QMatrix& w, int64_t r0, int64_t rows, float* dst);

// Exact int32 dot products of `rows` int8 rows of length n (row-major at w) with x, single-
// threaded (LLM.int8()'s matrix-vector product; n < 2^17 keeps every sum within int32).
void qdot_i8_rows(const int8_t* w, int64_t rows, int64_t n, const int8_t* x, int32_t* out);

// The SIMD target Highway chose for this machine ("AVX2", "AVX3", ...).
const char* qmatvec_target();

}  // namespace qf
