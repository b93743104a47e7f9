// QuIP/QuIP#: Hadamard matrices against their definition (H·Hᵀ = n·I; Sylvester's entries
// (−1)^popcount(i & j)), the transforms against a dense double-precision product, the E8P and
// E81B code books against the lattice's definition (E8 = D8 ∪ D8 + 1/2, even coordinate sums)
// and brute-force nearest points, BlockLDLQ with H = I against plain nearest rounding, and a
// QuipLinear against the dense W it stands for.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "formats/e8p.h"
#include "io/quip_layout.h"
#include "kernels/cpu/hadamard.h"
#include "model/linear.h"
#include "quant/quip.h"

namespace qf {
namespace {

TEST(Hadamard, SmallFactorsAreHadamardMatrices) {
  for (int64_t m : {1, 2, 4, 12, 20, 24, 28, 36, 44, 60, 108, 140, 148}) {
    const auto h = small_hadamard(m);
    ASSERT_EQ(int64_t(h.size()), m * m) << m;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j) {
        int64_t dot = 0;
        for (int64_t k = 0; k < m; ++k) dot += h[size_t(i * m + k)] * h[size_t(j * m + k)];
        ASSERT_EQ(dot, i == j ? m : 0) << "order " << m << " rows " << i << ", " << j;
      }
  }
  EXPECT_TRUE(small_hadamard(172).empty());  // Williamson's order, not Paley's
  EXPECT_TRUE(small_hadamard(16).empty());   // 2^k: Sylvester's, never a stored factor
  EXPECT_EQ(Hadamard::of_order(1024, "x")->factor(), 1);
}

TEST(Hadamard, TransformMatchesTheDenseKroneckerProduct) {
  std::mt19937 rng(3);
  std::normal_distribution<double> nd;
  for (int64_t n : {1, 2, 8, 12, 24, 40, 96, 512, 1536}) {
    auto h = Hadamard::of_order(n, "test");
    ASSERT_TRUE(h.ok()) << n;
    const int64_t m = h->factor(), p = n / m;
    const auto& hm = h->factor_matrix();
    std::vector<double> x(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng);
    for (bool transpose : {false, true}) {
      std::vector<float> y(x.begin(), x.end());
      h->apply(y.data(), 1, transpose);
      double sum_abs = 0;
      for (double v : x) sum_abs += std::fabs(v);
      for (int64_t i = 0; i < n; ++i) {
        double ref = 0;
        for (int64_t j = 0; j < n; ++j) {
          const int64_t a = i / p, b = i % p, a2 = j / p, b2 = j % p;
          const int hm_e = transpose ? hm[size_t(a2 * m + a)] : hm[size_t(a * m + a2)];
          ref += hm_e * ((__builtin_popcountll(uint64_t(b & b2)) & 1) ? -1.0 : 1.0) * x[size_t(j)];
        }
        ref /= std::sqrt(double(n));
        // fp32 sums of ±x: each of the log2(p) + m + 1 rounding steps adds ≤ u·Σ|x|/√n.
        const double tol = (std::log2(double(p)) + double(m) + 2) * std::ldexp(1.0, -24) * sum_abs;
        ASSERT_NEAR(y[size_t(i)], ref, tol) << "n " << n << " i " << i << " transpose " << transpose;
      }
      // Orthogonal: the other direction brings x back.
      h->apply(y.data(), 1, !transpose);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(y[size_t(i)], x[size_t(i)], 1e-5 * (1 + std::fabs(x[size_t(i)]))) << n;
    }
  }
}

TEST(Hadamard, UnsupportedOrdersAreRefusedWithTheReason) {
  auto h = Hadamard::of_order(11008, "blk.0.ffn_down");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("blk.0.ffn_down"), std::string::npos) << h.status().message();
  EXPECT_NE(h.status().message().find("11008 = 2^8 · 43"), std::string::npos) << h.status().message();
  EXPECT_TRUE(Hadamard::of_order(14336, "llama3").ok());  // 28 · 512
  EXPECT_TRUE(Hadamard::of_order(18944, "qwen2").ok());   // 148 · 128
  EXPECT_TRUE(Hadamard::of_order(4096, "llama").ok());
}

