// AWQ on the bundled model: the folded (scaled, unclipped) checkpoint computes the original
// function within fp32 rounding; `qforge quantize --method awq` end to end and its refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "file_builders.h"
#include "model/transformer.h"
#include "quant/awq.h"
#include "quant/calibration.h"
#include "test_paths.h"

namespace qf {
namespace {

int run(const std::string& args, std::string* err = nullptr) {
  std::string log = test::temp_dir("awq_cli") + "/err";
  int status = std::system((test::qforge_bin() + " " + args + " >/dev/null 2>" + log).c_str());
  if (err) *err = test::slurp(log);
  return WEXITSTATUS(status);
}

std::vector<float> logits_of(const Checkpoint& ck, const std::vector<int32_t>& ids) {
  auto tf = Transformer::create(ck);
  EXPECT_TRUE(tf.ok());
  KVCache cache = (*tf)->new_cache(int(ids.size()));
  std::vector<float> out(ids.size() * size_t(ck.config.vocab_size));
  (*tf)->forward(ids.data(), int(ids.size()), cache, out.data());
  return out;
}

// Folds AWQ's scales (searched for a 3-bit per-channel grid, clipping off) into `model` and
// checks that the result's fp32 logits equal the original's within fp32 rounding, and that the
// scales really changed the weights.
void expect_folding_preserves_the_function(const std::string& model, const std::string& calib, int n_windows, int seqlen) {
  auto ck = load_checkpoint(model);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto windows = draw_windows(ck->tokenizer->encode(test::slurp(calib), true), n_windows, seqlen, 0);
  ASSERT_TRUE(windows.ok());
  const IntGridSpec grid{3, -1, false, false};
  AwqSpec spec;
  spec.clip = false;
  FakeQuantizer rtn = [&](int, const std::string&, float* w, int64_t n_out, int64_t n_in, const std::vector<float>&) {
    quantize_rtn(w, n_out, n_in, grid).dequantize_rows(0, n_out, w);
  };
  const std::string out = test::temp_dir("awq_fold") + "/scaled";
  auto rep = awq_transform(*ck, *windows, spec, rtn, out, nullptr);
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  EXPECT_EQ(rep->clipped_groups, 0);
  float max_dev = 0;  // how far the chosen scales are from 1
  for (const auto& [name, s] : rep->col_scales)
    for (float v : s) max_dev = std::max(max_dev, std::fabs(std::log(v)));
  EXPECT_GT(max_dev, 0.1f) << "the search chose α = 0 everywhere: the test would prove nothing";
  auto scaled = load_checkpoint(out);
  ASSERT_TRUE(scaled.ok()) << scaled.status().message();
  EXPECT_EQ(scaled->weights.layers[0].attn_norm.type, QType::F32);
  EXPECT_NE(scaled->weights.layers[0].attn_norm.to_f32(), ck->weights.layers[0].attn_norm.to_f32());

  std::vector<int32_t> ids((*windows)[0].begin(), (*windows)[0].begin() + 48);
  std::vector<float> a = logits_of(*ck, ids), b = logits_of(*scaled, ids);
  float max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(a[i]));
    max_diff = std::max(max_diff, std::fabs(a[i] - b[i]));
  }
  // fp32 rounding: each fold adds one rounding (relative 2^-24) per weight; through the blocks
  // the logits move by a few hundred ulps of their magnitude at most.
  EXPECT_LT(max_diff, 1e-4f * max_abs) << "max |Δlogit| " << max_diff << " of max |logit| " << max_abs;
  std::printf("folded %s: max |Δlogit| %.3g (max |logit| %.3g), max |log s| %.2f\n", model.c_str(), max_diff, max_abs, max_dev);
}

TEST(Awq, FoldedStories260KComputesTheSameFunction) {
  expect_folding_preserves_the_function(test::bundled_stories() + "/hf", test::text_path("tinystories-val-head"), 8, 64);
}

TEST(AwqCli, QuantizesLoadsBackAndRecordsTheMethod) {
  const std::string dir = test::temp_dir("awq_out"), m = test::bundled_stories() + "/hf";
  const std::string calib = " --calib " + test::text_path("tinystories-val-head") + " --nsamples 4 --seqlen 64";
  std::string err;
  // 8-bit codes: the AWQ layout holds 4-bit only, so the GPTQ layout is written.
  ASSERT_EQ(run("quantize " + m + " -o " + dir + "/w8 --method awq --bits 8 --group -1" + calib, &err), 0) << err;
  auto cfg = nlohmann::json::parse(test::slurp(dir + "/w8/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["quant_method"], "gptq");
  EXPECT_EQ(cfg["quantization_config"]["meta"]["method"], "awq");
  EXPECT_EQ(run("eval " + dir + "/w8 --base " + m + " --text " + test::text_path("tinystories-val-head") +
                    " --ctx 64 --max-windows 4", &err), 0) << err;
  ASSERT_EQ(run("quantize " + m + " -o " + dir + "/q8.gguf --method awq+gptq --format gguf --type Q8_0" + calib, &err), 0) << err;
  auto g = load_checkpoint(dir + "/q8.gguf");
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(g->weights.layers[0].wq.weight.type, QType::Q8_0);
  // Nothing but the outputs is left beside them (the scaled scratch checkpoint is removed).
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 2);
}

TEST(AwqCli, RefusesBeforeSearchingAndLeavesNothing) {
  const std::string dir = test::temp_dir("awq_bad"), m = "quantize " + test::bundled_stories() + "/hf -o " + dir + "/q ";
  const std::string calib = " --calib " + test::text_path("tinystories-val-head") + " --nsamples 2 --seqlen 32";
  std::string err;
  EXPECT_EQ(run(m + "--method awq", &err), 1);
  EXPECT_NE(err.find("--method awq needs --calib FILE"), std::string::npos) << err;
  EXPECT_EQ(run(m + "--method rtn --duo-scaling", &err), 1);
  EXPECT_NE(err.find("--duo-scaling does not apply to --method rtn"), std::string::npos) << err;
  EXPECT_EQ(run(m + "--method awq --act-order" + calib, &err), 1);
  EXPECT_NE(err.find("--act-order does not apply to --method awq"), std::string::npos) << err;
  // stories260K's MLP has 172 outputs: the AWQ layout packs eight per word.
  EXPECT_EQ(run(m + "--method awq --bits 4 --group -1" + calib, &err), 1);
  EXPECT_NE(err.find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 0);
}

}  // namespace
}  // namespace qf
