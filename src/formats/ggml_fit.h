// formats/ggml_fit.h — the scale-fitting routines of llama.cpp's ggml-quants.c, shared by the
// legacy, k- and i-quant codecs (formats/ggml_quants.cc, formats/iq_quants.cc). Each fits one
// group of n weights to integer codes L and returns the scale; `qw`/`weights` are per-weight
// error weights (null: llama.cpp's default for that routine). Internal to formats/.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace qf::ggml {

constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS: a group this small is all zeros

// llama.cpp's nearest_int, its magic-number trick: adding 1.5·2^23 leaves round-half-to-even(v) in
// the low mantissa bits (exact for |v| ≤ 2^22 − 1, which every code and candidate scale stays
// within). The same value as nearbyint in the default rounding mode, without the libm call that
// x86-64's baseline ISA (no SSE4.1 roundss) makes of nearbyint in the fitting loops.
inline int nearest_int(float v) {
  const float shifted = v + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &shifted, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// The value of largest magnitude, with its sign (0 for an empty or all-zero group).
float largest_magnitude(const float* x, int n);

// Symmetric codes l ∈ [−nmax, nmax) stored as l + nmax (make_qx_quants).
float fit_symmetric(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);
// Q3_K's symmetric fit with coordinate descent (make_q3_quants, rmse on).
float fit_symmetric_q3(int n, int nmax, const float* x, int8_t* L);
// Codes l ∈ [0, nmax] with x ≈ scale·l − min (make_qkx2_quants; qkx3: make_qkx3_quants).
float fit_scale_min(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                    uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad, bool qkx3);
// fit_scale_min for kFitLanes consecutive groups of n ≤ kFitMaxN at once (x, weights and L hold
// group k at k·n; weights required): the same codes, mins and scales, bit for bit, several times
// faster.
constexpr int kFitLanes = 8, kFitMaxN = 32;
void fit_scale_min_8(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                     float* scale, float rmin, float rdelta, int nstep, bool use_mad, bool qkx3);
// Σ w·q·x and Σ w·q·q of a group for up to kGridCandidates inverse scales at once, q the nearest
// value of an ascending 16-value grid (IQ4_NL's) to inv_scale[c]·x, ties as llama.cpp breaks them.
constexpr int kGridCandidates = 16;
void grid16_candidate_sums(int n, const float* x, const float* w, int n_cand, const float* inv_scale,
                           const int8_t* grid, float* sumqx, float* sumq2);
// Non-negative values onto [0, nmax] (make_qp_quants).
float fit_positive(int n, int nmax, const float* x, uint8_t* L, const float* qw);

// Importance of each weight in a group: imatrix · sqrt(σ² + x²) (llama.cpp's `_impl` paths).
void importance(const float* qw, const float* x, int n, float sigma2, float* out);
float sum_squares(const float* x, int64_t n);

}  // namespace qf::ggml
