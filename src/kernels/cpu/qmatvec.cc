// Highway's foreach_target re-includes this file once per SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/qmatvec.cc"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "formats/ggml_quants.h"
#include "kernels/cpu/qmatvec.h"

HWY_BEFORE_NAMESPACE();
namespace qf::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// fp16 → fp32 of one scale (F16C's vcvtph2ps where the target has it).
inline float F16(const uint8_t* p) {
  const hn::CappedTag<float, 1> d1;
  const hn::Rebind<hwy::float16_t, decltype(d1)> dh;
  return hn::GetLane(hn::PromoteTo(d1, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p))));
}

// ---- Unpackers: one block of kBlock weights (kBytes bytes) → q[kBlock], and d, m per 16 ----
// (w = d·q + m). GGML blocks decode as ggml-quants.c's dequantize_row_* does.

template <int Block, int Bytes, class E = int8_t>
struct Unpacker {
  static constexpr int kBlock = Block, kBytes = Bytes, kSubs = Block / 16;
  using Elem = E;
};

inline void SplitNibbles(const uint8_t* qs, int8_t* q) {  // Q4_0's order: low nibbles first
  const hn::CappedTag<uint8_t, 16> d8;
  for (size_t j = 0; j < 16; j += hn::Lanes(d8)) {
    const auto v = hn::LoadU(d8, qs + j);
    hn::StoreU(hn::And(v, hn::Set(d8, 0x0F)), d8, reinterpret_cast<uint8_t*>(q) + j);
    hn::StoreU(hn::ShiftRight<4>(v), d8, reinterpret_cast<uint8_t*>(q) + 16 + j);
  }
}
// The same through a 16-entry int8 table (IQ4_NL's grid).
inline void LookupNibbles(const uint8_t* qs, const int8_t* table, int8_t* q) {
#if HWY_TARGET == HWY_SCALAR
  for (int j = 0; j < 16; ++j) {
    q[j] = table[qs[j] & 0xF];
    q[j + 16] = table[qs[j] >> 4];
  }
#else
  const hn::Full128<uint8_t> du;
  const hn::Full128<int8_t> d8;
  const auto t = hn::LoadU(d8, table);
  const auto v = hn::LoadU(du, qs);
  hn::StoreU(hn::TableLookupBytes(t, hn::BitCast(d8, hn::And(v, hn::Set(du, 0x0F)))), d8, q);
  hn::StoreU(hn::TableLookupBytes(t, hn::BitCast(d8, hn::ShiftRight<4>(v))), d8, q + 16);
#endif
}
inline void Fill2(float* v, float a) { v[0] = v[1] = a; }

struct UQ8_0 : Unpacker<32, 34> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    std::memcpy(q, b + 2, 32);
    Fill2(d, F16(b));
    Fill2(m, 0);
  }
};
struct UQ4_0 : Unpacker<32, 18> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    SplitNibbles(b + 2, q);
    Fill2(d, F16(b));
    Fill2(m, -8 * d[0]);
  }
};
struct UQ4_1 : Unpacker<32, 20> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    SplitNibbles(b + 4, q);
    Fill2(d, F16(b));
    Fill2(m, F16(b + 2));
  }
};
struct FifthBits {  // byte → 8 bytes, byte k = 16 if bit k is set
  uint64_t v[256];
  constexpr FifthBits() : v() {
    for (int b = 0; b < 256; ++b)
      for (int k = 0; k < 8; ++k) v[b] |= uint64_t((b >> k) & 1) << (8 * k + 4);
  }
};
constexpr FifthBits kFifthBits;

