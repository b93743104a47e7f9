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

#include "formats/packed.h"

namespace qf {

// Whether the CPU kernels take this matrix: a format with kernels (kernels/cpu/qmatvec.cc's
// switch), n_in a multiple of the block and of 32, groups a multiple of 32. Callers fall back to
// their own decoding otherwise.
bool qmatvec_supported(const QMatrix& w);

// Whether this machine's matrix-vector kernel for t multiplies x rounded to int8 per 32 values
// (each off by ≤ max|x of its 32| / 254; AVX-512 k-quant kernels) rather than to int16 (/ 65534).
bool qmatvec_int8(QType t);

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
