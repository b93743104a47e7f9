#include "formats/ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "formats/ggml_fit.h"

namespace qf {
namespace {

using namespace ggml;  // the fitting routines of ggml-quants.c

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
  if (j < 8)
    s[j] = uint8_t(l & 0xF);
  else
    s[j - 8] |= uint8_t((l & 0xF) << 4);
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

// Stores 32 legacy codes: low nibbles (weights j and j + 16 share a byte), and for 5-bit
// blocks the fifth bits in qh.
template <typename Block>
void store_codes(const uint8_t* L, Block& b) {
  if constexpr (requires { b.qh; }) {
    pack_q5(L, b.qs, b.qh);
  } else {
    for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
  }
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
      d = largest_magnitude(xb, 32) / -nmax;
      const float id = d ? 1.0f / d : 0.0f;
      for (int j = 0; j < 32; ++j)
        L[j] = uint8_t(std::min(2 * nmax - 1, int(int8_t(xb[j] * id + (nmax + 0.5f)))));
    }
    y[ib].d = f32_to_f16(d);
    store_codes(L, y[ib]);
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
    store_codes(L, y[ib]);
  }
}

void quantize_q4_1(const float* src, void* dst, int64_t n, const float* qw) {
  quantize_affine_legacy<15>(src, static_cast<BlockQ4_1*>(dst), n, qw);
}
void quantize_q5_1(const float* src, void* dst, int64_t n, const float* qw) {
  quantize_affine_legacy<31>(src, static_cast<BlockQ5_1*>(dst), n, qw);
}

void pack_codes_q4_0(const uint8_t* L, void* block) { store_codes(L, *static_cast<BlockQ4_0*>(block)); }
void pack_codes_q4_1(const uint8_t* L, void* block) { store_codes(L, *static_cast<BlockQ4_1*>(block)); }
void pack_codes_q5_0(const uint8_t* L, void* block) { store_codes(L, *static_cast<BlockQ5_0*>(block)); }
void pack_codes_q5_1(const uint8_t* L, void* block) { store_codes(L, *static_cast<BlockQ5_1*>(block)); }

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
    uint8_t L[kQK];
    float w16[kQK], mins[16], scales[16];
    if (qw) {  // quantize_row_q2_K_impl
      const float* q = qw + i * kQK;
      float sigma2 = sum_squares(x, kQK) / kQK, sw[16] = {};
      uint8_t Ls[16], Lm[16];
      for (int j = 0; j < 16; ++j) {
        importance(q + 16 * j, x + 16 * j, 16, sigma2, w16 + 16 * j);
        for (int l = 0; l < 16; ++l) sw[j] += w16[16 * j + l];
      }
      for (int j = 0; j < 16; j += kFitLanes)
        fit_scale_min_8(16, 3, x + 16 * j, w16 + 16 * j, L + 16 * j, mins + j, scales + j, -0.9f, 0.05f, 36,
                        false, true);
      float dm = fit_positive(16, 15, scales, Ls, sw), mm = fit_positive(16, 15, mins, Lm, sw);
      y[i].d = f32_to_f16(dm);
      y[i].dmin = f32_to_f16(mm);
      for (int j = 0; j < 16; ++j) y[i].scales[j] = uint8_t(Ls[j] | (Lm[j] << 4));
    } else {  // quantize_row_q2_K_ref
      float max_scale = 0, max_min = 0;
      for (int l = 0; l < kQK; ++l) w16[l] = std::fabs(x[l]);
      for (int j = 0; j < 16; j += kFitLanes)
        fit_scale_min_8(16, 3, x + 16 * j, w16 + 16 * j, L + 16 * j, mins + j, scales + j, -0.5f, 0.1f, 15,
                        true, false);
      for (int j = 0; j < 16; ++j) {
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
      for (int ii = 0; ii < 16; ++ii)
        L[16 * j + ii] = uint8_t(std::clamp(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
    }
    pack_2bit(L, y[i].qs);
  }
}

void pack_codes_q2_K(const uint8_t* L, void* block) { pack_2bit(L, static_cast<BlockQ2_K*>(block)->qs); }

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
        for (int j = 0; j < 16; ++j)
          set_scale_q3(j, std::clamp(nearest_int(iscale * scales[j]), -32, 31) + 32, y[i].scales);
        y[i].d = f32_to_f16(1 / iscale);
      } else {
        y[i].d = f32_to_f16(0.f);
      }
    }
    for (int j = 0; j < 16; ++j) {
      const float d = h2f(y[i].d) * float(get_scale_q3(j, y[i].scales));
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii)
        L[16 * j + ii] = int8_t(std::clamp(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    // The high bit of weight j goes to bit j/32 of hmask[j % 32].
    pack_codes_q3_K(reinterpret_cast<const uint8_t*>(L), &y[i]);
  }
}

