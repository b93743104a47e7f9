// Golden tests: qforge against reference values recorded from PyTorch/transformers (fp32, no
// TF32) in golden.json, and against llama2.c's published greedy continuation. Logit
// tolerances: tests/tolerances.h.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "awq_fold.h"
#include "core/half.h"
#include "eval/perplexity.h"
#include "io/awq_layout.h"
#include "model/checkpoint.h"
#include "model/transformer.h"
#include "test_paths.h"
#include "tolerances.h"

namespace qf {
namespace {

using nlohmann::json;

struct Loaded {
  Checkpoint ck;
  std::unique_ptr<Transformer> tf;
};

Loaded load(const std::string& path) {
  auto ck = load_checkpoint(path);
  EXPECT_TRUE(ck.ok()) << ck.status().message();
  auto tf = Transformer::create(*ck);
  EXPECT_TRUE(tf.ok());
  return {std::move(*ck), std::move(tf).value()};
}

std::vector<float> all_logits(const Transformer& tf, const std::vector<int32_t>& ids) {
  KVCache cache = tf.new_cache(int(ids.size()));
  std::vector<float> logits(ids.size() * size_t(tf.config().vocab_size));
  tf.forward(ids.data(), int(ids.size()), cache, logits.data());
  return logits;
}

std::vector<int32_t> greedy(const Transformer& tf, std::vector<int32_t> ids, int n_new) {
  KVCache cache = tf.new_cache(int(ids.size()) + n_new);
  std::vector<float> logits(size_t(tf.config().vocab_size));
  tf.forward(ids.data(), int(ids.size()), cache, logits.data(), true);
  for (int i = 0; i < n_new; ++i) {
    int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    ids.push_back(next);
    if (i + 1 < n_new) tf.forward(&next, 1, cache, logits.data(), true);
  }
  return ids;
}

class Golden : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return test::model_dir(GetParam()); }
  std::string hf() const { return test::hf_dir(GetParam()); }
};

TEST_P(Golden, PromptTokenIds) {
  auto m = load(hf());
  const json golden = test::load_golden(dir());
  for (const auto& g : test::golden_prompts(golden)) {
    std::vector<int32_t> ids = m.ck.tokenizer->encode(g["prompt"].get<std::string>());
    EXPECT_EQ(ids, g["ids"].get<std::vector<int32_t>>()) << g["prompt"];
  }
}

TEST_P(Golden, EvalTextTokenCounts) {
  auto m = load(hf());
  std::set<std::string> seen;
  const json golden = test::load_golden(dir());
  for (const auto& [key, v] : golden["ppl"].items()) {
    std::string text = key.substr(0, key.find('@'));
    if (!seen.insert(text).second) continue;
    auto ids = m.ck.tokenizer->encode(test::slurp(test::text_path(text)));
    EXPECT_EQ(int64_t(ids.size()), v["n_tokens"].get<int64_t>()) << text;
  }
}

TEST_P(Golden, Top8LogitsAtEveryPosition) {
  auto m = load(hf());
  const json golden = test::load_golden(dir());
  for (const auto& g : test::golden_prompts(golden)) {
    auto ids = g["ids"].get<std::vector<int32_t>>();
    auto logits = all_logits(*m.tf, ids);
    const int V = m.tf->config().vocab_size;
    double max_abs = 0, max_err = 0;
    for (const auto& row : g["top_logits"])
      for (double v : row) max_abs = std::max(max_abs, std::fabs(v));
    const double tol = test::logit_tolerance(m.tf->config(), max_abs);
    for (size_t p = 0; p < ids.size(); ++p) {
      const float* row = logits.data() + p * size_t(V);
      auto top_ids = g["top_ids"][p].get<std::vector<int32_t>>();
      auto top_vals = g["top_logits"][p].get<std::vector<double>>();
      EXPECT_EQ(std::max_element(row, row + V) - row, top_ids[0]) << "argmax at position " << p;
      for (size_t k = 0; k < top_ids.size(); ++k) {
        double err = std::fabs(row[top_ids[k]] - top_vals[k]);
        max_err = std::max(max_err, err);
        EXPECT_LE(err, tol) << g["prompt"] << " position " << p << " token " << top_ids[k];
      }
    }
    std::printf("%s: max |Δlogit| %.3g (tolerance %.3g)\n", g["prompt"].get<std::string>().c_str(), max_err,
                tol);
  }
}

