// llama.cpp's block formats: hand-built blocks decoded to values worked out from the layouts
// in ggml-common.h, round-trip error under the bound of a uniform grid of the same bit width,
// and importance weights (imatrix) moving the error to where they point.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/half.h"
#include "formats/ggml_quants.h"
#include "formats/qtype.h"

namespace qf {
namespace {

std::vector<float> decode(QType t, const void* block) {
  std::vector<float> y(size_t(traits(t).block));
  traits(t).dequantize_ref(block, y.data(), int64_t(y.size()));
  return y;
}

TEST(GgmlBlocks, TableMatchesGgmlCommon) {
  // bytes per block and ggml ids as in ggml-common.h / ggml.h.
  struct Row { QType t; int id, block, bytes; };
  for (Row r : {Row{QType::Q4_0, 2, 32, 18}, {QType::Q4_1, 3, 32, 20}, {QType::Q5_0, 6, 32, 22}, {QType::Q5_1, 7, 32, 24},
                {QType::Q8_0, 8, 32, 34}, {QType::Q2_K, 10, 256, 84}, {QType::Q3_K, 11, 256, 110}, {QType::Q4_K, 12, 256, 144},
                {QType::Q5_K, 13, 256, 176}, {QType::Q6_K, 14, 256, 210}, {QType::IQ4_NL, 20, 32, 18},
                {QType::IQ4_XS, 23, 256, 136}}) {
    EXPECT_EQ(traits(r.t).ggml_id, r.id) << traits(r.t).name;
    EXPECT_EQ(traits(r.t).block, r.block) << traits(r.t).name;
    EXPECT_EQ(traits(r.t).bytes_per_block, r.bytes) << traits(r.t).name;
    EXPECT_EQ(ggml_type_name(uint32_t(r.id)), traits(r.t).name);
  }
}

TEST(GgmlBlocks, HandBuiltLegacyBlocks) {
  BlockQ4_0 a{};
  a.d = f32_to_f16(0.5f);
  a.qs[0] = 0x9F;  // weight 0: low nibble 15 → (15 − 8)·0.5; weight 16: high nibble 9 → 0.5
  auto y = decode(QType::Q4_0, &a);
  EXPECT_EQ(y[0], 3.5f);
  EXPECT_EQ(y[16], 0.5f);
  EXPECT_EQ(y[1], -4.0f);  // nibble 0
  BlockQ5_0 b{};
  b.d = f32_to_f16(0.25f);
  b.qs[2] = 0x31;     // weight 2: 1, weight 18: 3
  b.qh[0] = 1 << 2;   // 5th bit of weight 2
  b.qh[2] = 1 << 2;   // bit 18: 5th bit of weight 18
  y = decode(QType::Q5_0, &b);
  EXPECT_EQ(y[2], (17 - 16) * 0.25f);
  EXPECT_EQ(y[18], (19 - 16) * 0.25f);
  EXPECT_EQ(y[3], -16 * 0.25f);
  BlockQ4_1 c{};
  c.d = f32_to_f16(2.0f);
  c.m = f32_to_f16(-1.0f);
  c.qs[5] = 0x70;  // weight 5: 0 → m; weight 21: 7 → 13
  y = decode(QType::Q4_1, &c);
  EXPECT_EQ(y[5], -1.0f);
  EXPECT_EQ(y[21], 13.0f);
  BlockQ5_1 e{};
  e.d = f32_to_f16(1.0f);
  e.m = f32_to_f16(0.5f);
  e.qs[15] = 0xF0;     // weight 31: 15 | 16 = 31
  e.qh[3] = 0x80;      // bit 31
  y = decode(QType::Q5_1, &e);
  EXPECT_EQ(y[31], 31.5f);
  EXPECT_EQ(y[15], 0.5f);
}

TEST(GgmlBlocks, HandBuiltKQuantBlocks) {
  BlockQ2_K a{};
  a.d = f32_to_f16(0.5f);
  a.dmin = f32_to_f16(0.25f);
  a.scales[0] = 0x43;  // sub-block 0 (weights 0..15): scale 3, min 4
  a.scales[2] = 0x01;  // sub-block 2 (weights 32..47): scale 1, min 0
  a.qs[0] = 0x0B;      // weight 0: code 3; weight 32: code 2 (bits 2..3)
  auto y = decode(QType::Q2_K, &a);
  EXPECT_EQ(y[0], 0.5f * 3 * 3 - 0.25f * 4);
  EXPECT_EQ(y[32], 0.5f * 1 * 2);
  EXPECT_EQ(y[1], -1.0f);

  BlockQ3_K b{};
  b.d = f32_to_f16(0.5f);
  // scale of sub-block 0 is (low nibble of scales[0] | 2 high bits of scales[8]) − 32 = 34 − 32.
  b.scales[0] = 0x02;
  b.scales[8] = 0x02;
  b.qs[0] = 0x01;       // weight 0: low bits 1
  b.hmask[0] = 0x01;    // weight 0: high bit set → code 1 (no −4)
  b.qs[1] = 0x03;       // weight 1: low bits 3, high bit clear → 3 − 4
  y = decode(QType::Q3_K, &b);
  EXPECT_EQ(y[0], 0.5f * 2 * 1);
  EXPECT_EQ(y[1], 0.5f * 2 * -1);

  BlockQ4_K c{};
  c.d = f32_to_f16(0.5f);
  c.dmin = f32_to_f16(0.125f);
  c.scales[0] = 3;       // sub-block 0: scale 3
  c.scales[4] = 8;       // sub-block 0: min 8
  c.scales[8] = 0x21;    // sub-block 4: scale low 1, min low 2 ...
  c.scales[0] |= 0x40;   // ... scale high bits 01 (from scales[0] bits 6-7) → 17
  c.qs[0] = 0xA5;        // weight 0: 5; weight 32: 10 (sub-block 1: scale 0, min 0)
  c.qs[64] = 0x07;       // weight 128 (sub-block 4): 7
  y = decode(QType::Q4_K, &c);
  EXPECT_EQ(y[0], 0.5f * 3 * 5 - 0.125f * 8);
  EXPECT_EQ(y[32], 0.0f);
  EXPECT_EQ(y[128], 0.5f * 17 * 7 - 0.125f * 2);

  BlockQ5_K e{};
  e.d = f32_to_f16(1.0f);
  e.scales[1] = 2;       // sub-block 1 (weights 32..63): scale 2, min 0
  e.qs[0] = 0x30;        // weight 32: low 3
  e.qh[0] = 0x02;        // weight 32: 5th bit (u2 of the first pair) → 19
  y = decode(QType::Q5_K, &e);
  EXPECT_EQ(y[32], 2.0f * 19);

  BlockQ6_K f{};
  f.d = f32_to_f16(0.25f);
  f.scales[0] = -2;      // weights 0..15
  f.scales[4] = 3;       // weights 64..79
  f.ql[0] = 0x5A;        // weight 0: low 0xA; weight 64: low 0x5
  f.qh[0] = 0x12;        // weight 0: high 2 (bits 0-1) → 42; weight 64: high 1 (bits 4-5) → 21
  y = decode(QType::Q6_K, &f);
  EXPECT_EQ(y[0], 0.25f * -2 * (42 - 32));
  EXPECT_EQ(y[64], 0.25f * 3 * (21 - 32));
}

TEST(GgmlBlocks, HandBuiltIq4Blocks) {
  // The IQ4_NL grid as published in ggml-common.h (kvalues_iq4nl).
  const int8_t grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  EXPECT_EQ(std::memcmp(kIq4nlValues, grid, 16), 0);
  BlockIQ4_NL a{};
  a.d = f32_to_f16(0.5f);
  a.qs[3] = 0xF0;  // weight 3: index 0 → −127; weight 19: index 15 → 113
  auto y = decode(QType::IQ4_NL, &a);
  EXPECT_EQ(y[3], 0.5f * -127);
  EXPECT_EQ(y[19], 0.5f * 113);
  BlockIQ4_XS b{};
  b.d = f32_to_f16(0.25f);
  b.scales_l[1] = 0x50;      // block 3 (weights 96..127): low bits 5
  b.scales_h = 2 << (2 * 3); // block 3: high bits 2 → 5 + 32 − 32 = 5
  b.qs[48] = 0x08;           // weight 96: index 8 → 1
  y = decode(QType::IQ4_XS, &b);
  EXPECT_EQ(y[96], 0.25f * 5 * 1);
  EXPECT_EQ(y[0], 0.25f * -32 * -127);  // block 0: scale bits 0 → −32
}

const QType kGgmlTypes[] = {QType::Q4_0, QType::Q4_1, QType::Q5_0, QType::Q5_1, QType::Q8_0, QType::Q2_K,
                            QType::Q3_K, QType::Q4_K, QType::Q5_K, QType::Q6_K, QType::IQ4_NL, QType::IQ4_XS};

int bits_of(QType t) {
  switch (t) {
    case QType::Q2_K: return 2;
    case QType::Q3_K: return 3;
    case QType::Q4_0: case QType::Q4_1: case QType::Q4_K: case QType::IQ4_NL: case QType::IQ4_XS: return 4;
    case QType::Q5_0: case QType::Q5_1: case QType::Q5_K: return 5;
    case QType::Q6_K: return 6;
    default: return 8;
  }
}

std::vector<float> round_trip(QType t, const std::vector<float>& x, const float* imatrix) {
  std::vector<uint8_t> q(size_t(qtype_row_bytes(t, int64_t(x.size()))));
  traits(t).quantize_ref(x.data(), q.data(), int64_t(x.size()), imatrix);
  std::vector<float> y(x.size());
  traits(t).dequantize_ref(q.data(), y.data(), int64_t(y.size()));
  return y;
}

TEST(GgmlBlocks, RoundTripWithinAUniformGridsError) {
  // Uniform data on [−1, 1]: a b-bit uniform grid over the range has RMS error
  // step/√12 with step = 2/(2^b − 1). Each type spends its bits on such a grid per block,
  // with its scales rounded too; allow 1.5× for that and for block-wise range loss.
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(4096);
  for (auto& v : x) v = u(rng);
  for (QType t : kGgmlTypes) {
    auto y = round_trip(t, x, nullptr);
    double se = 0;
    for (size_t i = 0; i < x.size(); ++i) se += (y[i] - x[i]) * (y[i] - x[i]);
    const double rmse = std::sqrt(se / double(x.size()));
    const double bound = 1.5 * 2.0 / ((1 << bits_of(t)) - 1) / std::sqrt(12.0);
    EXPECT_LT(rmse, bound) << traits(t).name;
    EXPECT_GT(rmse, 0.0) << traits(t).name;
  }
}

TEST(GgmlBlocks, ImportanceWeightsMoveTheErrorWhereTheyPoint) {
  // One row of Gaussian weights; every 5th column matters 100× more. Quantizing with that
  // imatrix must lower the importance-weighted error against quantizing without it.
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(2048), imatrix(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = nd(rng);
    imatrix[i] = i % 5 == 0 ? 100.0f : 1.0f;
  }
  for (QType t : kGgmlTypes) {
    if (t == QType::Q8_0) continue;  // llama.cpp's Q8_0 has no weighted search
    auto weighted_error = [&](const std::vector<float>& y) {
      double e = 0;
      for (size_t i = 0; i < x.size(); ++i) e += imatrix[i] * (y[i] - x[i]) * (y[i] - x[i]);
      return e;
    };
    EXPECT_LT(weighted_error(round_trip(t, x, imatrix.data())), weighted_error(round_trip(t, x, nullptr)))
        << traits(t).name;
  }
}

}  // namespace
}  // namespace qf
