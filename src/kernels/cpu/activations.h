// kernels/cpu/activations.h — the transformer's element-wise work in SIMD (Highway, runtime
// dispatch): exp through Highway's polynomial (max error ~1 ulp, contrib/math), fp32 lanes.
#pragma once

#include <cstdint>

namespace qf {

// gate[i] = SiLU(gate[i]) · up[i] = gate[i] / (1 + e^−gate[i]) · up[i].
void silu_mul(float* gate, const float* up, int64_t n);

// row[j] = e^(row[j] − max) for j < n; returns Σ row[j].
double exp_shifted(float* row, int64_t n, float max);

}  // namespace qf
