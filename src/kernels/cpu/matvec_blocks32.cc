// kernels/cpu/matvec_blocks32.cc — formats of 32-weight blocks with one scale each: llama.cpp's
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL (block structs of formats/ggml_quants.h), and the HF
// layouts' kernel forms: integer grids (GRID4/GRID8: GPTQ/AWQ/RTN codes) and bitsandbytes
// NF4/FP4 (BNB4). Highway's foreach_target re-includes this file once per SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matvec_blocks32.cc"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include <cmath>

#include "kernels/cpu/unpack-inl.h"

HWY_BEFORE_NAMESPACE();
namespace qf::HWY_NAMESPACE {

// ---- Unpackers (ggml-quants.c's dequantize_row_* order) -----------------------------------

struct UQ8_0 : Unpacker<32, sizeof(BlockQ8_0)> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    std::memcpy(q, b + offsetof(BlockQ8_0, qs), 32);
    Fill2(d, F16(b + offsetof(BlockQ8_0, d)));
    Fill2(m, 0);
  }
};
struct UQ4_0 : Unpacker<32, sizeof(BlockQ4_0)> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    SplitNibbles(b + offsetof(BlockQ4_0, qs), q);
    Fill2(d, F16(b + offsetof(BlockQ4_0, d)));
    Fill2(m, -8 * d[0]);
  }
};
struct UQ4_1 : Unpacker<32, sizeof(BlockQ4_1)> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    SplitNibbles(b + offsetof(BlockQ4_1, qs), q);
    Fill2(d, F16(b + offsetof(BlockQ4_1, d)));
    Fill2(m, F16(b + offsetof(BlockQ4_1, m)));
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

template <class B>  // BlockQ5_0 (d, qh, qs) or BlockQ5_1 (d, m, qh, qs)
struct UQ5 : Unpacker<32, sizeof(B)> {
  static constexpr bool kMin = std::is_same_v<B, BlockQ5_1>;
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    const uint8_t* qh = b + offsetof(B, qh);
    SplitNibbles(b + offsetof(B, qs), q);
    // Fifth bits: bit k of qh belongs to weight k; each qh byte expands to 8 bytes of 0 or 16.
    alignas(16) uint64_t high[4];
    for (int k = 0; k < 4; ++k) high[k] = kFifthBits.v[qh[k]];
    const hn::CappedTag<uint8_t, 16> d8;
    auto* u = reinterpret_cast<uint8_t*>(q);
    const auto* h = reinterpret_cast<const uint8_t*>(high);
    for (size_t j = 0; j < 32; j += hn::Lanes(d8))
      hn::StoreU(hn::Or(hn::LoadU(d8, u + j), hn::LoadU(d8, h + j)), d8, u + j);
    Fill2(d, F16(b + offsetof(B, d)));
    if constexpr (kMin)
      Fill2(m, F16(b + offsetof(B, m)));
    else
      Fill2(m, -16 * d[0]);
  }
};
struct UIQ4_NL : Unpacker<32, sizeof(BlockIQ4_NL)> {
  void operator()(const uint8_t* b, int64_t, int8_t* q, float* d, float* m) const {
    LookupNibbles(b + offsetof(BlockIQ4_NL, qs), kIq4nlValues, q);
    Fill2(d, F16(b + offsetof(BlockIQ4_NL, d)));
    Fill2(m, 0);
  }
};

template <bool kNibbles>
struct UIntGrid : Unpacker<32, kNibbles ? 16 : 32> {
  const float *s, *z;
  GroupOf group_of;
  UIntGrid(const QMatrix& w, int64_t r)
      : s(w.scales + r * (w.n_in / w.group)), z(w.zeros + r * (w.n_in / w.group)), group_of(w.group) {}
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
  UBnb4(const QMatrix& w, int64_t r)
      : absmax(w.scales), lut(w.lut), block0(r * w.n_in / 32), group_of(w.group) {}
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
        hn::StoreU(hn::IfThenElse(high, hn::TableLookupLanes(t1, low), hn::TableLookupLanes(t0, low)), df,
                   q + k);
      }
    } else {
      for (int k = 0; k < 32; ++k) q[k] = lut[c[k]];
    }
#endif
    Fill2(d, absmax[group_of(block0 + blk)]);
    Fill2(m, 0);
  }
};

