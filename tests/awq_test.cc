// AWQ on the bundled model: the folded (scaled, unclipped) checkpoint computes the original
// function within fp32 rounding; `qforge quantize --method awq` end to end and its refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "awq_fold.h"
#include "file_builders.h"
#include "test_paths.h"

namespace qf {
namespace {

int run(const std::string& args, std::string* err = nullptr) {
  std::string log = test::temp_dir("awq_cli") + "/err";
  int status = std::system((test::qforge_bin() + " " + args + " >/dev/null 2>" + log).c_str());
  if (err) *err = test::slurp(log);
  return WEXITSTATUS(status);
}

TEST(Awq, FoldedStories260KComputesTheSameFunction) {
  test::expect_folding_preserves_the_function(test::bundled_stories() + "/hf", test::text_path("tinystories-val-head"), 8, 64);
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
