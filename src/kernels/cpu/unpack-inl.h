// kernels/cpu/unpack-inl.h — what every CPU matrix-vector kernel family shares, compiled once
// per SIMD target (Highway's -inl.h convention: included from a file that foreach_target
// re-includes, guarded per target). A format's block decodes through an *unpacker* into small
// integers q (or code-book floats) and, per 16 weights, a scale d and an offset m (w = d·q + m);
// the generic consumers below turn any unpacker into a row's dot product and an fp32 decoder.
// Families with register-level fused dot products (matvec_blocks32.cc, matvec_kquants.cc) use
// the unpackers for decoding and for targets below AVX2.
#if defined(QF_KERNELS_CPU_UNPACK_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef QF_KERNELS_CPU_UNPACK_INL_H_
#undef QF_KERNELS_CPU_UNPACK_INL_H_
#else
#define QF_KERNELS_CPU_UNPACK_INL_H_
#endif

#include <hwy/highway.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "formats/ggml_quants.h"
#include "kernels/cpu/row_kernels.h"

// Field `f` of the block struct B starting at p (blocks are packed: read fields through memcpy
// or byte loads, never through a B*).
#ifndef QF_AT
#define QF_AT(p, B, f) ((p) + offsetof(B, f))
#endif

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
HWY_INLINE int UnpackChunk(const U& u, const uint8_t* row, int64_t b0, int64_t nb, typename U::Elem* q,
                           float* d, float* m) {
  constexpr int kPer = 256 / U::kBlock;
  const int nc = int(std::min<int64_t>(kPer, nb - b0));
  if (nc < kPer) std::fill(m, m + 16, 0.0f);  // a short last chunk: no offsets past the row
  for (int k = 0; k < nc; ++k)
    u(row + (b0 + k) * U::kBytes, b0 + k, q + k * U::kBlock, d + k * U::kSubs, m + k * U::kSubs);
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
    for (int s = 0; s < 16; s += N)
      offsets = hn::MulAdd(hn::Load(df, m + s), hn::LoadU(df, xs16 + s), offsets);
    if constexpr (std::is_same_v<typename U::Elem, int8_t>) {
      const int L = int(hn::Lanes(d16));
      for (int s = 0; s < 16; s += N)
        hn::Store(hn::Mul(hn::Load(df, d + s), hn::LoadU(df, dx + s)), df, d + s);
      for (int s = 0; s < subs; s += 2) {
        auto i0 = hn::Zero(d32), i1 = hn::Zero(d32), unused = hn::Zero(d32);
        for (int k = 0; k < 16; k += L) {
          i0 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, q + 16 * s + k)),
                                             hn::LoadU(d16, xq + 16 * s + k), i0, unused);
          i1 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, q + 16 * s + 16 + k)),
                                             hn::LoadU(d16, xq + 16 * s + 16 + k), i1, unused);
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
        hn::StoreU(hn::MulAdd(LoadElems(df, q + 16 * s + k), hn::Set(df, d[s]), hn::Set(df, m[s])), df,
                   dst + 16 * s + k);
  }
}

// An unpacker for row r: formats with per-row state (integer grids, NF4) take (w, r).
template <class U>
U MakeUnpacker(const QMatrix& w, int64_t r) {
  if constexpr (std::is_constructible_v<U, const QMatrix&, int64_t>)
    return U(w, r);
  else
    return U{};
}
template <class U>
void GemvGeneric(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) y[r] = DotRow(MakeUnpacker<U>(w, r), w.data + r * w.row_bytes, w.n_in, a);
}
template <class U>
void DecodeGeneric(const QMatrix& w, int64_t r0, int64_t rows, float* dst) {
  for (int64_t r = r0; r < r0 + rows; ++r)
    DecodeRow(MakeUnpacker<U>(w, r), w.data + r * w.row_bytes, w.n_in, dst + (r - r0) * w.n_in);
}
// A format's kernels: its fused dot product where this target has one (QF_FUSED: AVX2 and up),
// else the generic one; decoding always through the unpacker.
#undef QF_FUSED
#if HWY_TARGET <= HWY_AVX2
#define QF_FUSED(f) f
#else
#define QF_FUSED(f) nullptr
#endif
template <class U>
RowKernels Kernels(GemvFn fused) {
  return {fused ? fused : GemvGeneric<U>, DecodeGeneric<U>};
}

