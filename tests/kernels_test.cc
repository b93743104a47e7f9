// Fast paths against the scalar references: SIMD widening (bit-exact: widening is exact);
// every Linear — fused matrix-vector kernels for 1..4 tokens, decoded tiles + sgemm beyond —
// against a double-precision matmul of the reference-decoded weights, on awkward sizes and
// with 1 and several threads; LLM.int8()'s integer kernels bit-exact. Every test runs once per
// SIMD target compiled in and supported by this CPU (for_each_target).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <set>
#include <string>

#include <fmt/core.h>
#include <hwy/targets.h>

#include "core/half.h"
#include "core/threads.h"
#include "formats/bnb4.h"
#include "formats/int8_rowwise.h"
#include "formats/int_grid.h"
#include "kernels/cpu/qmatvec.h"
#include "kernels/cpu/widen.h"
#include "model/linear.h"

namespace qf {
namespace {

const int kSizes[] = {1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 255, 257};

// Runs body once per SIMD target that is compiled in and that this CPU supports, Highway's dynamic
// dispatch forced to each in turn (hwy::SetSupportedTargetsForTest), so that the AVX-512, AVX2 and
// baseline register paths are all checked on one machine.
void for_each_target(const std::function<void()>& body) {
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(t);
    SCOPED_TRACE(hwy::TargetName(t));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST(Dispatch, EveryCompiledTargetIsTestedAndChosenInTurn) {
  std::vector<std::string> seen;
  for_each_target([&] { seen.push_back(qmatvec_target()); });
  std::string all;
  for (const auto& s : seen) all += s + " ";
  std::printf("SIMD targets tested: %s\n", all.c_str());
  EXPECT_GE(seen.size(), 2u) << "only one target: the per-target tests prove no more than before";
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size()) << all;
}

TEST(Widen, EveryF16AndBf16BitPatternMatchesScalar) {
  for_each_target([&] {
    std::vector<uint16_t> all(65536);
    for (uint32_t i = 0; i < 65536; ++i) all[i] = uint16_t(i);
    std::vector<float> out(65536);
    for (QType t : {QType::F16, QType::BF16}) {
      widen_to_f32(t, all.data(), out.data(), 65536);
      for (uint32_t i = 0; i < 65536; ++i) {
        float ref = t == QType::F16 ? f16_to_f32(uint16_t(i)) : bf16_to_f32(uint16_t(i));
        if (std::isnan(ref))
          EXPECT_TRUE(std::isnan(out[i]));
        else
          EXPECT_EQ(out[i], ref) << traits(t).name << " " << std::hex << i;
      }
    }
  });
}

TEST(Widen, AwkwardLengthsAndOffsets) {
  for_each_target([&] {
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
  });
}

// Encodes a random (rows, cols) matrix in `type` and returns the stored bytes.
std::vector<uint8_t> encode(QType type, const std::vector<float>& w) {
  std::vector<uint8_t> bytes(size_t(qtype_row_bytes(type, int64_t(w.size()))));
  traits(type).quantize_ref(w.data(), bytes.data(), int64_t(w.size()), nullptr);
  return bytes;
}

TEST(StoredLinear, MatchesReferenceForEveryTypeSizeAndThreadCount) {
  for_each_target([&] {
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
            // Q8_0's matrix-vector kernel multiplies x rounded per 32 values to int16 (≤ max|x| / 65534
            // off) or, where qmatvec_int8, to int8 with an fp16 step (≤ max|x|·(1/254 + 2^-11) off).
            const double x_step = type != QType::Q8_0 || tokens > TiledLinear::kMatvecTokens ? 0.0
                                  : qmatvec_int8(type) ? 1.0 / 254 + 0x1p-11
                                                       : 1.0 / 65534;
            for (int t = 0; t < tokens; ++t)
              for (int o = 0; o < n_out; ++o) {
                double ref = b[size_t(o)], mag = std::fabs(b[size_t(o)]), rounding = 0;
                for (int i = 0; i < n_in; ++i) {
                  ref += double(x[size_t(t * n_in + i)]) * wd[size_t(o * n_in + i)];
                  mag += std::fabs(double(x[size_t(t * n_in + i)]) * wd[size_t(o * n_in + i)]);
                  float amax = 0;
                  for (int j = i / 32 * 32; j < std::min(n_in, i / 32 * 32 + 32); ++j)
                    amax = std::max(amax, std::fabs(x[size_t(t * n_in + j)]));
                  rounding += std::fabs(wd[size_t(o * n_in + i)]) * amax * x_step;
                }
                // fp32 dot product of length n_in + 1: |error| <= (n_in + 1) · u · Σ|x·w| (Higham γ_n).
                const double tol = (n_in + 1) * std::ldexp(1.0, -24) * mag + rounding;
                EXPECT_NEAR(y[size_t(t * n_out + o)], ref, tol) << traits(type).name << " threads " << threads
                                                                << " n_out " << n_out << " tokens " << tokens;
              }
          }
        }
      }
    }
    omp_set_num_threads(saved);
  });
}

