// Calibration windows against CPython's random module; GPTQ against an independent scalar
// Optimal Brain Quantization (the inverse Hessian updated by Gaussian elimination after every
// column, in double, as OBQ/OBS state it), against RTN when the Hessian is diagonal, and on
// Hessians that need more damping or cannot be factorized.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "formats/qtype.h"
#include "io/gptq_layout.h"
#include "model/linear.h"
#include "quant/calibration.h"
#include "quant/gptq.h"

namespace qf {
namespace {

TEST(PyRandom, MatchesCPython) {
  // Values printed by CPython 3: random.Random(0).random() (the widely quoted
  // 0.8444218515250481), randrange and getrandbits sequences.
  EXPECT_EQ(PyRandom(0).random(), 0.8444218515250481);
  PyRandom r(0);
  for (int64_t want : {100989, 198693, 110250, 10612, 67873}) EXPECT_EQ(r.randrange(200000), want);
  PyRandom s(1234);
  for (uint32_t want : {4150886329u, 3342196574u, 1892932127u}) EXPECT_EQ(s.getrandbits(32), want);
  EXPECT_EQ(s.randrange(7), 0);
  PyRandom t(0);
  EXPECT_EQ(t.randrange((int64_t(1) << 32) - 1), 3626764237);
}

TEST(Calibration, WindowsStartWhereTheReferenceDrawsThem) {
  std::vector<int32_t> tokens(200000 + 512);
  std::iota(tokens.begin(), tokens.end(), 0);
  auto w = draw_windows(tokens, 3, 512, 0);
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w->size(), 3u);
  EXPECT_EQ((*w)[0].front(), 100989);  // random.Random(0).randrange(0, 200000)
  EXPECT_EQ((*w)[1].front(), 198693);
  EXPECT_EQ((*w)[2].back(), 110250 + 511);
  auto short_text = draw_windows(std::vector<int32_t>(100), 1, 512, 0);
  ASSERT_FALSE(short_text.ok());
  EXPECT_NE(short_text.status().message().find("100 tokens"), std::string::npos);
}

// A random (n_out, n_in) weight matrix and a Hessian 2·XᵀX/N from correlated inputs.
struct Problem {
  int64_t n_out, n_in;
  std::vector<float> W;
  std::vector<double> H;
};
Problem make_problem(int64_t n_out, int64_t n_in, unsigned seed, double correlation = 0.6) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Problem p{n_out, n_in, std::vector<float>(size_t(n_out * n_in)),
            std::vector<double>(size_t(n_in * n_in), 0.0)};
  for (float& w : p.W) w = 0.05f * nd(rng);
  const int N = 4 * int(n_in);
  std::vector<double> x(static_cast<size_t>(n_in));
  for (int t = 0; t < N; ++t) {
    double common = nd(rng);
    for (int64_t i = 0; i < n_in; ++i)
      x[size_t(i)] = correlation * common + nd(rng) * (1.0 + double(i % 7) / 3);
    for (int64_t i = 0; i < n_in; ++i)
      for (int64_t j = 0; j < n_in; ++j) p.H[size_t(i * n_in + j)] += 2.0 * x[size_t(i)] * x[size_t(j)] / N;
  }
  return p;
}

// tr((W − Q) H (W − Q)ᵀ): the layer-output error GPTQ minimizes.
double output_error(const Problem& p, const std::vector<float>& Q) {
  double e = 0;
  for (int64_t r = 0; r < p.n_out; ++r)
    for (int64_t i = 0; i < p.n_in; ++i)
      for (int64_t j = 0; j < p.n_in; ++j)
        e += double(p.W[size_t(r * p.n_in + i)] - Q[size_t(r * p.n_in + i)]) * p.H[size_t(i * p.n_in + j)] *
             double(p.W[size_t(r * p.n_in + j)] - Q[size_t(r * p.n_in + j)]);
  return e;
}

