// kernels/cpu/matvec_kquants.cc — llama.cpp's 256-weight super-block formats: the k-quants
// Q2_K…Q6_K and IQ4_XS (fused dot products from registers: int16 x on AVX2, int8 x with
// 64 weights a register on AVX-512 — vpdpbusd where VNNI is, IQ4_XS only there) and the lattice
// i-quants IQ2_XXS, IQ2_XS, IQ3_XXS (decoded through their reference codec). Blocks are read
// through formats/ggml_quants.h's structs. Highway's foreach_target re-includes this file once
// per SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matvec_kquants.cc"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include "kernels/cpu/unpack-inl.h"

HWY_BEFORE_NAMESPACE();
namespace qf::HWY_NAMESPACE {

// ---- Unpackers (ggml-quants.c's dequantize_row_* order) -----------------------------------

struct UQ2_K : Unpacker<256, sizeof(BlockQ2_K)> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    const float dd = F16(QF_AT(b, BlockQ2_K, d)), dmin = F16(QF_AT(b, BlockQ2_K, dmin));
    const uint8_t *qs = QF_AT(b, BlockQ2_K, qs), *sc = QF_AT(b, BlockQ2_K, scales);
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l) q[128 * h + 32 * j + l] = int8_t((qs[32 * h + l] >> (2 * j)) & 3);
    for (int s = 0; s < 16; ++s) {
      d[s] = dd * float(sc[s] & 0xF);
      m[s] = -dmin * float(sc[s] >> 4);
    }
  }
};
struct UQ3_K : Unpacker<256, sizeof(BlockQ3_K)> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    const uint8_t *hmask = QF_AT(b, BlockQ3_K, hmask), *qs = QF_AT(b, BlockQ3_K, qs),
                  *sc = QF_AT(b, BlockQ3_K, scales);
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j) {
        const uint8_t bit = uint8_t(1 << (4 * h + j));
        for (int l = 0; l < 32; ++l)
          q[128 * h + 32 * j + l] = int8_t(((qs[32 * h + l] >> (2 * j)) & 3) - ((hmask[l] & bit) ? 0 : 4));
      }
    const float dd = F16(QF_AT(b, BlockQ3_K, d));
    for (int s = 0; s < 16; ++s) {
      const int low = s < 8 ? sc[s] & 0xF : sc[s - 8] >> 4;
      d[s] = dd * float((low | (((sc[8 + s % 4] >> (2 * (s / 4))) & 3) << 4)) - 32);
      m[s] = 0;
    }
  }
};
// Q4_K/Q5_K: 8 pairs of 6-bit (scale, min) in 12 bytes (get_scale_min_k4).
inline void ScaleMinK4(const uint8_t* sc, float dd, float dmin, float* d, float* m) {
  for (int j = 0; j < 8; ++j) {
    const int s = j < 4 ? sc[j] & 63 : (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4);
    const int mn = j < 4 ? sc[j + 4] & 63 : (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
    Fill2(d + 2 * j, dd * float(s));
    Fill2(m + 2 * j, -dmin * float(mn));
  }
}
template <class B>  // BlockQ4_K (d dmin scales[12] qs[128]) or BlockQ5_K (… qh[32] qs[128])
struct UQ45_K : Unpacker<256, sizeof(B)> {
  static constexpr bool kHigh = std::is_same_v<B, BlockQ5_K>;
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    const uint8_t* qs = QF_AT(b, B, qs);
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        int lo = qs[32 * j + l] & 0xF, hi = qs[32 * j + l] >> 4;
        if constexpr (kHigh) {
          const uint8_t* qh = QF_AT(b, B, qh);
          lo |= ((qh[l] >> (2 * j)) & 1) << 4;
          hi |= ((qh[l] >> (2 * j + 1)) & 1) << 4;
        }
        q[64 * j + l] = int8_t(lo);
        q[64 * j + 32 + l] = int8_t(hi);
      }
    ScaleMinK4(QF_AT(b, B, scales), F16(QF_AT(b, B, d)), F16(QF_AT(b, B, dmin)), d, m);
  }
};
struct UQ6_K : Unpacker<256, sizeof(BlockQ6_K)> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    for (int h = 0; h < 2; ++h) {
      const uint8_t *ql = QF_AT(b, BlockQ6_K, ql) + 64 * h, *qh = QF_AT(b, BlockQ6_K, qh) + 32 * h;
      int8_t* y = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        y[l] = int8_t(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
        y[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        y[l + 64] = int8_t(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        y[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    const float dd = F16(QF_AT(b, BlockQ6_K, d));
    for (int s = 0; s < 16; ++s) {
      d[s] = dd * float(int8_t(QF_AT(b, BlockQ6_K, scales)[s]));
      m[s] = 0;
    }
  }
};
struct UIQ4_XS : Unpacker<256, sizeof(BlockIQ4_XS)> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    uint16_t sh;
    std::memcpy(&sh, QF_AT(b, BlockIQ4_XS, scales_h), 2);
    const float dd = F16(QF_AT(b, BlockIQ4_XS, d));
    const uint8_t* sl = QF_AT(b, BlockIQ4_XS, scales_l);
    for (int ib = 0; ib < 8; ++ib) {
      LookupNibbles(QF_AT(b, BlockIQ4_XS, qs) + 16 * ib, kIq4nlValues, q + 32 * ib);
      const int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
      Fill2(d + 2 * ib, dd * float(ls - 32));
      Fill2(m + 2 * ib, 0);
    }
  }
};
// The lattice i-quants decode through their reference codec into fp32 (d = 1, m = 0).
template <void (*Decode)(const void*, float*, int64_t), class B>
struct ULattice : Unpacker<256, sizeof(B), float> {
  void operator()(const uint8_t* b, int64_t, float* q, float* d, float* m) const {
    Decode(b, q, 256);
    for (int s = 0; s < 16; ++s) d[s] = 1, m[s] = 0;
  }
};

// ---- Fused dot products from registers (AVX2 and up) ---------------------------------------

#if HWY_TARGET <= HWY_AVX2
// ---- 256-weight k-/i-quant blocks from registers: codes widened to int16 lanes in place --
// (byte j of a 16-byte run → lane j), every sub-block's int32 sum scaled by its own d·dx; the
// block's scales decoded as one vector. Sub-blocks follow ggml-quants.c's dequantizers.
using D16 = hn::Full256<int16_t>;
using D32 = hn::Full256<int32_t>;
using DF8 = hn::Full256<float>;

HWY_INLINE hn::Vec256<int16_t> Widen16(const uint8_t* p) {
  return hn::BitCast(D16(), hn::PromoteTo(hn::Full256<uint16_t>(), hn::LoadU(hn::Full128<uint8_t>(), p)));
}
// Σ w·xq over 16 int16 lanes as fp32 lanes.
HWY_INLINE hn::Vec256<float> Sum16(hn::Vec256<int16_t> w, const int16_t* xq) {
  auto unused = hn::Zero(D32());
  return hn::ConvertTo(
      DF8(), hn::ReorderWidenMulAccumulate(D32(), w, hn::LoadU(D16(), xq), hn::Zero(D32()), unused));
}
HWY_INLINE hn::Vec256<float> Sum32(hn::Vec256<int16_t> w0, hn::Vec256<int16_t> w1, const int16_t* xq) {
  auto unused = hn::Zero(D32());
  const auto s = hn::ReorderWidenMulAccumulate(D32(), w0, hn::LoadU(D16(), xq), hn::Zero(D32()), unused);
  return hn::ConvertTo(DF8(), hn::ReorderWidenMulAccumulate(D32(), w1, hn::LoadU(D16(), xq + 16), s, unused));
}
HWY_INLINE hn::Vec256<float> Bytes8ToFloat(const uint8_t* p) {
  return hn::ConvertTo(DF8(), hn::PromoteTo(D32(), hn::LoadU(hn::Full64<uint8_t>(), p)));
}
HWY_INLINE void Prefetch(const uint8_t* block, int bytes) {
  for (int k = 0; k < bytes; k += 64) __builtin_prefetch(block + 1024 + k);
}
// The 12 scale bytes at p as 4 dwords (the last one 0).
HWY_INLINE __m128i Load12(const uint8_t* p) {
  uint32_t third;
  std::memcpy(&third, p + 8, 4);
  return _mm_insert_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), int(third), 2);
}
// Q4_K/Q5_K's 12 scale bytes → the 8 6-bit scales, then the 8 mins, a byte each (get_scale_min_k4),
// as dwords (u0 & 3F, u2 & 0F | (u0 >> 6 & 3) << 4, u1 & 3F, u2 >> 4 & 0F | (u1 >> 6 & 3) << 4)
// stored at out (16 bytes, aligned) in one store.
HWY_INLINE void ScaleMinBytesK4(const uint8_t* scales, uint8_t* out) {
  const __m128i u = Load12(scales);
  const __m128i low =
      _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(2, 1, 2, 0)), _mm_setr_epi32(0, 0, 0, 4)),
                    _mm_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F));
  const __m128i high =
      _mm_and_si128(_mm_slli_epi32(_mm_srli_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(1, 0, 0, 0)), 6), 4),
                    _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  _mm_store_si128(reinterpret_cast<__m128i*>(out), _mm_or_si128(low, high));
}
// IQ4_XS's 8 sub-block scales (6 bits − 32) times d and the activations' per-32 scales dx.
HWY_INLINE hn::Vec256<float> ScalesIQ4XS(const uint8_t* blk, const float* dx) {
  const DF8 df;
  const D32 d32;
  const hn::Full256<uint32_t> du32;
  uint16_t sh;
  uint32_t sl;
  std::memcpy(&sh, QF_AT(blk, BlockIQ4_XS, scales_h), 2);
  std::memcpy(&sl, QF_AT(blk, BlockIQ4_XS, scales_l), 4);
  const auto low =
      hn::And(hn::Shr(hn::Set(du32, sl), hn::Iota(du32, 0) * hn::Set(du32, 4)), hn::Set(du32, 0xF));
  const auto high = hn::ShiftLeft<4>(
      hn::And(hn::Shr(hn::Set(du32, sh), hn::Iota(du32, 0) * hn::Set(du32, 2)), hn::Set(du32, 3)));
  const auto ls = hn::Sub(hn::BitCast(d32, hn::Or(low, high)), hn::Set(d32, 32));
  return hn::Mul(hn::Mul(hn::ConvertTo(df, ls), hn::Set(df, F16(QF_AT(blk, BlockIQ4_XS, d)))),
                 hn::LoadU(df, dx));
}
// Q3_K's 12 scale bytes (a0, a1, t) → the 16 6-bit scales (+ 32), a byte each (ggml's aux
// trick): dwords (a0, a1, a0 >> 4, a1 >> 4) & 0F | ((t >> 0, 2, 4, 6) & 3) << 4, one aligned store.
HWY_INLINE void ScaleBytesQ3K(const uint8_t* scales, uint8_t* out) {
  const __m128i u = Load12(scales);
  const __m128i low =
      _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(1, 0, 1, 0)), _mm_setr_epi32(0, 0, 4, 4)),
                    _mm_set1_epi32(0x0F0F0F0F));
  const __m128i high =
      _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(2, 2, 2, 2)), _mm_setr_epi32(0, 2, 4, 6)),
                    _mm_set1_epi32(0x03030303));
  _mm_store_si128(reinterpret_cast<__m128i*>(out), _mm_or_si128(low, _mm_slli_epi32(high, 4)));
}

