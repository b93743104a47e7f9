// fp16/bf16 conversion against IEEE 754 constants; the Q8_0 codec against its definition.
#include <gtest/gtest.h>

#include "core/text.h"

#include <cmath>
#include <random>

#include "core/half.h"
#include "formats/qtype.h"

namespace qf {
namespace {

TEST(Half, KnownFp16Constants) {
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xC000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);               // largest finite
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7C00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);  // rounds up to infinity
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -26)), 0x0000);             // below half the smallest subnormal
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie -> even
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even (up)
}

TEST(Half, EveryFp16RoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), h) << std::hex << h;
  }
}

TEST(Half, Fp16RoundingIsNearest) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-70000.f, 70000.f);
  for (int i = 0; i < 100000; ++i) {
    float x = d(rng) * std::ldexp(1.0f, -int(rng() % 40));
    uint16_t h = f32_to_f16(x);
    float y = f16_to_f32(h);
    if (std::isinf(y)) continue;
    // No other fp16 value is closer: check both neighbours.
    float up = f16_to_f32(uint16_t(h + 1)), down = f16_to_f32(uint16_t(h - 1));
    if (!std::isinf(up) && !std::isnan(up)) {
      EXPECT_LE(std::fabs(y - x), std::fabs(up - x)) << x;
    }
    if ((h & 0x7fff) != 0) {
      EXPECT_LE(std::fabs(y - x), std::fabs(down - x)) << x;
    }
  }
}

TEST(Half, Bf16) {
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC2F7), -123.5f);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);      // tie -> even
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);  // tie -> even (up)
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = bf16_to_f32(uint16_t(h));
    if (!std::isnan(f)) {
      EXPECT_EQ(f32_to_bf16(f), h);
    }
  }
}

TEST(Formats, TraitsTable) {
  EXPECT_EQ(traits(QType::Q8_0).bits_per_weight(), 8.5);  // 34 bytes per 32 weights
  EXPECT_EQ(traits(QType::F16).bits_per_weight(), 16.0);
  EXPECT_EQ(*qtype_from_ggml_id(8), QType::Q8_0);   // ggml.h: GGML_TYPE_Q8_0 = 8
  EXPECT_EQ(*qtype_from_ggml_id(30), QType::BF16);  // GGML_TYPE_BF16 = 30
  EXPECT_EQ(*qtype_from_ggml_id(12), QType::Q4_K);  // GGML_TYPE_Q4_K = 12
  EXPECT_EQ(ggml_type_name(19), "IQ1_S");
  EXPECT_FALSE(qtype_from_ggml_id(19).has_value());  // not decoded
}

TEST(Formats, Q8_0RoundTripWithinHalfStep) {
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.f, 1.f);
  for (int n : {32, 64, 32 * 17}) {
    std::vector<float> x(n), y(n);
    for (auto& v : x) v = d(rng);
    std::vector<BlockQ8_0> blocks(n / 32);
    traits(QType::Q8_0).quantize_ref(x.data(), blocks.data(), n, nullptr);
    traits(QType::Q8_0).dequantize_ref(blocks.data(), y.data(), n);
    for (int b = 0; b < n / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[size_t(b * 32 + j)]));
      float d_scale = f16_to_f32(blocks[size_t(b)].d);
      EXPECT_NEAR(d_scale, amax / 127, amax / 127 * 1e-3);  // fp16 scale: 11 significant bits
      for (int j = 0; j < 32; ++j)  // half a step, plus the fp16 rounding of d times |q| <= 127
        EXPECT_LE(std::fabs(x[size_t(b * 32 + j)] - y[size_t(b * 32 + j)]),
                  0.5f * d_scale + 127 * std::fabs(d_scale - amax / 127) + 1e-6f);
    }
  }
}

// generate prints whole characters only; these cut points follow from UTF-8's lead bytes (RFC 3629).
TEST(Utf8, CompletePrefixHoldsBackAnUnfinishedCharacter) {
  EXPECT_EQ(complete_utf8_prefix("abc"), 3u);
  EXPECT_EQ(complete_utf8_prefix(""), 0u);
  EXPECT_EQ(complete_utf8_prefix("a\xE2\x82"), 1u);          // € without its last byte
  EXPECT_EQ(complete_utf8_prefix("a\xE2\x82\xAC"), 4u);      // € whole
  EXPECT_EQ(complete_utf8_prefix("\xF0\x9F\x98"), 0u);       // 😀 without its last byte
  EXPECT_EQ(complete_utf8_prefix("x\xF0\x9F\x98\x80"), 5u);  // 😀 whole
  EXPECT_EQ(complete_utf8_prefix("\xC3"), 0u);               // é's lead byte alone
}

// Terminals act on C0/C1 controls (ESC starts a sequence, U+009B is CSI): those and bytes that are
// not UTF-8 are shown as escapes; text, non-ASCII included, passes unchanged.
TEST(Text, PrintableEscapesWhatATerminalWouldActOn) {
  EXPECT_EQ(printable("blk.0.attn_q.weight"), "blk.0.attn_q.weight");
  EXPECT_EQ(printable("naïve 東京 😀"), "naïve 東京 😀");
  EXPECT_EQ(printable("\x1b[2Jgone"), "\\x1b[2Jgone");
  EXPECT_EQ(printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(printable("two\nlines\t"), "two\\nlines\\t");
  EXPECT_EQ(printable("\x7f"), "\\x7f");
  EXPECT_EQ(printable("\xc2\x9b"
                      "31m"),
            "\\u009b31m");
  EXPECT_EQ(printable("caf\xe9"), "caf\\xe9");
}

}  // namespace
}  // namespace qf
