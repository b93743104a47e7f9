// LLM.int8(): bitsandbytes' row-wise weight rule on a hand-computed row, its serialization,
// and Int8Linear against a scalar reference of the paper's mixed-precision decomposition
// (int32 sums of int8 products; outlier columns in floating point), on awkward sizes with
// one and several threads.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/threads.h"
#include "formats/int8_rowwise.h"
#include "io/bnb_layout.h"
#include "model/linear.h"

namespace qf {
namespace {

TEST(Int8Rowwise, HandComputedRow) {
  // SCB = 2; codes = round(w · 127 / 2): 63.5 → 64 (half to even), −127, 31.75 → 32, 12.7 → 13.
  const float w[] = {1.0f, -2.0f, 0.5f, 0.2f, 0, 0, 0, 0};
  Int8Rowwise q = quantize_int8_rowwise(w, 2, 4);
  EXPECT_EQ(q.scb, (std::vector<float>{2.0f, 0.0f}));
  EXPECT_EQ(q.codes, (std::vector<int8_t>{64, -127, 32, 13, 0, 0, 0, 0}));  // a zero row stays zero
  EXPECT_DOUBLE_EQ(q.bits_per_weight(), 8.0 + 32.0 / 4);
}

TEST(Int8Rowwise, SerializationIsBitsandbytesLinear8bitLt) {
  std::vector<float> w(6 * 10);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(float(i));
  Int8Rowwise q = quantize_int8_rowwise(w.data(), 6, 10);
  auto ts = serialize_int8(q);
  ASSERT_EQ(ts.size(), 3u);
  EXPECT_EQ(ts[0].suffix, ".weight");
  EXPECT_EQ(ts[0].dtype, "I8");
  EXPECT_EQ(ts[0].shape, (std::vector<int64_t>{6, 10}));
  EXPECT_EQ(ts[1].suffix, ".SCB");
  EXPECT_EQ(ts[1].dtype, "F32");
  EXPECT_EQ(ts[2].suffix, ".weight_format");
  EXPECT_TRUE(ts[2].shape.empty());  // a 0-d uint8 tensor holding 0 ("row")
  std::map<std::string, TensorView> parts;
  for (const auto& t : ts)
    parts[t.suffix] = TensorView{t.suffix,       *qtype_from_name(t.dtype), t.shape,
                                 t.bytes.data(), int64_t(t.bytes.size()),   nullptr};
  auto back = deserialize_int8(parts, 6, 10, "p");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->codes, q.codes);
  EXPECT_EQ(back->scb, q.scb);
  auto wrong = deserialize_int8(parts, 10, 6, "p");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("p.weight: expected int8 [10, 6]"), std::string::npos)
      << wrong.status().message();
}

// y = x·Ŵᵀ + b by the paper's definition, sums in int64 and double. Returns also Σ|terms|
// per output, the scale of float rounding in the implementation under test.
void reference(const Int8Rowwise& q, const std::vector<float>& x, int64_t tokens, float threshold,
               const std::vector<float>& b, std::vector<double>& y, std::vector<double>& mag) {
  const int64_t n_in = q.n_in, n_out = q.n_out;
  std::vector<bool> outlier(size_t(n_in), false);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < n_in; ++i)
      if (threshold > 0 && std::fabs(x[size_t(t * n_in + i)]) >= threshold) outlier[size_t(i)] = true;
  y.assign(size_t(tokens * n_out), 0);
  mag.assign(y.size(), 0);
  for (int64_t t = 0; t < tokens; ++t) {
    float amax = 0;
    for (int64_t i = 0; i < n_in; ++i)
      if (!outlier[size_t(i)]) amax = std::max(amax, std::fabs(x[size_t(t * n_in + i)]));
    std::vector<int> xq(size_t(n_in), 0);
    for (int64_t i = 0; i < n_in; ++i)
      if (!outlier[size_t(i)] && amax > 0)
        xq[size_t(i)] = int(std::nearbyint(x[size_t(t * n_in + i)] * (127.0f / amax)));
    for (int64_t o = 0; o < n_out; ++o) {
      int64_t acc = 0;
      double fp = 0, fp_mag = 0;
      for (int64_t i = 0; i < n_in; ++i) {
        const int8_t c = q.codes[size_t(o * n_in + i)];
        if (outlier[size_t(i)]) {
          double term = double(x[size_t(t * n_in + i)]) * c * q.scb[size_t(o)] / 127.0;
          fp += term;
          fp_mag += std::fabs(term);
        } else {
          acc += int64_t(xq[size_t(i)]) * c;
        }
      }
      const double main = double(acc) * amax * q.scb[size_t(o)] / (127.0 * 127.0);
      y[size_t(t * n_out + o)] = main + fp + (b.empty() ? 0.0 : b[size_t(o)]);
      mag[size_t(t * n_out + o)] = std::fabs(main) + fp_mag + (b.empty() ? 0.0 : std::fabs(b[size_t(o)]));
    }
  }
}