// Q4_K (d dmin scales[12] qs[128]) / Q5_K (… qh[32] qs[128]): 8 sub-blocks of 32.
template <class B>
float DotQ45K(const uint8_t* row, int64_t nb, const QActivations& a) {
  constexpr bool kHigh = std::is_same_v<B, BlockQ5_K>;
  constexpr int kBytes = sizeof(B);
  const DF8 df;
  const D16 d16;
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df), offsets = hn::Zero(df);
  alignas(32) float sc[8];
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * kBytes;
    Prefetch(blk, kBytes);
    alignas(16) uint8_t bytes[16];
    ScaleMinBytesK4(QF_AT(blk, B, scales), bytes);
    hn::Store(hn::Mul(hn::Mul(Bytes8ToFloat(bytes), hn::Set(df, F16(QF_AT(blk, B, d)))),
                      hn::LoadU(df, a.dx32 + 8 * b)),
              df, sc);
    offsets = hn::MulAdd(hn::Mul(Bytes8ToFloat(bytes + 8), hn::Set(df, -F16(QF_AT(blk, B, dmin)))),
                         hn::LoadU(df, a.xs32 + 8 * b), offsets);
    const uint8_t* qs = QF_AT(blk, B, qs);
    const int16_t* xq = a.xq + 256 * b;
    hn::Vec256<int16_t> qh0, qh1;  // Q5_K: bit 2j (2j + 1) of qh[l] is the fifth bit of lo (hi) run j
    if constexpr (kHigh) qh0 = Widen16(QF_AT(blk, B, qh)), qh1 = Widen16(QF_AT(blk, B, qh) + 16);
    const auto low4 = hn::Set(d16, 0x0F), bit4 = hn::Set(d16, 0x10);
    for (int j = 0; j < 4; ++j) {
      const auto v0 = Widen16(qs + 32 * j), v1 = Widen16(qs + 32 * j + 16);
      auto lo0 = hn::And(v0, low4), lo1 = hn::And(v1, low4), hi0 = hn::ShiftRight<4>(v0),
           hi1 = hn::ShiftRight<4>(v1);
      if constexpr (kHigh) {
        lo0 = hn::Or(lo0, hn::And(hn::ShiftLeft<4>(qh0), bit4)),
        hi0 = hn::Or(hi0, hn::And(hn::ShiftLeft<3>(qh0), bit4));
        lo1 = hn::Or(lo1, hn::And(hn::ShiftLeft<4>(qh1), bit4)),
        hi1 = hn::Or(hi1, hn::And(hn::ShiftLeft<3>(qh1), bit4));
        qh0 = hn::ShiftRight<2>(qh0), qh1 = hn::ShiftRight<2>(qh1);
      }
      acc0 = hn::MulAdd(Sum32(lo0, lo1, xq + 64 * j), hn::Set(df, sc[2 * j]), acc0);
      acc1 = hn::MulAdd(Sum32(hi0, hi1, xq + 64 * j + 32), hn::Set(df, sc[2 * j + 1]), acc1);
    }
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(acc0, acc1), offsets)));
}

