// llama.cpp's block formats: hand-built blocks decoded to values worked out from the layouts
// in ggml-common.h, round-trip error under the bound of a uniform grid of the same bit width,
// and importance weights (imatrix) moving the error to where they point.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#include "formats/ggml_fit.h"
#include "formats/ggml_quants.h"
#include "formats/qtype.h"

namespace qf {
namespace {

std::vector<float> decode(QType t, const void* block) {
  std::vector<float> y(size_t(traits(t).block));
  traits(t).dequantize_ref(block, y.data(), int64_t(y.size()));
  return y;
}

// The fitting routines' rounding (llama.cpp's magic-number nearest_int) is libm's nearbyint —
// round half to even — over the range it promises: every half-integer and its neighbours there,
// and random values of every magnitude.
TEST(GgmlFit, NearestIntIsRoundHalfToEvenInItsRange) {
  const float top = 4194303.0f;  // 2^22 − 1
  int bad = 0;
  auto check = [&](float v) {
    if (ggml::nearest_int(v) != int(std::nearbyint(v)) && bad++ < 5)
      ADD_FAILURE() << v << ": " << ggml::nearest_int(v) << " vs " << std::nearbyint(v);
  };
  for (int k = -70000; k <= 70000; ++k) {
    const float h = float(k) + 0.5f;
    check(h), check(std::nextafter(h, -top)), check(std::nextafter(h, top)), check(float(k));
  }
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> exponent(-20.0f, 22.0f), sign(-1.0f, 1.0f);
  for (int i = 0; i < 1000000; ++i) check(std::copysign(std::min(top, std::exp2(exponent(rng))), sign(rng)));
  check(top), check(-top), check(0.0f), check(-0.0f);
  EXPECT_EQ(bad, 0);
}

// make_qx_quants as llama.cpp's ggml-quants.c writes it (one candidate scale after another): the
// spec of formats/ggml_fit.cc's fit_symmetric, which evaluates the candidates all at once.
float reference_fit_symmetric(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw) {
  const float max = ggml::largest_magnitude(x, n);
  if (std::fabs(max) < ggml::kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  auto weight = [&](int i) {  // llama.cpp's error weights by rmse_type
    return qw               ? qw[i]
           : rmse_type == 1 ? x[i] * x[i]
           : rmse_type == 2 ? 1.0f
           : rmse_type == 3 ? std::fabs(x[i])
                            : std::sqrt(std::fabs(x[i]));
  };
  float iscale = -nmax / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i)
      L[i] = int8_t(nmax + std::clamp(ggml::nearest_int(iscale * x[i]), -nmax, nmax - 1));
    return 1 / iscale;
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = std::clamp(ggml::nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = int8_t(l + nmax);
    float w = weight(i);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = std::clamp(ggml::nearest_int(iscale * x[i]), -nmax, nmax - 1);
      float w = weight(i);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i)
        L[i] = int8_t(nmax + std::clamp(ggml::nearest_int(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// fit_symmetric gives the same codes and scale, bit for bit, as the sequential routine above on
// random groups (Gaussian, heavy-tailed, with and without importance weights, every nmax and
// error weighting the codecs use).
TEST(GgmlFit, BatchedCandidatesEqualTheSequentialSearch) {
  std::mt19937 rng(23);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::student_t_distribution<float> heavy(2.f);
  std::uniform_real_distribution<float> ud(0.f, 2.f);
  int groups = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    const int n = trial % 2 ? 32 : 16;
    std::vector<float> x(static_cast<size_t>(n)), w(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) x[size_t(i)] = trial % 3 ? nd(rng) : heavy(rng), w[size_t(i)] = ud(rng);
    if (trial % 7 == 0) x[size_t(trial % n)] = 0;
    const float* qw = trial % 4 ? w.data() : nullptr;
    for (int nmax : {4, 8, 16, 32, 128}) {
      std::vector<int8_t> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
      for (int rmse : {1, 2, 3}) {
        const float sa = ggml::fit_symmetric(n, nmax, x.data(), a.data(), rmse, qw);
        const float sb = reference_fit_symmetric(n, nmax, x.data(), b.data(), rmse, qw);
        EXPECT_EQ(std::memcmp(&sa, &sb, 4), 0) << trial << " nmax " << nmax << ": " << sa << " vs " << sb;
        EXPECT_EQ(a, b) << trial << " nmax " << nmax;
        ++groups;
      }
    }
  }
  EXPECT_GT(groups, 40000);
}

// fit_scale_min_8 gives each of its 8 groups the codes, min and scale of the sequential
// fit_scale_min (llama.cpp's make_qkx2/qkx3_quants, as the k-quants call them), bit for bit:
// Gaussian and heavy-tailed groups, all-positive ones (min clamped to 0), constant and all-zero
// ones (the early return), with importance-like and |x|-like weights.
TEST(GgmlFit, EightGroupsAtOnceEqualTheSequentialSearch) {
  struct Call {
    int n, nmax;
    float rmin, rdelta;
    int nstep;
    bool use_mad, qkx3;
  };
  const Call calls[] = {{32, 15, -0.9f, 0.05f, 36, false, true}, {32, 31, -0.9f, 0.05f, 36, false, true},
                        {32, 15, -1.f, 0.1f, 20, false, false},  {32, 31, -0.5f, 0.1f, 15, false, false},
                        {16, 3, -0.9f, 0.05f, 36, false, true},  {16, 3, -0.5f, 0.1f, 15, true, false}};
  std::mt19937 rng(29);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::student_t_distribution<float> heavy(2.f);
  std::uniform_real_distribution<float> ud(0.f, 2.f);
  int groups = 0;
  for (int trial = 0; trial < 600; ++trial)
    for (const Call& c : calls) {
      const int K = ggml::kFitLanes, n = c.n;
      std::vector<float> x(size_t(K * n)), w(x.size());
      for (int k = 0; k < K; ++k)
        for (int i = 0; i < n; ++i) {
          float& v = x[size_t(k * n + i)];
          v = (trial + k) % 3 ? nd(rng) : heavy(rng);
          if ((trial + k) % 5 == 1) v = std::fabs(v) + 0.5f;  // all positive
          if ((trial + k) % 11 == 2) v = 0.75f;               // constant
          if ((trial + k) % 13 == 3) v = 0;                   // all zero
          w[size_t(k * n + i)] = c.use_mad ? std::fabs(v) : ud(rng);
        }
      std::vector<uint8_t> La(x.size()), Lb(x.size()), Laux(static_cast<size_t>(n));
      float ma[8], sa[8];
      ggml::fit_scale_min_8(n, c.nmax, x.data(), w.data(), La.data(), ma, sa, c.rmin, c.rdelta, c.nstep,
                            c.use_mad, c.qkx3);
      for (int k = 0; k < K; ++k) {
        float mb = 0;
        const float sb = ggml::fit_scale_min(n, c.nmax, x.data() + k * n, w.data() + k * n, Lb.data() + k * n,
                                             &mb, Laux.data(), c.rmin, c.rdelta, c.nstep, c.use_mad, c.qkx3);
        EXPECT_EQ(std::memcmp(&sa[k], &sb, 4), 0) << trial << " group " << k << ": " << sa[k] << " vs " << sb;
        EXPECT_EQ(std::memcmp(&ma[k], &mb, 4), 0) << trial << " group " << k << ": " << ma[k] << " vs " << mb;
        ++groups;
      }
      EXPECT_EQ(La, Lb) << trial << " n " << n << " nmax " << c.nmax;
    }
  EXPECT_GT(groups, 28000);
}

// grid16_candidate_sums against llama.cpp's loop (best_index_int8's binary search, then the sums
// candidate by candidate), bit for bit: IQ4_NL's grid, the 15 scales quantize_row_iq4_nl_impl
// tries, values at, between and beyond the grid points.
TEST(GgmlFit, GridCandidatesAtOnceEqualTheSequentialLoop) {
  auto best_index = [](float x) {  // llama.cpp's best_index_int8 on kIq4nlValues
    const int8_t* v = kIq4nlValues;
    if (x <= v[0]) return 0;
    if (x >= v[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
      const int mid = (lo + hi) / 2;
      if (x < v[mid])
        hi = mid;
      else
        lo = mid;
    }
    return x - v[hi - 1] < v[hi] - x ? hi - 1 : hi;
  };
  std::mt19937 rng(31);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.f, 2.f);
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<float> x(32), w(32);
    for (int j = 0; j < 32; ++j) x[size_t(j)] = nd(rng), w[size_t(j)] = ud(rng);
    const float max = ggml::largest_magnitude(x.data(), 32);
    if (trial % 5 == 0)  // values landing exactly on grid points and midpoints
      for (int j = 0; j < 32; ++j)
        x[size_t(j)] =
            max * float(kIq4nlValues[j % 16] + (j % 3 == 0 ? 0.5f * (j % 2 ? 1 : -1) : 0)) / -127.f;
    const int n_cand = trial % 7 ? 15 : 1 + trial % 16;
    float ids[16], ax[16], a2[16];
    for (int c = 0; c < n_cand; ++c)
      ids[c] = (float(c - 7) + kIq4nlValues[0]) / (trial % 11 ? max : -max * 3);
    ggml::grid16_candidate_sums(32, x.data(), w.data(), n_cand, ids, kIq4nlValues, ax, a2);
    for (int c = 0; c < n_cand; ++c) {
      float sx = 0, s2 = 0;
      for (int j = 0; j < 32; ++j) {
        const float q = kIq4nlValues[best_index(ids[c] * x[size_t(j)])];
        sx += w[size_t(j)] * q * x[size_t(j)];
        s2 += w[size_t(j)] * q * q;
      }
      ASSERT_EQ(std::memcmp(&ax[c], &sx, 4), 0)
          << trial << " candidate " << c << ": " << ax[c] << " vs " << sx;
      ASSERT_EQ(std::memcmp(&a2[c], &s2, 4), 0) << trial << " candidate " << c;
    }
  }
}

TEST(GgmlBlocks, TableMatchesGgmlCommon) {
  // bytes per block and ggml ids as in ggml-common.h / ggml.h.
  struct Row {
    QType t;
    int id, block, bytes;
  };
  for (Row r : {Row{QType::Q4_0, 2, 32, 18},
                {QType::Q4_1, 3, 32, 20},
                {QType::Q5_0, 6, 32, 22},
                {QType::Q5_1, 7, 32, 24},
                {QType::Q8_0, 8, 32, 34},
                {QType::Q2_K, 10, 256, 84},
                {QType::Q3_K, 11, 256, 110},
                {QType::Q4_K, 12, 256, 144},
                {QType::Q5_K, 13, 256, 176},
                {QType::Q6_K, 14, 256, 210},
                {QType::IQ4_NL, 20, 32, 18},
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
  b.qs[2] = 0x31;    // weight 2: 1, weight 18: 3
  b.qh[0] = 1 << 2;  // 5th bit of weight 2
  b.qh[2] = 1 << 2;  // bit 18: 5th bit of weight 18
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
  e.qs[15] = 0xF0;  // weight 31: 15 | 16 = 31
  e.qh[3] = 0x80;   // bit 31
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
  b.qs[0] = 0x01;     // weight 0: low bits 1
  b.hmask[0] = 0x01;  // weight 0: high bit set → code 1 (no −4)
  b.qs[1] = 0x03;     // weight 1: low bits 3, high bit clear → 3 − 4
  y = decode(QType::Q3_K, &b);
  EXPECT_EQ(y[0], 0.5f * 2 * 1);
  EXPECT_EQ(y[1], 0.5f * 2 * -1);

  BlockQ4_K c{};
  c.d = f32_to_f16(0.5f);
  c.dmin = f32_to_f16(0.125f);
  c.scales[0] = 3;      // sub-block 0: scale 3
  c.scales[4] = 8;      // sub-block 0: min 8
  c.scales[8] = 0x21;   // sub-block 4: scale low 1, min low 2 ...
  c.scales[0] |= 0x40;  // ... scale high bits 01 (from scales[0] bits 6-7) → 17
  c.qs[0] = 0xA5;       // weight 0: 5; weight 32: 10 (sub-block 1: scale 0, min 0)
  c.qs[64] = 0x07;      // weight 128 (sub-block 4): 7
  y = decode(QType::Q4_K, &c);
  EXPECT_EQ(y[0], 0.5f * 3 * 5 - 0.125f * 8);
  EXPECT_EQ(y[32], 0.0f);
  EXPECT_EQ(y[128], 0.5f * 17 * 7 - 0.125f * 2);

  BlockQ5_K e{};
  e.d = f32_to_f16(1.0f);
  e.scales[1] = 2;  // sub-block 1 (weights 32..63): scale 2, min 0
  e.qs[0] = 0x30;   // weight 32: low 3
  e.qh[0] = 0x02;   // weight 32: 5th bit (u2 of the first pair) → 19
  y = decode(QType::Q5_K, &e);
  EXPECT_EQ(y[32], 2.0f * 19);

  BlockQ6_K f{};
  f.d = f32_to_f16(0.25f);
  f.scales[0] = -2;  // weights 0..15
  f.scales[4] = 3;   // weights 64..79
  f.ql[0] = 0x5A;    // weight 0: low 0xA; weight 64: low 0x5
  f.qh[0] = 0x12;    // weight 0: high 2 (bits 0-1) → 42; weight 64: high 1 (bits 4-5) → 21
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
  b.scales_l[1] = 0x50;       // block 3 (weights 96..127): low bits 5
  b.scales_h = 2 << (2 * 3);  // block 3: high bits 2 → 5 + 32 − 32 = 5
  b.qs[48] = 0x08;            // weight 96: index 8 → 1
  y = decode(QType::IQ4_XS, &b);
  EXPECT_EQ(y[96], 0.25f * 5 * 1);
  EXPECT_EQ(y[0], 0.25f * -32 * -127);  // block 0: scale bits 0 → −32
}

// llama.cpp's quantizer keeps the IQ2_XXS grid in a second, compact form (iq2xs_init_impl's
// kgrid_2bit_256: 2 bits per weight, level l stored as byte {8, 25, 43}[l]); the decoding table
// must be the same 256 points.
const uint16_t kGrid2bit256[256] = {
    0,     2,     5,     8,     10,    17,    20,    32,    34,    40,    42,    65,    68,    80,    88,
    97,    100,   128,   130,   138,   162,   257,   260,   272,   277,   320,   388,   408,   512,   514,
    546,   642,   1025,  1028,  1040,  1057,  1060,  1088,  1090,  1096,  1120,  1153,  1156,  1168,  1188,
    1280,  1282,  1288,  1312,  1350,  1385,  1408,  1425,  1545,  1552,  1600,  1668,  1700,  2048,  2053,
    2056,  2068,  2088,  2113,  2116,  2128,  2130,  2184,  2308,  2368,  2562,  2580,  4097,  4100,  4112,
    4129,  4160,  4192,  4228,  4240,  4245,  4352,  4360,  4384,  4432,  4442,  4480,  4644,  4677,  5120,
    5128,  5152,  5157,  5193,  5248,  5400,  5474,  5632,  5654,  6145,  6148,  6160,  6208,  6273,  6400,
    6405,  6560,  6737,  8192,  8194,  8202,  8260,  8289,  8320,  8322,  8489,  8520,  8704,  8706,  9217,
    9220,  9232,  9280,  9302,  9472,  9537,  9572,  9872,  10248, 10272, 10388, 10820, 16385, 16388, 16400,
    16408, 16417, 16420, 16448, 16456, 16470, 16480, 16513, 16516, 16528, 16640, 16672, 16737, 16768, 16773,
    16897, 16912, 16968, 16982, 17000, 17408, 17416, 17440, 17536, 17561, 17682, 17700, 17920, 18433, 18436,
    18448, 18496, 18501, 18688, 18776, 18785, 18818, 19013, 19088, 20480, 20488, 20497, 20505, 20512, 20608,
    20616, 20740, 20802, 20900, 21137, 21648, 21650, 21770, 22017, 22100, 22528, 22545, 22553, 22628, 22848,
    23048, 24580, 24592, 24640, 24680, 24832, 24917, 25112, 25184, 25600, 25605, 25872, 25874, 25988, 26690,
    32768, 32770, 32778, 32833, 32898, 33028, 33048, 33088, 33297, 33793, 33796, 33808, 33813, 33856, 33888,
    34048, 34118, 34196, 34313, 34368, 34400, 34818, 35076, 35345, 36868, 36880, 36900, 36928, 37025, 37142,
    37248, 37445, 37888, 37922, 37956, 38225, 39041, 39200, 40962, 41040, 41093, 41225, 41472, 42008, 43088,
    43268,
};

TEST(GgmlBlocks, IqGridsAreLlamaCppsLattices) {
  const uint8_t level[3] = {0x08, 0x19, 0x2b};
  for (int k = 0; k < 256; ++k)
    for (int i = 0; i < 8; ++i)
      ASSERT_EQ(uint8_t(kIq2xxsGrid[k] >> (8 * i)), level[(kGrid2bit256[k] >> (2 * i)) & 3]) << "entry " << k;
  auto ascending_on = [](const auto* grid, int n, int bytes, std::initializer_list<int> values) {
    for (int k = 0; k < n; ++k) {
      if (k > 0 && !(grid[k] > grid[k - 1])) return false;
      for (int i = 0; i < bytes; ++i)
        if (std::find(values.begin(), values.end(), int((grid[k] >> (8 * i)) & 0xFF)) == values.end())
          return false;
    }
    return true;
  };
  EXPECT_TRUE(ascending_on(kIq2xsGrid, 512, 8, {0x08, 0x19, 0x2b}));
  EXPECT_TRUE(ascending_on(kIq3xxsGrid, 256, 4, {4, 12, 20, 28, 36, 44, 52, 62}));
}

TEST(GgmlBlocks, HandBuiltIq2Iq3Blocks) {
  BlockIQ2_XXS a{};
  a.d = f32_to_f16(1.0f);
  const uint32_t aux[2] = {0x00000001u,
                           (3u << 28) | 0x1u};  // grid entries (1, 0, 0, 0); sign bit 0 of group 0
  std::memcpy(a.qs, aux, 8);
  auto y = decode(QType::IQ2_XXS, &a);
  const float db = (0.5f + 3) * 0.25f;
  EXPECT_EQ(y[0], -db * 0x2b);  // entry 1 = 0x080808080808082b, negated
  EXPECT_EQ(y[1], db * 8);
  EXPECT_EQ(y[7], -db * 8);  // one stored sign → the parity bit negates weight 7
  EXPECT_EQ(y[8], db * 8);
  BlockIQ2_XS b{};
  b.d = f32_to_f16(2.0f);
  b.scales[0] = 0x21;                // weights 0..15: 1.5·0.25·2; 16..31: 2.5·0.25·2
  b.qs[2] = uint16_t(2 | (0 << 9));  // weights 16..23: entry 2 = 0x0808080808081919
  y = decode(QType::IQ2_XS, &b);
  EXPECT_EQ(y[16], 2.0f * 2.5f * 0.25f * 0x19);
  EXPECT_EQ(y[0], 2.0f * 1.5f * 0.25f * 8);
  BlockIQ3_XXS c{};
  c.d = f32_to_f16(1.0f);
  c.qs[1] = 5;                                 // weights 4..7: entry 5 = 0x04040c3e
  const uint32_t ss = (1u << 28) | (1u << 5);  // scale 1; sign of weight 5
  std::memcpy(c.qs + 64, &ss, 4);
  y = decode(QType::IQ3_XXS, &c);
  const float dc = 1.5f * 0.5f;
  EXPECT_EQ(y[4], dc * 0x3e);
  EXPECT_EQ(y[5], -dc * 0x0c);
  EXPECT_EQ(y[7], -dc * 4);  // parity bit
  EXPECT_EQ(y[0], dc * 4);
}

const QType kGgmlTypes[] = {QType::Q4_0, QType::Q4_1, QType::Q5_0, QType::Q5_1, QType::Q8_0,   QType::Q2_K,
                            QType::Q3_K, QType::Q4_K, QType::Q5_K, QType::Q6_K, QType::IQ4_NL, QType::IQ4_XS};

int bits_of(QType t) {
  switch (t) {
    case QType::Q2_K:
      return 2;
    case QType::Q3_K:
      return 3;
    case QType::Q4_0:
    case QType::Q4_1:
    case QType::Q4_K:
    case QType::IQ4_NL:
    case QType::IQ4_XS:
      return 4;
    case QType::Q5_0:
    case QType::Q5_1:
    case QType::Q5_K:
      return 5;
    case QType::Q6_K:
      return 6;
    default:
      return 8;
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
  // Uniform data on [−1, 1]: a b-bit uniform grid over the whole range has RMS error
  // step/√12 with step = 2/(2^b − 1). Every type fits its grid to each block's own range (never
  // wider than the whole) and searches scales, so it must do at least as well. (Seen: 0.70× for
  // Q2_K up to 0.975× for Q4_0, whose 16 levels span only [−8d, 7d].)
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(4096);
  for (auto& v : x) v = u(rng);
  for (QType t : kGgmlTypes) {
    auto y = round_trip(t, x, nullptr);
    double se = 0;
    for (size_t i = 0; i < x.size(); ++i) se += (y[i] - x[i]) * (y[i] - x[i]);
    const double rmse = std::sqrt(se / double(x.size()));
    const double bound = 2.0 / ((1 << bits_of(t)) - 1) / std::sqrt(12.0);
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

namespace qf {
namespace {

TEST(GgmlBlocks, PackedCodesAreReadBackAtTheirPositions) {
  // For every writable block type: under the scales of a real block, pack random codes and
  // decode; position j must decode to what a block holding C[j] everywhere decodes to there.
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (QType t : {QType::Q4_0, QType::Q4_1, QType::Q5_0, QType::Q5_1, QType::Q8_0, QType::Q2_K, QType::Q3_K,
                  QType::Q4_K, QType::Q5_K, QType::Q6_K, QType::IQ4_NL, QType::IQ4_XS}) {
    const auto& tr = traits(t);
    ASSERT_NE(tr.pack_codes, nullptr) << tr.name;
    const auto n = static_cast<size_t>(tr.block);
    std::vector<float> x(n);
    for (float& v : x) v = nd(rng);
    std::vector<uint8_t> block(size_t(tr.bytes_per_block)), probe;
    tr.quantize_ref(x.data(), block.data(), tr.block, nullptr);
    std::vector<uint8_t> codes(n), same(n);
    for (uint8_t& c : codes) c = uint8_t(rng() % unsigned(tr.n_codes));
    probe = block;
    tr.pack_codes(codes.data(), probe.data());
    const std::vector<float> got = decode(t, probe.data());
    for (size_t j = 0; j < n; ++j) {
      std::fill(same.begin(), same.end(), codes[j]);
      probe = block;
      tr.pack_codes(same.data(), probe.data());
      ASSERT_EQ(got[j], decode(t, probe.data())[j]) << tr.name << " position " << j;
    }
    // The codes llama.cpp's quantizer chose, packed again, give back its block exactly.
    std::vector<float> v = decode(t, block.data());
    std::vector<uint8_t> recovered(n);
    for (size_t j = 0; j < n; ++j) {
      float best = INFINITY;
      for (int c = 0; c < tr.n_codes; ++c) {
        std::fill(same.begin(), same.end(), uint8_t(c));
        probe = block;
        tr.pack_codes(same.data(), probe.data());
        const float d = std::fabs(decode(t, probe.data())[j] - v[j]);
        if (d < best) best = d, recovered[j] = uint8_t(c);
      }
    }
    probe = block;
    tr.pack_codes(recovered.data(), probe.data());
    EXPECT_EQ(decode(t, probe.data()), v) << tr.name;
  }
}

}  // namespace
}  // namespace qf
