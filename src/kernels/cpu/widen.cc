// Highway's foreach_target re-includes this file once per SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/widen.cc"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include <type_traits>

#include "core/half.h"
#include "kernels/cpu/widen.h"

HWY_BEFORE_NAMESPACE();
namespace qf::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Highway 1.0.3 widens f16 on targets without F16C (SSSE3, SSE4, scalar) by arithmetic that turns
// exponent 31 (±inf, NaN) into finite values: there those lanes are rebuilt from their bits.
constexpr bool kEmulatedF16 =
    HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128;

template <class DF>
HWY_INLINE hn::Vec<DF> WithInfAndNaN(DF df, const uint16_t* bits16, hn::Vec<DF> v) {
  const hn::RebindToUnsigned<DF> du;
  const hn::Rebind<uint16_t, DF> d16;
  const auto bits = hn::PromoteTo(du, hn::LoadU(d16, bits16));
  const auto exp31 = hn::Set(du, 0x7C00);
  const auto special = hn::Eq(hn::And(bits, exp31), exp31);
  const auto f32 =
      hn::Or(hn::ShiftLeft<16>(hn::And(bits, hn::Set(du, 0x8000))),
             hn::Or(hn::Set(du, 0x7F800000), hn::ShiftLeft<13>(hn::And(bits, hn::Set(du, 0x3FF)))));
  return hn::IfThenElse(hn::RebindMask(df, special), hn::BitCast(df, f32), v);
}

template <typename Half>
void WidenHalf(const Half* src, float* dst, int64_t n, float (*scalar)(uint16_t)) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<Half, decltype(df)> dh;
  const int64_t lanes = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    auto v = hn::PromoteTo(df, hn::LoadU(dh, src + i));
    if constexpr (kEmulatedF16 && std::is_same_v<Half, hwy::float16_t>)
      v = WithInfAndNaN(df, reinterpret_cast<const uint16_t*>(src + i), v);
    hn::StoreU(v, df, dst + i);
  }
  for (; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + i, 2);
    dst[i] = scalar(bits);
  }
}

void WidenF16(const void* src, float* dst, int64_t n) {
  WidenHalf(static_cast<const hwy::float16_t*>(src), dst, n, f16_to_f32);
}
void WidenBF16(const void* src, float* dst, int64_t n) {
  WidenHalf(static_cast<const hwy::bfloat16_t*>(src), dst, n, bf16_to_f32);
}

}  // namespace qf::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cstring>

namespace qf {

HWY_EXPORT(WidenF16);
HWY_EXPORT(WidenBF16);

void widen_to_f32(QType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case QType::F32:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
      return;
    case QType::F16:
      HWY_DYNAMIC_DISPATCH(WidenF16)(src, dst, n);
      return;
    case QType::BF16:
      HWY_DYNAMIC_DISPATCH(WidenBF16)(src, dst, n);
      return;
    default:
      traits(type).dequantize_ref(src, dst, n);
      return;
  }
}

}  // namespace qf
#endif  // HWY_ONCE