// Runs lin on `tokens` rows of x and checks every output against Σ x·ŵ in double, ŵ the
// reference decoding (rows, n_in). The kernels compute w = d·q + m per 16 weights and sum in
// fp32 in another order: by Higham's γ_n each output is within (n_in + 8)·u·Σ_i B_i·|x_i|,
// where B_i bounds the magnitude of the terms the kernel adds for weight i (|d·q| + |m|).
// Integer codes in the matrix-vector path (≤ kMatvecTokens tokens) multiply x rounded per 32
// values to `x_levels` = 32767 (int16) or 127 (int8, qmatvec_int8) steps of max|x of its 32|,
// each off by at most half a step, max|x| / (2·x_levels): that adds Σ_i B_i·max|x| / (2·x_levels).
// The int8 step is kept in fp16 (llama.cpp's q8_0), off by ≤ 2^-11 relative: 127 steps move by
// ≤ max|x|·2^-11 more.
// x_levels 0: x is not rounded. x_group: the columns whose max|x| bounds a rounding (32; all of
// them where the kernel sees x permuted, as act-order's). on_grid: x = 2^-3·k, k integers in [-127, 127] with
// a ±127 in every 32, which int8 codes hold exactly (x_levels 0 then checks the int8 kernels' arithmetic
// alone, within the fp32 bound).
void expect_linear_matches(const Linear& lin, const std::vector<float>& wd, const std::vector<float>& bound,
                           int tokens, std::mt19937& rng, const std::string& what, int x_levels,
                           const std::vector<float>* int16_codes = nullptr, bool on_grid = false,
                           int64_t x_group = 32) {
  const int64_t n_in = lin.n_in(), n_out = lin.n_out();
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(size_t(tokens * n_in)), y(size_t(tokens * n_out));
  for (auto& v : x) v = nd(rng);
  if (on_grid) {
    std::uniform_int_distribution<int> k(-127, 127);
    for (size_t i = 0; i < x.size(); ++i)
      x[i] = 0.125f * float(i % 32 == 7 ? (rng() % 2 ? 127 : -127) : k(rng));
  }
  lin.forward(x.data(), y.data(), tokens);
  const bool rounded_x = x_levels > 0 && tokens <= TiledLinear::kMatvecTokens;
  int bad = 0;
  for (int t = 0; t < tokens; ++t)
    for (int64_t o = 0; o < n_out; ++o) {
      double ref = 0, mag = 0, rounding = 0;
      for (int64_t i = 0; i < n_in; ++i) {
        const double xi = x[size_t(t * n_in + i)];
        ref += xi * wd[size_t(o * n_in + i)];
        mag += std::fabs(xi) * bound[size_t(o * n_in + i)];
        if (rounded_x) {
          float amax = 0;
          for (int64_t j = i / x_group * x_group; j < std::min(n_in, i / x_group * x_group + x_group); ++j)
            amax = std::max(amax, std::fabs(x[size_t(t * n_in + j)]));
          rounding +=
              bound[size_t(o * n_in + i)] * amax * (1 / (2.0 * x_levels) + (x_levels == 127 ? 0x1p-11 : 0));
          if (int16_codes) rounding += std::fabs(xi) * (*int16_codes)[size_t(o * n_in + i)] / 65534.0;
        }
      }
      const double tol = double(n_in + 8) * std::ldexp(1.0, -24) * mag + rounding;
      if (std::fabs(y[size_t(t * n_out + o)] - ref) > tol && bad++ < 3)
        ADD_FAILURE() << what << " tokens " << tokens << " row " << o << ": " << y[size_t(t * n_out + o)]
                      << " vs " << ref << " (tolerance " << tol << ")";
    }
}