// 2·v for a decoded entry: integers when v is a lattice point (after removing the ±1/4 shift).
std::array<int, 8> doubled(const float* v, float shift) {
  std::array<int, 8> d;
  for (int k = 0; k < 8; ++k) {
    const float t = 2 * (v[k] - shift);
    d[size_t(k)] = int(std::lround(t));
    EXPECT_EQ(float(d[size_t(k)]), t);
  }
  return d;
}

TEST(E8P, AbsoluteGridIsTheStatedSetOfD8HatVectors) {
  const auto& g = e8p::abs_grid2();
  std::set<std::array<int8_t, 8>> distinct(g.begin(), g.end());
  EXPECT_EQ(distinct.size(), 256u);
  for (size_t i = 0; i < 256; ++i) {
    int norm4 = 0;  // 4·‖a‖²
    for (int8_t c : g[i]) {
      EXPECT_TRUE(c == 1 || c == 3 || c == 5 || c == 7) << i;
      norm4 += c * c;
    }
    if (i < 227)
      EXPECT_LE(norm4, 40) << i;  // ‖a‖² ≤ 10
    else
      EXPECT_EQ(norm4, 48) << i;  // the 29 of ‖a‖² = 12
  }
  for (size_t i = 1; i < 227; ++i) EXPECT_LT(g[i - 1], g[i]);  // lexicographic
}

TEST(E8P, EveryCodeIsAnE8PointShiftedByAQuarterAndRoundTrips) {
  std::set<std::array<int, 8>> seen;
  for (uint32_t c = 0; c < 65536; ++c) {
    float v[8];
    e8p::decode(uint16_t(c), v);
    const float shift = (c & 1) ? 0.25f : -0.25f;
    const auto d = doubled(v, shift);
    int sum = 0;
    for (int k = 0; k < 8; ++k) {
      ASSERT_NE(d[size_t(k)] % 2, 0) << c;  // D8 + 1/2: every coordinate half-odd
      sum += d[size_t(k)];
    }
    ASSERT_EQ(sum % 4, 0) << c;  // even coordinate sum: in E8
    auto key = d;
    key[0] += (c & 1) ? 1000 : 0;  // same lattice point with the other shift is another entry
    seen.insert(key);
    float back[8];
    ASSERT_EQ(e8p::encode(v, back), uint16_t(c)) << c;
    for (int k = 0; k < 8; ++k) ASSERT_EQ(back[k], v[k]);
  }
  EXPECT_EQ(seen.size(), 65536u);
}

TEST(E8P, EncodeFindsTheNearestEntryByBruteForce) {
  std::vector<float> all(65536 * 8);
  for (uint32_t c = 0; c < 65536; ++c) e8p::decode(uint16_t(c), all.data() + 8 * c);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.2f);
  for (int t = 0; t < 300; ++t) {
    float x[8];
    for (float& v : x) v = nd(rng);
    double best = 1e30;
    for (uint32_t c = 0; c < 65536; ++c) {
      double d = 0;
      for (int k = 0; k < 8; ++k) d += (x[k] - all[8 * c + k]) * double(x[k] - all[8 * c + k]);
      best = std::min(best, d);
    }
    float v[8];
    e8p::encode(x, v);
    double got = 0;
    for (int k = 0; k < 8; ++k) got += (x[k] - v[k]) * double(x[k] - v[k]);
    ASSERT_NEAR(got, best, 1e-5) << t;
  }
}

