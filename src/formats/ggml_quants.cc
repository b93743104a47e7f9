#include "formats/ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"

namespace qf {
namespace {

constexpr float kGroupMaxEps = 1e-15f;

// llama.cpp's nearest_int: round half to even (the magic-number trick does the same).
int nearest_int(float v) { return int(std::nearbyint(v)); }

// Weight of x in llama.cpp's error measures when no importance is given.
float rmse_weight(int type, float x) {
  return type == 1 ? x * x : type == 2 ? 1.0f : type == 3 ? std::fabs(x) : std::sqrt(std::fabs(x));
}

// Symmetric codes l ∈ [−nmax, nmax) stored as l + nmax (make_qx_quants): start from the scale
// that maps the largest-magnitude value to −nmax, then try 18 nearby scales and keep the one
// maximising (Σw·x·l)²/Σw·l² — the weighted least-squares optimum for its rounding.
float fit_symmetric(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  if (amax < kGroupMaxEps) {
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
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      float w = qw ? qw[i] : rmse_weight(rmse_type, x[i]);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = int8_t(nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K's symmetric fit (make_q3_quants with rmse): coordinate descent on single codes, up to
// 5 sweeps, weights x².
float fit_symmetric_q3(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  if (amax < kGroupMaxEps) {
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
float fit_scale_min(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                    float rmin, float rdelta, int nstep, bool use_mad, bool qkx3) {
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

// Importance of each weight in a group: imatrix · sqrt(σ² + x²) (llama.cpp's `_impl` paths).
void importance(const float* qw, const float* x, int n, float sigma2, float* out) {
  for (int i = 0; i < n; ++i) out[i] = qw[i] * std::sqrt(sigma2 + x[i] * x[i]);
}

float sum_squares(const float* x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

float h2f(uint16_t h) { return f16_to_f32(h); }

// 6-bit scales and mins of Q4_K/Q5_K: 8 pairs in 12 bytes (get_scale_min_k4).
void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = uint8_t((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}
void set_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* q) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] |= uint8_t((ls >> 4) << 6);
    q[j - 0] |= uint8_t((lm >> 4) << 6);
  }
}

// Q3_K's 16 6-bit scales (stored + 32) in 12 bytes.
int8_t get_scale_q3(int j, const uint8_t* s) {
  int sc = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  return int8_t((sc | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
}
void set_scale_q3(int j, int l, uint8_t* s) {  // l ∈ [0, 63]
  if (j < 8) s[j] = uint8_t(l & 0xF);
  else s[j - 8] |= uint8_t((l & 0xF) << 4);
  s[j % 4 + 8] |= uint8_t((l >> 4) << (2 * (j / 4)));
}

// 2-bit codes of a 256 super-block: byte j/4 + l of each 128-half holds codes l, l+32, l+64, l+96.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Low nibbles and the 5th bits of 32-weight legacy blocks.
void pack_q5(const uint8_t* L, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = uint8_t((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
    qh |= ((L[j] & 0x10u) >> 4) << j;
    qh |= ((L[j + 16] & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

}  // namespace

// ---- Q4_0 / Q5_0: x = d·(q − 8 | 16) ------------------------------------------------------

template <int nmax, typename Block>
void quantize_symmetric_legacy(const float* x, Block* y, int64_t n, const float* qw) {
  float sigma2 = qw ? sum_squares(x, n) / float(n) : 0;
  for (int64_t ib = 0; ib < n / 32; ++ib) {
    const float* xb = x + ib * 32;
    uint8_t L[32];
    float d;
    if (qw) {
      float w[32];
      int8_t Ls[32];
      importance(qw + ib * 32, xb, 32, sigma2, w);
      d = fit_symmetric(32, nmax, xb, Ls, 1, w);
      for (int j = 0; j < 32; ++j) L[j] = uint8_t(Ls[j]);
    } else {  // quantize_row_q{4,5}_0_ref: the value of largest magnitude maps to −nmax
      float amax = 0, max = 0;
      for (int j = 0; j < 32; ++j)
        if (amax < std::fabs(xb[j])) {
          amax = std::fabs(xb[j]);
          max = xb[j];
        }
      d = max / -nmax;
      const float id = d ? 1.0f / d : 0.0f;
      for (int j = 0; j < 32; ++j) L[j] = uint8_t(std::min(2 * nmax - 1, int(int8_t(xb[j] * id + (nmax + 0.5f)))));
    }
    y[ib].d = f32_to_f16(d);
    if constexpr (nmax == 8) {
      for (int j = 0; j < 16; ++j) y[ib].qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
    } else {
      pack_q5(L, y[ib].qs, y[ib].qh);
    }
  }
}

void quantize_q4_0(const float* src, void* dst, int64_t n, const float* qw) {
  quantize_symmetric_legacy<8>(src, static_cast<BlockQ4_0*>(dst), n, qw);
}
void quantize_q5_0(const float* src, void* dst, int64_t n, const float* qw) {
  quantize_symmetric_legacy<16>(src, static_cast<BlockQ5_0*>(dst), n, qw);
}

void dequantize_q4_0(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[i * 32 + j] = float((b[i].qs[j] & 0x0F) - 8) * d;
      y[i * 32 + j + 16] = float((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q5_0(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = h2f(b[i].d);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int x0 = ((b[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16;
      const int x1 = ((b[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
      y[i * 32 + j] = float(x0) * d;
      y[i * 32 + j + 16] = float(x1) * d;
    }
  }
}

// ---- Q4_1 / Q5_1: x = d·q + m ------------------------------------------------------------

template <int nmax, typename Block>
void quantize_affine_legacy(const float* x, Block* y, int64_t n, const float* qw) {
  float sigma2 = qw ? sum_squares(x, n) / float(n) : 0;
  for (int64_t ib = 0; ib < n / 32; ++ib) {
    const float* xb = x + ib * 32;
    uint8_t L[32];
    float d, m;
    if (qw) {
      float w[32], min;
      uint8_t Laux[32];
      importance(qw + ib * 32, xb, 32, sigma2, w);
      d = fit_scale_min(32, nmax, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, false, true);
      m = -min;
    } else {  // quantize_row_q{4,5}_1_ref: [min, max] onto [0, nmax]
      float min = xb[0], max = xb[0];
      for (int j = 1; j < 32; ++j) {
        min = std::min(min, xb[j]);
        max = std::max(max, xb[j]);
      }
      d = (max - min) / nmax;
      m = min;
      const float id = d ? 1.0f / d : 0.0f;
      for (int j = 0; j < 32; ++j) {
        const int q = int(uint8_t((xb[j] - min) * id + 0.5f));
        L[j] = uint8_t(nmax == 15 ? std::min(15, int(int8_t(q))) : q);
      }
    }
    y[ib].d = f32_to_f16(d);
    y[ib].m = f32_to_f16(m);
    if constexpr (nmax == 15) {
      for (int j = 0; j < 16; ++j) y[ib].qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
    } else {
      pack_q5(L, y[ib].qs, y[ib].qh);
    }
  }
}

void quantize_q4_1(const float* src, void* dst, int64_t n, const float* qw) {
  quantize_affine_legacy<15>(src, static_cast<BlockQ4_1*>(dst), n, qw);
}
void quantize_q5_1(const float* src, void* dst, int64_t n, const float* qw) {
  quantize_affine_legacy<31>(src, static_cast<BlockQ5_1*>(dst), n, qw);
}

void dequantize_q4_1(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    for (int j = 0; j < 16; ++j) {
      y[i * 32 + j] = float(b[i].qs[j] & 0x0F) * d + m;
      y[i * 32 + j + 16] = float(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_q5_1(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int x0 = (b[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
      const int x1 = (b[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
      y[i * 32 + j] = float(x0) * d + m;
      y[i * 32 + j + 16] = float(x1) * d + m;
    }
  }
}

// ---- Q2_K: 16 sub-blocks of 16, 2-bit codes, 4-bit scale and min each ---------------------

void quantize_q2_K(const float* x, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ2_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    uint8_t L[kQK], Laux[16];
    float weights[16], mins[16], scales[16];
    if (qw) {  // quantize_row_q2_K_impl
      const float* q = qw + i * kQK;
      float sigma2 = sum_squares(x, kQK) / kQK, sw[16] = {};
      uint8_t Ls[16], Lm[16];
      for (int j = 0; j < 16; ++j) {
        importance(q + 16 * j, x + 16 * j, 16, sigma2, weights);
        for (int l = 0; l < 16; ++l) sw[j] += weights[l];
        scales[j] = fit_scale_min(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false, true);
      }
      float dm = fit_positive(16, 15, scales, Ls, sw), mm = fit_positive(16, 15, mins, Lm, sw);
      y[i].d = f32_to_f16(dm);
      y[i].dmin = f32_to_f16(mm);
      for (int j = 0; j < 16; ++j) y[i].scales[j] = uint8_t(Ls[j] | (Lm[j] << 4));
    } else {  // quantize_row_q2_K_ref
      float max_scale = 0, max_min = 0;
      for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
        scales[j] = fit_scale_min(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true, false);
        max_scale = std::max(max_scale, scales[j]);
        max_min = std::max(max_min, mins[j]);
      }
      std::memset(y[i].scales, 0, 16);
      y[i].d = f32_to_f16(max_scale > 0 ? max_scale / 15.f : 0.f);
      y[i].dmin = f32_to_f16(max_min > 0 ? max_min / 15.f : 0.f);
      if (max_scale > 0)
        for (int j = 0; j < 16; ++j) y[i].scales[j] = uint8_t(nearest_int(15.f / max_scale * scales[j]));
      if (max_min > 0)
        for (int j = 0; j < 16; ++j) y[i].scales[j] |= uint8_t(nearest_int(15.f / max_min * mins[j]) << 4);
    }
    for (int j = 0; j < 16; ++j) {  // re-round every weight against the stored scales
      const float d = h2f(y[i].d) * float(y[i].scales[j] & 0xF);
      if (!d) continue;
      const float dm = h2f(y[i].dmin) * float(y[i].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = uint8_t(std::clamp(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
    }
    pack_2bit(L, y[i].qs);
  }
}

void dequantize_q2_K(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockQ2_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = h2f(b[i].d), min = h2f(b[i].dmin);
    const uint8_t* q = b[i].qs;
    int is = 0;
    for (int half = 0; half < kQK; half += 128, q += 32)
      for (int shift = 0; shift < 8; shift += 2)
        for (int part = 0; part < 2; ++part) {
          const uint8_t sc = b[i].scales[is++];
          const float dl = d * float(sc & 0xF), ml = min * float(sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * part] >> shift) & 3) - ml;
        }
  }
}

// ---- Q3_K: 16 sub-blocks of 16, 3-bit codes (2 low bits + a high-bit mask), 6-bit scales -----

void quantize_q3_K(const float* x, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ3_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    int8_t L[kQK];
    float scales[16];
    std::memset(y[i].scales, 0, 12);
    if (qw) {  // quantize_row_q3_K_impl
      float sigma2 = 2 * sum_squares(x, kQK) / kQK, weight[16], sw[16];
      int8_t Ls[16];
      for (int j = 0; j < 16; ++j) {
        importance(qw + i * kQK + 16 * j, x + 16 * j, 16, sigma2, weight);
        sw[j] = 0;
        for (int l = 0; l < 16; ++l) sw[j] += weight[l];
        scales[j] = fit_symmetric(16, 4, x + 16 * j, L + 16 * j, 1, weight);
      }
      float d_block = fit_symmetric(16, 32, scales, Ls, 1, sw);
      for (int j = 0; j < 16; ++j) set_scale_q3(j, Ls[j], y[i].scales);
      y[i].d = f32_to_f16(d_block);
    } else {  // quantize_row_q3_K_ref
      float max_scale = 0, amax = 0;
      for (int j = 0; j < 16; ++j) {
        scales[j] = fit_symmetric_q3(16, 4, x + 16 * j, L + 16 * j);
        if (std::fabs(scales[j]) > amax) {
          amax = std::fabs(scales[j]);
          max_scale = scales[j];
        }
      }
      if (max_scale) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; ++j) set_scale_q3(j, std::clamp(nearest_int(iscale * scales[j]), -32, 31) + 32, y[i].scales);
        y[i].d = f32_to_f16(1 / iscale);
      } else {
        y[i].d = f32_to_f16(0.f);
      }
    }
    for (int j = 0; j < 16; ++j) {
      const float d = h2f(y[i].d) * float(get_scale_q3(j, y[i].scales));
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = int8_t(std::clamp(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    // The high bit of weight j goes to bit j/32 of hmask[j % 32].
    std::memset(y[i].hmask, 0, 32);
    uint8_t low[kQK];
    for (int j = 0; j < kQK; ++j) {
      if (L[j] > 3) y[i].hmask[j % 32] |= uint8_t(1 << (j / 32));
      low[j] = uint8_t(L[j] > 3 ? L[j] - 4 : L[j]);
    }
    pack_2bit(low, y[i].qs);
  }
}

void dequantize_q3_K(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockQ3_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d_all = h2f(b[i].d);
    const uint8_t* q = b[i].qs;
    uint8_t m = 1;
    int is = 0;
    for (int half = 0; half < kQK; half += 128, q += 32)
      for (int shift = 0; shift < 8; shift += 2, m = uint8_t(m << 1))
        for (int part = 0; part < 2; ++part) {
          const float dl = d_all * float(get_scale_q3(is++, b[i].scales));
          for (int l = 0; l < 16; ++l) {
            const int k = l + 16 * part;
            *y++ = dl * float(((q[k] >> shift) & 3) - ((b[i].hmask[k] & m) ? 0 : 4));
          }
        }
  }
}

// ---- Q4_K / Q5_K: 8 sub-blocks of 32, 4/5-bit codes, 6-bit scale and min each ---------------

template <int nmax>
void fit_q45_K(const float* x, const float* qw, int64_t i, uint16_t& d_out, uint16_t& dmin_out, uint8_t* sm, uint8_t* L) {
  uint8_t Laux[32];
  float weights[32], mins[8], scales[8];
  std::memset(sm, 0, 12);
  if (qw) {  // quantize_row_q{4,5}_K_impl
    const float sigma2 = 2 * sum_squares(x, kQK) / kQK;
    float sw[8];
    uint8_t Ls[8], Lm[8];
    for (int j = 0; j < 8; ++j) {
      importance(qw + i * kQK + 32 * j, x + 32 * j, 32, sigma2, weights);
      sw[j] = 0;
      for (int l = 0; l < 32; ++l) sw[j] += weights[l];
      scales[j] = fit_scale_min(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false, true);
    }
    const float d_block = fit_positive(8, 63, scales, Ls, sw), m_block = fit_positive(8, 63, mins, Lm, sw);
    for (int j = 0; j < 8; ++j) set_scale_min_k4(j, std::min<uint8_t>(63, Ls[j]), std::min<uint8_t>(63, Lm[j]), sm);
    d_out = f32_to_f16(d_block);
    dmin_out = f32_to_f16(m_block);
  } else {  // quantize_row_q{4,5}_K_ref
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      const float av_x = std::sqrt(sum_squares(x + 32 * j, 32) / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = nmax == 15 ? fit_scale_min(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20, false, false)
                             : fit_scale_min(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15, false, false);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
      const uint8_t ls = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
      const uint8_t lm = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
      set_scale_min_k4(j, ls, lm, sm);
    }
    d_out = f32_to_f16(max_scale / 63.f);
    dmin_out = f32_to_f16(max_min / 63.f);
  }
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, sm, &sc, &m);
    const float d = h2f(d_out) * float(sc);
    if (!d) continue;
    const float dm = h2f(dmin_out) * float(m);
    for (int ii = 0; ii < 32; ++ii) L[32 * j + ii] = uint8_t(std::clamp(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
  }
}

void quantize_q4_K(const float* x, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ4_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    uint8_t L[kQK];
    fit_q45_K<15>(x, qw, i, y[i].d, y[i].dmin, y[i].scales, L);
    for (int j = 0; j < kQK; j += 64)
      for (int l = 0; l < 32; ++l) y[i].qs[j / 2 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
  }
}

void quantize_q5_K(const float* x, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ5_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    uint8_t L[kQK];
    fit_q45_K<31>(x, qw, i, y[i].d, y[i].dmin, y[i].scales, L);
    std::memset(y[i].qh, 0, 32);
    uint8_t m1 = 1, m2 = 2;
    for (int k = 0; k < kQK; k += 64, m1 = uint8_t(m1 << 2), m2 = uint8_t(m2 << 2))
      for (int j = 0; j < 32; ++j) {
        int l1 = L[k + j], l2 = L[k + j + 32];
        if (l1 > 15) {
          l1 -= 16;
          y[i].qh[j] |= m1;
        }
        if (l2 > 15) {
          l2 -= 16;
          y[i].qh[j] |= m2;
        }
        y[i].qs[k / 2 + j] = uint8_t(l1 | (l2 << 4));
      }
  }
}

void dequantize_q4_K(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = h2f(b[i].d), min = h2f(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int is = 0; is < 8; is += 2, q += 32) {
      uint8_t sc, m;
      get_scale_min_k4(is, b[i].scales, &sc, &m);
      const float d1 = d * float(sc), m1 = min * float(m);
      get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
      const float d2 = d * float(sc), m2 = min * float(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

void dequantize_q5_K(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockQ5_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = h2f(b[i].d), min = h2f(b[i].dmin);
    const uint8_t *ql = b[i].qs, *qh = b[i].qh;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32, u1 = uint8_t(u1 << 2), u2 = uint8_t(u2 << 2)) {
      uint8_t sc, m;
      get_scale_min_k4(is, b[i].scales, &sc, &m);
      const float d1 = d * float(sc), m1 = min * float(m);
      get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
      const float d2 = d * float(sc), m2 = min * float(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

// ---- Q6_K: 16 sub-blocks of 16, 6-bit codes, int8 scales ----------------------------------

void quantize_q6_K(const float* x, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ6_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    int8_t L[kQK];
    float scales[16], max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
      // llama.cpp passes the imatrix itself as the weights here (no σ² term).
      scales[ib] = fit_symmetric(16, 32, x + 16 * ib, L + 16 * ib, 1, qw ? qw + i * kQK + 16 * ib : nullptr);
      if (std::fabs(scales[ib]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    std::memset(&y[i], 0, sizeof(BlockQ6_K));
    if (max_abs_scale < kGroupMaxEps) continue;
    const float iscale = -128.f / max_scale;
    y[i].d = f32_to_f16(1 / iscale);
    for (int ib = 0; ib < 16; ++ib) y[i].scales[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < 16; ++j) {
      const float d = h2f(y[i].d) * float(y[i].scales[j]);
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = int8_t(std::clamp(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    uint8_t *ql = y[i].ql, *qh = y[i].qh;
    for (int j = 0; j < kQK; j += 128, ql += 64, qh += 32)
      for (int l = 0; l < 32; ++l) {
        ql[l] = uint8_t((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
        ql[l + 32] = uint8_t((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
        qh[l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
  }
}

void dequantize_q6_K(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = h2f(b[i].d);
    const uint8_t *ql = b[i].ql, *qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int k = 0; k < kQK; k += 128, y += 128, ql += 64, qh += 32, sc += 8)
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * float(sc[is]) * float(q1);
        y[l + 32] = d * float(sc[is + 2]) * float(q2);
        y[l + 64] = d * float(sc[is + 4]) * float(q3);
        y[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
  }
}

// ---- IQ4_NL / IQ4_XS: a non-linear 16-value grid ----------------------------------------

const int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

namespace {

// Index of the grid value nearest to x (ties to the larger), as llama.cpp's best_index_int8.
int nearest_iq4(float x) {
  if (x <= kIq4nlValues[0]) return 0;
  if (x >= kIq4nlValues[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    (x < kIq4nlValues[mid] ? hi : lo) = mid;
  }
  return x - kIq4nlValues[hi - 1] < kIq4nlValues[hi] - x ? hi - 1 : hi;
}

// quantize_row_iq4_nl_impl: per block of 32, start from the scale mapping the largest-magnitude
// value to the grid's end, try 15 nearby scales (ntry 7), keep the weighted least-squares best.
// With several blocks (IQ4_XS) the block scales become 6-bit integers under one fp16 scale and
// every weight is re-rounded against its stored scale. Writes codes to q4 (two per byte, the
// second 16 of each 32 in the high nibbles).
void quantize_iq4_blocks(int super, const float* x, const float* qw, uint16_t* dh, uint8_t* q4, uint16_t* scales_h,
                         uint8_t* scales_l) {
  constexpr int kBlock = 32, kTry = 7;
  float sigma2 = 2.f * sum_squares(x, super) / float(super);
  uint8_t L[kQK];
  float scales[kQK / kBlock], weight[kBlock];
  std::memset(q4, 0, size_t(super / 2));
  *dh = f32_to_f16(0.f);
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < super / kBlock; ++ib) {
    const float* xb = x + ib * kBlock;
    uint8_t* Lb = L + ib * kBlock;
    if (qw) importance(qw + ib * kBlock, xb, kBlock, sigma2, weight);
    else
      for (int j = 0; j < kBlock; ++j) weight[j] = xb[j] * xb[j];
    float amax = 0, max = 0;
    for (int j = 0; j < kBlock; ++j)
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    if (amax < kGroupMaxEps) {
      scales[ib] = 0;
      continue;
    }
    float d = -max / kIq4nlValues[0], id = 1 / d, sumqx = 0, sumq2 = 0;
    for (int j = 0; j < kBlock; ++j) {
      const int l = nearest_iq4(id * xb[j]);
      Lb[j] = uint8_t(l);
      const float q = kIq4nlValues[l];
      sumqx += weight[j] * q * xb[j];
      sumq2 += weight[j] * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -kTry; itry <= kTry; ++itry) {
      id = (float(itry) + kIq4nlValues[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < kBlock; ++j) {
        const float q = kIq4nlValues[nearest_iq4(id * xb[j])];
        sumqx += weight[j] * q * xb[j];
        sumq2 += weight[j] * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    if (std::fabs(d) > amax_scale) {
      amax_scale = std::fabs(d);
      max_scale = d;
    }
  }
  if (super / kBlock > 1) {
    *scales_h = 0;
    const float d = -max_scale / 32, id = d ? 1 / d : 0.f;
    *dh = f32_to_f16(d);
    for (int ib = 0; ib < super / kBlock; ++ib) {
      int l = std::clamp(nearest_int(id * scales[ib]), -32, 31);
      const float dl = d * float(l), idl = dl ? 1 / dl : 0.f;
      for (int j = 0; j < kBlock; ++j) L[ib * kBlock + j] = uint8_t(nearest_iq4(idl * x[ib * kBlock + j]));
      l += 32;
      if (ib % 2 == 0) scales_l[ib / 2] = uint8_t(l & 0xF);
      else scales_l[ib / 2] |= uint8_t((l & 0xF) << 4);
      *scales_h |= uint16_t((l >> 4) << (2 * ib));
    }
  } else {
    *dh = f32_to_f16(scales[0]);
    const float id = scales[0] ? 1 / scales[0] : 0;
    for (int j = 0; j < super; ++j) L[j] = uint8_t(nearest_iq4(id * x[j]));
  }
  for (int i = 0; i < super / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void decode_iq4(const uint8_t* qs, float d, float* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(kIq4nlValues[qs[j] & 0xF]);
    y[j + 16] = d * float(kIq4nlValues[qs[j] >> 4]);
  }
}

}  // namespace

void quantize_iq4_nl(const float* x, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockIQ4_NL*>(dst);
  uint16_t unused_h;
  uint8_t unused_l[4];
  for (int64_t i = 0; i < n / 32; ++i)
    quantize_iq4_blocks(32, x + i * 32, qw ? qw + i * 32 : nullptr, &y[i].d, y[i].qs, &unused_h, unused_l);
}

void quantize_iq4_xs(const float* x, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockIQ4_XS*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i)
    quantize_iq4_blocks(kQK, x + i * kQK, qw ? qw + i * kQK : nullptr, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l);
}

void dequantize_iq4_nl(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockIQ4_NL*>(src);
  for (int64_t i = 0; i < n / 32; ++i) decode_iq4(b[i].qs, h2f(b[i].d), y + i * 32);
}

void dequantize_iq4_xs(const void* src, float* y, int64_t n) {
  auto* b = static_cast<const BlockIQ4_XS*>(src);
  for (int64_t i = 0; i < n / kQK; ++i)
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((b[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b[i].scales_h >> (2 * ib)) & 3) << 4);
      decode_iq4(b[i].qs + 16 * ib, h2f(b[i].d) * float(ls - 32), y + i * kQK + 32 * ib);
    }
}

}  // namespace qf