// Q6_K (ql[128] qh[64] scales[16] d): 16 sub-blocks of 16 with int8 scales.
float DotQ6K(const uint8_t* row, int64_t nb, const QActivations& a) {
  const DF8 df;
  const D16 d16;
  const hn::Full64<int8_t> d8x8;
  hn::Vec256<float> acc[4] = {hn::Zero(df), hn::Zero(df), hn::Zero(df), hn::Zero(df)};
  alignas(32) float sc[16];
  const auto low4 = hn::Set(d16, 0x0F), bits45 = hn::Set(d16, 0x30), bias = hn::Set(d16, 32);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * int64_t(sizeof(BlockQ6_K));
    Prefetch(blk, sizeof(BlockQ6_K));
    const auto d = hn::Set(df, F16(QF_AT(blk, BlockQ6_K, d)));
    for (int k = 0; k < 16; k += 8)
      hn::Store(
          hn::Mul(
              hn::Mul(hn::ConvertTo(
                          df, hn::PromoteTo(D32(), hn::LoadU(d8x8, reinterpret_cast<const int8_t*>(
                                                                       QF_AT(blk, BlockQ6_K, scales) + k)))),
                      d),
              hn::LoadU(df, a.dx + 16 * b + k)),
          df, sc + k);
    for (int h = 0; h < 2; ++h) {
      const uint8_t *ql = QF_AT(blk, BlockQ6_K, ql) + 64 * h, *qh = QF_AT(blk, BlockQ6_K, qh) + 32 * h;
      const int16_t* xq = a.xq + 256 * b + 128 * h;
      const float* s = sc + 8 * h;
      for (int l = 0; l < 2; ++l) {  // lanes 16·l … 16·l + 15 of each run of 32
        const auto q0 = Widen16(ql + 16 * l), q1 = Widen16(ql + 32 + 16 * l), hb = Widen16(qh + 16 * l);
        const auto y0 = hn::Sub(hn::Or(hn::And(q0, low4), hn::And(hn::ShiftLeft<4>(hb), bits45)), bias);
        const auto y1 = hn::Sub(hn::Or(hn::And(q1, low4), hn::And(hn::ShiftLeft<2>(hb), bits45)), bias);
        const auto y2 = hn::Sub(hn::Or(hn::ShiftRight<4>(q0), hn::And(hb, bits45)), bias);
        const auto y3 = hn::Sub(hn::Or(hn::ShiftRight<4>(q1), hn::And(hn::ShiftRight<2>(hb), bits45)), bias);
        acc[0] = hn::MulAdd(Sum16(y0, xq + 16 * l), hn::Set(df, s[l]), acc[0]);
        acc[1] = hn::MulAdd(Sum16(y1, xq + 32 + 16 * l), hn::Set(df, s[2 + l]), acc[1]);
        acc[2] = hn::MulAdd(Sum16(y2, xq + 64 + 16 * l), hn::Set(df, s[4 + l]), acc[2]);
        acc[3] = hn::MulAdd(Sum16(y3, xq + 96 + 16 * l), hn::Set(df, s[6 + l]), acc[3]);
      }
    }
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(acc[0], acc[1]), hn::Add(acc[2], acc[3]))));
}