// OBQ in its original form, row by row in double: quantize column c with the group's grid,
// spread δ = −(w_c − q_c)/Hinv_cc · Hinv[c, :] over the remaining weights, then remove c from
// Hinv by Gaussian elimination.
std::vector<float> scalar_obq(const Problem& p, const IntGridSpec& spec, double damp) {
  const int64_t n = p.n_in, gs = spec.group_len(n);
  std::vector<double> H = p.H;
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += H[size_t(i * n + i)];
  for (int64_t i = 0; i < n; ++i) H[size_t(i * n + i)] += damp * mean / double(n);
  std::vector<double> Hinv(size_t(n * n), 0.0);  // Gauss-Jordan inverse
  {
    std::vector<double> A = H;
    for (int64_t i = 0; i < n; ++i) Hinv[size_t(i * n + i)] = 1;
    for (int64_t c = 0; c < n; ++c) {
      const double piv = A[size_t(c * n + c)];
      for (int64_t j = 0; j < n; ++j) {
        A[size_t(c * n + j)] /= piv;
        Hinv[size_t(c * n + j)] /= piv;
      }
      for (int64_t r = 0; r < n; ++r) {
        if (r == c) continue;
        const double f = A[size_t(r * n + c)];
        for (int64_t j = 0; j < n; ++j) {
          A[size_t(r * n + j)] -= f * A[size_t(c * n + j)];
          Hinv[size_t(r * n + j)] -= f * Hinv[size_t(c * n + j)];
        }
      }
    }
  }
  std::vector<float> Q(p.W.size());
  for (int64_t r = 0; r < p.n_out; ++r) {
    std::vector<double> w(p.W.begin() + r * n, p.W.begin() + (r + 1) * n), Hi = Hinv;
    GroupParams gp;
    for (int64_t c = 0; c < n; ++c) {
      if (c % gs == 0) {
        std::vector<float> g(w.begin() + c, w.begin() + c + gs);
        gp = find_group_params(g, spec);
      }
      const double q = dequantize_value(quantize_value(float(w[size_t(c)]), gp, spec.maxq()), gp);
      Q[size_t(r * n + c)] = float(q);
      const double d = Hi[size_t(c * n + c)], err = (w[size_t(c)] - q) / d;
      for (int64_t j = c; j < n; ++j) w[size_t(j)] -= err * Hi[size_t(c * n + j)];
      std::vector<double> row(Hi.begin() + c * n, Hi.begin() + (c + 1) * n);  // eliminate c
      for (int64_t i = c + 1; i < n; ++i)
        for (int64_t j = c + 1; j < n; ++j) Hi[size_t(i * n + j)] -= row[size_t(i)] * row[size_t(j)] / d;
    }
  }
  return Q;
}

TEST(Gptq, MatchesScalarOptimalBrainQuantization) {
  Problem p = make_problem(24, 256, 7);
  IntGridSpec spec{3, 64, false, false};
  std::vector<float> Q = p.W;
  IntRowGrid grid(spec, p.n_out, p.n_in, {}, nullptr);
  auto st = gptq_quantize(Q.data(), p.n_out, p.n_in, p.H, GptqSpec{0.01, false, 128}, grid, {}, "test");
  ASSERT_TRUE(st.ok()) << st.status().message();
  std::vector<float> ref = scalar_obq(p, spec, 0.01);
  int64_t differ = 0;
  for (size_t i = 0; i < Q.size(); ++i) differ += std::fabs(Q[i] - ref[i]) > 1e-5f * (1 + std::fabs(ref[i]));
  // fp32 lazy batches against double elimination: a rounding tie may go the other way, and the
  // error feedback then differs for the rest of that row; require all but a few codes equal.
  EXPECT_LE(differ, int64_t(Q.size()) / 200) << differ << " of " << Q.size() << " weights differ";
  EXPECT_NEAR(output_error(p, Q), output_error(p, ref), 0.01 * output_error(p, ref));
  // The codes the grid recorded give back the rounded weights.
  IntQuantized iq = std::move(grid).result();
  std::vector<float> deq(Q.size());
  iq.dequantize_rows(0, p.n_out, deq.data());
  for (size_t i = 0; i < Q.size(); ++i) ASSERT_EQ(deq[i], Q[i]) << i;
}