// encode evaluates the 256 absolute vectors in vector lanes; the same codes, bit for bit, as the
// routine written one vector after another (below, as e8p.cc had it), on Gaussian inputs, inputs
// on and between lattice points, and ties.
uint16_t sequential_encode(const float* x) {
  const auto& grid = e8p::abs_grid2();
  float best = std::numeric_limits<float>::infinity();
  uint16_t best_code = 0;
  for (int up = 0; up < 2; ++up) {
    float y[8], ay[8], yy = 0;
    int neg = 0;
    unsigned sign_bits = 0;
    for (int k = 0; k < 8; ++k) {
      y[k] = x[k] - (up ? 0.25f : -0.25f);
      ay[k] = std::fabs(y[k]);
      yy += y[k] * y[k];
      if (y[k] < 0) {
        ++neg;
        if (k > 0) sign_bits |= 1u << (7 - k);
      }
    }
    for (int i = 0; i < 256; ++i) {
      const auto& a = grid[size_t(i)];
      float dot = 0, least = std::numeric_limits<float>::infinity(), aa = 0;
      int least_k = 0, sum = 0;
      for (int k = 0; k < 8; ++k) {
        const float t = 0.5f * float(a[size_t(k)]) * ay[k];
        dot += t, aa += 0.25f * float(a[size_t(k)] * a[size_t(k)]);
        if (t < least) least = t, least_k = k;
        sum += a[size_t(k)];
      }
      const bool flip = (neg & 1) != ((sum / 2) & 1);
      const float d = yy + aa - 2 * (dot - (flip ? 2 * least : 0.0f));
      if (d < best) {
        best = d;
        unsigned bits = sign_bits;
        if (flip && least_k > 0) bits ^= 1u << (7 - least_k);
        best_code = uint16_t((i << 8) | (bits << 1) | unsigned(up));
      }
    }
  }
  return best_code;
}

TEST(E8P, LaneEncodeEqualsTheSequentialSearch) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.2f);
  std::uniform_int_distribution<int> code(0, 65535);
  for (int t = 0; t < 20000; ++t) {
    float x[8];
    if (t % 4 == 3) {  // a codebook point, or halfway between two: exact ties
      float a[8], b[8];
      e8p::decode(uint16_t(code(rng)), a);
      e8p::decode(uint16_t(code(rng)), b);
      for (int k = 0; k < 8; ++k) x[k] = t % 8 == 3 ? a[k] : 0.5f * (a[k] + b[k]);
    } else {
      for (float& v : x) v = nd(rng);
    }
    ASSERT_EQ(e8p::encode(x, nullptr), sequential_encode(x)) << t;
  }
}

TEST(E8P, E81bIsTheE8BallOfNormTwoPlusFifteenOfNormFour) {
  const auto& g = e8p::e81b_grid2();
  std::set<std::array<int8_t, 8>> distinct(g.begin(), g.end());
  EXPECT_EQ(distinct.size(), 256u);
  for (size_t i = 0; i < 256; ++i) {
    int norm4 = 0, sum = 0;
    const bool half = (g[i][0] & 1) != 0;
    for (int8_t c : g[i]) {
      EXPECT_EQ((c & 1) != 0, half) << i;  // all integers or all half-integers
      norm4 += c * c, sum += c;
    }
    EXPECT_EQ(sum % 4, 0) << i;
    if (i < 241)
      EXPECT_TRUE(norm4 == 8 || (norm4 == 0 && !half)) << i;  // the origin once (distinct)
    else
      EXPECT_EQ(norm4, 16) << i;
    float v[8];
    e8p::decode_e81b(uint8_t(i), v);
    EXPECT_EQ(e8p::encode_e81b(v, nullptr), uint8_t(i));
  }
}

// A random SPD Hessian with correlated columns.
std::vector<double> random_hessian(int64_t n, std::mt19937& rng) {
  std::normal_distribution<double> nd;
  const int64_t samples = 4 * n;
  std::vector<double> X(size_t(samples * n)), H(size_t(n * n), 0.0);
  for (auto& v : X) v = nd(rng);
  for (int64_t s = 0; s < samples; ++s)
    for (int64_t i = 1; i < n; ++i) X[size_t(s * n + i)] += 0.5 * X[size_t(s * n + i - 1)];
  for (int64_t s = 0; s < samples; ++s)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        H[size_t(i * n + j)] += X[size_t(s * n + i)] * X[size_t(s * n + j)] / double(samples);
  return H;
}