// IQ4_XS (d scales_h scales_l[4] qs[128]): 8 sub-blocks of 32, IQ4_NL's grid.
float DotIQ4XS(const uint8_t* row, int64_t nb, const QActivations& a) {
  const DF8 df;
  const hn::Full128<uint8_t> du8;
  const hn::Full128<int8_t> di8;
  const auto tbl = hn::LoadU(di8, kIq4nlValues);
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  alignas(32) float sc[8];
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * int64_t(sizeof(BlockIQ4_XS));
    Prefetch(blk, sizeof(BlockIQ4_XS));
    hn::Store(ScalesIQ4XS(blk, a.dx32 + 8 * b), df, sc);
    const int16_t* xq = a.xq + 256 * b;
    for (int ib = 0; ib < 8; ib += 2) {
      auto sub = [&](int k) {
        const auto v = hn::LoadU(du8, QF_AT(blk, BlockIQ4_XS, qs) + 16 * k);
        const auto w0 =
            hn::PromoteTo(D16(), hn::TableLookupBytes(tbl, hn::BitCast(di8, hn::And(v, hn::Set(du8, 0x0F)))));
        const auto w1 =
            hn::PromoteTo(D16(), hn::TableLookupBytes(tbl, hn::BitCast(di8, hn::ShiftRight<4>(v))));
        return Sum32(w0, w1, xq + 32 * k);
      };
      acc0 = hn::MulAdd(sub(ib), hn::Set(df, sc[ib]), acc0);
      acc1 = hn::MulAdd(sub(ib + 1), hn::Set(df, sc[ib + 1]), acc1);
    }
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
}