TEST(Gptq, DiagonalHessianIsRoundToNearest) {
  // No correlation between inputs: every error-feedback term is zero and GPTQ is RTN.
  Problem p = make_problem(16, 128, 3);
  for (int64_t i = 0; i < p.n_in; ++i)
    for (int64_t j = 0; j < p.n_in; ++j)
      if (i != j) p.H[size_t(i * p.n_in + j)] = 0;
  IntGridSpec spec{4, 32, false, false};
  std::vector<float> Q = p.W;
  IntRowGrid grid(spec, p.n_out, p.n_in, {}, nullptr);
  ASSERT_TRUE(gptq_quantize(Q.data(), p.n_out, p.n_in, p.H, GptqSpec{}, grid, {}, "diag").ok());
  IntQuantized rtn = quantize_rtn(p.W.data(), p.n_out, p.n_in, spec), got = std::move(grid).result();
  EXPECT_EQ(got.codes, rtn.codes);
  EXPECT_EQ(got.scales, rtn.scales);
}

TEST(Gptq, BeatsRoundToNearestOnCorrelatedInputs) {
  Problem p = make_problem(32, 256, 11, 0.9);
  for (bool act_order : {false, true}) {
    IntGridSpec spec{3, 128, false, false};
    std::vector<float> Q = p.W;
    std::vector<int64_t> perm =
        act_order ? act_order_permutation(diagonal(Buffer<double>(cpu_backend(), p.H), p.n_in))
                  : std::vector<int64_t>{};
    IntRowGrid grid(spec, p.n_out, p.n_in, perm, nullptr);
    ASSERT_TRUE(
        gptq_quantize(Q.data(), p.n_out, p.n_in, p.H, GptqSpec{0.01, act_order, 128}, grid, perm, "t").ok());
    IntQuantized rtn = quantize_rtn(p.W.data(), p.n_out, p.n_in, spec), got = std::move(grid).result();
    std::vector<float> rq(Q.size()), gq(Q.size());
    rtn.dequantize_rows(0, p.n_out, rq.data());
    got.dequantize_rows(0, p.n_out, gq.data());
    EXPECT_EQ(gq, Q);  // codes + scales + g_idx reproduce what GPTQ rounded to
    // The Linear that computes with them decodes s·(q − z) in another order (its kernel rounds
    // s·z separately): within u·(|Q| + 2·|s·z|), u = 2^-24, of Q — which calibration on a
    // device continues with.
    const std::vector<float> dec = IntLinear(got, TensorView{}).dense_weights();
    const int64_t ng = got.n_groups();
    for (int64_t r = 0; r < p.n_out; ++r)
      for (int64_t c = 0; c < p.n_in; ++c) {
        const size_t i = size_t(r * p.n_in + c), g = size_t(r * ng + got.group_of(c));
        const double sz = std::fabs(double(got.scales[g]) * got.zeros[g]);
        ASSERT_LE(std::fabs(double(dec[i]) - Q[i]), std::ldexp(std::fabs(Q[i]) + 2 * sz, -24))
            << r << "," << c;
      }
    EXPECT_LT(output_error(p, Q), output_error(p, rq)) << "act_order " << act_order;
    if (act_order) {  // act-order groups survive the GPTQ checkpoint layout
      ASSERT_EQ(got.g_idx.size(), size_t(p.n_in));
      EXPECT_NE(got.g_idx, std::vector<int32_t>(got.g_idx.size(), got.g_idx[0]));
    }
  }
}

