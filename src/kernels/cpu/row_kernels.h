// kernels/cpu/row_kernels.h — the CPU backend's per-format kernel pair: a matrix-vector product
// over a range of rows and an fp32 decoder of rows. kernels/cpu/qmatvec.cc picks the pair for a
// QType (one switch, per SIMD target); the families' files (matvec_float.cc, matvec_blocks32.cc,
// matvec_kquants.cc) implement them.
#pragma once

#include <cstdint>

#include "kernels/cpu/qmatvec.h"

namespace qf {

// One activation vector as the dot products read it: x, its sums per 16 and per 32, and x per
// 32 as codes with one scale — int16 codes for the int16 kernels: x ≈ dx·xq, |error| ≤ dx / 2 =
// max|x of the 32| / 65534 (dx stored once per 16 and once per 32), or int8 codes (xq8 below)
// for the kernels with RowKernels::int8_x, the other kind's arrays null. qmatvec makes them;
// arrays of sums and scales padded with 16 zeros.
struct QActivations {
  const float* x;
  const float* xs16;
  const int16_t* xq;
  const float* dx;
  const float* xs32;
  const float* dx32;
  const int16_t* xq_bnb4;  // BNB4 matrices: xq with each 16 reordered (even, odd)
  // Kernels with int8 dot products (RowKernels::int8_x): x per 32 as int8 codes, x ≈ dx8·xq8
  // (llama.cpp's q8_0: codes round(x·127 / max|x of the 32|), dx8 = max / 127 rounded to fp16), so
  // |error| ≤ max / 254 + 127·|dx8 − max / 127| ≤ max·(1/254 + 2^-11); dx8 per 32, Σ xq8 (fp32) per 16.
  const int8_t* xq8 = nullptr;
  const float* dx8 = nullptr;
  const float* xs8 = nullptr;
};

// y[r] = Σ_i W[r, i]·x[i] for r in [r0, r1), single-threaded.
using GemvFn = void (*)(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1);
// Rows [r0, r0 + rows) to fp32 at dst (rows, n_in), single-threaded.
using DecodeFn = void (*)(const QMatrix& w, int64_t r0, int64_t rows, float* dst);

struct RowKernels {
  GemvFn gemv = nullptr;
  DecodeFn decode = nullptr;
  bool int8_x = false;  // gemv reads the int8 activations (xq8) rather than the int16 ones
};

}  // namespace qf