TEST(Int8Linear, MatchesTheScalarDecompositionOnAwkwardSizes) {
  std::mt19937 rng(8);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int threads : {1, 3})
    for (auto [n_out, n_in, tokens] : {std::tuple{37, 53, 1}, {70, 129, 5}, {16, 8, 33}})
      for (float threshold : {0.0f, 2.5f}) {
        set_num_threads(threads);
        std::vector<float> w(static_cast<size_t>(n_out * n_in)), x(static_cast<size_t>(tokens * n_in)),
            b(static_cast<size_t>(n_out));
        for (auto& v : w) v = nd(rng) * 0.1f;
        for (auto& v : x) v = nd(rng);
        for (auto& v : b) v = nd(rng);
        Int8Rowwise q = quantize_int8_rowwise(w.data(), n_out, n_in);
        TensorView bias{"b",       QType::F32, {n_out}, reinterpret_cast<const uint8_t*>(b.data()),
                        n_out * 4, nullptr};
        Int8Linear lin(q, threshold, bias);
        std::vector<float> y(size_t(tokens * n_out));
        lin.forward(x.data(), y.data(), tokens);
        std::vector<double> ref, mag;
        reference(q, x, tokens, threshold, b, ref, mag);
        // Float rounding: the scale product (2 ops), the int32 → float conversion, the outlier
        // sum (≤ n_in terms) and the bias: each ≤ ½ ulp of the magnitudes involved.
        const double eps = std::ldexp(1.0, -24);
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_NEAR(y[i], ref[i], (6 + n_in) * eps * mag[i])
              << n_out << "x" << n_in << " t" << tokens << " thr " << threshold;
      }
  set_num_threads(0);
}

TEST(Int8Linear, OutlierColumnsInFloatKeepTheErrorSmall) {
  // One activation feature far above the others (the paper's emergent outliers): in int8 it
  // sets every token's scale and crushes the rest; decomposed, only the weight rounding remains.
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t n_out = 64, n_in = 256, tokens = 8;
  std::vector<float> w(size_t(n_out * n_in)), x(size_t(tokens * n_in));
  for (auto& v : w) v = nd(rng) * 0.05f;
  for (auto& v : x) v = nd(rng) * 0.5f;
  for (int64_t t = 0; t < tokens; ++t) x[size_t(t * n_in + 17)] = 60.0f;
  Int8Rowwise q = quantize_int8_rowwise(w.data(), n_out, n_in);
  auto error = [&](float threshold) {
    Int8Linear lin(q, threshold, TensorView{});
    std::vector<float> y(size_t(tokens * n_out));
    lin.forward(x.data(), y.data(), tokens);
    double e = 0;
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t o = 0; o < n_out; ++o) {
        double exact = 0;
        for (int64_t i = 0; i < n_in; ++i) exact += double(x[size_t(t * n_in + i)]) * w[size_t(o * n_in + i)];
        e += (y[size_t(t * n_out + o)] - exact) * (y[size_t(t * n_out + o)] - exact);
      }
    return e;
  };
  EXPECT_LT(error(6.0f) * 10, error(0.0f));
}

}  // namespace
}  // namespace qf
