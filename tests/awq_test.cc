// AWQ on the bundled model: the folded (scaled, unclipped) checkpoint computes the original
// function within fp32 rounding; `qforge quantize --method awq` end to end and its refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "awq_fold.h"
#include "file_builders.h"
#include "test_paths.h"

namespace qf {
namespace {

int run(const std::string& args, std::string* err = nullptr) {
  return test::run_qforge(args, test::temp_dir("awq_cli"), err);
}

TEST(Awq, FoldedStories260KComputesTheSameFunction) {
  test::expect_folding_preserves_the_function(test::bundled_stories() + "/hf",
                                              test::text_path("tinystories-val-head"), 8, 64);
}

// stories260K made a Qwen2 with full multi-head attention: k/v heads repeated (the same function
// as its grouped-query attention) and random q/k/v biases, so that AWQ also scales v_proj →
// o_proj, dividing v's rows and bias.
TEST(Awq, FoldedQwen2WithBiasesAndVToOScalingComputesTheSameFunction) {
  namespace fs = std::filesystem;
  const std::string src = test::bundled_stories() + "/hf", dir = test::temp_dir("awq_qwen2_mha");
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().filename() != "model.safetensors" && e.path().filename() != "config.json")
      fs::copy(e.path(), dir + "/" + e.path().filename().string());
  auto cfg = nlohmann::json::parse(test::slurp(src + "/config.json"));
  cfg["architectures"] = {"Qwen2ForCausalLM"};
  cfg["model_type"] = "qwen2";
  cfg["num_key_value_heads"] = 8;
  test::write_file(dir + "/config.json", cfg.dump(2));
  auto ck = load_checkpoint(src);
  ASSERT_TRUE(ck.ok());
  std::map<std::string, test::F32Tensor> tensors;
  for (const auto& t : ck->all_tensors) tensors[t.name] = {t.shape, t.to_f32()};
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 0.1f);
  const int hd = 8;
  for (int l = 0; l < 5; ++l)
    for (const char* proj : {"k", "v"}) {  // (32, 64) → (64, 64): kv head g serves q heads 2g, 2g+1
      auto& t = tensors[fmt::format("model.layers.{}.self_attn.{}_proj.weight", l, proj)];
      std::vector<float> w;
      for (int h = 0; h < 8; ++h)
        w.insert(w.end(), t.data.begin() + (h / 2) * hd * 64, t.data.begin() + (h / 2 + 1) * hd * 64);
      t = {{64, 64}, w};
    }
  for (int l = 0; l < 5; ++l)
    for (const char* proj : {"q", "k", "v"}) {
      std::vector<float> b(64);
      for (float& v : b) v = noise(rng);
      tensors[fmt::format("model.layers.{}.self_attn.{}_proj.bias", l, proj)] = {{64}, b};
    }
  test::write_file(dir + "/model.safetensors", test::safetensors_bytes(tensors));
  test::expect_folding_preserves_the_function(dir, test::text_path("tinystories-val-head"), 8, 64, true);
}

// AWQ with an integer grid computed by the backend (Backend::fake_quantize_int) makes the same
// search, choices and file as with the host quantizer that `quantize_rtn` defines: qf-tiny-5m, W4
// g128 (scale and clip searches), bit for bit.
TEST(Awq, GridOnTheBackendEqualsTheHostQuantizer) {
  auto ck = load_checkpoint(test::hf_dir("qf-tiny-5m"));
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto windows = draw_windows(
      ck->tokenizer->encode(test::slurp(test::text_path("tinystories-val-head")), true), 4, 128, 0);
  ASSERT_TRUE(windows.ok());
  const IntGridSpec grid{4, 128, false, false};
  const FakeQuantizer rtn = [&](int, const std::string&, float* w, int64_t n_out, int64_t n_in,
                                const std::vector<float>&) {
    quantize_rtn(w, n_out, n_in, grid).dequantize_rows(0, n_out, w);
  };
  const std::string dir = test::temp_dir("awq_grid");
  auto host = awq_transform(*ck, *windows, AwqSpec{}, rtn, dir + "/host", nullptr);
  auto be = awq_transform(*ck, *windows, AwqSpec{}, grid, dir + "/be", nullptr);
  ASSERT_TRUE(host.ok() && be.ok());
  EXPECT_EQ(be->points, host->points);
  EXPECT_EQ(be->col_scales, host->col_scales);
  EXPECT_GT(host->clipped_groups, 0) << "no clipping: the clip search's path went untested";
  EXPECT_EQ(be->clipped_groups, host->clipped_groups);
  EXPECT_EQ(test::slurp(dir + "/be/model.safetensors"), test::slurp(dir + "/host/model.safetensors"));
}

TEST(AwqCli, QuantizesLoadsBackAndRecordsTheMethod) {
  const std::string dir = test::temp_dir("awq_out"), m = test::bundled_stories() + "/hf";
  const std::string calib =
      " --calib " + test::text_path("tinystories-val-head") + " --nsamples 4 --seqlen 64";
  std::string err;
  // 8-bit codes: the AWQ layout holds 4-bit only, so the GPTQ layout is written.
  ASSERT_EQ(run("quantize " + m + " -o " + dir + "/w8 --method awq --bits 8 --group -1" + calib, &err), 0)
      << err;
  auto cfg = nlohmann::json::parse(test::slurp(dir + "/w8/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["quant_method"], "gptq");
  EXPECT_EQ(cfg["quantization_config"]["meta"]["method"], "awq");
  EXPECT_EQ(run("eval " + dir + "/w8 --base " + m + " --text " + test::text_path("tinystories-val-head") +
                    " --ctx 64 --max-windows 4",
                &err),
            0)
      << err;
  ASSERT_EQ(
      run("quantize " + m + " -o " + dir + "/q8.gguf --method awq+gptq --format gguf --type Q8_0" + calib,
          &err),
      0)
      << err;
  auto g = load_checkpoint(dir + "/q8.gguf");
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(g->weights.layers[0].linears[kAttnQ].weight.type, QType::Q8_0);
  // Nothing but the outputs is left beside them (the scaled scratch checkpoint is removed).
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 2);
}

TEST(AwqCli, RefusesBeforeSearchingAndLeavesNothing) {
  const std::string dir = test::temp_dir("awq_bad"),
                    m = "quantize " + test::bundled_stories() + "/hf -o " + dir + "/q ";
  const std::string calib =
      " --calib " + test::text_path("tinystories-val-head") + " --nsamples 2 --seqlen 32";
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