// Q2_K (scales[16] qs[64] d dmin) / Q3_K (hmask[32] qs[64] scales[12] d): 16 sub-blocks of 16,
// 2-bit codes at bits 2j of qs (Q3_K: a third bit in hmask, bit 4n + j, missing → − 4).
template <class B>
float DotQ23K(const uint8_t* row, int64_t nb, const QActivations& a) {
  constexpr bool kThree = std::is_same_v<B, BlockQ3_K>;
  constexpr int kBytes = sizeof(B);
  const DF8 df;
  const D16 d16;
  hn::Vec256<float> acc[4] = {hn::Zero(df), hn::Zero(df), hn::Zero(df), hn::Zero(df)};
  auto offsets = hn::Zero(df);
  alignas(32) float sc[16];
  alignas(16) uint8_t scale_bytes[16], min_bytes[16];
  const auto three = hn::Set(d16, 3), one = hn::Set(d16, 1), four = hn::Set(d16, 4);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * kBytes;
    Prefetch(blk, kBytes);
    const uint8_t* qs = QF_AT(blk, B, qs);
    float d;
    if constexpr (kThree) {  // 6-bit scales − 32
      ScaleBytesQ3K(QF_AT(blk, B, scales), scale_bytes);
      d = F16(QF_AT(blk, B, d));
    } else {
      const uint8_t* sb = QF_AT(blk, B, scales);
      for (int k = 0; k < 16; ++k) scale_bytes[k] = sb[k] & 0xF, min_bytes[k] = sb[k] >> 4;
      d = F16(QF_AT(blk, B, d));
    }
    for (int k = 0; k < 16; k += 8) {
      auto v = Bytes8ToFloat(scale_bytes + k);
      if constexpr (kThree) v = hn::Sub(v, hn::Set(df, 32));
      hn::Store(hn::Mul(hn::Mul(v, hn::Set(df, d)), hn::LoadU(df, a.dx + 16 * b + k)), df, sc + k);
      if constexpr (!kThree)
        offsets = hn::MulAdd(hn::Mul(Bytes8ToFloat(min_bytes + k), hn::Set(df, -F16(QF_AT(blk, B, dmin)))),
                             hn::LoadU(df, a.xs16 + 16 * b + k), offsets);
    }
    hn::Vec256<int16_t> h0, h1;
    if constexpr (kThree) h0 = Widen16(QF_AT(blk, B, hmask)), h1 = Widen16(QF_AT(blk, B, hmask) + 16);
    for (int n = 0; n < 2; ++n) {
      auto q0 = Widen16(qs + 32 * n), q1 = Widen16(qs + 32 * n + 16);
      const int16_t* xq = a.xq + 256 * b + 128 * n;
      const float* s = sc + 8 * n;
      for (int j = 0; j < 4; ++j) {
        auto y0 = hn::And(q0, three), y1 = hn::And(q1, three);
        if constexpr (kThree) {
          y0 = hn::Sub(hn::Or(y0, hn::ShiftLeft<2>(hn::And(h0, one))), four);
          y1 = hn::Sub(hn::Or(y1, hn::ShiftLeft<2>(hn::And(h1, one))), four);
          h0 = hn::ShiftRight<1>(h0), h1 = hn::ShiftRight<1>(h1);
        }
        q0 = hn::ShiftRight<2>(q0), q1 = hn::ShiftRight<2>(q1);
        acc[j] = hn::MulAdd(Sum16(y0, xq + 32 * j), hn::Set(df, s[2 * j]), acc[j]);
        acc[j] = hn::MulAdd(Sum16(y1, xq + 32 * j + 16), hn::Set(df, s[2 * j + 1]), acc[j]);
      }
    }
  }
  return hn::GetLane(
      hn::SumOfLanes(df, hn::Add(hn::Add(hn::Add(acc[0], acc[1]), hn::Add(acc[2], acc[3])), offsets)));
}

