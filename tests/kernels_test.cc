// Fast paths against the scalar references: SIMD widening (bit-exact: widening is exact) and
// StoredLinear against a double-precision matmul of the reference-decoded weights, on awkward
// sizes and with 1 and several threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>

#include "core/half.h"
#include "core/threads.h"
#include "kernels/cpu/widen.h"
#include "model/linear.h"

namespace qf {
namespace {

const int kSizes[] = {1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 255, 257};

TEST(Widen, EveryF16AndBf16BitPatternMatchesScalar) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = uint16_t(i);
  std::vector<float> out(65536);
  for (QType t : {QType::F16, QType::BF16}) {
    widen_to_f32(t, all.data(), out.data(), 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
      float ref = t == QType::F16 ? f16_to_f32(uint16_t(i)) : bf16_to_f32(uint16_t(i));
      if (std::isnan(ref)) EXPECT_TRUE(std::isnan(out[i]));
      else EXPECT_EQ(out[i], ref) << traits(t).name << " " << std::hex << i;
    }
  }
}

TEST(Widen, AwkwardLengthsAndOffsets) {
  std::mt19937 rng(3);
  for (int n : kSizes) {
    for (int offset : {0, 1, 3}) {
      std::vector<uint16_t> src(size_t(n + offset));
      for (auto& v : src) v = uint16_t(rng() & 0x7bff);  // finite f16
      std::vector<float> out(size_t(n), -1.f);
      widen_to_f32(QType::F16, src.data() + offset, out.data(), n);
      for (int i = 0; i < n; ++i) EXPECT_EQ(out[size_t(i)], f16_to_f32(src[size_t(i + offset)]));
    }
  }
}

// Encodes a random (rows, cols) matrix in `type` and returns the stored bytes.
std::vector<uint8_t> encode(QType type, const std::vector<float>& w) {
  std::vector<uint8_t> bytes(size_t(qtype_row_bytes(type, int64_t(w.size()))));
  traits(type).quantize_ref(w.data(), bytes.data(), int64_t(w.size()), nullptr);
  return bytes;
}

TEST(StoredLinear, MatchesReferenceForEveryTypeSizeAndThreadCount) {
  init_blas_threads();
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int saved = omp_get_max_threads();
  for (QType type : {QType::F32, QType::F16, QType::BF16, QType::Q8_0}) {
    for (int threads : {1, 4}) {
      omp_set_num_threads(threads);
      for (int n_out : {1, 7, 17, 33, 257}) {
        const int n_in = type == QType::Q8_0 ? 64 : 33;
        for (int tokens : {1, 3, 17}) {
          std::vector<float> w(n_out * n_in), x(tokens * n_in), b(n_out);
          for (auto& v : w) v = nd(rng);
          for (auto& v : x) v = nd(rng);
          for (auto& v : b) v = nd(rng);
          auto wbytes = encode(type, w), bbytes = encode(QType::F32, b);
          TensorView wt{"w", type, {n_out, n_in}, wbytes.data(), int64_t(wbytes.size()), nullptr};
          TensorView bt{"b", QType::F32, {n_out}, bbytes.data(), int64_t(bbytes.size()), nullptr};
          StoredLinear lin(wt, bt);
          std::vector<float> y(tokens * n_out);
          lin.forward(x.data(), y.data(), tokens);
          auto wd = wt.to_f32();  // the reference decoding of what is stored
          for (int t = 0; t < tokens; ++t)
            for (int o = 0; o < n_out; ++o) {
              double ref = b[size_t(o)], mag = std::fabs(b[size_t(o)]);
              for (int i = 0; i < n_in; ++i) {
                ref += double(x[size_t(t * n_in + i)]) * wd[size_t(o * n_in + i)];
                mag += std::fabs(double(x[size_t(t * n_in + i)]) * wd[size_t(o * n_in + i)]);
              }
              // fp32 dot product of length n_in + 1: |error| <= (n_in + 1) · u · Σ|x·w| (Higham γ_n).
              const double tol = (n_in + 1) * std::ldexp(1.0, -24) * mag;
              EXPECT_NEAR(y[size_t(t * n_out + o)], ref, tol)
                  << traits(type).name << " threads " << threads << " n_out " << n_out << " tokens " << tokens;
            }
        }
      }
    }
  }
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace qf