// B_i for block formats: 4 × the largest |ŵ| of weight i's 16 (each format's offset m is at
// most the block's extreme value, and |d·q| ≤ |ŵ| + |m|; 4 leaves room for rounded scales).
std::vector<float> block_bound(const std::vector<float>& wd) {
  std::vector<float> b(wd.size());
  for (size_t k = 0; k < wd.size(); k += 16) {
    float mx = 0;
    for (size_t j = k; j < std::min(wd.size(), k + 16); ++j) mx = std::max(mx, std::fabs(wd[j]));
    for (size_t j = k; j < std::min(wd.size(), k + 16); ++j) b[j] = 4 * mx;
  }
  return b;
}

TEST(FusedKernels, EveryGgmlTypeMatchesItsReferenceDecoding) {
  for_each_target([&] {
    init_blas_threads();
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.f, 1.f);
    const int saved = omp_get_max_threads();
    for (int i = 0; i <= int(QType::IQ3_XXS); ++i) {
      const QType type = QType(i);
      const auto& tr = traits(type);
      if (type == QType::I8 || type == QType::U8 || type == QType::I32) continue;
      for (int threads : {1, 4}) {
        omp_set_num_threads(threads);
        for (int n_out : {1, 7, 33}) {
          const int n_in = tr.block == 256 ? 768 : 96;  // 3 blocks: not a power of two
          std::vector<float> w(size_t(n_out * n_in));
          for (auto& v : w) v = nd(rng);
          std::vector<uint8_t> bytes(size_t(n_out * qtype_row_bytes(type, n_in)));
          if (tr.quantize_ref) {
            for (int r = 0; r < n_out; ++r)
              tr.quantize_ref(w.data() + r * n_in, bytes.data() + r * qtype_row_bytes(type, n_in), n_in,
                              nullptr);
          } else {  // read-only lattice types: random codes, a finite fp16 scale in front of each block
            for (auto& v : bytes) v = uint8_t(rng());
            for (size_t k = 0; k < bytes.size(); k += size_t(tr.bytes_per_block)) {
              const uint16_t d = f32_to_f16(0.01f + 0.001f * float(k % 7));
              std::memcpy(&bytes[k], &d, 2);
            }
          }
          TensorView wt{"w", type, {n_out, n_in}, bytes.data(), int64_t(bytes.size()), nullptr};
          StoredLinear lin(wt, TensorView{});
          const std::vector<float> wd = wt.to_f32();
          const std::vector<float> bound = type == QType::F32 || type == QType::F16 || type == QType::BF16
                                               ? std::vector<float>(wd.begin(), wd.end())
                                               : block_bound(wd);
          std::vector<float> abs_bound(bound.size());
          for (size_t k = 0; k < bound.size(); ++k) abs_bound[k] = std::fabs(bound[k]);
          const bool float_codes =
              type == QType::F32 || type == QType::F16 || type == QType::BF16 || !tr.quantize_ref;
          const std::string what =
              std::string(tr.name) + " threads " + std::to_string(threads) + " rows " + std::to_string(n_out);
          for (int tokens : {1, 3, 9})
            expect_linear_matches(lin, wd, abs_bound, tokens, rng, what,
                                  float_codes          ? 0
                                  : qmatvec_int8(type) ? 127
                                                       : 32767);
          if (qmatvec_int8(type))  // x on the int8 grid: only the fp32 bound
            expect_linear_matches(lin, wd, abs_bound, 1, rng, what + " x on the int8 grid", 0, nullptr, true);
        }
      }
    }
    omp_set_num_threads(saved);
  });
}