std::vector<float> gaussian(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

std::vector<double> identity(int64_t n) {
  std::vector<double> I(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) I[size_t(i * n + i)] = 1.0;
  return I;
}

TEST(Quip, WithAnIdentityHessianBlockLdlqIsNearestRounding) {
  const int64_t n_out = 24, n_in = 64;
  std::mt19937 rng(5);
  const std::vector<float> W = gaussian(n_out * n_in, rng);
  const std::vector<double> H = identity(n_in);
  QuipSpec spec;
  spec.damp = 0;  // H = I exactly: no error feedback at all
  for (int bits : {2, 3, 4}) {
    spec.bits = bits;
    auto q = quip_quantize(W.data(), n_out, n_in, H, spec, "w");
    ASSERT_TRUE(q.ok()) << q.status().message();
    // W̃ by dense products with the explicit transforms, then each 8-vector rounded on its own.
    auto hin = Hadamard::of_order(n_in, "in"), hout = Hadamard::of_order(n_out, "out");
    std::vector<float> wt(W);
    for (int64_t r = 0; r < n_out; ++r)
      hadamard_in(*hin, q->su, wt.data() + r * n_in, 1);  // rows: Hᵢᵀ·(sᵢ ⊙ w)
    std::vector<float> col(static_cast<size_t>(n_out));
    for (int64_t c = 0; c < n_in; ++c) {  // columns: Hₒᵀ·(sₒ ⊙ w)
      for (int64_t r = 0; r < n_out; ++r) col[size_t(r)] = wt[size_t(r * n_in + c)];
      hadamard_in(*hout, q->sv, col.data(), 1);
      for (int64_t r = 0; r < n_out; ++r) wt[size_t(r * n_in + c)] = col[size_t(r)];
    }
    const auto& e = q->e8;
    double ss = 0;
    for (float v : wt) ss += double(v) * v;
    EXPECT_NEAR(e.wscale, std::sqrt(ss / double(wt.size())) / e8p::scales(bits).opt_scale, 1e-5 * e.wscale);
    int mismatches = 0;
    for (int64_t r = 0; r < n_out; ++r)
      for (int64_t b = 0; b < n_in / 8; ++b) {
        float x[8], v[8];
        for (int k = 0; k < 8; ++k) x[k] = wt[size_t(r * n_in + 8 * b + k)] / e.wscale;
        mismatches += e8p::encode(x, v) != e.codes[size_t(r * n_in / 8 + b)];
      }
    EXPECT_LE(mismatches, 1) << bits << " bits";  // fp32 transform order may tip a near-tie
  }
}

// The Linear built from the codes computes W itself up to the code book's resolution: the
// transforms at run time undo the quantizer's, and more bits come closer.
TEST(Quip, TheLinearComputesTheOriginalMatrixUpToRounding) {
  const int64_t n_out = 48, n_in = 40;  // 48 = 12 · 4 and 40 = 20 · 2: both Paley factors
  std::mt19937 rng(13);
  const std::vector<float> W = gaussian(n_out * n_in, rng);
  double previous = 1e30;
  for (int bits : {2, 3, 4}) {
    QuipSpec spec;
    spec.bits = bits;
    auto q = quip_quantize(W.data(), n_out, n_in, identity(n_in), spec, "w");
    ASSERT_TRUE(q.ok()) << q.status().message();
    const auto lin = quip_linear(*q, TensorView{});
    EXPECT_EQ(lin->weight_bytes(), n_out * n_in / 8 *
                                           (bits == 2   ? 2
                                            : bits == 3 ? 3
                                                        : 4) +
                                       4 + 2 * (n_in + n_out));
    std::vector<float> eye(size_t(n_in * n_in), 0.0f), out(size_t(n_in * n_out));
    for (int64_t i = 0; i < n_in; ++i) eye[size_t(i * n_in + i)] = 1;
    lin->forward(eye.data(), out.data(), n_in);
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n_in; ++i)
      for (int64_t r = 0; r < n_out; ++r) {
        const double d = out[size_t(i * n_out + r)] - W[size_t(r * n_in + i)];
        err += d * d, norm += double(W[size_t(r * n_in + i)]) * W[size_t(r * n_in + i)];
      }
    // dense_weights() by transforms of the decoded W̃ gives the same matrix: each entry of
    // Hₒ·W̃·Hᵢᵀ is a sum of n_in·n_out terms ±w̃/√(n_in·n_out), evaluated by either path in nested
    // sums of depth ≤ n_in + n_out, so each path is within (n_in + n_out)·u·Σ|w̃|/√(n_in·n_out)
    // ≤ (n_in + n_out)·u·‖W‖_F (Cauchy–Schwarz; the transforms keep the Frobenius norm).
    const std::vector<float> dense = lin->dense_weights();
    double fro = 0;
    for (float v : out) fro += double(v) * v;
    const double tol = 2.0 * double(n_in + n_out) * std::ldexp(1.0, -24) * std::sqrt(fro);
    int bad = 0;
    for (int64_t i = 0; i < n_in; ++i)
      for (int64_t r = 0; r < n_out; ++r)
        bad += !(std::fabs(dense[size_t(r * n_in + i)] - out[size_t(i * n_out + r)]) <= tol);
    EXPECT_EQ(bad, 0) << bits << " bits: dense_weights() vs the forward pass, tolerance " << tol;
    const double rel = std::sqrt(err / norm);
    // A sanity bound: 2 bits per weight leave roughly a third of the signal; a wrong transform, all of it.
    EXPECT_LT(rel, 0.4) << bits << " bits";
    EXPECT_LT(rel, previous) << bits << " bits";
    previous = rel;
  }
}