template <bool kMin>  // Q5_0 (d, qh, qs) or Q5_1 (d, m, qh, qs)
struct UQ5 : Unpacker<32, kMin ? 24 : 22> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    const uint8_t* p = b + (kMin ? 4 : 2);
    SplitNibbles(p + 4, q);
    // Fifth bits: bit k of qh belongs to weight k; each qh byte expands to 8 bytes of 0 or 16.
    alignas(16) uint64_t high[4];
    for (int k = 0; k < 4; ++k) high[k] = kFifthBits.v[p[k]];
    const hn::CappedTag<uint8_t, 16> d8;
    auto* u = reinterpret_cast<uint8_t*>(q);
    const auto* h = reinterpret_cast<const uint8_t*>(high);
    for (size_t j = 0; j < 32; j += hn::Lanes(d8)) hn::StoreU(hn::Or(hn::LoadU(d8, u + j), hn::LoadU(d8, h + j)), d8, u + j);
    Fill2(d, F16(b));
    Fill2(m, kMin ? F16(b + 2) : -16 * d[0]);
  }
};
struct UIQ4_NL : Unpacker<32, 18> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    LookupNibbles(b + 2, kIq4nlValues, q);
    Fill2(d, F16(b));
    Fill2(m, 0);
  }
};
struct UQ2_K : Unpacker<256, 84> {  // scales[16] qs[64] d dmin
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    const float dd = F16(b + 80), dmin = F16(b + 82);
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l) q[128 * h + 32 * j + l] = int8_t((b[16 + 32 * h + l] >> (2 * j)) & 3);
    for (int s = 0; s < 16; ++s) {
      d[s] = dd * float(b[s] & 0xF);
      m[s] = -dmin * float(b[s] >> 4);
    }
  }
};
struct UQ3_K : Unpacker<256, 110> {  // hmask[32] qs[64] scales[12] d
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 4; ++j) {
        const uint8_t bit = uint8_t(1 << (4 * h + j));
        for (int l = 0; l < 32; ++l)
          q[128 * h + 32 * j + l] = int8_t(((qs[32 * h + l] >> (2 * j)) & 3) - ((hmask[l] & bit) ? 0 : 4));
      }
    const float dd = F16(b + 108);
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
template <bool kHigh>  // Q4_K (d dmin scales[12] qs[128]) or Q5_K (… qh[32] qs[128])
struct UQ45_K : Unpacker<256, kHigh ? 176 : 144> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    const uint8_t *qh = b + 16, *qs = b + (kHigh ? 48 : 16);
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        int lo = qs[32 * j + l] & 0xF, hi = qs[32 * j + l] >> 4;
        if constexpr (kHigh) {
          lo |= ((qh[l] >> (2 * j)) & 1) << 4;
          hi |= ((qh[l] >> (2 * j + 1)) & 1) << 4;
        }
        q[64 * j + l] = int8_t(lo);
        q[64 * j + 32 + l] = int8_t(hi);
      }
    ScaleMinK4(b + 4, F16(b), F16(b + 2), d, m);
  }
};
struct UQ6_K : Unpacker<256, 210> {  // ql[128] qh[64] scales[16] d
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    for (int h = 0; h < 2; ++h) {
      const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
      int8_t* y = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        y[l] = int8_t(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
        y[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        y[l + 64] = int8_t(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        y[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    const float dd = F16(b + 208);
    for (int s = 0; s < 16; ++s) {
      d[s] = dd * float(int8_t(b[192 + s]));
      m[s] = 0;
    }
  }
};
struct UIQ4_XS : Unpacker<256, 136> {  // d scales_h scales_l[4] qs[128]
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    uint16_t sh;
    std::memcpy(&sh, b + 2, 2);
    const float dd = F16(b);
    for (int ib = 0; ib < 8; ++ib) {
      LookupNibbles(b + 8 + 16 * ib, kIq4nlValues, q + 32 * ib);
      const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
      Fill2(d + 2 * ib, dd * float(ls - 32));
      Fill2(m + 2 * ib, 0);
    }
  }
};
// The lattice i-quants decode through their reference codec into fp32 (d = 1, m = 0).
template <void (*Decode)(const void*, float*, int64_t), int Bytes>
struct ULattice : Unpacker<256, Bytes, float> {
  void operator()(const uint8_t* b, int64_t, float* q, float* d, float* m) const {
    Decode(b, q, 256);
    for (int s = 0; s < 16; ++s) d[s] = 1, m[s] = 0;
  }
};

// Index of the group holding 32-weight block b, groups being a multiple of 32 weights: a
// shift when blocks per group is a power of two (every group size in practice), else a divide.
struct GroupOf {
  int64_t per;
  int shift = -1;
  explicit GroupOf(int64_t group) : per(group / 32) {
    if ((per & (per - 1)) == 0) shift = __builtin_ctzll(uint64_t(per));
  }
  int64_t operator()(int64_t b) const { return shift >= 0 ? b >> shift : b / per; }
};

// Integer grids (GPTQ/AWQ/RTN), one row: w = s·(q − z) with s, z per group of columns.
template <bool kNibbles>
struct UIntGrid : Unpacker<32, kNibbles ? 16 : 32> {
  const float *s, *z;
  GroupOf group_of;
  UIntGrid(const QMatrix& w, int64_t r) : s(w.scales + r * (w.n_in / w.group)), z(w.zeros + r * (w.n_in / w.group)), group_of(w.group) {}
  void operator()(const uint8_t* b, int64_t blk, int8_t* q, float* d, float* m) const {
    const int64_t g = group_of(blk);
    if constexpr (kNibbles) {
      SplitNibbles(b, q);
      Fill2(m, -s[g] * z[g]);
    } else {  // codes 0..255 held as q − 128
      for (int j = 0; j < 32; ++j) q[j] = int8_t(b[j] ^ 0x80);
      Fill2(m, -s[g] * (z[g] - 128));
    }
    Fill2(d, s[g]);
  }
};
// bitsandbytes NF4/FP4, one row: w = absmax[flat / group] · lut[code].
struct UBnb4 : Unpacker<32, 16, float> {
  const float *absmax, *lut;
  int64_t block0;  // the row's first 32-weight block in the flattened tensor
  GroupOf group_of;
  UBnb4(const QMatrix& w, int64_t r) : absmax(w.scales), lut(w.lut), block0(r * w.n_in / 32), group_of(w.group) {}
  void operator()(const uint8_t* b, int64_t blk, float* q, float* d, float* m) const {
#if HWY_TARGET == HWY_SCALAR
    for (int j = 0; j < 16; ++j) {
      q[2 * j] = lut[b[j] >> 4];
      q[2 * j + 1] = lut[b[j] & 0xF];
    }
#else
    // Codes in weight order (high nibble first), then two 8-entry table lookups per 8 codes.
    const hn::Full128<uint8_t> du;
    const auto v = hn::LoadU(du, b), hi = hn::ShiftRight<4>(v), lo = hn::And(v, hn::Set(du, 0x0F));
    alignas(32) uint8_t c[32];
    hn::Store(hn::InterleaveLower(hi, lo), du, c);
    hn::Store(hn::InterleaveUpper(du, hi, lo), du, c + 16);
    const hn::CappedTag<float, 8> df;
    if constexpr (hn::MaxLanes(df) == 8) {
      const hn::Rebind<int32_t, decltype(df)> di;
      const hn::Rebind<uint8_t, decltype(df)> d8;
      const auto t0 = hn::LoadU(df, lut), t1 = hn::LoadU(df, lut + 8);
      for (int k = 0; k < 32; k += 8) {
        const auto idx = hn::PromoteTo(di, hn::Load(d8, c + k));
        const auto low = hn::IndicesFromVec(df, hn::And(idx, hn::Set(di, 7)));
        const auto high = hn::RebindMask(df, hn::Gt(idx, hn::Set(di, 7)));
        hn::StoreU(hn::IfThenElse(high, hn::TableLookupLanes(t1, low), hn::TableLookupLanes(t0, low)), df, q + k);
      }
    } else {
      for (int k = 0; k < 32; ++k) q[k] = lut[c[k]];
    }
#endif
    Fill2(d, absmax[group_of(block0 + blk)]);
    Fill2(m, 0);
  }
};

// ---- The two consumers of unpacked blocks: a row's dot product and fp32 decoding ----------

using DF = hn::CappedTag<float, 16>;  // 16 / 8 / 4 lanes: always whole sub-blocks

template <class Elem>
HWY_INLINE hn::Vec<DF> LoadElems(DF df, const Elem* p) {
  if constexpr (std::is_same_v<Elem, float>) {
    return hn::LoadU(df, p);
  } else {
    const hn::Rebind<int32_t, DF> di;
    const hn::Rebind<int8_t, DF> d8;
    return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, p)));
  }
}