// ---- Fused dot products from registers (AVX2 and up) ---------------------------------------

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
float Dot32(int64_t nb, const CodesAt& codes, const int8_t* table, const Scale& scale,
            const QActivations& a) {
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
    const auto sum =
        hn::ReorderWidenMulAccumulate(d32, w0, hn::LoadU(d16, a.xq + 32 * b), hn::Zero(d32), unused);
    return hn::ConvertTo(
        df, hn::ReorderWidenMulAccumulate(d32, w1, hn::LoadU(d16, a.xq + 32 * b + 16), sum, unused));
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
    const auto idx = hn::BitCast(
        d8, hn::Combine(hn::Full256<uint8_t>(), hn::And(v, hn::Set(du8, 0x0F)), hn::ShiftRight<4>(v)));
    const auto lo = hn::TableLookupBytes(lo_table, idx), hi = hn::TableLookupBytes(hi_table, idx);
    const auto w0 = hn::BitCast(d16, hn::InterleaveLower(lo, hi)),
               w1 = hn::BitCast(d16, hn::InterleaveUpper(d8, lo, hi));
    auto unused = hn::Zero(d32);
    const auto s =
        hn::ReorderWidenMulAccumulate(d32, w0, hn::LoadU(d16, a.xq_bnb4 + 32 * b), hn::Zero(d32), unused);
    const auto sum =
        hn::ReorderWidenMulAccumulate(d32, w1, hn::LoadU(d16, a.xq_bnb4 + 32 * b + 16), s, unused);
    return hn::MulAdd(hn::ConvertTo(df, sum), hn::Set(df, absmax[group_of(block0 + b)] * unit * a.dx32[b]),
                      acc);
  };
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) acc0 = block(b, acc0), acc1 = block(b + 1, acc1);
  if (b < nb) acc0 = block(b, acc0);
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
}

void GemvBnb4(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1) {
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
    y[r] = DotBnb4(w.data + r * w.row_bytes, nb, w.scales, r * nb, group_of, hn::Load(d8, lo),
                   hn::Load(d8, hi), lmax / 32767.0f, a);
}

#if HWY_TARGET <= HWY_AVX3
QF_VNNI_BEGIN
// The same on AVX-512 with int8 x (unpack-inl.h's DotBytes): blocks b and b + 1 in one register
// (lanes 0–7 the first's int32 sums, 8–15 the second's). Codes multiply as unsigned bytes u,
// the weights' codes being u − kBias: nibbles (4 bytes of fifth bits are not read: no Nibbles5)
// split into 16-byte lanes [low b, high b, low b + 1, high b + 1]; bytes and table values + 128
// exceed pmaddubsw's range (255·127·2 > 2^15), so those kernels exist with VNNI only.
template <Codes C, bool kTable, bool kOffsets, class CodesAt, class Scale>
float Dot32x8(int64_t nb, const CodesAt& codes, const int8_t* table, const Scale& scale,
              const QActivations& a) {
  constexpr bool kBytes = C == Codes::SignedBytes || C == Codes::UnsignedBytes;
  constexpr int kBias = C == Codes::SignedNibbles ? 8 : kBytes || kTable ? 128 : 0;
  static_assert(C != Codes::Nibbles5 && C != Codes::SignedNibbles5);
  alignas(16) uint8_t shifted[16] = {};
  if constexpr (kTable)
    for (int i = 0; i < 16; ++i) shifted[i] = uint8_t(table[i] + 128);
  const __m512i lut = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(shifted)));
  const __m512i low4 = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8(char(0x80)),
                nibbles = _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                            0x0004000400040004, 0x0004000400040004);
  __m512 acc = _mm512_setzero_ps();
  float offsets = 0;
  const __m512i bias = _mm512_set1_epi8(char(kBias));  // kBias·Σ x by the same dot product
  for (int64_t b = 0; b < nb; b += 2) {
    const bool pair = b + 1 < nb;  // a last odd block: itself twice, the copy scaled by 0
    const uint8_t *q0 = codes(b), *q1 = pair ? codes(b + 1) : q0;
    __builtin_prefetch(q0 + 1024);
    __m512i q;
    if constexpr (kBytes) {
      q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q0))),
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q1)), 1);
      if constexpr (C == Codes::SignedBytes) q = _mm512_xor_si512(q, flip);  // q + 128
    } else {
      const __m512i v = _mm512_castsi256_si512(_mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q0))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(q1)), 1));
      q = _mm512_and_si512(_mm512_srlv_epi16(_mm512_shuffle_i64x2(v, v, 0x50), nibbles), low4);
      if constexpr (kTable) q = _mm512_shuffle_epi8(lut, q);
    }
    float d0, m0, d1 = 0, m1 = 0;
    scale(b, d0, m0);
    if (pair) scale(b + 1, d1, m1);
    const float s0 = d0 * a.dx8[b], s1 = pair ? d1 * a.dx8[b + 1] : 0.0f;
    const __m512i x = _mm512_loadu_si512(a.xq8 + 32 * b);  // xq8 is padded past the last block
    __m512i dot = DotBytes(q, x);
    if constexpr (kBias != 0) dot = _mm512_sub_epi32(dot, DotBytes(bias, x));  // Σ (u − kBias)·x
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot),
                          _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1), acc);
    if constexpr (kOffsets) offsets += m0 * a.xs32[b] + (pair ? m1 * a.xs32[b + 1] : 0.0f);
  }
  return _mm512_reduce_add_ps(acc) + offsets;
}
QF_VNNI_END
#endif

// Dot32x8 where the kernel asks for it (kInt8: only on targets whose QF_INT8 keeps it), else Dot32.
template <bool kInt8, Codes C, bool kTable, bool kOffsets, class CodesAt, class Scale>
float DotBlocks(int64_t nb, const CodesAt& codes, const int8_t* table, const Scale& scale,
                const QActivations& a) {
#if HWY_TARGET <= HWY_AVX3
  if constexpr (kInt8) return Dot32x8<C, kTable, kOffsets>(nb, codes, table, scale, a);
#endif
  return Dot32<C, kTable, kOffsets>(nb, codes, table, scale, a);
}