TEST(Quip, LdlqBeatsNearestRoundingOnItsOwnObjective) {
  const int64_t n_out = 32, n_in = 96;
  std::mt19937 rng(9);
  const std::vector<float> W = gaussian(n_out * n_in, rng);
  const auto H = random_hessian(n_in, rng);
  for (bool lattice : {true, false}) {
    QuipSpec spec;
    spec.lattice = lattice, spec.bits = 2;
    auto q = quip_quantize(W.data(), n_out, n_in, H, spec, "w");
    ASSERT_TRUE(q.ok()) << q.status().message();
    auto hessian_loss = [&](const std::vector<float>& Wq) {  // tr((W − Ŵ)·H·(W − Ŵ)ᵀ)
      double loss = 0;
      for (int64_t r = 0; r < n_out; ++r)
        for (int64_t i = 0; i < n_in; ++i)
          for (int64_t j = 0; j < n_in; ++j)
            loss += double(W[size_t(r * n_in + i)] - Wq[size_t(r * n_in + i)]) * H[size_t(i * n_in + j)] *
                    double(W[size_t(r * n_in + j)] - Wq[size_t(r * n_in + j)]);
      return loss;
    };
    // Ŵ = the dense matrix the QuipLinear computes with: its response to the unit vectors.
    auto dense = [&](const QuipQuantized& qq) {
      const auto lin = quip_linear(qq, TensorView{});
      std::vector<float> eye(size_t(n_in * n_in), 0.0f), out(size_t(n_in * n_out));
      for (int64_t i = 0; i < n_in; ++i) eye[size_t(i * n_in + i)] = 1;
      lin->forward(eye.data(), out.data(), n_in);
      std::vector<float> Wq(W.size());
      for (int64_t i = 0; i < n_in; ++i)
        for (int64_t r = 0; r < n_out; ++r) Wq[size_t(r * n_in + i)] = out[size_t(i * n_out + r)];
      return Wq;
    };
    QuipSpec nearest = spec;
    nearest.damp = 0;
    auto qn = quip_quantize(W.data(), n_out, n_in, identity(n_in), nearest,
                            "w");  // same signs (same name and seed)
    ASSERT_TRUE(qn.ok());
    const double ldlq = hessian_loss(dense(*q)), plain = hessian_loss(dense(*qn));
    EXPECT_LT(ldlq, 0.9 * plain) << (lattice ? "quip#" : "quip") << ": " << ldlq << " vs " << plain;
  }
}