// Blocks are unpacked 256 weights at a time, so that the loads of q come long after its
// stores (no store-to-load forwarding stalls on 32-weight blocks). Unpacks the chunk of
// blocks from b0 and returns its number of 16-weight sub-blocks.
template <class U>
HWY_INLINE int UnpackChunk(const U& u, const uint8_t* row, int64_t b0, int64_t nb, typename U::Elem* q, float* d, float* m) {
  constexpr int kPer = 256 / U::kBlock;
  const int nc = int(std::min<int64_t>(kPer, nb - b0));
  if (nc < kPer) std::fill(m, m + 16, 0.0f);  // a short last chunk: no offsets past the row
  for (int k = 0; k < nc; ++k) u(row + (b0 + k) * U::kBytes, b0 + k, q + k * U::kBlock, d + k * U::kSubs, m + k * U::kSubs);
  return nc * U::kSubs;
}

// Σ_i W[row, i] x[i]. Integer codes: Σ_sub d·dx·(Σ q·xq) in exact int32 (int16 pairs
// multiplied and added, pmaddwd), then fp32; code-book floats: Σ_sub d·(Σ q·x) in fp32.
// The offsets add Σ_sub m·Σx in fp32 from the exact sums of x.
template <class U>
float DotRow(const U& u, const uint8_t* row, int64_t n_in, const QActivations& a) {
  const DF df;
  const int N = int(hn::Lanes(df));
  alignas(64) typename U::Elem q[256];
  alignas(64) float d[16], m[16];
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df), offsets = hn::Zero(df);
  const hn::CappedTag<int16_t, 16> d16;
  const hn::Rebind<int8_t, decltype(d16)> d8;
  const hn::RepartitionToWide<decltype(d16)> d32;
  const hn::Rebind<float, decltype(d32)> dw;  // int32 sums → fp32, as many lanes
  auto iacc0 = hn::Zero(dw), iacc1 = hn::Zero(dw);
  const int64_t nb = n_in / U::kBlock;
  const float *x = a.x, *xs16 = a.xs16, *dx = a.dx;
  const int16_t* xq = a.xq;
  for (int64_t b0 = 0; b0 < nb; b0 += 256 / U::kBlock, x += 256, xq += 256, xs16 += 16, dx += 16) {
    const int subs = UnpackChunk(u, row, b0, nb, q, d, m);
    for (int s = 0; s < 16; s += N) offsets = hn::MulAdd(hn::Load(df, m + s), hn::LoadU(df, xs16 + s), offsets);
    if constexpr (std::is_same_v<typename U::Elem, int8_t>) {
      const int L = int(hn::Lanes(d16));
      for (int s = 0; s < 16; s += N) hn::Store(hn::Mul(hn::Load(df, d + s), hn::LoadU(df, dx + s)), df, d + s);
      for (int s = 0; s < subs; s += 2) {
        auto i0 = hn::Zero(d32), i1 = hn::Zero(d32), unused = hn::Zero(d32);
        for (int k = 0; k < 16; k += L) {
          i0 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, q + 16 * s + k)), hn::LoadU(d16, xq + 16 * s + k), i0, unused);
          i1 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, q + 16 * s + 16 + k)), hn::LoadU(d16, xq + 16 * s + 16 + k), i1, unused);
        }
        iacc0 = hn::MulAdd(hn::ConvertTo(dw, i0), hn::Set(dw, d[s]), iacc0);
        iacc1 = hn::MulAdd(hn::ConvertTo(dw, i1), hn::Set(dw, d[s + 1]), iacc1);
      }
    } else {
      for (int s = 0; s < subs; s += 2) {  // two sub-blocks per step, one accumulator each
        auto p0 = hn::Mul(LoadElems(df, q + 16 * s), hn::LoadU(df, x + 16 * s));
        auto p1 = hn::Mul(LoadElems(df, q + 16 * s + 16), hn::LoadU(df, x + 16 * s + 16));
        for (int k = N; k < 16; k += N) {
          p0 = hn::MulAdd(LoadElems(df, q + 16 * s + k), hn::LoadU(df, x + 16 * s + k), p0);
          p1 = hn::MulAdd(LoadElems(df, q + 16 * s + 16 + k), hn::LoadU(df, x + 16 * s + 16 + k), p1);
        }
        acc0 = hn::MulAdd(p0, hn::Set(df, d[s]), acc0);
        acc1 = hn::MulAdd(p1, hn::Set(df, d[s + 1]), acc1);
      }
    }
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(acc0, acc1), offsets))) +
         hn::GetLane(hn::SumOfLanes(dw, hn::Add(iacc0, iacc1)));
}

template <class U>
void DecodeRow(const U& u, const uint8_t* row, int64_t n_in, float* dst) {
  const DF df;
  const int N = int(hn::Lanes(df));
  alignas(64) typename U::Elem q[256];
  alignas(64) float d[16], m[16];
  const int64_t nb = n_in / U::kBlock;
  for (int64_t b0 = 0; b0 < nb; b0 += 256 / U::kBlock, dst += 256) {
    const int subs = UnpackChunk(u, row, b0, nb, q, d, m);
    for (int s = 0; s < subs; ++s)
      for (int k = 0; k < 16; k += N)
        hn::StoreU(hn::MulAdd(LoadElems(df, q + 16 * s + k), hn::Set(df, d[s]), hn::Set(df, m[s])), df, dst + 16 * s + k);
  }
}

// F32/F16/BF16 rows: widen and multiply, two accumulators.
template <class T>
float DotFloatRow(const T* w, int64_t n, const float* x) {
  const DF df;
  const hn::Rebind<T, DF> dt;
  const int64_t N = int64_t(hn::Lanes(df));
  auto load = [&](int64_t i) {
    if constexpr (std::is_same_v<T, float>) return hn::LoadU(df, w + i);
    else return hn::PromoteTo(df, hn::LoadU(dt, w + i));
  };
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    acc0 = hn::MulAdd(load(i), hn::LoadU(df, x + i), acc0);
    acc1 = hn::MulAdd(load(i + N), hn::LoadU(df, x + i + N), acc1);
  }
  for (; i + N <= n; i += N) acc0 = hn::MulAdd(load(i), hn::LoadU(df, x + i), acc0);
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));  // n is a multiple of 16 (qmatvec_supported)
}