#if HWY_TARGET <= HWY_AVX3
// ---- AVX-512, int8 x (unpack-inl.h's DotBytes): each block's codes land in weight order (the
// two halves of a register shifted apart), the int32 sums of 4 products scaled per sub-block in
// fp32: lanes 8k… hold sub-block k of a 32-weight run pair, lanes 4k… of a 16-weight one; the
// scales reach their lanes by permutes.
QF_VNNI_BEGIN

// Q4_K / Q5_K: run j of the block is bytes qs[32j…32j+31], low nibbles weights 64j…64j+31,
// high nibbles the next 32 (Q5_K: bits 2j and 2j + 1 of qh[l] on top).
template <class B>
float DotQ45K8(const uint8_t* row, int64_t nb, const QActivations& a) {
  constexpr bool kHigh = std::is_same_v<B, BlockQ5_K>;
  constexpr int kBytes = sizeof(B);
  const DF8 df;
  __m512 acc = _mm512_setzero_ps();
  auto offsets = hn::Zero(df);
  const __m512i low4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10), nibbles = HalfCounts(0, 4),
                fifth = HalfCounts(4, 3);
  const __m512i run[4] = {LaneGroups(0, 8), LaneGroups(2, 8), LaneGroups(4, 8), LaneGroups(6, 8)};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * kBytes;
    Prefetch(blk, kBytes);
    alignas(16) uint8_t bytes[16];
    ScaleMinBytesK4(QF_AT(blk, B, scales), bytes);
    const __m512 sc =
        _mm512_castps256_ps512(hn::Mul(hn::Mul(Bytes8ToFloat(bytes), hn::Set(df, F16(QF_AT(blk, B, d)))),
                                       hn::LoadU(df, a.dx8 + 8 * b))
                                   .raw);
    offsets = hn::MulAdd(hn::Mul(Bytes8ToFloat(bytes + 8), hn::Set(df, -F16(QF_AT(blk, B, dmin)))),
                         hn::LoadU(df, a.xs32 + 8 * b), offsets);
    const uint8_t* qs = QF_AT(blk, B, qs);
    const int8_t* x = a.xq8 + 256 * b;
    __m512i qh;  // Q5_K: shifted right by 2 per run, so that bits 0 and 1 are the run's
    if constexpr (kHigh) qh = Broadcast32(QF_AT(blk, B, qh));
    for (int j = 0; j < 4; ++j) {
      __m512i q = _mm512_and_si512(_mm512_srlv_epi16(Broadcast32(qs + 32 * j), nibbles), low4);
      if constexpr (kHigh) {
        q = _mm512_or_si512(q, _mm512_and_si512(_mm512_sllv_epi16(qh, fifth), bit4));
        qh = _mm512_srli_epi16(qh, 2);
      }
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotBytes(q, Load64(x + 64 * j))),
                            _mm512_permutexvar_ps(run[j], sc), acc);
    }
  }
  return _mm512_reduce_add_ps(acc) + hn::GetLane(hn::SumOfLanes(df, offsets));
}

// Q6_K: half h of the block is ql[64h…64h+63] and qh[32h…32h+31]; its first 64 weights are the
// low nibbles of ql with bits (0, 1) then (2, 3) of qh on top, the next 64 the high nibbles with
// bits (4, 5) then (6, 7). Codes 0…63 multiply x; Σ(q − 32)·x = Σ q·x − 32·Σ x per 16.
float DotQ6K8(const uint8_t* row, int64_t nb, const QActivations& a) {
  __m512 acc = _mm512_setzero_ps(), bias = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30), up_lo = HalfCounts(4, 2),
                down_hi = HalfCounts(0, 2), pairs = LaneGroups(0, 2);
  const __m512i quarter[4] = {LaneGroups(0, 4), LaneGroups(4, 4), LaneGroups(8, 4), LaneGroups(12, 4)};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * int64_t(sizeof(BlockQ6_K));
    Prefetch(blk, sizeof(BlockQ6_K));
    const __m512 scales = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(QF_AT(blk, BlockQ6_K, scales)))));
    const __m512 dx16 = _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_loadu_ps(a.dx8 + 8 * b)));
    const __m512 sc =
        _mm512_mul_ps(_mm512_mul_ps(scales, _mm512_set1_ps(F16(QF_AT(blk, BlockQ6_K, d)))), dx16);
    bias = _mm512_fmadd_ps(sc, _mm512_loadu_ps(a.xs8 + 16 * b), bias);
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = Load64(QF_AT(blk, BlockQ6_K, ql) + 64 * h),
                    hb = Broadcast32(QF_AT(blk, BlockQ6_K, qh) + 32 * h);
      const __m512i w0 =
          _mm512_or_si512(_mm512_and_si512(ql, low4), _mm512_and_si512(_mm512_sllv_epi16(hb, up_lo), bits45));
      const __m512i w1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                         _mm512_and_si512(_mm512_srlv_epi16(hb, down_hi), bits45));
      const int8_t* x = a.xq8 + 256 * b + 128 * h;
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotBytes(w0, Load64(x))),
                            _mm512_permutexvar_ps(quarter[2 * h], sc), acc);
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotBytes(w1, Load64(x + 64))),
                            _mm512_permutexvar_ps(quarter[2 * h + 1], sc), acc);
    }
  }
  return _mm512_reduce_add_ps(acc) - 32.0f * _mm512_reduce_add_ps(bias);
}