// ---- AVX-512: 64 weights a register as unsigned bytes against x as int8 (QActivations::xq8) --
// Kernels using DotBytes sit between QF_VNNI_BEGIN and QF_VNNI_END: Highway 1.0's AVX3_DL
// target string names avxvnni, not avx512vnni, which vpdpbusd on 512 bits needs.
// QF_VNNI: this target's DotBytes is vpdpbusd (GCC; clang, which has no target pragma, keeps
// pmaddubsw and the int16 kernels of the formats that would saturate it).
#undef QF_VNNI
#undef QF_VNNI_BEGIN
#undef QF_VNNI_END
#if HWY_TARGET == HWY_AVX3_DL && !defined(__clang__)
#define QF_VNNI 1
#else
#define QF_VNNI 0
#endif
#if QF_VNNI
#define QF_VNNI_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512vnni\")")
#define QF_VNNI_END _Pragma("GCC pop_options")
#else
#define QF_VNNI_BEGIN
#define QF_VNNI_END
#endif
#if HWY_TARGET <= HWY_AVX3
QF_VNNI_BEGIN
// Σ of 4 adjacent u8·i8 products into 16 int32 lanes: vpdpbusd (VNNI, AVX3_DL), else pmaddubsw
// (pairs into int16: codes ≤ 63 times |x| ≤ 127, twice, 16,002 < 2^15: never saturates) and
// pmaddwd by ones.
HWY_INLINE __m512i DotBytes(__m512i u8, __m512i i8) {
#if QF_VNNI
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u8, i8);
#else
  return _mm512_madd_epi16(_mm512_maddubs_epi16(u8, i8), _mm512_set1_epi16(1));
#endif
}
HWY_INLINE __m512i Broadcast32(const uint8_t* p) {  // the 32 bytes at p in both halves
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
HWY_INLINE __m512i HalfCounts(int lo, int hi) {  // 16-bit shift counts: lo in the lower half, hi above
  return _mm512_inserti64x4(_mm512_set1_epi16(short(lo)), _mm256_set1_epi16(short(hi)), 1);
}
HWY_INLINE __m512i LaneGroups(int first, int width) {  // lane i → index first + i / width
  return _mm512_add_epi32(
      _mm512_set1_epi32(first),
      _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                        __builtin_ctz(unsigned(width))));
}
HWY_INLINE __m512i Load64(const void* p) { return _mm512_loadu_si512(p); }
QF_VNNI_END
#endif

// A format's kernels with an int8 dot product where this target has one (QF_INT8: AVX-512),
// else as Kernels().
#undef QF_INT8
#if HWY_TARGET <= HWY_AVX3
#define QF_INT8(f) f
#else
#define QF_INT8(f) nullptr
#endif
template <class U>
RowKernels WithInt8(GemvFn int8, GemvFn fused) {
  return int8 ? RowKernels{int8, DecodeGeneric<U>, true} : Kernels<U>(fused);
}

// Each format's kernels (the families' files define them); kernels/cpu/qmatvec.cc's switch
// is the only place that maps a QType to them.
// clang-format off
#define QF_FORMAT_KERNELS(X)                                                                \
  X(F32) X(F16) X(BF16) X(Q8_0) X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(IQ4_NL) X(GRID4) X(GRID8) \
  X(BNB4) X(Q2_K) X(Q3_K) X(Q4_K) X(Q5_K) X(Q6_K) X(IQ4_XS) X(IQ2_XXS) X(IQ2_XS) X(IQ3_XXS)
// clang-format on
#define QF_DECLARE_KERNELS(T) RowKernels Kernels##T();
QF_FORMAT_KERNELS(QF_DECLARE_KERNELS)
#undef QF_DECLARE_KERNELS

}  // namespace qf::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // QF_KERNELS_CPU_UNPACK_INL_H_