#if HWY_TARGET <= HWY_AVX2
// 32-weight blocks with one scale each, multiplied straight from registers (no unpacking to
// memory): codes → two int16×16 vectors → pmaddwd with the int16 activations → one int32 sum
// per block (both halves share d and, activations being scaled per 32, dx) → fp32.
// Codes of block b at codes(b): Nibbles — 16 bytes, Q4_0's order (Signed: minus 8); Nibbles5 —
// the same with fifth bits in the 4 bytes before them, bit j for code j (Signed: minus 16);
// Signed/UnsignedBytes — 32 bytes (q, or q − 128). scale(b, d, m) gives the block's
// w = d·q + m (m unused without kOffsets). Two blocks per step, one accumulator each.
enum class Codes { Nibbles, SignedNibbles, Nibbles5, SignedNibbles5, SignedBytes, UnsignedBytes };

template <Codes C, bool kTable, bool kOffsets, class CodesAt, class Scale>
float Dot32(int64_t nb, const CodesAt& codes, const int8_t* table, const Scale& scale, const QActivations& a) {
  const hn::Full128<uint8_t> du8;
  const hn::Full128<int8_t> di8;
  const hn::Full256<int16_t> d16;
  const hn::Full256<int32_t> d32;
  const hn::Full256<float> df;
  const auto tbl = kTable ? hn::LoadU(di8, table) : hn::Zero(di8);
  auto block_sum = [&](int64_t b) {
    const uint8_t* qs = codes(b);
    __builtin_prefetch(qs + 1024);  // rows are streamed once: ask for them well ahead
    hn::Vec256<int16_t> w0, w1;
    if constexpr (kTable) {
      const auto v = hn::LoadU(du8, qs), lo = hn::And(v, hn::Set(du8, 0x0F)), hi = hn::ShiftRight<4>(v);
      w0 = hn::PromoteTo(d16, hn::TableLookupBytes(tbl, hn::BitCast(di8, lo)));
      w1 = hn::PromoteTo(d16, hn::TableLookupBytes(tbl, hn::BitCast(di8, hi)));
    } else if constexpr (C != Codes::SignedBytes && C != Codes::UnsignedBytes) {
      // Byte j widened to int16 lane j holds code j (low nibble) and code 16 + j (high).
      const auto v = hn::BitCast(d16, hn::PromoteTo(hn::Full256<uint16_t>(), hn::LoadU(du8, qs)));
      w0 = hn::And(v, hn::Set(d16, 0x0F));
      w1 = hn::ShiftRight<4>(v);
      if constexpr (C == Codes::Nibbles5 || C == Codes::SignedNibbles5) {  // lane j: bit j (16 + j) of qh
        const hn::Full256<uint16_t> du16;
        uint32_t qh;
        std::memcpy(&qh, qs - 4, 4);
        const auto one = hn::Set(du16, 1);
        const auto lane_bit = one << hn::Iota(du16, 0);
        const auto h0 = hn::Min(hn::And(hn::Set(du16, uint16_t(qh)), lane_bit), one);
        const auto h1 = hn::Min(hn::And(hn::Set(du16, uint16_t(qh >> 16)), lane_bit), one);
        w0 = hn::Or(w0, hn::BitCast(d16, hn::ShiftLeft<4>(h0)));
        w1 = hn::Or(w1, hn::BitCast(d16, hn::ShiftLeft<4>(h1)));
      }
      constexpr int kBias = C == Codes::SignedNibbles ? 8 : C == Codes::SignedNibbles5 ? 16 : 0;
      if constexpr (kBias != 0) {
        w0 = hn::Sub(w0, hn::Set(d16, kBias));
        w1 = hn::Sub(w1, hn::Set(d16, kBias));
      }
    } else if constexpr (C == Codes::SignedBytes) {
      w0 = hn::PromoteTo(d16, hn::LoadU(di8, reinterpret_cast<const int8_t*>(qs)));
      w1 = hn::PromoteTo(d16, hn::LoadU(di8, reinterpret_cast<const int8_t*>(qs) + 16));
    } else {
      const auto flip = hn::Set(du8, 0x80);
      w0 = hn::PromoteTo(d16, hn::BitCast(di8, hn::Xor(hn::LoadU(du8, qs), flip)));
      w1 = hn::PromoteTo(d16, hn::BitCast(di8, hn::Xor(hn::LoadU(du8, qs + 16), flip)));
    }
    auto unused = hn::Zero(d32);
    const auto sum = hn::ReorderWidenMulAccumulate(d32, w0, hn::LoadU(d16, a.xq + 32 * b), hn::Zero(d32), unused);
    return hn::ConvertTo(df, hn::ReorderWidenMulAccumulate(d32, w1, hn::LoadU(d16, a.xq + 32 * b + 16), sum, unused));
  };
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  float offsets0 = 0, offsets1 = 0;
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    float d0, m0, d1, m1;
    scale(b, d0, m0);
    scale(b + 1, d1, m1);
    acc0 = hn::MulAdd(block_sum(b), hn::Set(df, d0 * a.dx32[b]), acc0);
    acc1 = hn::MulAdd(block_sum(b + 1), hn::Set(df, d1 * a.dx32[b + 1]), acc1);
    if constexpr (kOffsets) {
      offsets0 += m0 * a.xs32[b];
      offsets1 += m1 * a.xs32[b + 1];
    }
  }
  if (b < nb) {
    float d0, m0;
    scale(b, d0, m0);
    acc0 = hn::MulAdd(block_sum(b), hn::Set(df, d0 * a.dx32[b]), acc0);
    if constexpr (kOffsets) offsets0 += m0 * a.xs32[b];
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1))) + offsets0 + offsets1;
}

