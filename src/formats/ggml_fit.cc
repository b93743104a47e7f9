#include "formats/ggml_fit.h"

#include <algorithm>
#include <cmath>

namespace qf::ggml {

float largest_magnitude(const float* x, int n) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  return max;
}

namespace {

// Weight of x in llama.cpp's error measures when no importance is given.
float rmse_weight(int type, float x) {
  return type == 1 ? x * x : type == 2 ? 1.0f : type == 3 ? std::fabs(x) : std::sqrt(std::fabs(x));
}

}  // namespace

// Symmetric codes l ∈ [−nmax, nmax) stored as l + nmax (make_qx_quants): start from the scale
// that maps the largest-magnitude value to −nmax, then try 18 nearby scales and keep the one
// maximising (Σw·x·l)²/Σw·l² — the weighted least-squares optimum for its rounding.
// Compiled for AVX-512, AVX2 and the baseline, chosen at load time (GCC's target_clones): the
// candidate loop is as wide as the machine. The file is built without FMA contraction
// (CMakeLists.txt), so every clone rounds as the baseline does.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
float fit_symmetric(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw) {
  const float max = largest_magnitude(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  float iscale = -nmax / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) L[i] = int8_t(nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
    return 1 / iscale;
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = int8_t(l + nmax);
    float w = qw ? qw[i] : rmse_weight(rmse_type, x[i]);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  // The 18 other scales (is = −9 … 9 but 0), their sums each in the scalar order but all
  // candidates at once (the inner loop vectorises across them); then llama.cpp's sequential
  // choice, whose tests depend on the best so far.
  constexpr int kCandidates = 18;
  float isc[kCandidates], slx[kCandidates] = {}, sl2[kCandidates] = {};
  for (int c = 0; c < kCandidates; ++c) isc[c] = -(nmax + 0.1f * (c < 9 ? c - 9 : c - 8)) / max;
  for (int i = 0; i < n; ++i) {
    const float w = qw ? qw[i] : rmse_weight(rmse_type, x[i]), wx = w * x[i], xi = x[i];
    for (int c = 0; c < kCandidates; ++c) {
      const float l = float(std::clamp(nearest_int(isc[c] * xi), -nmax, nmax - 1));
      slx[c] += wx * l;
      sl2[c] += w * l * l;
    }
  }
  int chosen = -1;
  for (int c = 0; c < kCandidates; ++c)
    if (sl2[c] > 0 && slx[c] * slx[c] > best * sl2[c]) {
      scale = slx[c] / sl2[c];
      best = scale * slx[c];
      chosen = c;
    }
  if (chosen >= 0)
    for (int i = 0; i < n; ++i)
      L[i] = int8_t(nmax + std::clamp(nearest_int(isc[chosen] * x[i]), -nmax, nmax - 1));
  return scale;
}

// Q3_K's symmetric fit (make_q3_quants with rmse): coordinate descent on single codes, up to
// 5 sweeps, weights x².
float fit_symmetric_q3(int n, int nmax, const float* x, int8_t* L) {
  const float max = largest_magnitude(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  const float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = int8_t(l);
    float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (slx > 0) {
        float sl2 = suml2 - w * L[i] * L[i];
        int new_l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = int8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Codes l ∈ [0, nmax] with x ≈ scale·l − min (make_qkx2_quants / make_qkx3_quants): start
// from the min/max range, then for nstep+1 candidate inverse scales round and solve the
// weighted least-squares scale and min in closed form; keep the best. Returns the scale and
// writes min (≥ 0, subtracted). `weights` null means x² (qkx3 only); `clamp_v` is qkx3's
// guard against a fitted min near max.
float fit_scale_min(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                    uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad, bool qkx3) {
  auto weight = [&](int i) { return weights ? weights[i] : x[i] * x[i]; };
  float min = x[0], max = x[0];
  float sum_w = weight(0), sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    float w = weight(i);
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (qkx3 ? max <= min : max == min) {
    std::fill(L, L + n, 0);
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = uint8_t(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    float diff = scale * L[i] + min - x[i];
    best_error += weight(i) * (use_mad ? std::fabs(diff) : diff * diff);
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l;
      if (qkx3) {
        const float v = iscale * (x[i] - min);
        l = v > 0 ? nearest_int(std::min(v, float(nmax))) : 0;
      } else {
        l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      }
      Laux[i] = uint8_t(l);
      float w = weight(i);
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float err = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        err += weight(i) * (use_mad ? std::fabs(diff) : diff * diff);
      }
      if (err < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = err;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

namespace {

// nearest_int on a float that stays a float (exact: every code and candidate is an integer far
// below 2^22), so that the lane loops below stay in vector registers.
[[gnu::always_inline]] inline float nearest_float(float v) { return float(nearest_int(v)); }

// fit_scale_min_8's lanes, its choices fixed at compile time (vectorisable loops, no branches).
template <bool kQkx3, bool kMad>
[[gnu::always_inline]] inline void fit_lanes(int n, int nmax, const float* x, const float* weights,
                                             uint8_t* L, float* the_min, float* scale_out, float rmin,
                                             float rdelta, int nstep) {
  constexpr int K = kFitLanes;
  float xt[kFitMaxN][K], wt[kFitMaxN][K], lt[kFitMaxN][K], laux[kFitMaxN][K];
  for (int k = 0; k < K; ++k)
    for (int i = 0; i < n; ++i) {
      xt[i][k] = x[k * n + i];
      wt[i][k] = weights[k * n + i];
    }
  const float fmax = float(nmax);
  float mn[K], mx[K], sum_w[K], sum_x[K], scale[K], best[K], isc[K];
  int flat[K];
  for (int k = 0; k < K; ++k) {
    mn[k] = mx[k] = xt[0][k];
    sum_w[k] = wt[0][k];
    sum_x[k] = sum_w[k] * xt[0][k];
  }
  for (int i = 1; i < n; ++i) {
#pragma omp simd
    for (int k = 0; k < K; ++k) {
      mn[k] = xt[i][k] < mn[k] ? xt[i][k] : mn[k];
      mx[k] = mx[k] < xt[i][k] ? xt[i][k] : mx[k];
      sum_w[k] += wt[i][k];
      sum_x[k] += wt[i][k] * xt[i][k];
    }
  }
  for (int k = 0; k < K; ++k) {
    mn[k] = mn[k] > 0 ? 0.0f : mn[k];
    flat[k] = kQkx3 ? mx[k] <= mn[k] : mx[k] == mn[k];
    isc[k] = fmax / (mx[k] - mn[k]);
    scale[k] = 1 / isc[k];
    best[k] = 0;
  }
  for (int i = 0; i < n; ++i) {
#pragma omp simd
    for (int k = 0; k < K; ++k) {
      float l = nearest_float(isc[k] * (xt[i][k] - mn[k]));
      l = l < 0 ? 0.0f : l > fmax ? fmax : l;
      lt[i][k] = l;
      const float diff = scale[k] * l + mn[k] - xt[i][k];
      best[k] += wt[i][k] * (kMad ? std::fabs(diff) : diff * diff);
    }
  }
  for (int is = 0; is <= nstep && nstep >= 1; ++is) {
    float sum_l[K] = {}, sum_l2[K] = {}, sum_xl[K] = {}, err[K] = {}, this_scale[K], this_min[K];
#pragma omp simd
    for (int k = 0; k < K; ++k) isc[k] = (rmin + rdelta * float(is) + fmax) / (mx[k] - mn[k]);
    for (int i = 0; i < n; ++i) {
#pragma omp simd
      for (int k = 0; k < K; ++k) {
        const float v = isc[k] * (xt[i][k] - mn[k]);
        float l;
        if constexpr (kQkx3) {
          // v > 0 ? nearest(min(v, nmax)) : 0, with the comparison first (also for NaN) so that
          // the loop has no branch
          const float p = v > 0 ? v : 0.0f;
          l = nearest_float(p < fmax ? p : fmax);
        } else {
          l = nearest_float(v);
          l = l < 0 ? 0.0f : l > fmax ? fmax : l;
        }
        laux[i][k] = l;
        const float w = wt[i][k];
        sum_l[k] += w * l;
        sum_l2[k] += w * l * l;
        sum_xl[k] += w * l * xt[i][k];
      }
    }
    int fitted[K];
#pragma omp simd
    for (int k = 0; k < K; ++k) {
      const float D = sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k];
      fitted[k] = D > 0;
      const float s = (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / D,
                  m = (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / D;
      this_min[k] = m > 0 ? 0.0f : m;
      this_scale[k] = m > 0 ? sum_xl[k] / sum_l2[k] : s;
    }
    for (int i = 0; i < n; ++i) {
#pragma omp simd
      for (int k = 0; k < K; ++k) {
        const float diff = this_scale[k] * laux[i][k] + this_min[k] - xt[i][k];
        err[k] += wt[i][k] * (kMad ? std::fabs(diff) : diff * diff);
      }
    }
    int take[K];
#pragma omp simd
    for (int k = 0; k < K; ++k) {
      take[k] = fitted[k] & (err[k] < best[k]) & !flat[k];
      best[k] = take[k] ? err[k] : best[k];
      scale[k] = take[k] ? this_scale[k] : scale[k];
      mn[k] = take[k] ? this_min[k] : mn[k];
    }
    for (int i = 0; i < n; ++i) {
#pragma omp simd
      for (int k = 0; k < K; ++k) lt[i][k] = take[k] ? laux[i][k] : lt[i][k];
    }
  }
  for (int k = 0; k < K; ++k) {
    for (int i = 0; i < n; ++i) L[k * n + i] = flat[k] ? 0 : uint8_t(lt[i][k]);
    the_min[k] = -mn[k];
    scale_out[k] = flat[k] ? 0.0f : scale[k];
  }
}

}  // namespace

// fit_scale_min on 8 groups at once, each lane of the loops one group (its sums in the scalar
// routine's order, its choices as selects), so that the vector units run 8 of llama.cpp's
// sequential searches side by side: bit for bit the scalar routine on each group
// (tests/ggml_quants_test.cc). Codes are carried as floats (exact integers). Compiled like
// fit_symmetric.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
void fit_scale_min_8(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                     float* scale, float rmin, float rdelta, int nstep, bool use_mad, bool qkx3) {
  if (qkx3 && !use_mad)
    fit_lanes<true, false>(n, nmax, x, weights, L, the_min, scale, rmin, rdelta, nstep);
  else if (qkx3)
    fit_lanes<true, true>(n, nmax, x, weights, L, the_min, scale, rmin, rdelta, nstep);
  else if (use_mad)
    fit_lanes<false, true>(n, nmax, x, weights, L, the_min, scale, rmin, rdelta, nstep);
  else
    fit_lanes<false, false>(n, nmax, x, weights, L, the_min, scale, rmin, rdelta, nstep);
}

// For each candidate c < n_cand ≤ kGridCandidates: Σ w·q·x and Σ w·q·q over the group, q the value
// of the ascending 16-value grid nearest to inv_scale[c]·x (best_index_int8's choice, written with
// selects: the largest grid value ≤ v and the smallest above it, then llama.cpp's comparison).
// Each candidate's sums in j order; the candidates in vector lanes. Compiled like fit_symmetric.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
void grid16_candidate_sums(int n, const float* x, const float* w, int n_cand, const float* inv_scale,
                           const int8_t* grid, float* sumqx, float* sumq2) {
  constexpr int C = kGridCandidates;
  float g[16], id[C], sx[C] = {}, s2[C] = {};
  for (int i = 0; i < 16; ++i) g[i] = float(grid[i]);
  for (int c = 0; c < C; ++c) id[c] = inv_scale[c < n_cand ? c : 0];
  for (int j = 0; j < n; ++j) {
    const float wj = w[j], xj = x[j];
#pragma omp simd
    for (int c = 0; c < C; ++c) {
      const float v = id[c] * xj;
      float lo = g[0], hi = g[15];
      for (int i = 1; i < 15; ++i) lo = g[i] <= v ? g[i] : lo;
      for (int i = 14; i >= 1; --i) hi = g[i] > v ? g[i] : hi;
      const float q = v - lo < hi - v ? lo : hi;
      sx[c] += wj * q * xj;
      s2[c] += wj * q * q;
    }
  }
  for (int c = 0; c < n_cand; ++c) {
    sumqx[c] = sx[c];
    sumq2[c] = s2[c];
  }
}

// Non-negative values onto [0, nmax] with weights (make_qp_quants): the sub-block scales of
// the imatrix path. 8 nearby scales, then coordinate descent on single codes.
float fit_positive(int n, int nmax, const float* x, uint8_t* L, const float* qw) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = uint8_t(nearest_int(iscale * x[i]));
  float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    float diff = x[i] - scale * L[i];
    best_mse += qw[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    float iscale_is = (0.1f * is + nmax) / max;
    float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      float diff = x[i] - scale_is * l;
      mse += qw[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = uint8_t(l);
    sumlx += qw[i] * x[i] * l;
    suml2 += qw[i] * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = qw[i];
      float slx = sumlx - w * x[i] * L[i];
      float sl2 = suml2 - w * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = uint8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

void importance(const float* qw, const float* x, int n, float sigma2, float* out) {
  for (int i = 0; i < n; ++i) out[i] = qw[i] * std::sqrt(sigma2 + x[i] * x[i]);
}

float sum_squares(const float* x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

}  // namespace qf::ggml