void pack_codes_q3_K(const uint8_t* L, void* block) {
  auto& b = *static_cast<BlockQ3_K*>(block);
  std::memset(b.hmask, 0, 32);
  uint8_t low[kQK];
  for (int j = 0; j < kQK; ++j) {
    if (L[j] > 3) b.hmask[j % 32] |= uint8_t(1 << (j / 32));
    low[j] = uint8_t(L[j] > 3 ? L[j] - 4 : L[j]);
  }
  pack_2bit(low, b.qs);
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
void fit_q45_K(const float* x, const float* qw, int64_t i, uint16_t& d_out, uint16_t& dmin_out, uint8_t* sm,
               uint8_t* L) {
  float weights[kQK], mins[8], scales[8];
  std::memset(sm, 0, 12);
  if (qw) {  // quantize_row_q{4,5}_K_impl
    const float sigma2 = 2 * sum_squares(x, kQK) / kQK;
    float sw[8];
    uint8_t Ls[8], Lm[8];
    for (int j = 0; j < 8; ++j) {
      importance(qw + i * kQK + 32 * j, x + 32 * j, 32, sigma2, weights + 32 * j);
      sw[j] = 0;
      for (int l = 0; l < 32; ++l) sw[j] += weights[32 * j + l];
    }
    fit_scale_min_8(32, nmax, x, weights, L, mins, scales, -0.9f, 0.05f, 36, false, true);
    const float d_block = fit_positive(8, 63, scales, Ls, sw), m_block = fit_positive(8, 63, mins, Lm, sw);
    for (int j = 0; j < 8; ++j)
      set_scale_min_k4(j, std::min<uint8_t>(63, Ls[j]), std::min<uint8_t>(63, Lm[j]), sm);
    d_out = f32_to_f16(d_block);
    dmin_out = f32_to_f16(m_block);
  } else {  // quantize_row_q{4,5}_K_ref
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      const float av_x = std::sqrt(sum_squares(x + 32 * j, 32) / 32);
      for (int l = 0; l < 32; ++l) weights[32 * j + l] = av_x + std::fabs(x[32 * j + l]);
    }
    if (nmax == 15)
      fit_scale_min_8(32, 15, x, weights, L, mins, scales, -1.f, 0.1f, 20, false, false);
    else
      fit_scale_min_8(32, 31, x, weights, L, mins, scales, -0.5f, 0.1f, 15, false, false);
    for (int j = 0; j < 8; ++j) {
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f,
                inv_min = max_min > 0 ? 63.f / max_min : 0.f;
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
    for (int ii = 0; ii < 32; ++ii)
      L[32 * j + ii] = uint8_t(std::clamp(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
  }
}

void quantize_q4_K(const float* x, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ4_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    uint8_t L[kQK];
    fit_q45_K<15>(x, qw, i, y[i].d, y[i].dmin, y[i].scales, L);
    pack_codes_q4_K(L, &y[i]);
  }
}

void pack_codes_q4_K(const uint8_t* L, void* block) {
  auto& b = *static_cast<BlockQ4_K*>(block);
  for (int j = 0; j < kQK; j += 64)
    for (int l = 0; l < 32; ++l) b.qs[j / 2 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
}

void quantize_q5_K(const float* x, void* dst, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ5_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    uint8_t L[kQK];
    fit_q45_K<31>(x, qw, i, y[i].d, y[i].dmin, y[i].scales, L);
    pack_codes_q5_K(L, &y[i]);
  }
}

void pack_codes_q5_K(const uint8_t* L, void* block) {
  auto& b = *static_cast<BlockQ5_K*>(block);
  std::memset(b.qh, 0, 32);
  uint8_t m1 = 1, m2 = 2;
  for (int k = 0; k < kQK; k += 64, m1 = uint8_t(m1 << 2), m2 = uint8_t(m2 << 2))
    for (int j = 0; j < 32; ++j) {
      int l1 = L[k + j], l2 = L[k + j + 32];
      if (l1 > 15) {
        l1 -= 16;
        b.qh[j] |= m1;
      }
      if (l2 > 15) {
        l2 -= 16;
        b.qh[j] |= m2;
      }
      b.qs[k / 2 + j] = uint8_t(l1 | (l2 << 4));
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
      for (int ii = 0; ii < 16; ++ii)
        L[16 * j + ii] = int8_t(std::clamp(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    pack_codes_q6_K(reinterpret_cast<const uint8_t*>(L), &y[i]);
  }
}

void pack_codes_q6_K(const uint8_t* L, void* block) {
  auto& b = *static_cast<BlockQ6_K*>(block);
  uint8_t *ql = b.ql, *qh = b.qh;
  for (int j = 0; j < kQK; j += 128, ql += 64, qh += 32)
    for (int l = 0; l < 32; ++l) {
      ql[l] = uint8_t((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
      ql[l + 32] = uint8_t((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
      qh[l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                      ((L[j + l + 96] >> 4) << 6));
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

}  // namespace qf
