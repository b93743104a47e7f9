// Every quantization method on the wave-2 architectures (Llama 3.1-style RoPE scaling; Qwen3's
// q/k norms and head_dim ≠ hidden/heads): each result loads back and is evaluated against its base
// (KL divergence on WikiText-2, 4 windows of 512). No reference values exist for these models, so
// the checks are orderings that hold for any sound implementation: LLM.int8()'s 8-bit rows stay
// below every 4-bit method, and every method — QuIP#'s 2-bit lattice too — stays below
// round-to-nearest at 2 bits (W2 g128), the coarsest grid, measured in the same test.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "file_builders.h"
#include "test_paths.h"

namespace qf {
namespace {

double kl_against_base(const std::string& qmodel, const std::string& base) {
  int status = 0;
  const std::string out =
      test::qforge_stdout(fmt::format("eval {} --base {} --text {} --ctx 512 --max-windows 4 --json", qmodel,
                                      base, test::text_path("wikitext2-test")),
                          &status);
  EXPECT_EQ(status, 0) << qmodel;
  if (status != 0) return NAN;
  const auto j = nlohmann::json::parse(out);
  EXPECT_TRUE(j["ppl"].is_number()) << qmodel;
  return j["kld"].get<double>();
}

class EveryMethod : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryMethod, LoadsBackAndOrdersAsExpected) {
  const std::string base = test::model_dir(GetParam()), dir = test::temp_dir("w2_methods_" + GetParam());
  const std::string calib = " --calib " + test::shared_dir() + "/data/calib-wiki.txt --nsamples 8";
  const std::string im = dir + "/imatrix.dat";
  ASSERT_EQ(test::run_qforge(fmt::format("imatrix {}{} -o {} --chunks 4", base,
                                         calib.substr(0, calib.find(" --nsamples")), im),
                             dir),
            0);
  const std::pair<const char*, std::string> methods[] = {
      {"rtn-w2", "--method rtn --bits 2 --group 128"},
      {"llm-int8", "--method llm-int8"},
      {"rtn-w4", "--method rtn --bits 4 --group 128"},
      {"nf4", "--method nf4"},
      {"gptq-w4", "--method gptq --bits 4 --group 128" + calib},
      {"awq-w4", "--method awq --bits 4 --group 128" + calib},
      {"quip#-2", "--method quip# --bits 2" + calib},
      {"Q4_K_M.gguf", "--format gguf --type Q4_K_M"},
      {"Q4_K_M-imatrix.gguf", "--format gguf --type Q4_K_M --imatrix " + im},
      {"Q4_K_M-gptq.gguf", "--format gguf --type Q4_K_M --method gptq" + calib},
  };
  std::map<std::string, double> kl;
  for (const auto& [name, args] : methods) {
    const std::string out = dir + "/" + name;
    std::string err;
    ASSERT_EQ(test::run_qforge(fmt::format("quantize {} -o {} {}", base, out, args), dir, &err), 0)
        << name << ": " << err;
    kl[name] = kl_against_base(out, base);
    std::printf("%s %s: KL %.5f\n", GetParam().c_str(), name, kl[name]);
    ASSERT_TRUE(std::isfinite(kl[name])) << name;
  }
  for (const auto& [name, v] : kl) {
    if (name != "rtn-w2") {
      EXPECT_LT(v, kl["rtn-w2"]) << name;
    }
    if (name != "llm-int8" && name != "rtn-w2") {
      EXPECT_LT(kl["llm-int8"], v) << name;
    }
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Wave2, EveryMethod, ::testing::Values("qf-llama3-9m", "qf-qwen3-9m"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (!std::isalnum(uint8_t(ch))) ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace qf