// Q2_K / Q3_K: half n of the block is qs[32n…32n+31]; weights 128n + 32j + l are its bits 2j of
// byte l (Q3_K: plus 4 where bit 4n + j of hmask[l] is set, then − 4 for all: codes 0…7 multiply
// x, Σ(q − 4)·x = Σ q·x − 4·Σ x per 16). A register holds runs j = 2p (lower) and 2p + 1.
template <class B>
float DotQ23K8(const uint8_t* row, int64_t nb, const QActivations& a) {
  constexpr bool kThree = std::is_same_v<B, BlockQ3_K>;
  constexpr int kBytes = sizeof(B);
  __m512 acc = _mm512_setzero_ps(), bias = _mm512_setzero_ps();
  auto offsets = _mm512_setzero_ps();
  const __m512i three = _mm512_set1_epi8(3), bit2 = _mm512_set1_epi8(4), pairs = LaneGroups(0, 2),
                third = HalfCounts(2, 1);
  const __m512i counts[2] = {HalfCounts(0, 2), HalfCounts(4, 6)};
  const __m512i quarter[4] = {LaneGroups(0, 4), LaneGroups(4, 4), LaneGroups(8, 4), LaneGroups(12, 4)};
  alignas(16) uint8_t scale_bytes[16];
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * kBytes;
    Prefetch(blk, kBytes);
    __m512 scales;
    if constexpr (kThree) {  // 6-bit scales − 32
      ScaleBytesQ3K(QF_AT(blk, B, scales), scale_bytes);
      scales = _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                 _mm_load_si128(reinterpret_cast<const __m128i*>(scale_bytes)))),
                             _mm512_set1_ps(32));
    } else {  // low nibbles: scales; high nibbles: mins
      const __m512i sb =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(QF_AT(blk, B, scales))));
      scales = _mm512_cvtepi32_ps(_mm512_and_si512(sb, _mm512_set1_epi32(0xF)));
      offsets = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(sb, 4)),
                                              _mm512_set1_ps(-F16(QF_AT(blk, B, dmin)))),
                                _mm512_loadu_ps(a.xs16 + 16 * b), offsets);
    }
    const __m512 dx16 = _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_loadu_ps(a.dx8 + 8 * b)));
    const __m512 sc = _mm512_mul_ps(_mm512_mul_ps(scales, _mm512_set1_ps(F16(QF_AT(blk, B, d)))), dx16);
    if constexpr (kThree) bias = _mm512_fmadd_ps(sc, _mm512_loadu_ps(a.xs8 + 16 * b), bias);
    __m512i hm;  // Q3_K: shifted right by 2 per register, so that bits 0 and 1 are its runs'
    if constexpr (kThree) hm = Broadcast32(QF_AT(blk, B, hmask));
    for (int n = 0; n < 2; ++n) {
      const __m512i v = Broadcast32(QF_AT(blk, B, qs) + 32 * n);
      for (int p = 0; p < 2; ++p) {
        __m512i q = _mm512_and_si512(_mm512_srlv_epi16(v, counts[p]), three);
        if constexpr (kThree) {
          q = _mm512_or_si512(q, _mm512_and_si512(_mm512_sllv_epi16(hm, third), bit2));
          hm = _mm512_srli_epi16(hm, 2);
        }
        const int8_t* x = a.xq8 + 256 * b + 128 * n + 64 * p;
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotBytes(q, Load64(x))),
                              _mm512_permutexvar_ps(quarter[2 * n + p], sc), acc);
      }
    }
  }
  return _mm512_reduce_add_ps(acc) + _mm512_reduce_add_ps(offsets) - 4.0f * _mm512_reduce_add_ps(bias);
}