TEST_P(Golden, GreedyContinuations) {
  auto m = load(hf());
  const json golden = test::load_golden(dir());
  for (const auto& g : test::golden_prompts(golden)) {
    auto ids = g["ids"].get<std::vector<int32_t>>();
    auto want = g["greedy_ids"].get<std::vector<int32_t>>();
    auto got = greedy(*m.tf, ids, int(want.size() - ids.size()));
    EXPECT_EQ(got, want) << g["prompt"];
    std::vector<int32_t> fresh(got.begin() + long(ids.size()), got.end());
    EXPECT_EQ(m.ck.tokenizer->decode(fresh), g["greedy_text"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Models, Golden,
                         ::testing::Values("stories260K", "qf-27m", "qf-tiny-5m", "qf-llama3-9m",
                                           "qf-qwen3-9m"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (!std::isalnum(uint8_t(ch))) ch = '_';
                           return s;
                         });

TEST(GoldenStories, Greedy256FromBosMatchesLlama2c) {
  auto m = load(test::bundled_stories() + "/hf");
  // llama2.c's 256 steps are 256 positions: BOS and 255 generated tokens.
  auto ids = greedy(*m.tf, {m.ck.tokenizer->bos_id()}, 255);
  std::vector<int32_t> fresh(ids.begin() + 1, ids.end());
  std::string want = test::slurp(test::bundled_stories() + "/stories260K_greedy256.txt");
  while (!want.empty() && want.back() == '\n') want.pop_back();
  EXPECT_EQ(m.ck.tokenizer->decode(fresh), want);
}

// ---- perplexity: the CI tier runs the entries below (each ctx-128 entry of the wave-1 models,
// one per wave-2 model, Llama 3's at ctx 4096 to reach past its original 2048 positions); the
// full tier (scripts/test.sh --full) runs every entry of every golden.json. -------------------

struct PplCase {
  std::string model, key;
  friend void PrintTo(const PplCase& c, std::ostream* os) { *os << c.model << " " << c.key; }
};
class GoldenPpl : public ::testing::TestWithParam<PplCase> {};

void expect_golden_ppl(const PplCase& c) {
  std::string dir = test::model_dir(c.model);
  auto m = load(test::hf_dir(c.model));
  const json g = test::load_golden(dir)["ppl"][c.key];
  auto tokens = m.ck.tokenizer->encode(test::slurp(test::text_path(c.key.substr(0, c.key.find('@')))));
  PerplexityOptions opt;
  opt.ctx = std::stoi(c.key.substr(c.key.find('@') + 1));
  auto r = perplexity(*m.tf, tokens, opt);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->windows, g["windows"].get<int64_t>());
  EXPECT_EQ(r->scored, g["scored"].get<int64_t>());
  const double want = g["ppl"].get<double>();
  EXPECT_LE(std::fabs(r->ppl - want) / want, 1e-4) << "ppl " << r->ppl << " vs golden " << want;
  std::printf("%s %s: ppl %.6f golden %.6f rel %.2e, %.0f tokens/s\n", c.model.c_str(), c.key.c_str(), r->ppl,
              want, std::fabs(r->ppl - want) / want, r->tokens_per_second);
}

TEST_P(GoldenPpl, WithinOneTenThousandth) { expect_golden_ppl(GetParam()); }

TEST(GoldenPplFull, EveryListedEntryWithinOneTenThousandth) {
  QF_FULL_TIER_ONLY();
  for (const char* model : {"stories260K", "qf-27m", "qf-tiny-5m", "qf-llama3-9m", "qf-qwen3-9m"}) {
    const auto golden = test::load_golden(test::model_dir(model));  // alive while items() walks it
    for (const auto& [key, v] : golden["ppl"].items()) {
      SCOPED_TRACE(std::string(model) + " " + key);
      expect_golden_ppl({model, key});
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ctx128, GoldenPpl,
                         ::testing::Values(PplCase{"stories260K", "tinystories-val-head@128"},
                                           PplCase{"stories260K", "wikitext2-test@128"},
                                           PplCase{"qf-27m", "wikitext2-test@128"},
                                           PplCase{"qf-27m", "tinystories-val-head@128"},
                                           PplCase{"qf-27m", "heldout@128"},
                                           PplCase{"qf-tiny-5m", "tinystories-val-head@128"},
                                           PplCase{"qf-llama3-9m", "wikitext2-test@4096"},
                                           PplCase{"qf-qwen3-9m", "tinystories-val-head@512"}),
                         [](const auto& info) {
                           std::string s = info.param.model + "_" + info.param.key;
                           for (char& ch : s)
                             if (!std::isalnum(uint8_t(ch))) ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace qf

namespace qf {
namespace {

// llama.cpp's converter turned qf-27m's bf16 weights into f16 (via fp32). f16 has more mantissa
// bits than bf16 (10 vs 7), so every bf16 value is exact in f16 unless it lies below f16's
// normal range (|w| < 2^-14), where f16 subnormals have a spacing of 2^-24: the conversion
// error is then at most half of that, 2^-25. q/k rows are compared through llama.cpp's RoPE
// permutation (HF row h·d + s·d/2 + i is GGUF row h·d + 2i + s).
TEST(GoldenQf27m, GgufF16ConversionDiffersFromBf16OnlyBelowF16Normals) {
  auto hf = load_checkpoint(test::qf27m());
  auto gg = load_checkpoint(test::qf27m() + "/qf-27m-f16.gguf");
  ASSERT_TRUE(hf.ok() && gg.ok());
  const int hd = hf->config.head_dim;
  auto compare = [&](const TensorView& a, const TensorView& b, bool permuted, int64_t* differing) {
    auto x = a.to_f32(), y = b.to_f32();
    ASSERT_EQ(x.size(), y.size()) << a.name;
    const int64_t cols = a.cols();
    for (int64_t r = 0; r < a.rows(); ++r) {
      int64_t h = r / hd, j = r % hd, s = j / (hd / 2), i = j % (hd / 2);
      int64_t rg = permuted ? h * hd + 2 * i + s : r;
      for (int64_t c = 0; c < cols; ++c) {
        float wa = x[size_t(r * cols + c)], wb = y[size_t(rg * cols + c)];
        if (wa == wb) continue;
        ++*differing;
        ASSERT_LT(std::fabs(wa), std::ldexp(1.0f, -14)) << a.name << " row " << r << " col " << c;
        ASSERT_LE(std::fabs(wa - wb), std::ldexp(1.0f, -25)) << a.name;
      }
    }
  };
  int64_t differing = 0, total = 0;
  const auto &A = hf->weights, &B = gg->weights;
  compare(A.tok_embd, B.tok_embd, false, &differing);
  compare(A.output.weight, B.output.weight, false, &differing);
  for (size_t l = 0; l < A.layers.size(); ++l) {
    const auto &a = A.layers[l], &b = B.layers[l];
    for (int k = 0; k < kNumLinears; ++k)
      compare(a.linears[k].weight, b.linears[k].weight, kBlockLinears[k].rope_rows, &differing);
    for (int k : {kAttnNorm, kFfnNorm}) compare(a.norms[k], b.norms[k], false, &differing);
  }
  for (const auto& t : hf->all_tensors) total += t.numel();
  std::printf("weights differing between bf16 and llama.cpp's f16: %lld of %lld\n", (long long)differing,
              (long long)total);

  // Same token ids through both files: the logits differ by the effect of those few tiny
  // weights plus fp32 reordering; bounded by the golden tolerance above.
  const json golden = test::load_golden(test::qf27m());
  auto ids = golden["logits"][0]["ids"].get<std::vector<int32_t>>();
  auto ta = Transformer::create(*hf), tb = Transformer::create(*gg);
  auto la = all_logits(**ta, ids), lb = all_logits(**tb, ids);
  double max_abs = 0, max_err = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    max_abs = std::max(max_abs, double(std::fabs(la[i])));
    max_err = std::max(max_err, double(std::fabs(la[i] - lb[i])));
  }
  std::printf("HF bf16 vs GGUF f16 logits: max |Δ| %.3g over %zu values\n", max_err, la.size());
  EXPECT_LE(max_err, test::logit_tolerance(hf->config, max_abs));
}

// llama.cpp's converter drops the HF tokenizer's BOS (qf-27m-f16.gguf has no
// tokenizer.ggml.add_bos_token). Against an HF base, eval scores the base's tokenization (BOS
// first, golden.json's token count) through both models: the same function, so the KL
// divergence is bounded by the fp32 logit tolerance δ (KL ≤ δ²/2 for logits that differ by at
// most δ each) and every argmax agrees.
TEST(GoldenQf27m, GgufEvalAgainstTheHfBaseScoresTheBaseTokenization) {
  const json golden = test::load_golden(test::qf27m());
  int status = 0;
  const json r = json::parse(test::qforge_stdout(
      "-t 2 eval " + test::qf27m() + "/qf-27m-f16.gguf --base " + test::qf27m() + " --text " +
          test::text_path("wikitext2-test") + " --ctx 512 --max-windows 2 --json",
      &status));
  ASSERT_EQ(status, 0);
  EXPECT_EQ(r["n_tokens"], golden["ppl"]["wikitext2-test@512"]["n_tokens"]);
  double max_abs = 0;
  for (const auto& g : golden["logits"])
    for (const auto& row : g["top_logits"])
      for (double v : row) max_abs = std::max(max_abs, std::fabs(v));
  auto hf = load_checkpoint(test::qf27m());
  ASSERT_TRUE(hf.ok());
  const double tol = test::logit_tolerance(hf->config, max_abs);
  EXPECT_LE(r["kld"].get<double>(), tol * tol / 2);
  EXPECT_EQ(r["top1"].get<double>(), 1.0);
}
}  // namespace
}  // namespace qf

#include <filesystem>

#include "quant/calibration.h"
#include "quant/quantize_hf.h"

namespace qf {
namespace {

// Quantizes qf-27m with `opt` into a temporary checkpoint and scores it against the original on
// all of wiki.test.raw at ctx 512 (the canonical protocol, 708 windows).
// Quantizes `source` (default: the base itself) and scores it against the base on all of
// wiki.test.raw at ctx 512.
PerplexityResult quantize_and_score(const Checkpoint& base_ck, const QuantizeOptions& opt,
                                    const std::string& name, const Checkpoint* source = nullptr) {
  std::string out = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(out);
  auto rep = quantize_hf_checkpoint(source ? *source : base_ck, opt, out, nullptr);
  EXPECT_TRUE(rep.ok()) << rep.status().message();
  auto q_ck = load_checkpoint(out);
  EXPECT_TRUE(q_ck.ok()) << q_ck.status().message();
  if (!q_ck.ok()) return {};
  EXPECT_EQ(q_ck->quant.desc_act, opt.method == "gptq" && opt.gptq.act_order);
  auto base = Transformer::create(base_ck), quant = Transformer::create(*q_ck);
  auto tokens = base_ck.tokenizer->encode(test::slurp(test::text_path("wikitext2-test")));
  PerplexityOptions popt;
  popt.ctx = 512;
  auto r = perplexity(**quant, tokens, popt, base->get());
  EXPECT_TRUE(r.ok());
  std::filesystem::remove_all(out);
  if (!r.ok()) return {};
  EXPECT_EQ(r->windows, 708);
  return *r;
}

// RTN W4 g128 asymmetric against the reference GPTQ Quantizer (IST-DASLab quant.py) measured in
// PyTorch fp32 (../shared/docs/ANCHORS.md §1): wiki PPL 84.8977, KL 0.04378, top-1 86.16 %, on
// all 708 windows of ctx 512. qforge stores fp16 scales as the GPTQ layout does; the issue
// allows 1 % relative.
TEST(GoldenQf27m, RtnW4G128AsymMatchesTheReferenceQuantizer) {
  QF_FULL_TIER_ONLY();  // whole-text KL against the reference implementation's value: minutes
  auto base_ck = load_checkpoint(test::qf27m());
  ASSERT_TRUE(base_ck.ok());
  QuantizeOptions opt;
  opt.grid = IntGridSpec{4, 128, false, false};
  PerplexityResult r = quantize_and_score(*base_ck, opt, "qforge_golden_rtn_w4g128");
  EXPECT_NEAR(r.ppl / 84.8977, 1.0, 0.01);
  EXPECT_NEAR(r.kld / 0.04378, 1.0, 0.01);
  EXPECT_NEAR(r.top1 * 100, 86.16, 0.8616);
  std::printf("RTN W4 g128 asym: ppl %.4f (ref 84.8977), KL %.5f (ref 0.04378), top-1 %.2f %% (ref 86.16)\n",
              r.ppl, r.kld, 100 * r.top1);
}

// GPTQ W4 g128 asymmetric act-order against the reference implementation (IST-DASLab gptq.py,
// PyTorch fp32, ANCHORS.md §1): 128 windows of 512 tokens of calib-wiki.txt drawn by
// random.Random(0), true-sequential, damp 0.01 → wiki KL 0.02891 on all 708 windows. The issue
// asks for KL ≤ reference + 3 %.
TEST(GoldenQf27m, GptqW4G128ActOrderAtLeastAsGoodAsTheReference) {
  QF_FULL_TIER_ONLY();  // whole-text KL against the reference implementation's value: minutes
  auto base_ck = load_checkpoint(test::qf27m());
  ASSERT_TRUE(base_ck.ok());
  QuantizeOptions opt;
  opt.method = "gptq";
  opt.grid = IntGridSpec{4, 128, false, false};
  opt.gptq.act_order = true;
  auto calib = base_ck->tokenizer->encode(test::slurp(test::shared_dir() + "/data/calib-wiki.txt"));
  auto windows = draw_windows(calib, 128, 512, 0);
  ASSERT_TRUE(windows.ok());
  opt.windows = std::move(*windows);
  PerplexityResult r = quantize_and_score(*base_ck, opt, "qforge_golden_gptq_w4g128");
  EXPECT_GT(r.kld, 0.0);  // a failed run returns zeros
  EXPECT_LE(r.kld, 0.02891 * 1.03);
  std::printf(
      "GPTQ W4 g128 asym act-order: ppl %.4f (ref 84.0559), KL %.5f (ref 0.02891), top-1 %.2f %% (ref "
      "88.70)\n",
      r.ppl, r.kld, 100 * r.top1);
}

// QuIP# 2-bit (E8P, BlockLDLQ over randomized Hadamard transforms) on qf-27m, written in its
// layout, loaded and scored on all 708 windows: its KL must beat llama.cpp's IQ2_XS (2.33 bits
// per weight, imatrix: KL 0.42290, ANCHORS.md §2) at fewer bits per weight — and so GPTQ W2 g64's
// 0.77784 (§1) by far.
TEST(GoldenQf27m, QuipSharp2BitBeatsIq2Xs) {
  QF_FULL_TIER_ONLY();  // whole-text KL against the reference implementation's value: minutes
  auto base_ck = load_checkpoint(test::qf27m());
  ASSERT_TRUE(base_ck.ok());
  QuantizeOptions opt;
  opt.method = "quip#";
  opt.grid.bits = 2;
  auto windows =
      draw_windows(base_ck->tokenizer->encode(test::slurp(test::shared_dir() + "/data/calib-wiki.txt"), true),
                   128, 512, 0);
  ASSERT_TRUE(windows.ok());
  opt.windows = std::move(*windows);
  PerplexityResult r = quantize_and_score(*base_ck, opt, "qforge_golden_quip2");
  EXPECT_GT(r.kld, 0.0);
  EXPECT_LT(r.kld, 0.42290);
  std::printf("QuIP# 2-bit E8P: ppl %.4f, KL %.5f (IQ2_XS 0.42290, GPTQ W2 g64 0.77784), top-1 %.2f %%\n",
              r.ppl, r.kld, 100 * r.top1);
}

// AWQ on qf-27m: the folded model is the original function; the AWQ layout holds exactly the
// integer grid of the scaled weights; W4/W3 g128 beat round-to-nearest of the same grid
// (reference RTN, ANCHORS.md §1).
std::vector<std::vector<int32_t>> calib_windows(const Checkpoint& ck, int n, int seqlen) {
  auto w = draw_windows(ck.tokenizer->encode(test::slurp(test::shared_dir() + "/data/calib-wiki.txt"), true),
                        n, seqlen, 0);
  EXPECT_TRUE(w.ok());
  return w.ok() ? *w : std::vector<std::vector<int32_t>>{};
}

// The AWQ-transformed checkpoint (scales and clipping searched for `grid`), loaded.
Checkpoint awq_scaled(const Checkpoint& ck, const std::vector<std::vector<int32_t>>& windows,
                      const IntGridSpec& grid, const std::string& dir) {
  std::filesystem::remove_all(dir);
  FakeQuantizer rtn = [&](int, const std::string&, float* w, int64_t n_out, int64_t n_in,
                          const std::vector<float>&) {
    quantize_rtn(w, n_out, n_in, grid).dequantize_rows(0, n_out, w);
  };
  AwqSpec spec;
  spec.group = grid.group;
  auto rep = awq_transform(ck, windows, spec, rtn, dir, nullptr);
  EXPECT_TRUE(rep.ok()) << rep.status().message();
  auto scaled = load_checkpoint(dir);
  EXPECT_TRUE(scaled.ok()) << scaled.status().message();
  return std::move(*scaled);
}

TEST(GoldenQf27m, AwqFoldedModelComputesTheSameFunction) {
  test::expect_folding_preserves_the_function(test::qf27m(), test::shared_dir() + "/data/calib-wiki.txt", 4,
                                              128);
}

TEST(GoldenQf27m, AwqLayoutHoldsTheIntegerGridOfTheScaledWeights) {
  auto ck = load_checkpoint(test::qf27m());
  ASSERT_TRUE(ck.ok());
  const IntGridSpec grid{4, 128, false, false};
  const auto windows = calib_windows(*ck, 4, 128);
  const std::string dir = std::filesystem::temp_directory_path() / "qforge_golden_awq_layout";
  Checkpoint scaled = awq_scaled(*ck, windows, grid, dir + "/scaled");
  QuantizeOptions opt;
  opt.method = "awq";
  opt.awq_scaled = true;
  opt.grid = grid;
  opt.windows = windows;
  auto rep = quantize_hf_checkpoint(scaled, opt, dir + "/q", nullptr);
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  auto q = load_checkpoint(dir + "/q");
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(q->quant.method, "awq");
  for (int layer : {0, 5})
    for (const char* kind : kLinearNames) {
      const LinearTensors& t = q->weights.layers[size_t(layer)].linear(kind);
      auto got =
          unpack_awq(t.parts.at(".qweight"), t.parts.at(".qzeros"), t.parts.at(".scales"), 4, 128, t.prefix);
      ASSERT_TRUE(got.ok()) << got.status().message();
      const std::vector<float> w = scaled.weights.layers[size_t(layer)].linear(kind).weight.to_f32();
      const IntQuantized want = quantize_rtn(w.data(), t.n_out, t.n_in, grid);
      EXPECT_EQ(got->codes, want.codes) << t.prefix;
      EXPECT_EQ(got->zeros, want.zeros) << t.prefix;
      ASSERT_EQ(got->scales.size(), want.scales.size());
      for (size_t i = 0; i < want.scales.size(); ++i)
        ASSERT_EQ(got->scales[i], f16_to_f32(f32_to_f16(want.scales[i]))) << t.prefix << " scale " << i;
    }
  std::filesystem::remove_all(dir);
}

// 16 windows of 512 calibration tokens (a quarter of AutoAWQ's usual ~32k) keep CI's time; the
// checks are the issue's: KL below RTN's on the same grid.
void expect_awq_beats_rtn(int bits, double rtn_kld) {
  QF_FULL_TIER_ONLY();  // whole-text KL against the reference implementation's value: minutes
  auto ck = load_checkpoint(test::qf27m());
  ASSERT_TRUE(ck.ok());
  const IntGridSpec grid{bits, 128, false, false};
  const auto windows = calib_windows(*ck, 16, 512);
  const std::string dir =
      std::filesystem::temp_directory_path() / ("qforge_golden_awq_w" + std::to_string(bits));
  Checkpoint scaled = awq_scaled(*ck, windows, grid, dir);
  QuantizeOptions opt;
  opt.method = "awq";
  opt.awq_scaled = true;
  opt.grid = grid;
  opt.windows = windows;
  PerplexityResult r = quantize_and_score(*ck, opt, "qforge_golden_awq_q" + std::to_string(bits), &scaled);
  std::filesystem::remove_all(dir);
  EXPECT_GT(r.kld, 0.0);
  EXPECT_LT(r.kld, rtn_kld);
  std::printf("AWQ W%d g128 (16 windows): ppl %.4f, KL %.5f (RTN %.5f), top-1 %.2f %%\n", bits, r.ppl, r.kld,
              rtn_kld, 100 * r.top1);
}

TEST(GoldenQf27m, AwqW4G128BeatsRoundToNearest) { expect_awq_beats_rtn(4, 0.04378); }
TEST(GoldenQf27m, AwqW3G128BeatsRoundToNearest) { expect_awq_beats_rtn(3, 0.20821); }

}  // namespace
}  // namespace qf
