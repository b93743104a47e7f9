// kernels/cpu/matvec_float.cc — F32/F16/BF16 rows (widened in SIMD lanes, two accumulators) and
// the exact int8 row dot products of LLM.int8(). Highway's foreach_target re-includes this file
// once per SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matvec_float.cc"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include "kernels/cpu/unpack-inl.h"
#include "kernels/cpu/widen.h"

HWY_BEFORE_NAMESPACE();
namespace qf::HWY_NAMESPACE {

// F32/F16/BF16 rows: widen and multiply, two accumulators.
template <class T>
float DotFloatRow(const T* w, int64_t n, const float* x) {
  const DF df;
  const hn::Rebind<T, DF> dt;
  const int64_t N = int64_t(hn::Lanes(df));
  auto load = [&](int64_t i) {
    if constexpr (std::is_same_v<T, float>)
      return hn::LoadU(df, w + i);
    else
      return hn::PromoteTo(df, hn::LoadU(dt, w + i));
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

template <class T>
void GemvFloat(const QMatrix& w, const QActivations& a, float* y, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r)
    y[r] = DotFloatRow(reinterpret_cast<const T*>(w.data + r * w.row_bytes), w.n_in, a.x);
}
void DecodeFloat(const QMatrix& w, int64_t r0, int64_t rows, float* dst) {
  widen_to_f32(w.type, w.data + r0 * w.row_bytes, dst, rows * w.n_in);
}
RowKernels KernelsF32() { return {GemvFloat<float>, DecodeFloat}; }
RowKernels KernelsF16() { return {GemvFloat<hwy::float16_t>, DecodeFloat}; }
RowKernels KernelsBF16() { return {GemvFloat<hwy::bfloat16_t>, DecodeFloat}; }

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
      s0 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, w + i)),
                                         hn::PromoteTo(d16, hn::LoadU(d8, x + i)), s0, s1);
    int32_t acc = hn::GetLane(hn::SumOfLanes(d32, hn::RearrangeToOddPlusEven(s0, s1)));
    for (; i < n; ++i) acc += int32_t(w[i]) * int32_t(x[i]);
    out[r] = acc;
  }
}
}  // namespace qf::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qf {

HWY_EXPORT(DotI8Rows);

void qdot_i8_rows(const int8_t* w, int64_t rows, int64_t n, const int8_t* x, int32_t* out) {
  HWY_DYNAMIC_DISPATCH(DotI8Rows)(w, rows, n, x, out);
}

}  // namespace qf
#endif  // HWY_ONCE