TEST(FusedKernels, IntegerGridsWithEveryWidthGroupAndActOrder) {
  for_each_target([&] {
    init_blas_threads();
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.f, 1.f);
    const int saved = omp_get_max_threads();
    struct Case {
      int bits, group, n_in;
      bool act_order;
    };
    const Case cases[] = {{4, 128, 384, false}, {4, 32, 96, true},  {3, 64, 384, true},
                          {2, 64, 192, false},  {8, -1, 96, false}, {8, 128, 256, true},
                          {5, 32, 64, false},   {4, 8, 40, false}};  // the last: groups of 8 (no kernel) keep
                                                                     // the bit-packed decoder
    for (const Case& c : cases)
      for (int threads : {1, 4}) {
        omp_set_num_threads(threads);
        const int n_out = 19, n_in = c.n_in;
        std::vector<float> w(size_t(n_out * n_in));
        for (auto& v : w) v = nd(rng);
        IntGridSpec spec;
        spec.bits = c.bits;
        spec.group = c.group;
        IntQuantized q = quantize_rtn(w.data(), n_out, n_in, spec);
        const int g = spec.group_len(n_in);
        if (c.act_order) {  // a random column order, `g` columns per group (GPTQ's desc_act)
          std::vector<int32_t> perm(static_cast<size_t>(n_in));
          std::iota(perm.begin(), perm.end(), 0);
          std::shuffle(perm.begin(), perm.end(), rng);
          q.g_idx.resize(size_t(n_in));
          for (int i = 0; i < n_in; ++i) q.g_idx[size_t(perm[size_t(i)])] = i / g;
        }
        IntLinear lin(q, TensorView{});
        // Bits per weight report the checkpoint's size (GPTQ layout: packed codes, fp16 scale and a
        // packed zero per group), whatever layout the kernels read.
        const int64_t groups = int64_t(n_out) * (n_in / g);
        EXPECT_EQ(lin.weight_bytes(), (int64_t(n_out) * n_in * c.bits + groups * (16 + c.bits)) / 8);
        std::vector<float> wd(w.size()), bound(w.size());
        q.dequantize_rows(0, n_out, wd.data());
        for (int r = 0; r < n_out; ++r)  // |s·q| + |s·z| ≤ 2·s·maxq (codes and zeros are in [0, maxq])
          for (int i = 0; i < n_in; ++i)
            bound[size_t(r * n_in + i)] =
                2 * std::fabs(q.scales[size_t(r * q.n_groups() + q.group_of(i))]) * float(spec.maxq());
        for (int tokens : {1, 4, 9})
          expect_linear_matches(
              lin, wd, bound, tokens, rng,
              fmt::format("{} act-order {} threads {}", spec.describe(), c.act_order, threads),
              qmatvec_int8(c.bits <= 4 ? QType::GRID4 : QType::GRID8) ? 127 : 32767, nullptr, false,
              c.act_order ? n_in : 32);
        const QType grid = c.bits <= 4 ? QType::GRID4 : QType::GRID8;
        if (qmatvec_int8(grid) && !c.act_order && n_in % 32 == 0)  // x on the int8 grid: the fp32 bound
          expect_linear_matches(lin, wd, bound, 1, rng, spec.describe() + " x on the int8 grid", 0, nullptr,
                                true);
      }
    omp_set_num_threads(saved);
  });
}