// bitsandbytes NF4/FP4: the 16 code-book values held as int16 (lut·32767/max|lut|, error ≤
// max|lut|/65534: 30× below the fp16 rounding bitsandbytes' own dequantization has), split into
// low and high byte tables for byte lookups. 16 bytes hold codes 2i (high nibble) and 2i + 1;
// low bytes [even | odd] looked up and interleaved with the high bytes give int16 lanes in the
// order of a.xq_bnb4 (per 16: weights 0, 2, …, 14, then 1, 3, …, 15).
float DotBnb4(const uint8_t* codes, int64_t nb, const float* absmax, int64_t block0, const GroupOf& group_of,
              hn::Vec256<int8_t> lo_table, hn::Vec256<int8_t> hi_table, float unit, const QActivations& a) {
  const hn::Full256<float> df;
  const hn::Full256<int16_t> d16;
  const hn::Full256<int32_t> d32;
  const hn::Full256<int8_t> d8;
  const hn::Full128<uint8_t> du8;
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  auto block = [&](int64_t b, hn::Vec256<float> acc) {
    const auto v = hn::LoadU(du8, codes + 16 * b);
    __builtin_prefetch(codes + 16 * b + 1024);
    const auto idx = hn::BitCast(d8, hn::Combine(hn::Full256<uint8_t>(), hn::And(v, hn::Set(du8, 0x0F)), hn::ShiftRight<4>(v)));
    const auto lo = hn::TableLookupBytes(lo_table, idx), hi = hn::TableLookupBytes(hi_table, idx);
    const auto w0 = hn::BitCast(d16, hn::InterleaveLower(lo, hi)), w1 = hn::BitCast(d16, hn::InterleaveUpper(d8, lo, hi));
    auto unused = hn::Zero(d32);
    const auto s = hn::ReorderWidenMulAccumulate(d32, w0, hn::LoadU(d16, a.xq_bnb4 + 32 * b), hn::Zero(d32), unused);
    const auto sum = hn::ReorderWidenMulAccumulate(d32, w1, hn::LoadU(d16, a.xq_bnb4 + 32 * b + 16), s, unused);
    return hn::MulAdd(hn::ConvertTo(df, sum), hn::Set(df, absmax[group_of(block0 + b)] * unit * a.dx32[b]), acc);
  };
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) acc0 = block(b, acc0), acc1 = block(b + 1, acc1);
  if (b < nb) acc0 = block(b, acc0);
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
}

bool GemvBnb4(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1) {
  float lmax = 0;
  for (int k = 0; k < 16; ++k) lmax = std::max(lmax, std::fabs(w.lut[k]));
  alignas(32) int8_t lo[32], hi[32];
  for (int k = 0; k < 16; ++k) {
    const int v = lmax > 0 ? int(std::lrint(w.lut[k] * 32767.0f / lmax)) : 0;
    lo[k] = lo[k + 16] = int8_t(uint8_t(v & 0xFF));
    hi[k] = hi[k + 16] = int8_t(v >> 8);
  }
  const hn::Full256<int8_t> d8;
  const GroupOf group_of(w.group);
  const int64_t nb = w.n_in / 32;
  for (int64_t r = r0; r < r1; ++r)
    y[r] = DotBnb4(w.data + r * w.row_bytes, nb, w.scales, r * nb, group_of, hn::Load(d8, lo), hn::Load(d8, hi), lmax / 32767.0f, a);
  return true;
}

template <int V>
using I = std::integral_constant<int, V>;
template <Codes C>
using CodesAre = std::integral_constant<Codes, C>;

// The formats Dot32 takes; false for the others.
bool GemvFused32(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.n_in / 32;
  auto rows = [&](auto dot) {
    for (int64_t r = r0; r < r1; ++r) y[r] = dot(w.data + r * w.row_bytes, r);
    return true;
  };
  // Legacy 32-weight blocks of kBytes bytes: fp16 d first, codes at kCodes (Q4_1/Q5_1: fp16 m after d).
  auto legacy = [&](auto codes_kind, auto table_flag, auto bytes, auto codes_offset, const int8_t* table) {
    constexpr Codes C = decltype(codes_kind)::value;
    constexpr bool kTable = decltype(table_flag)::value;
    constexpr int kBytes = decltype(bytes)::value, kCodes = decltype(codes_offset)::value;
    using Min = std::bool_constant<kCodes == 4 || kCodes == 8>;  // Q4_1, Q5_1
    return rows([&](const uint8_t* row, int64_t) {
      return Dot32<C, kTable, Min::value>(nb, [row](int64_t b) { return row + b * kBytes + kCodes; }, table,
                                    [row](int64_t b, float& d, float& m) {
                                      d = F16(row + b * kBytes);
                                      m = Min::value ? F16(row + b * kBytes + 2) : 0.0f;
                                    }, a);
    });
  };
  using Yes = std::true_type;
  using No = std::false_type;
  if (w.layout == QLayout::IntNibbles || w.layout == QLayout::IntBytes) {
    const int64_t ng = w.n_in / w.group;
    const GroupOf group_of(w.group);
    const bool nibbles = w.layout == QLayout::IntNibbles;
    return rows([&](const uint8_t* row, int64_t r) {
      const float *s = w.scales + r * ng, *z = w.zeros + r * ng;
      auto scale = [s, z, group_of](int64_t b, float& d, float& m) {  // (bytes: q − 128 stored)
        const int64_t g = group_of(b);
        d = s[g], m = -s[g] * z[g];
      };
      if (nibbles) return Dot32<Codes::Nibbles, false, true>(nb, [row](int64_t b) { return row + 16 * b; }, nullptr, scale, a);
      return Dot32<Codes::UnsignedBytes, false, true>(nb, [row](int64_t b) { return row + 32 * b; }, nullptr, [scale](int64_t b, float& d, float& m) {
        scale(b, d, m);
        m += 128 * d;
      }, a);
    });
  }
  if (w.layout != QLayout::Stored) return false;
  switch (w.type) {
    case QType::Q4_0: return legacy(CodesAre<Codes::SignedNibbles>{}, No{}, I<18>{}, I<2>{}, nullptr);
    case QType::Q4_1: return legacy(CodesAre<Codes::Nibbles>{}, No{}, I<20>{}, I<4>{}, nullptr);
    case QType::Q5_0: return legacy(CodesAre<Codes::SignedNibbles5>{}, No{}, I<22>{}, I<6>{}, nullptr);
    case QType::Q5_1: return legacy(CodesAre<Codes::Nibbles5>{}, No{}, I<24>{}, I<8>{}, nullptr);
    case QType::IQ4_NL: return legacy(CodesAre<Codes::Nibbles>{}, Yes{}, I<18>{}, I<2>{}, kIq4nlValues);
    case QType::Q8_0: return legacy(CodesAre<Codes::SignedBytes>{}, No{}, I<34>{}, I<2>{}, nullptr);
    default: return false;
  }
}

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
  return hn::ConvertTo(DF8(), hn::ReorderWidenMulAccumulate(D32(), w, hn::LoadU(D16(), xq), hn::Zero(D32()), unused));
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