#if QF_VNNI
// IQ4_XS (VNNI only: grid values + 128 reach 241, which pmaddubsw's int16 pairs would saturate):
// sub-block s is qs[16s…16s+15], low nibbles its first 16 weights, high nibbles the next; a
// register holds sub-blocks 2p and 2p + 1 as four 16-byte lanes. Codes are the grid + 128, so
// Σ w·x = Σ (w + 128)·x − 128·Σ x per 16.
float DotIQ4XS8(const uint8_t* row, int64_t nb, const QActivations& a) {
  alignas(16) uint8_t shifted[16];
  for (int i = 0; i < 16; ++i) shifted[i] = uint8_t(kIq4nlValues[i] + 128);
  const __m512i table = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(shifted)));
  const __m512i low4 = _mm512_set1_epi8(0x0F), pairs = LaneGroups(0, 2),
                nibbles = _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                            0x0004000400040004, 0x0004000400040004);
  const __m512i run[4] = {LaneGroups(0, 8), LaneGroups(2, 8), LaneGroups(4, 8), LaneGroups(6, 8)};
  __m512 acc = _mm512_setzero_ps(), bias = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * int64_t(sizeof(BlockIQ4_XS));
    Prefetch(blk, sizeof(BlockIQ4_XS));
    const __m512 sc = _mm512_castps256_ps512(ScalesIQ4XS(blk, a.dx8 + 8 * b).raw);
    bias = _mm512_fmadd_ps(_mm512_permutexvar_ps(pairs, sc), _mm512_loadu_ps(a.xs8 + 16 * b), bias);
    const uint8_t* qs = QF_AT(blk, BlockIQ4_XS, qs);
    const int8_t* x = a.xq8 + 256 * b;
    for (int p = 0; p < 4; ++p) {
      const __m512i v =
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * p)));
      const __m512i idx =
          _mm512_and_si512(_mm512_srlv_epi16(_mm512_shuffle_i64x2(v, v, 0x50), nibbles), low4);
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotBytes(_mm512_shuffle_epi8(table, idx), Load64(x + 64 * p))),
                            _mm512_permutexvar_ps(run[p], sc), acc);
    }
  }
  return _mm512_reduce_add_ps(acc) - 128.0f * _mm512_reduce_add_ps(bias);
}
#endif
QF_VNNI_END
#endif  // HWY_TARGET <= HWY_AVX3

template <float (*Dot)(const uint8_t*, int64_t, const QActivations&)>
void GemvK(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.n_in / 256;
  for (int64_t r = r0; r < r1; ++r) y[r] = Dot(w.data + r * w.row_bytes, nb, a);
}
#endif

// Formats with int8 dot products on AVX-512 (QF_INT8), the int16 ones below.
RowKernels KernelsQ4_K() {
  return WithInt8<UQ45_K<BlockQ4_K>>(QF_INT8((GemvK<DotQ45K8<BlockQ4_K>>)),
                                     QF_FUSED((GemvK<DotQ45K<BlockQ4_K>>)));
}
RowKernels KernelsQ5_K() {
  return WithInt8<UQ45_K<BlockQ5_K>>(QF_INT8((GemvK<DotQ45K8<BlockQ5_K>>)),
                                     QF_FUSED((GemvK<DotQ45K<BlockQ5_K>>)));
}
RowKernels KernelsQ6_K() { return WithInt8<UQ6_K>(QF_INT8((GemvK<DotQ6K8>)), QF_FUSED((GemvK<DotQ6K>))); }
RowKernels KernelsQ2_K() {
  return WithInt8<UQ2_K>(QF_INT8((GemvK<DotQ23K8<BlockQ2_K>>)), QF_FUSED((GemvK<DotQ23K<BlockQ2_K>>)));
}
RowKernels KernelsQ3_K() {
  return WithInt8<UQ3_K>(QF_INT8((GemvK<DotQ23K8<BlockQ3_K>>)), QF_FUSED((GemvK<DotQ23K<BlockQ3_K>>)));
}
#if QF_VNNI
RowKernels KernelsIQ4_XS() { return WithInt8<UIQ4_XS>(GemvK<DotIQ4XS8>, nullptr); }
#else
RowKernels KernelsIQ4_XS() { return Kernels<UIQ4_XS>(QF_FUSED((GemvK<DotIQ4XS>))); }
#endif
RowKernels KernelsIQ2_XXS() { return Kernels<ULattice<dequantize_iq2_xxs, BlockIQ2_XXS>>(nullptr); }
RowKernels KernelsIQ2_XS() { return Kernels<ULattice<dequantize_iq2_xs, BlockIQ2_XS>>(nullptr); }
RowKernels KernelsIQ3_XXS() { return Kernels<ULattice<dequantize_iq3_xxs, BlockIQ3_XXS>>(nullptr); }

}  // namespace qf::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();