TEST(FusedKernels, Bnb4BlocksWithinAndAcrossRows) {
  for_each_target([&] {
    std::mt19937 rng(13);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (Bnb4Type type : {Bnb4Type::NF4, Bnb4Type::FP4})
      for (auto [n_in, blocksize] : {std::pair{192, 64}, {96, 64}, {64, 256}, {160, 32}})
        for (bool dq : {false, true}) {
          const int n_out = 8;  // 96 · 8 and 64 · 8 are multiples of the blocksize: blocks straddle rows
          std::vector<float> w(size_t(n_out * n_in));
          for (auto& v : w) v = nd(rng);
          Bnb4Quantized q = quantize_bnb4(w.data(), int64_t(w.size()), type, blocksize, dq);
          std::vector<float> wd(w.size()), bound(w.size());
          dequantize_bnb4(q, 0, int64_t(w.size()), wd.data());
          for (size_t k = 0; k < wd.size(); ++k) bound[k] = std::fabs(wd[k]);  // m = 0, d·q = ŵ
          // The matrix-vector kernel holds the code book as int16 (value·32767 / max|code|): each
          // weight off by at most its block's absmax · max|code| / 65534.
          float code_max = 0;
          for (float c : bnb4_code(type)) code_max = std::max(code_max, std::fabs(c));
          std::vector<float> code_unit(w.size());
          for (size_t k = 0; k < w.size(); ++k)
            code_unit[k] = std::fabs(q.absmax[k / size_t(blocksize)]) * code_max;
          Bnb4Linear lin(std::move(q), n_out, n_in, TensorView{});
          for (int tokens : {1, 2, 7})
            expect_linear_matches(lin, wd, bound, tokens, rng,
                                  fmt::format("{} n_in {} blocksize {} dq {}",
                                              type == Bnb4Type::NF4 ? "NF4" : "FP4", n_in, blocksize, dq),
                                  32767, &code_unit);
        }
  });
}

TEST(FusedKernels, Int8DotProductsAreExact) {
  for_each_target([&] {
    std::mt19937 rng(17);
    for (int n : {1, 15, 16, 17, 33, 1000, 4099}) {
      const int rows = 5;
      std::vector<int8_t> w(size_t(rows * n)), x(static_cast<size_t>(n));
      for (auto& v : w)
        v = int8_t(rng() % 2 ? -128 + int(rng() % 3) : int(rng() % 256) - 128);  // extremes included
      for (auto& v : x) v = int8_t(int(rng() % 255) - 127);
      std::vector<int32_t> out(static_cast<size_t>(rows));
      qdot_i8_rows(w.data(), rows, n, x.data(), out.data());
      for (int r = 0; r < rows; ++r) {
        int64_t ref = 0;
        for (int i = 0; i < n; ++i) ref += int64_t(w[size_t(r * n + i)]) * x[size_t(i)];
        EXPECT_EQ(out[size_t(r)], ref) << "n " << n << " row " << r;
      }
    }
  });
}

// LLM.int8(): one token goes through the SIMD integer kernel, a prompt through dgemm on the
// same int8 operands; both are exact integer sums, so every output is the same float.
TEST(FusedKernels, Int8MatvecEqualsThePromptPathBitForBit) {
  for_each_target([&] {
    std::mt19937 rng(19);
    std::normal_distribution<float> nd(0.f, 1.f);
    const int saved = omp_get_max_threads();
    for (int threads : {1, 4})
      for (int n_in : {33, 256, 2100}) {  // 2100: the prompt path sums chunks of 1024 columns
        omp_set_num_threads(threads);
        const int n_out = 37, copies = 6;
        std::vector<float> w(size_t(n_out * n_in)), x(static_cast<size_t>(n_in));
        for (auto& v : w) v = nd(rng);
        for (auto& v : x) v = nd(rng);
        x[3] = 9.5f;  // an outlier column (threshold 6)
        Int8Linear lin(quantize_int8_rowwise(w.data(), n_out, n_in), 6.0f, TensorView{});
        std::vector<float> xs;
        for (int c = 0; c < copies; ++c) xs.insert(xs.end(), x.begin(), x.end());
        std::vector<float> one(static_cast<size_t>(n_out)), many(size_t(copies * n_out));
        lin.forward(x.data(), one.data(), 1);
        lin.forward(xs.data(), many.data(), copies);
        for (int c = 0; c < copies; ++c)
          for (int o = 0; o < n_out; ++o)
            EXPECT_EQ(one[size_t(o)], many[size_t(c * n_out + o)]) << "n_in " << n_in << " row " << o;
      }
    omp_set_num_threads(saved);
  });
}

}  // namespace
}  // namespace qf