// Q4_K (d dmin scales[12] qs[128]) / Q5_K (… qh[32] qs[128]): 8 sub-blocks of 32.
template <bool kHigh>
float DotQ45K(const uint8_t* row, int64_t nb, const QActivations& a) {
  constexpr int kBytes = kHigh ? 176 : 144;
  const DF8 df;
  const D16 d16;
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df), offsets = hn::Zero(df);
  alignas(32) float sc[8];
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * kBytes;
    Prefetch(blk, kBytes);
    uint32_t u[4];  // 6-bit scales, then mins, one byte each (get_scale_min_k4 for all 8)
    std::memcpy(u, blk + 4, 12);
    u[3] = ((u[2] >> 4) & 0x0F0F0F0F) | (((u[1] >> 6) & 0x03030303) << 4);
    const uint32_t mins_low = u[1] & 0x3F3F3F3F;
    u[1] = (u[2] & 0x0F0F0F0F) | (((u[0] >> 6) & 0x03030303) << 4);
    u[2] = mins_low;
    u[0] &= 0x3F3F3F3F;
    const auto* bytes = reinterpret_cast<const uint8_t*>(u);
    hn::Store(hn::Mul(hn::Mul(Bytes8ToFloat(bytes), hn::Set(df, F16(blk))), hn::LoadU(df, a.dx32 + 8 * b)), df, sc);
    offsets = hn::MulAdd(hn::Mul(Bytes8ToFloat(bytes + 8), hn::Set(df, -F16(blk + 2))), hn::LoadU(df, a.xs32 + 8 * b), offsets);
    const uint8_t* qs = blk + (kHigh ? 48 : 16);
    const int16_t* xq = a.xq + 256 * b;
    hn::Vec256<int16_t> qh0, qh1;  // Q5_K: bit 2j (2j + 1) of qh[l] is the fifth bit of lo (hi) run j
    if constexpr (kHigh) qh0 = Widen16(blk + 16), qh1 = Widen16(blk + 32);
    const auto low4 = hn::Set(d16, 0x0F), bit4 = hn::Set(d16, 0x10);
    for (int j = 0; j < 4; ++j) {
      const auto v0 = Widen16(qs + 32 * j), v1 = Widen16(qs + 32 * j + 16);
      auto lo0 = hn::And(v0, low4), lo1 = hn::And(v1, low4), hi0 = hn::ShiftRight<4>(v0), hi1 = hn::ShiftRight<4>(v1);
      if constexpr (kHigh) {
        lo0 = hn::Or(lo0, hn::And(hn::ShiftLeft<4>(qh0), bit4)), hi0 = hn::Or(hi0, hn::And(hn::ShiftLeft<3>(qh0), bit4));
        lo1 = hn::Or(lo1, hn::And(hn::ShiftLeft<4>(qh1), bit4)), hi1 = hn::Or(hi1, hn::And(hn::ShiftLeft<3>(qh1), bit4));
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
    const uint8_t* blk = row + b * 210;
    Prefetch(blk, 210);
    const auto d = hn::Set(df, F16(blk + 208));
    for (int k = 0; k < 16; k += 8)
      hn::Store(hn::Mul(hn::Mul(hn::ConvertTo(df, hn::PromoteTo(D32(), hn::LoadU(d8x8, reinterpret_cast<const int8_t*>(blk + 192 + k)))), d),
                        hn::LoadU(df, a.dx + 16 * b + k)), df, sc + k);
    for (int h = 0; h < 2; ++h) {
      const uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
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
  const D32 d32;
  const hn::Full128<uint8_t> du8;
  const hn::Full128<int8_t> di8;
  const hn::Full256<uint32_t> du32;
  const auto tbl = hn::LoadU(di8, kIq4nlValues);
  const auto low_shifts = hn::Iota(du32, 0) * hn::Set(du32, 4), high_shifts = hn::Iota(du32, 0) * hn::Set(du32, 2);
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  alignas(32) float sc[8];
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * 136;
    Prefetch(blk, 136);
    uint16_t sh;
    uint32_t sl;
    std::memcpy(&sh, blk + 2, 2);
    std::memcpy(&sl, blk + 4, 4);
    const auto low = hn::And(hn::Shr(hn::Set(du32, sl), low_shifts), hn::Set(du32, 0xF));
    const auto high = hn::ShiftLeft<4>(hn::And(hn::Shr(hn::Set(du32, sh), high_shifts), hn::Set(du32, 3)));
    const auto ls = hn::Sub(hn::BitCast(d32, hn::Or(low, high)), hn::Set(d32, 32));
    hn::Store(hn::Mul(hn::Mul(hn::ConvertTo(df, ls), hn::Set(df, F16(blk))), hn::LoadU(df, a.dx32 + 8 * b)), df, sc);
    const int16_t* xq = a.xq + 256 * b;
    for (int ib = 0; ib < 8; ib += 2) {
      auto sub = [&](int k) {
        const auto v = hn::LoadU(du8, blk + 8 + 16 * k);
        const auto w0 = hn::PromoteTo(D16(), hn::TableLookupBytes(tbl, hn::BitCast(di8, hn::And(v, hn::Set(du8, 0x0F)))));
        const auto w1 = hn::PromoteTo(D16(), hn::TableLookupBytes(tbl, hn::BitCast(di8, hn::ShiftRight<4>(v))));
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
template <bool kThree>
float DotQ23K(const uint8_t* row, int64_t nb, const QActivations& a) {
  constexpr int kBytes = kThree ? 110 : 84;
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
    const uint8_t* qs = blk + (kThree ? 32 : 16);
    float d;
    if constexpr (kThree) {  // 6-bit scales − 32: low nibbles, then the high pairs (as ggml's aux trick)
      uint32_t u[4];
      std::memcpy(u, blk + 96, 12);
      const uint32_t t = u[2];
      u[2] = ((u[0] >> 4) & 0x0F0F0F0F) | (((t >> 4) & 0x03030303) << 4);
      u[3] = ((u[1] >> 4) & 0x0F0F0F0F) | (((t >> 6) & 0x03030303) << 4);
      u[0] = (u[0] & 0x0F0F0F0F) | ((t & 0x03030303) << 4);
      u[1] = (u[1] & 0x0F0F0F0F) | (((t >> 2) & 0x03030303) << 4);
      std::memcpy(scale_bytes, u, 16);
      d = F16(blk + 108);
    } else {
      for (int k = 0; k < 16; ++k) scale_bytes[k] = blk[k] & 0xF, min_bytes[k] = blk[k] >> 4;
      d = F16(blk + 80);
    }
    for (int k = 0; k < 16; k += 8) {
      auto v = Bytes8ToFloat(scale_bytes + k);
      if constexpr (kThree) v = hn::Sub(v, hn::Set(df, 32));
      hn::Store(hn::Mul(hn::Mul(v, hn::Set(df, d)), hn::LoadU(df, a.dx + 16 * b + k)), df, sc + k);
      if constexpr (!kThree)
        offsets = hn::MulAdd(hn::Mul(Bytes8ToFloat(min_bytes + k), hn::Set(df, -F16(blk + 82))), hn::LoadU(df, a.xs16 + 16 * b + k), offsets);
    }
    hn::Vec256<int16_t> h0, h1;
    if constexpr (kThree) h0 = Widen16(blk), h1 = Widen16(blk + 16);
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
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(hn::Add(acc[0], acc[1]), hn::Add(acc[2], acc[3])), offsets)));
}

bool GemvFusedK(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1) {
  if (w.layout != QLayout::Stored) return false;
  float (*dot)(const uint8_t*, int64_t, const QActivations&) = nullptr;
  switch (w.type) {
    case QType::Q2_K: dot = DotQ23K<false>; break;
    case QType::Q3_K: dot = DotQ23K<true>; break;
    case QType::Q4_K: dot = DotQ45K<false>; break;
    case QType::Q5_K: dot = DotQ45K<true>; break;
    case QType::Q6_K: dot = DotQ6K; break;
    case QType::IQ4_XS: dot = DotIQ4XS; break;
    default: return false;
  }
  const int64_t nb = w.n_in / 256;
  for (int64_t r = r0; r < r1; ++r) y[r] = dot(w.data + r * w.row_bytes, nb, a);
  return true;
}
#endif

// Runs `f(unpacker for row r, row bytes)` for each row in [r0, r1), for w's format.
template <class F>
void ForRows(const QMatrix& w, int64_t r0, int64_t r1, F&& f) {
  auto each = [&](auto make) {
    for (int64_t r = r0; r < r1; ++r) f(make(r), w.data + r * w.row_bytes, r);
  };
  auto plain = [&](auto u) { each([u](int64_t) { return u; }); };
  switch (w.layout) {
    case QLayout::IntNibbles: return each([&](int64_t r) { return UIntGrid<true>(w, r); });
    case QLayout::IntBytes: return each([&](int64_t r) { return UIntGrid<false>(w, r); });
    case QLayout::Bnb4: return each([&](int64_t r) { return UBnb4(w, r); });
    case QLayout::Stored: break;
  }
  switch (w.type) {
    case QType::Q8_0: return plain(UQ8_0{});
    case QType::Q4_0: return plain(UQ4_0{});
    case QType::Q4_1: return plain(UQ4_1{});
    case QType::Q5_0: return plain(UQ5<false>{});
    case QType::Q5_1: return plain(UQ5<true>{});
    case QType::Q2_K: return plain(UQ2_K{});
    case QType::Q3_K: return plain(UQ3_K{});
    case QType::Q4_K: return plain(UQ45_K<false>{});
    case QType::Q5_K: return plain(UQ45_K<true>{});
    case QType::Q6_K: return plain(UQ6_K{});
    case QType::IQ4_NL: return plain(UIQ4_NL{});
    case QType::IQ4_XS: return plain(UIQ4_XS{});
    case QType::IQ2_XXS: return plain(ULattice<dequantize_iq2_xxs, 66>{});
    case QType::IQ2_XS: return plain(ULattice<dequantize_iq2_xs, 74>{});
    case QType::IQ3_XXS: return plain(ULattice<dequantize_iq3_xxs, 98>{});
    default: return;  // float types: handled by the callers
  }
}

void GemvRange(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1) {
  const float* x = a.x;
  const int64_t n = w.n_in;
#if HWY_TARGET <= HWY_AVX2
  if (w.layout == QLayout::Bnb4 && a.xq_bnb4) {
    GemvBnb4(w, a, y, r0, r1);
    return;
  }
  if (GemvFused32(w, a, y, r0, r1) || GemvFusedK(w, a, y, r0, r1)) return;
#endif
  const QType plain = w.layout == QLayout::Stored ? w.type : QType::Q8_0;  // any block type: ForRows
  switch (plain) {
    case QType::F32:
      for (int64_t r = r0; r < r1; ++r) y[r] = DotFloatRow(reinterpret_cast<const float*>(w.data + r * w.row_bytes), n, x);
      return;
    case QType::F16:
      for (int64_t r = r0; r < r1; ++r)
        y[r] = DotFloatRow(reinterpret_cast<const hwy::float16_t*>(w.data + r * w.row_bytes), n, x);
      return;
    case QType::BF16:
      for (int64_t r = r0; r < r1; ++r)
        y[r] = DotFloatRow(reinterpret_cast<const hwy::bfloat16_t*>(w.data + r * w.row_bytes), n, x);
      return;
    default:
      ForRows(w, r0, r1, [&](const auto& u, const uint8_t* row, int64_t r) { y[r] = DotRow(u, row, n, a); });
  }
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

// out[r] = Σ_i w[r·n + i] · x[i] in int32: int8 widened to int16, pairs multiplied and added.
void DotI8Rows(const int8_t* w, int64_t rows, int64_t n, const int8_t* x, int32_t* out) {
  const hn::ScalableTag<int16_t> d16;
  const hn::Rebind<int8_t, decltype(d16)> d8;
  const hn::RepartitionToWide<decltype(d16)> d32;
  const int64_t N = int64_t(hn::Lanes(d16));
  for (int64_t r = 0; r < rows; ++r, w += n) {
    auto s0 = hn::Zero(d32), s1 = hn::Zero(d32);
    int64_t i = 0;
    for (; i + N <= n; i += N)
      s0 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, w + i)), hn::PromoteTo(d16, hn::LoadU(d8, x + i)), s0, s1);
    int32_t acc = hn::GetLane(hn::SumOfLanes(d32, hn::RearrangeToOddPlusEven(s0, s1)));
    for (; i < n; ++i) acc += int32_t(w[i]) * int32_t(x[i]);
    out[r] = acc;
  }
}