TEST(Gptq, StaticGroupsUseTheOriginalWeights) {
  Problem p = make_problem(8, 256, 5);
  IntGridSpec spec{4, 64, true, false};
  std::vector<int64_t> perm = act_order_permutation(diagonal(Buffer<double>(cpu_backend(), p.H), p.n_in));
  std::vector<float> Q = p.W;
  IntRowGrid grid(spec, p.n_out, p.n_in, perm, p.W.data());
  ASSERT_TRUE(gptq_quantize(Q.data(), p.n_out, p.n_in, p.H, GptqSpec{0.01, true, 128}, grid, perm, "s").ok());
  IntQuantized got = std::move(grid).result(), rtn = quantize_rtn(p.W.data(), p.n_out, p.n_in, spec);
  EXPECT_EQ(got.scales, rtn.scales);  // fitted before any update, in natural column groups
  EXPECT_TRUE(got.g_idx.empty());
}

TEST(Gptq, RaisesDampingWhenCholeskyFailsAndNamesTheTensor) {
  Problem p = make_problem(4, 64, 2);
  // An indefinite Hessian: one direction with a negative eigenvalue of 0.2·mean(diag).
  double mean = 0;
  for (int64_t i = 0; i < p.n_in; ++i) mean += p.H[size_t(i * p.n_in + i)] / double(p.n_in);
  std::vector<double> H = p.H;
  for (int64_t i = 0; i < p.n_in; ++i)
    for (int64_t j = 0; j < p.n_in; ++j)
      H[size_t(i * p.n_in + j)] = (i == j) * mean - (i == 0 && j == 0) * 1.2 * mean;
  std::vector<float> Q = p.W;
  IntRowGrid grid(IntGridSpec{4, 64, false, false}, p.n_out, p.n_in, {}, nullptr);
  auto st = gptq_quantize(Q.data(), p.n_out, p.n_in, H, GptqSpec{}, grid, {}, "blk.0.attn_q.weight");
  ASSERT_TRUE(st.ok());
  EXPECT_GT(st->damp, 0.2);  // the diagonal needed more than 0.2·mean to become positive definite
  // Negative definite: no damping up to 1.0·mean(diag) helps.
  for (double& h : H) h = -h;
  for (int64_t i = 0; i < p.n_in; ++i) H[size_t(i * p.n_in + i)] = -mean;
  IntRowGrid grid2(IntGridSpec{4, 64, false, false}, p.n_out, p.n_in, {}, nullptr);
  auto bad = gptq_quantize(Q.data(), p.n_out, p.n_in, H, GptqSpec{}, grid2, {}, "blk.0.attn_q.weight");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("blk.0.attn_q.weight"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("not positive definite"), std::string::npos);
}

TEST(Gptq, DeadColumnsAreZeroed) {
  Problem p = make_problem(4, 64, 9);
  for (int64_t j = 0; j < p.n_in; ++j) p.H[size_t(5 * p.n_in + j)] = p.H[size_t(j * p.n_in + 5)] = 0;
  std::vector<float> Q = p.W;
  IntRowGrid grid(IntGridSpec{8, -1, false, false}, p.n_out, p.n_in, {}, nullptr);
  auto st = gptq_quantize(Q.data(), p.n_out, p.n_in, p.H, GptqSpec{}, grid, {}, "d");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->dead_columns, 1);
  for (int64_t r = 0; r < p.n_out; ++r) EXPECT_EQ(Q[size_t(r * p.n_in + 5)], 0.0f);
}

}  // namespace
}  // namespace qf