// Random codes (and residual codes) of a (n_out, n_in) matrix.
e8p::E8Codes random_codes(int bits, int64_t n_out, int64_t n_in, float wscale, std::mt19937& rng) {
  e8p::E8Codes q;
  q.bits = bits, q.n_out = n_out, q.n_in = n_in, q.wscale = wscale,
  q.resid_scale = e8p::scales(bits).resid_scale;
  q.codes.resize(size_t(n_out * n_in / 8));
  for (auto& c : q.codes) c = uint16_t(rng());
  if (bits > 2) {
    q.resid.resize(q.codes.size());
    for (auto& c : q.resid) c = uint16_t(bits == 3 ? rng() % 256 : rng());
  }
  return q;
}

// A few tokens take E8Linear's own decode-and-dot path, more take decoded tiles and sgemm:
// both against a double-precision product with the decoded rows.
TEST(Quip, E8LinearMatchesItsDecodedRowsOnBothPaths) {
  std::mt19937 rng(21);
  for (int bits : {2, 3, 4}) {
    const e8p::E8Codes q = random_codes(bits, 37, 48, 0.37f, rng);
    std::vector<float> w(size_t(q.n_out * q.n_in));
    e8p::decode_rows(q, 0, q.n_out, w.data());
    E8Linear lin(q);
    for (int tokens : {1, 3, 4, 9}) {
      const std::vector<float> x = gaussian(tokens * q.n_in, rng);
      std::vector<float> y(size_t(tokens * q.n_out));
      lin.forward(x.data(), y.data(), tokens);
      for (int t = 0; t < tokens; ++t)
        for (int64_t r = 0; r < q.n_out; ++r) {
          double ref = 0, mag = 0;
          for (int64_t i = 0; i < q.n_in; ++i) {
            ref += double(w[size_t(r * q.n_in + i)]) * x[size_t(t * q.n_in + i)];
            mag += std::fabs(double(w[size_t(r * q.n_in + i)]) * x[size_t(t * q.n_in + i)]);
          }
          ASSERT_NEAR(y[size_t(t * q.n_out + r)], ref, double(q.n_in + 8) * std::ldexp(1.0, -24) * mag)
              << bits << " bits, " << tokens << " tokens, row " << r;
        }
    }
  }
}

// The layout written is the layout read: codes, residual codes, signs and Wscale come back.
TEST(Quip, LayoutRoundTripsAndRefusesBadParts) {
  std::mt19937 rng(23);
  for (int bits : {2, 3, 4}) {
    const e8p::E8Codes q = random_codes(bits, 24, 16, 0.125f, rng);
    const auto su = random_signs(q.n_in, 1), sv = random_signs(q.n_out, 2);
    const auto tensors = serialize_quip_e8(q, su, sv);
    std::map<std::string, TensorView> parts;
    for (const auto& t : tensors)
      parts[t.suffix] = TensorView{t.suffix,       *qtype_from_name(t.dtype), t.shape,
                                   t.bytes.data(), int64_t(t.bytes.size()),   nullptr};
    EXPECT_EQ(parts.at(".Qidxs").type, QType::I16);
    int16_t first;  // QuIP#'s stored value: code − 32768
    std::memcpy(&first, tensors[0].bytes.data(), 2);
    EXPECT_EQ(int(first), int(q.codes[0]) - 32768);
    auto back = deserialize_quip(parts, q.n_out, q.n_in, true, bits, q.resid_scale, "blk.0.attn_q");
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->su, su);
    EXPECT_EQ(back->sv, sv);
    EXPECT_EQ(back->e8.codes, q.codes);
    EXPECT_EQ(back->e8.resid, q.resid);
    EXPECT_EQ(back->e8.wscale, q.wscale);
    auto wrong = parts;
    wrong[".Qidxs"].shape = {q.n_out, q.n_in};
    auto bad = deserialize_quip(wrong, q.n_out, q.n_in, true, bits, q.resid_scale, "blk.0.attn_q");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("blk.0.attn_q.Qidxs: expected I16 [24, 2]"), std::string::npos)
        << bad.status().message();
  }
}

}  // namespace
}  // namespace qf