// Legacy blocks B: fp16 d (and m), codes at qs (Q5: fifth bits in the 4 bytes of qh before qs).
template <class B, Codes C, bool kTable = false, bool kInt8 = false>
void GemvLegacy(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1) {
  constexpr bool kMin = std::is_same_v<B, BlockQ4_1> || std::is_same_v<B, BlockQ5_1>;
  const int64_t nb = w.n_in / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.data + r * w.row_bytes;
    y[r] = DotBlocks<kInt8, C, kTable, kMin>(
        nb, [row](int64_t b) { return row + b * int64_t(sizeof(B)) + offsetof(B, qs); },
        kTable ? kIq4nlValues : nullptr,
        [row](int64_t b, float& d, float& m) {
          const uint8_t* blk = row + b * int64_t(sizeof(B));
          d = F16(blk + offsetof(B, d));
          if constexpr (kMin)
            m = F16(blk + offsetof(B, m));
          else
            m = 0;
        },
        a);
  }
}
static_assert(offsetof(BlockQ5_0, qs) - offsetof(BlockQ5_0, qh) == 4 &&
                  offsetof(BlockQ5_1, qs) - offsetof(BlockQ5_1, qh) == 4,
              "Dot32 reads Q5's fifth bits in the 4 bytes before the codes");

// Integer grids: w = s·(q − z) per group; GRID8 codes are stored as q − 128.
template <bool kNibbles, bool kInt8 = false>
void GemvGrid(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = w.n_in / 32, ng = w.n_in / w.group;
  const GroupOf group_of(w.group);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.data + r * w.row_bytes;
    const float *s = w.scales + r * ng, *z = w.zeros + r * ng;
    auto scale = [s, z, group_of](int64_t b, float& d, float& m) {
      const int64_t g = group_of(b);
      d = s[g], m = -s[g] * z[g];
    };
    if constexpr (kNibbles)
      y[r] = DotBlocks<kInt8, Codes::Nibbles, false, true>(
          nb, [row](int64_t b) { return row + 16 * b; }, nullptr, scale, a);
    else
      y[r] = DotBlocks<kInt8, Codes::UnsignedBytes, false, true>(
          nb, [row](int64_t b) { return row + 32 * b; }, nullptr,
          [scale](int64_t b, float& d, float& m) {
            scale(b, d, m);
            m += 128 * d;
          },
          a);
  }
}
#endif

// Int8 kernels: nibbles on AVX-512 (QF_INT8), bytes and tables with VNNI only (QF_INT8_VNNI).
#undef QF_INT8_VNNI
#if QF_VNNI
#define QF_INT8_VNNI(f) f
#else
#define QF_INT8_VNNI(f) nullptr
#endif
RowKernels KernelsQ8_0() {
  return WithInt8<UQ8_0>(QF_INT8_VNNI((GemvLegacy<BlockQ8_0, Codes::SignedBytes, false, true>)),
                         QF_FUSED((GemvLegacy<BlockQ8_0, Codes::SignedBytes>)));
}
RowKernels KernelsQ4_0() {
  return WithInt8<UQ4_0>(QF_INT8((GemvLegacy<BlockQ4_0, Codes::SignedNibbles, false, true>)),
                         QF_FUSED((GemvLegacy<BlockQ4_0, Codes::SignedNibbles>)));
}
RowKernels KernelsQ4_1() {
  return WithInt8<UQ4_1>(QF_INT8((GemvLegacy<BlockQ4_1, Codes::Nibbles, false, true>)),
                         QF_FUSED((GemvLegacy<BlockQ4_1, Codes::Nibbles>)));
}
RowKernels KernelsQ5_0() {
  return Kernels<UQ5<BlockQ5_0>>(QF_FUSED((GemvLegacy<BlockQ5_0, Codes::SignedNibbles5>)));
}
RowKernels KernelsQ5_1() {
  return Kernels<UQ5<BlockQ5_1>>(QF_FUSED((GemvLegacy<BlockQ5_1, Codes::Nibbles5>)));
}
RowKernels KernelsIQ4_NL() {
  return WithInt8<UIQ4_NL>(QF_INT8_VNNI((GemvLegacy<BlockIQ4_NL, Codes::Nibbles, true, true>)),
                           QF_FUSED((GemvLegacy<BlockIQ4_NL, Codes::Nibbles, true>)));
}
RowKernels KernelsGRID4() {
  return WithInt8<UIntGrid<true>>(QF_INT8((GemvGrid<true, true>)), QF_FUSED((GemvGrid<true>)));
}
RowKernels KernelsGRID8() {
  return WithInt8<UIntGrid<false>>(QF_INT8_VNNI((GemvGrid<false, true>)), QF_FUSED((GemvGrid<false>)));
}
RowKernels KernelsBNB4() { return Kernels<UBnb4>(QF_FUSED((GemvBnb4))); }

}  // namespace qf::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();