namespace qf {
namespace {

// The rows GPTQ wrote onto a block type, decoded.
std::vector<float> decode_rows(QType t, const std::vector<uint8_t>& bytes, int64_t n_out, int64_t n_in) {
  std::vector<float> out(size_t(n_out * n_in));
  traits(t).dequantize_ref(bytes.data(), out.data(), n_out * n_in);
  return out;
}

TEST(GptqBlocks, WritesValidBlocksAndBeatsTheTypesOwnRounding) {
  Problem p = make_problem(16, 512, 21, 0.9);
  std::vector<float> importance;
  for (int64_t i = 0; i < p.n_in; ++i) importance.push_back(float(p.H[size_t(i * p.n_in + i)]));
  for (QType t :
       {QType::Q4_K, QType::Q3_K, QType::Q2_K, QType::Q6_K, QType::IQ4_XS, QType::Q4_0, QType::IQ4_NL}) {
    std::vector<float> Q = p.W;
    BlockRowGrid grid(t, p.n_out, p.n_in, importance.data());
    ASSERT_TRUE(gptq_quantize(Q.data(), p.n_out, p.n_in, p.H, GptqSpec{}, grid, {}, "t").ok());
    const std::vector<float> got = decode_rows(t, std::move(grid).result(), p.n_out, p.n_in);
    // What GPTQ assumed each weight became is what the blocks decode to (up to the fp32
    // rounding of a·level + b against the format's own expression).
    for (size_t i = 0; i < Q.size(); ++i)
      ASSERT_NEAR(got[i], Q[i], 1e-6f * (1 + std::fabs(Q[i]))) << traits(t).name << " " << i;
    // llama.cpp's rounding of the same rows with the same importance.
    std::vector<uint8_t> own(size_t(qtype_row_bytes(t, p.n_in) * p.n_out));
    for (int64_t r = 0; r < p.n_out; ++r)
      traits(t).quantize_ref(p.W.data() + r * p.n_in, own.data() + r * qtype_row_bytes(t, p.n_in), p.n_in,
                             importance.data());
    EXPECT_LT(output_error(p, got), output_error(p, decode_rows(t, own, p.n_out, p.n_in))) << traits(t).name;
  }
}

TEST(GptqBlocks, DiagonalHessianRoundsToTheNearestValueOfTheFittedBlock) {
  Problem p = make_problem(4, 256, 8);
  for (int64_t i = 0; i < p.n_in; ++i)
    for (int64_t j = 0; j < p.n_in; ++j)
      if (i != j) p.H[size_t(i * p.n_in + j)] = 0;
  for (QType t : {QType::Q4_K, QType::Q3_K, QType::Q5_0}) {
    const auto& tr = traits(t);
    std::vector<float> Q = p.W;
    BlockRowGrid grid(t, p.n_out, p.n_in, nullptr);
    ASSERT_TRUE(gptq_quantize(Q.data(), p.n_out, p.n_in, p.H, GptqSpec{}, grid, {}, "d").ok());
    const std::vector<uint8_t> rows = std::move(grid).result();
    const std::vector<float> got = decode_rows(t, rows, p.n_out, p.n_in);
    // No error feedback: every weight is at the nearest value its block offers, found by
    // trying every code.
    const int64_t row_bytes = qtype_row_bytes(t, p.n_in);
    for (int64_t r = 0; r < p.n_out; ++r)
      for (int64_t c = 0; c < p.n_in; ++c) {
        std::vector<uint8_t> blk(rows.begin() + r * row_bytes + c / tr.block * tr.bytes_per_block,
                                 rows.begin() + r * row_bytes + (c / tr.block + 1) * tr.bytes_per_block);
        std::vector<uint8_t> same(size_t(tr.block));
        std::vector<float> v(size_t(tr.block));
        float best = INFINITY;
        for (int code = 0; code < tr.n_codes; ++code) {
          std::fill(same.begin(), same.end(), uint8_t(code));
          tr.pack_codes(same.data(), blk.data());
          tr.dequantize_ref(blk.data(), v.data(), tr.block);
          best = std::min(best, std::fabs(v[size_t(c % tr.block)] - p.W[size_t(r * p.n_in + c)]));
        }
        ASSERT_NEAR(std::fabs(got[size_t(r * p.n_in + c)] - p.W[size_t(r * p.n_in + c)]), best, 1e-6f)
            << tr.name;
      }
  }
}

}  // namespace
}  // namespace qf
