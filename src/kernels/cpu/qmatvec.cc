// kernels/cpu/qmatvec.cc — the CPU backend's entry to the matrix kernels: the one switch from a
// format to its kernels (per SIMD target), and qmatvec/qdecode_rows, which prepare the
// activations and split the rows over threads. The kernels live by family in matvec_float.cc,
// matvec_blocks32.cc and matvec_kquants.cc. Highway's foreach_target re-includes this file
// once per SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/qmatvec.cc"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include "kernels/cpu/unpack-inl.h"

HWY_BEFORE_NAMESPACE();
namespace qf::HWY_NAMESPACE {

// Every format with CPU kernels; the raw integer types of checkpoint layouts have none.
RowKernels KernelsFor(QType t) {
#define QF_CASE(T) \
  case QType::T:   \
    return Kernels##T();
  switch (t) {
    QF_FORMAT_KERNELS(QF_CASE)
    case QType::I8:
    case QType::U8:
    case QType::I16:
    case QType::I32:
      return {};
  }
#undef QF_CASE
  return {};
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace qf::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/half.h"
#include "core/status.h"

namespace qf {

HWY_EXPORT(KernelsFor);
HWY_EXPORT(TargetName);

namespace {

RowKernels kernels(const QMatrix& w) {
  const RowKernels k = HWY_DYNAMIC_DISPATCH(KernelsFor)(w.type);
  QF_CHECK(k.gemv && k.decode, "no CPU kernel for format {}", traits(w.type).name);
  return k;
}

}  // namespace

bool qmatvec_supported(const QMatrix& w) {
  if (w.device != Device::Cpu || w.n_in % 32 != 0 || w.n_out <= 0 ||
      !HWY_DYNAMIC_DISPATCH(KernelsFor)(w.type).gemv)
    return false;
  if (w.type == QType::GRID4 || w.type == QType::GRID8)
    return w.group > 0 && w.group % 32 == 0 && w.n_in % w.group == 0;
  if (w.type == QType::BNB4) return w.group >= 32 && w.group % 32 == 0 && w.lut;
  return w.n_in % traits(w.type).block == 0;
}

bool qmatvec_int8(QType t) { return HWY_DYNAMIC_DISPATCH(KernelsFor)(t).int8_x; }

void qmatvec(const QMatrix& w, const float* x, float* y) {
  const RowKernels k = kernels(w);
  const GemvFn gemv = k.gemv;
  const int64_t subs = w.n_in / 16;
  std::vector<float> xs16(size_t(subs + 16), 0.0f), dx(size_t(subs + 16), 0.0f);
  std::vector<int16_t> xq(static_cast<size_t>(w.n_in));
  for (int64_t k = 0; k < subs; ++k) {
    float sum = 0;
    for (int j = 0; j < 16; ++j) sum += x[16 * k + j];
    xs16[size_t(k)] = sum;
  }
  std::vector<float> amax32(size_t(subs / 2));
  for (int64_t k = 0; k < subs; k += 2) {  // int16 codes, one scale per 32 values (stored per 16)
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[16 * k + j]));
    amax32[size_t(k / 2)] = amax;
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
  if (w.type == QType::BNB4) {  // per 16: even weights, then odd (the fused BNB4 kernel's lane order)
    xq_bnb4.resize(xq.size());
    for (size_t k = 0; k < xq.size(); ++k) {
      const size_t j = k % 16;
      xq_bnb4[k] = xq[k - j + (j < 8 ? 2 * j : 2 * (j - 8) + 1)];
    }
  }
  std::vector<int8_t> xq8;
  std::vector<float> dx8, xs8;
  if (k.int8_x) {                        // int8 codes, one scale per 32 values, the codes' sums per 16
    xq8.assign(size_t(w.n_in + 64), 0);  // zeros past the end: kernels read whole registers
    dx8.assign(size_t(subs / 2 + 16), 0.0f);
    xs8.assign(size_t(subs + 16), 0.0f);
    // llama.cpp's q8_0 activations on x86 bit for bit: codes x·127/max rounded to nearest even,
    // the scale max/127 kept in fp16 (fp32 outside fp16's normal range, where llama.cpp would lose it).
    for (int64_t k32 = 0; k32 < subs; k32 += 2) {
      const float amax = amax32[size_t(k32 / 2)];
      const float d = amax / 127.0f;  // in fp16 where fp16 holds it as a normal number
      dx8[size_t(k32 / 2)] = d >= 0x1p-14f && d <= 65504.0f ? f16_to_f32(f32_to_f16(d)) : d;
      const float inv = amax > 0 ? 127.0f / amax : 0.0f;
      for (int h = 0; h < 2; ++h) {
        int sum = 0;
        for (int j = 0; j < 16; ++j) {
          const auto q = int8_t(std::lrint(x[16 * (k32 + h) + j] * inv));
          xq8[size_t(16 * (k32 + h) + j)] = q;
          sum += q;
        }
        xs8[size_t(k32 + h)] = float(sum);
      }
    }
  }
  QActivations a{x,
                 xs16.data(),
                 xq.data(),
                 dx.data(),
                 xs32.data(),
                 dx32.data(),
                 xq_bnb4.empty() ? nullptr : xq_bnb4.data()};
  if (k.int8_x) a.xq8 = xq8.data(), a.dx8 = dx8.data(), a.xs8 = xs8.data();
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
  kernels(w).decode(w, r0, rows, dst);
}

const char* qmatvec_target() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }

}  // namespace qf
#endif  // HWY_ONCE