void DecodeRange(const QMatrix& w, int64_t r0, int64_t rows, float* dst) {
  ForRows(w, r0, r0 + rows, [&](const auto& u, const uint8_t* row, int64_t r) { DecodeRow(u, row, w.n_in, dst + (r - r0) * w.n_in); });
}

}  // namespace qf::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/widen.h"

namespace qf {

HWY_EXPORT(GemvRange);
HWY_EXPORT(DecodeRange);
HWY_EXPORT(TargetName);
HWY_EXPORT(DotI8Rows);

bool qmatvec_supported(const QMatrix& w) {
  if (w.n_in % 32 != 0 || w.n_out <= 0) return false;
  switch (w.layout) {
    case QLayout::Stored: return w.type != QType::I8 && w.type != QType::U8 && w.type != QType::I16 && w.type != QType::I32 && w.n_in % traits(w.type).block == 0;
    case QLayout::IntNibbles:
    case QLayout::IntBytes: return w.group > 0 && w.group % 32 == 0 && w.n_in % w.group == 0;
    case QLayout::Bnb4: return w.group >= 32 && w.group % 32 == 0 && w.lut != nullptr;
  }
  return false;
}

void qmatvec(const QMatrix& w, const float* x, float* y) {
  const int64_t subs = w.n_in / 16;
  std::vector<float> xs16(size_t(subs + 16), 0.0f), dx(size_t(subs + 16), 0.0f);
  std::vector<int16_t> xq(static_cast<size_t>(w.n_in));
  for (int64_t k = 0; k < subs; ++k) {
    float sum = 0;
    for (int j = 0; j < 16; ++j) sum += x[16 * k + j];
    xs16[size_t(k)] = sum;
  }
  for (int64_t k = 0; k < subs; k += 2) {  // int16 codes, one scale per 32 values (stored per 16)
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[16 * k + j]));
    dx[size_t(k)] = dx[size_t(k + 1)] = amax / 32767.0f;
    const float inv = amax > 0 ? 32767.0f / amax : 0.0f;
    for (int j = 0; j < 32; ++j) xq[size_t(16 * k + j)] = int16_t(std::lrint(x[16 * k + j] * inv));
  }
  std::vector<float> xs32(size_t(subs / 2 + 16), 0.0f), dx32(size_t(subs / 2 + 16), 0.0f);
  for (int64_t k = 0; k < subs / 2; ++k) {
    xs32[size_t(k)] = xs16[size_t(2 * k)] + xs16[size_t(2 * k + 1)];
    dx32[size_t(k)] = dx[size_t(2 * k)];
  }
  std::vector<int16_t> xq_bnb4;
  if (w.layout == QLayout::Bnb4) {  // per 16: even weights, then odd (DotBnb4's lane order)
    xq_bnb4.resize(xq.size());
    for (size_t k = 0; k < xq.size(); ++k) {
      const size_t j = k % 16;
      xq_bnb4[k] = xq[k - j + (j < 8 ? 2 * j : 2 * (j - 8) + 1)];
    }
  }
  const QActivations a{x, xs16.data(), xq.data(), dx.data(), xs32.data(), dx32.data(), xq_bnb4.empty() ? nullptr : xq_bnb4.data()};
  const auto gemv = HWY_DYNAMIC_DISPATCH(GemvRange);
  const int64_t threads = std::min<int64_t>(omp_get_max_threads(), (w.n_out + 15) / 16);
#pragma omp parallel num_threads(int(threads))
  {
    // Contiguous row ranges, a multiple of 4 rows each.
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t chunk = ((w.n_out + nt - 1) / nt + 3) & ~int64_t(3);
    const int64_t r0 = std::min(w.n_out, t * chunk), r1 = std::min(w.n_out, r0 + chunk);
    if (r0 < r1) gemv(w, a, y, r0, r1);
  }
}

void qdecode_rows(const QMatrix& w, int64_t r0, int64_t rows, float* dst) {
  if (w.layout == QLayout::Stored && (w.type == QType::F32 || w.type == QType::F16 || w.type == QType::BF16))
    widen_to_f32(w.type, w.data + r0 * w.row_bytes, dst, rows * w.n_in);
  else
    HWY_DYNAMIC_DISPATCH(DecodeRange)(w, r0, rows, dst);
}

void qdot_i8_rows(const int8_t* w, int64_t rows, int64_t n, const int8_t* x, int32_t* out) {
  HWY_DYNAMIC_DISPATCH(DotI8Rows)(w, rows, n, x, out);
}

const char* qmatvec_target() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }

}  // namespace qf
#endif  // HWY_ONCE
