// RoPE scaling against the published definitions: Llama 3.1's frequency bands (Meta's
// apply_scaling, as HF and llama.cpp's converter restate it — two formulas that must agree), YaRN's
// attention factor 0.1·ln(s) + 1 and its untouched/interpolated bands (Peng et al. 2023, eq. 17–19),
// dynamic NTK's base·(s·L/L₀ − (s − 1))^(d/(d−2)), linear's division by s.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "model/rope.h"

namespace qf {
namespace {

ModelConfig base_config(RopeKind kind) {
  ModelConfig c;
  c.head_dim = 64;
  c.rope_theta = 500000.0f;
  c.max_ctx = 8192;
  c.rope.kind = kind;
  c.rope.factor = 8.0f;
  c.rope.original_ctx = 2048;
  return c;
}

// fp32 HF default: 1 / θ^(2i/d).
float default_freq(const ModelConfig& c, int i) {
  return 1.0f / std::pow(c.rope_theta, float(2 * i) / float(c.head_dim));
}

TEST(Rope, Llama3KeepsHighFrequenciesDividesLowOnesAndAgreesWithTheGgufFactors) {
  const ModelConfig c = base_config(RopeKind::Llama3);  // low_freq_factor 1, high_freq_factor 4
  const auto f = rope_frequencies(c, 1).inv_freq;
  const auto factors = llama3_rope_freq_factors(c);
  ASSERT_EQ(f.size(), 32u);
  ASSERT_EQ(factors.size(), 32u);
  int high = 0, low = 0, medium = 0;
  for (int i = 0; i < 32; ++i) {
    const double wavelen = 2 * std::numbers::pi / default_freq(c, i);
    if (wavelen < 2048.0 / 4) {
      EXPECT_EQ(f[size_t(i)], default_freq(c, i)) << i;
      ++high;
    } else if (wavelen > 2048.0) {
      EXPECT_FLOAT_EQ(f[size_t(i)], default_freq(c, i) / 8) << i;
      ++low;
    } else {
      EXPECT_GT(f[size_t(i)], default_freq(c, i) / 8) << i;
      EXPECT_LT(f[size_t(i)], default_freq(c, i)) << i;
      ++medium;
    }
    // llama.cpp divides the default frequency by the converter's factor: the same number to fp32
    // rounding of the two formulas. Each side rounds ≤ 3 fp32 operations after the shared default
    // frequency (HF: /factor, ·(1−s), +s·f; converter: the factor's two operations, then the
    // division), so they differ by ≤ 6 half-ulps = 3·2^-23 ≈ 3.6e-7 relative: bound 4e-7.
    EXPECT_NEAR(default_freq(c, i) / factors[size_t(i)], f[size_t(i)], 4e-7 * f[size_t(i)]) << i;
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(medium, 0);
}

TEST(Rope, YarnAttentionFactorAndBands) {
  ModelConfig c = base_config(RopeKind::Yarn);
  c.rope.factor = 4.0f;
  c.rope.original_ctx = 2048;
  const auto r = rope_frequencies(c, 1);
  EXPECT_FLOAT_EQ(r.attention_factor, float(0.1 * std::log(4.0) + 1.0));
  // Dimensions below the β_fast = 32 correction dimension rotate as before; above β_slow = 1's, by 1/s.
  auto correction_dim = [&](double rotations) {
    return c.head_dim * std::log(2048 / (rotations * 2 * std::numbers::pi)) /
           (2 * std::log(double(c.rope_theta)));
  };
  const int lo = int(std::floor(correction_dim(32))), hi = int(std::ceil(correction_dim(1)));
  ASSERT_LT(lo, hi);
  for (int i = 0; i < 32; ++i) {
    if (i <= lo) {
      EXPECT_FLOAT_EQ(r.inv_freq[size_t(i)], default_freq(c, i)) << i;
    }
    if (i >= hi) {
      EXPECT_FLOAT_EQ(r.inv_freq[size_t(i)], default_freq(c, i) / 4) << i;
    }
  }
}

TEST(Rope, DynamicNtkChangesTheBaseOnlyPastTheOriginalContext) {
  ModelConfig c = base_config(RopeKind::Dynamic);
  c.rope.factor = 2.0f;
  const auto within = rope_frequencies(c, 2048).inv_freq, beyond = rope_frequencies(c, 4096).inv_freq;
  // The reference in double; qforge rounds the new base to fp32 (2^-24 relative) and raises it
  // to −2i/d in fp32: the result's relative error is ≤ (2i/d)·2^-24 + 2^-24 from the base and
  // the pow, plus the fp32 exponent's rounding (2^-24) times ln(base) ≈ 14.4: ≈ 1e-6 in all; bound 2e-6.
  const double base = c.rope_theta * std::pow(2.0 * 4096 / 2048 - 1, 64.0 / 62.0);
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(within[size_t(i)], default_freq(c, i));
    EXPECT_NEAR(beyond[size_t(i)], std::pow(base, -2.0 * i / 64), 2e-6 * beyond[size_t(i)]) << i;
  }
}

TEST(Rope, LinearDividesEveryFrequency) {
  const ModelConfig c = base_config(RopeKind::Linear);
  const auto f = rope_frequencies(c, 1).inv_freq;
  for (int i = 0; i < 32; ++i) EXPECT_FLOAT_EQ(f[size_t(i)], default_freq(c, i) / 8);
}

TEST(Rope, ChecksNameTheKindAndValue) {
  ModelConfig c = base_config(RopeKind::Llama3);
  c.rope.original_ctx = 0;
  auto s = check_rope(c, "config.json");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "config.json: rope_type 'llama3' needs original_max_position_embeddings > 0, found 0");
  c = base_config(RopeKind::Linear);
  c.rope.factor = 0.5f;
  EXPECT_FALSE(check_rope(c, "x").ok());
}

}  // namespace
}  // namespace qf
