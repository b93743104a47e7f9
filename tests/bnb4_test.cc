// bitsandbytes NF4/FP4: the code books against their published definitions, a hand-computed
// block, round-trip bounds, double quantization and its bits per weight (QLoRA: ~0.37 saved).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "formats/bnb4.h"

namespace qf {
namespace {

// Φ⁻¹ by bisection on the normal CDF 0.5·erfc(−x/√2): independent of the table under test.
double normal_ppf(double p) {
  double lo = -10, hi = 10;
  for (int i = 0; i < 200; ++i) {
    double mid = (lo + hi) / 2;
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

TEST(Bnb4, Nf4IsTheNormalisedNormalQuantilesOfQLoRA) {
  // bitsandbytes create_normal_map(offset=0.9677083): 8 positive quantiles of
  // linspace(offset, 0.5, 9)[:-1], 7 negative of linspace(offset, 0.5, 8)[:-1], and 0;
  // sorted and divided by the largest.
  const double offset = 0.9677083;
  std::vector<double> v;
  for (int i = 0; i < 8; ++i) v.push_back(normal_ppf(offset + (0.5 - offset) * i / 8));
  for (int i = 0; i < 7; ++i) v.push_back(-normal_ppf(offset + (0.5 - offset) * i / 7));
  v.push_back(0);
  std::sort(v.begin(), v.end());
  const double mx = v.back();
  const auto& code = bnb4_code(Bnb4Type::NF4);
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(code[size_t(i)], v[size_t(i)] / mx, 2e-7) << i;
}

TEST(Bnb4, Fp4MatchesBitsandbytesDecodeTree) {
  // dDequantizeFP4Tree's leaves, by code (bit 3 = sign).
  const float want[8] = {0.0f, 0.0052083333f, 0.6666667f, 1.0f, 0.3333333f, 0.5f, 0.1666667f, 0.25f};
  const auto& code = bnb4_code(Bnb4Type::FP4);
  for (int i = 0; i < 8; ++i) {
    EXPECT_NEAR(code[size_t(i)], want[i], 1e-7) << i;
    EXPECT_NEAR(code[size_t(i + 8)], -want[i], 1e-7) << i;
  }
}

TEST(Bnb4, HandComputedBlock) {
  std::vector<float> x(32, 0.0f);
  x[0] = -2.0f, x[1] = 1.0f, x[2] = 0.1f, x[3] = 2.0f;  // absmax 2: normalised -1, 0.5, 0.05, 1
  Bnb4Quantized nf4 = quantize_bnb4(x.data(), 32, Bnb4Type::NF4, 32, false);
  // NF4: -1 → 0; 0.5 < (0.4407 + 0.5626)/2 → 12; 0.05 > 0.0398 → 8; 1 → 15; 0 → 7.
  EXPECT_EQ(nf4.packed[0], 0x0C);
  EXPECT_EQ(nf4.packed[1], 0x8F);
  EXPECT_EQ(nf4.packed[2], 0x77);
  EXPECT_EQ(nf4.absmax[0], 2.0f);
  Bnb4Quantized fp4 = quantize_bnb4(x.data(), 32, Bnb4Type::FP4, 32, false);
  // FP4: -1 → sign|3 = 11; 0.5 → 5; 0.05 < 0.0859 → 1; 1 → 3; 0 → 0.
  EXPECT_EQ(fp4.packed[0], 0xB5);
  EXPECT_EQ(fp4.packed[1], 0x13);
  EXPECT_EQ(fp4.packed[2], 0x00);
  float back[4];
  dequantize_bnb4(nf4, 0, 4, back);
  EXPECT_FLOAT_EQ(back[1], 2 * 0.44070982933044434f);
}

TEST(Bnb4, RoundTripWithinHalfTheWidestGap) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (Bnb4Type t : {Bnb4Type::NF4, Bnb4Type::FP4})
    for (int bs : {32, 64, 256}) {
      std::vector<float> x(size_t(bs) * 8), y(x.size());
      for (auto& v : x) v = nd(rng);
      Bnb4Quantized q = quantize_bnb4(x.data(), int64_t(x.size()), t, bs, false);
      dequantize_bnb4(q, 0, int64_t(x.size()), y.data());
      auto sorted = bnb4_code(t);
      std::sort(sorted.begin(), sorted.end());
      float gap = 0;
      for (int i = 0; i + 1 < 16; ++i) gap = std::max(gap, sorted[size_t(i + 1)] - sorted[size_t(i)]);
      for (size_t i = 0; i < x.size(); ++i)
        EXPECT_LE(std::fabs(x[i] - y[i]), 0.5f * gap * q.absmax[i / size_t(bs)] * (1 + 1e-6f));
    }
}

TEST(Bnb4, DynamicMapShape) {
  const auto& m = dynamic_map_signed();
  EXPECT_TRUE(std::is_sorted(m.begin(), m.end()));
  EXPECT_EQ(std::count(m.begin(), m.end(), 0.0f), 1);
  EXPECT_EQ(m.back(), 1.0f);
  // Largest magnitude below 1: the last midpoint of linspace(0.1, 1, 65) = 1 − 0.9/128.
  EXPECT_NEAR(m.front(), -(1.0 - 0.9 / 128), 1e-6);
  EXPECT_NEAR(m[254], 1.0 - 0.9 / 128, 1e-6);
  // Smallest positive: 1e-6 · mean(0.1, 1) = 0.55e-6.
  EXPECT_NEAR(*std::upper_bound(m.begin(), m.end(), 0.0f), 0.55e-6, 1e-12);
}

TEST(Bnb4, DoubleQuantSavesAboutPointThreeSevenBits) {
  std::mt19937 rng(8);
  std::normal_distribution<float> nd(0.f, 0.02f);
  const int64_t n = 512 * 512;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  Bnb4Quantized plain = quantize_bnb4(x.data(), n, Bnb4Type::NF4, 64, false);
  Bnb4Quantized dq = quantize_bnb4(x.data(), n, Bnb4Type::NF4, 64, true);
  EXPECT_DOUBLE_EQ(plain.bits_per_weight(), 4.5);
  // 4 + 8/64 + 32·ceil(4096/256)/n + 32/n (the offset)
  EXPECT_NEAR(dq.bits_per_weight(), 4.0 + 8.0 / 64 + 32.0 * 16 / double(n) + 32.0 / double(n), 1e-12);
  EXPECT_NEAR(plain.bits_per_weight() - dq.bits_per_weight(), 0.373, 0.002);  // QLoRA §3
  // Reconstructed absmax within half a dynamic-map step of its block's scale.
  const auto& m = dynamic_map_signed();
  float gap = 0;
  for (int i = 0; i + 1 < 256; ++i) gap = std::max(gap, m[size_t(i + 1)] - m[size_t(i)]);
  for (size_t b = 0; b < plain.absmax.size(); ++b)
    EXPECT_LE(std::fabs(dq.absmax[b] - plain.absmax[b]),
              0.5f * gap * dq.nested_absmax[b / 256] * 1.0001f + 1e-9f);
}

TEST(Bnb4, RefusesBadBlocksizes) {
  EXPECT_NE(validate_bnb4(48, 96, "t").message().find("power of two"), std::string::npos);
  EXPECT_NE(validate_bnb4(64, 100, "t").message().find("not a multiple of the blocksize 64"),
            std::string::npos);
  EXPECT_TRUE(validate_bnb4(64, 128, "t").ok());
}

}  // namespace
}  // namespace qf

#include "io/bnb_layout.h"

namespace qf {
namespace {

std::map<std::string, TensorView> views(const std::vector<SerializedTensor>& ts) {
  std::map<std::string, TensorView> m;
  for (const auto& t : ts) {
    QType type = *qtype_from_name(t.dtype);
    m[t.suffix] = TensorView{t.suffix, type, t.shape, t.bytes.data(), int64_t(t.bytes.size()), nullptr};
  }
  return m;
}

TEST(BnbLayout, QuantStateJsonIsWhatPythonJsonDumpsWrites) {
  std::vector<float> w(64 * 64, 0.5f);
  Bnb4Quantized q = quantize_bnb4(w.data(), int64_t(w.size()), Bnb4Type::NF4, 64, true);
  auto ts = serialize_bnb4(q, 64, 64, "bfloat16");
  ASSERT_EQ(ts.back().suffix, ".weight.quant_state.bitsandbytes__nf4");
  std::string js(ts.back().bytes.begin(), ts.back().bytes.end());
  EXPECT_EQ(js, R"({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [64, 64], )"
                R"("nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.5})");
  EXPECT_EQ(ts[0].shape, (std::vector<int64_t>{2048, 1}));  // Params4bit: (n/2, 1) uint8
  EXPECT_EQ(ts[1].dtype, "U8");                             // absmax codes with double quant
}

TEST(BnbLayout, SerializeDeserializeRoundTrip) {
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.f, 0.05f);
  for (bool dq : {false, true})
    for (Bnb4Type t : {Bnb4Type::NF4, Bnb4Type::FP4}) {
      std::vector<float> w(96 * 128);
      for (auto& v : w) v = nd(rng);
      Bnb4Quantized q = quantize_bnb4(w.data(), int64_t(w.size()), t, 128, dq);
      auto ts = serialize_bnb4(q, 96, 128, "float16");
      auto layout = bnb4_layout(t, 128, dq, q.offset, 96, 128, "float16");
      ASSERT_EQ(layout.size(), ts.size());
      for (size_t i = 0; i < ts.size(); ++i) {  // the header written before quantizing agrees
        EXPECT_EQ(layout[i].suffix, ts[i].suffix);
        EXPECT_EQ(layout[i].shape, ts[i].shape);
      }
      auto back = deserialize_bnb4(views(ts), 96, 128, "p");
      ASSERT_TRUE(back.ok()) << back.status().message();
      EXPECT_EQ(back->packed, q.packed);
      EXPECT_EQ(back->absmax, q.absmax);
      auto wrong = deserialize_bnb4(views(ts), 128, 96, "p");
      ASSERT_FALSE(wrong.ok());
      EXPECT_NE(wrong.status().message().find("does not match the model's 128x96"), std::string::npos);
    }
}

}  // namespace
}  // namespace qf
