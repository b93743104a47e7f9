// Highway's foreach_target re-includes this file once per SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/activations.cc"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include <hwy/contrib/math/math-inl.h>  // after highway.h

#include <cmath>

#include "kernels/cpu/activations.h"

HWY_BEFORE_NAMESPACE();
namespace qf::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void SiluMul(float* gate, const float* up, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t N = int64_t(hn::Lanes(df));
  const auto one = hn::Set(df, 1.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto g = hn::LoadU(df, gate + i);
    hn::StoreU(hn::Mul(hn::Div(g, hn::Add(one, hn::Exp(df, hn::Neg(g)))), hn::LoadU(df, up + i)), df,
               gate + i);
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

double ExpShifted(float* row, int64_t n, float max) {
  const hn::ScalableTag<float> df;
  const int64_t N = int64_t(hn::Lanes(df));
  const auto m = hn::Set(df, max);
  auto sum = hn::Zero(df);
  int64_t j = 0;
  for (; j + N <= n; j += N) {
    const auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, row + j), m));
    hn::StoreU(e, df, row + j);
    sum = hn::Add(sum, e);
  }
  double total = hn::GetLane(hn::SumOfLanes(df, sum));
  for (; j < n; ++j) total += (row[j] = std::exp(row[j] - max));
  return total;
}

}  // namespace qf::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qf {

HWY_EXPORT(SiluMul);
HWY_EXPORT(ExpShifted);

void silu_mul(float* gate, const float* up, int64_t n) { HWY_DYNAMIC_DISPATCH(SiluMul)(gate, up, n); }
double exp_shifted(float* row, int64_t n, float max) { return HWY_DYNAMIC_DISPATCH(ExpShifted)(row, n, max); }

}  // namespace qf
#endif  // HWY_ONCE
