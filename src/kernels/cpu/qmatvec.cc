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
  const RowKernels kern = kernels(w);
  const GemvFn gemv = kern.gemv;
  const int64_t subs = w.n_in / 16;
  // Sums of x per 16 and per 32 (arrays padded with 16 zeros), and x per 32 as codes: int16 for
  // the int16 kernels, or, for the int8 ones, llama.cpp's q8_0 activations on x86 bit for bit
  // (codes x·127/max rounded to nearest even, the step max/127 kept in fp16 — fp32 outside
  // fp16's normal range, where llama.cpp would lose it) with the codes' sums per 16.
  std::vector<float> xs16(size_t(subs + 16), 0.0f), xs32(size_t(subs / 2 + 16), 0.0f);
  std::vector<float> dx, dx32, dx8, xs8;
  std::vector<int16_t> xq;
  std::vector<int8_t> xq8;
  if (kern.int8_x) {
    xq8.assign(size_t(w.n_in + 64), 0);  // zeros past the end: kernels read whole registers
    dx8.assign(size_t(subs / 2 + 16), 0.0f);
    xs8.assign(size_t(subs + 16), 0.0f);
  } else {
    xq.resize(size_t(w.n_in));
    dx.assign(size_t(subs + 16), 0.0f);
    dx32.assign(size_t(subs / 2 + 16), 0.0f);
  }
  for (int64_t k = 0; k < subs; k += 2) {
    const float* v = x + 16 * k;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
    for (int h = 0; h < 2; ++h) {
      float sum = 0;
      for (int j = 0; j < 16; ++j) sum += v[16 * h + j];
      xs16[size_t(k + h)] = sum;
    }
    xs32[size_t(k / 2)] = xs16[size_t(k)] + xs16[size_t(k + 1)];
    if (kern.int8_x) {
      const float d = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
      dx8[size_t(k / 2)] = d >= 0x1p-14f && d <= 65504.0f ? f16_to_f32(f32_to_f16(d)) : d;
      for (int h = 0; h < 2; ++h) {
        int sum = 0;
        for (int j = 0; j < 16; ++j) {
          const auto q = int8_t(std::lrint(v[16 * h + j] * inv));
          xq8[size_t(16 * (k + h) + j)] = q;
          sum += q;
        }
        xs8[size_t(k + h)] = float(sum);
      }
    } else {
      dx[size_t(k)] = dx[size_t(k + 1)] = dx32[size_t(k / 2)] = amax / 32767.0f;
      const float inv = amax > 0 ? 32767.0f / amax : 0.0f;
      for (int j = 0; j < 32; ++j) xq[size_t(16 * k + j)] = int16_t(std::lrint(v[j] * inv));
    }
  }
  std::vector<int16_t> xq_bnb4;
  if (w.type == QType::BNB4) {  // per 16: even weights, then odd (the fused BNB4 kernel's lane order)
    xq_bnb4.resize(xq.size());
    for (size_t k = 0; k < xq.size(); ++k) {
      const size_t j = k % 16;
      xq_bnb4[k] = xq[k - j + (j < 8 ? 2 * j : 2 * (j - 8) + 1)];
    }
  }
  const QActivations a{x,
                       xs16.data(),
                       xq.data(),
                       dx.data(),
                       xs32.data(),
                       dx32.data(),
                       xq_bnb4.empty() ? nullptr : xq_bnb4.data(),
                       xq8.data(),
                       dx8.data(),
                       xs8.data()};
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
