// kernels/cpu/widen.h — stored weights to fp32, SIMD through Highway with runtime dispatch
// (one binary; the best target — AVX-512, AVX2+F16C, SSE4 — is chosen at first call).
#pragma once

#include <cstdint>

#include "formats/qtype.h"

namespace qf {

// Decodes n consecutive values of `type` at src into dst (n a multiple of the block size).
// F16 and BF16 are widened exactly with SIMD; other types use the reference codec.
void widen_to_f32(QType type, const void* src, float* dst, int64_t n);

}  // namespace qf
