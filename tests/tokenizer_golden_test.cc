// The real Llama-3 and Qwen3 tokenizers against HF `tokenizers` (../shared/tokenizers/
// tokenizer_golden.json, encoded without special tokens): every id of the tricky strings and of
// the shared texts' first and last 256 tokens, the texts' token counts, and decoding back.
#include <gtest/gtest.h>

#include "io/tokenizer.h"
#include "test_paths.h"

namespace qf {
namespace {

using nlohmann::json;

class RealTokenizer : public ::testing::TestWithParam<std::string> {
 protected:
  static json golden() {
    return json::parse(test::slurp(test::shared_dir() + "/tokenizers/tokenizer_golden.json"));
  }
  std::unique_ptr<Tokenizer> load() const {
    auto t = load_hf_tokenizer(test::shared_dir() + "/tokenizers/" + GetParam() + "/tokenizer.json");
    EXPECT_TRUE(t.ok()) << t.status().message();
    return t.ok() ? std::move(t).value() : nullptr;
  }
};

TEST_P(RealTokenizer, TrickyStringsGiveHfIdsAndDecodeBack) {
  auto tok = load();
  ASSERT_TRUE(tok);
  for (const auto& s : golden()[GetParam()]["strings"]) {
    const std::string text = s["text"];
    const auto ids = tok->encode(text, false);
    EXPECT_EQ(ids, s["ids"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(tok->decode(ids, false), s["decoded"].get<std::string>()) << text;
    EXPECT_EQ(tok->decode(ids, false), text);
  }
}

TEST_P(RealTokenizer, SharedTextsGiveHfIds) {
  auto tok = load();
  ASSERT_TRUE(tok);
  for (const auto& [name, g] : golden()[GetParam()]["texts"].items()) {
    const std::string text = test::slurp(test::text_path(name));
    const auto ids = tok->encode(text, false);
    ASSERT_EQ(int64_t(ids.size()), g["n_tokens"].get<int64_t>()) << name;
    const auto first = g["first_256"].get<std::vector<int32_t>>(),
               last = g["last_256"].get<std::vector<int32_t>>();
    EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + long(first.size())), first) << name;
    EXPECT_EQ(std::vector<int32_t>(ids.end() - long(last.size()), ids.end()), last) << name;
    EXPECT_EQ(tok->decode(ids, false), text) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, RealTokenizer, ::testing::Values("llama3", "qwen3"));

}  // namespace
}  // namespace qf

namespace qf {
namespace {

// Qwen3's tokenizer.json normalizes to NFC: "e" + U+0301 COMBINING ACUTE is "é" (U+00E9) by
// Unicode's canonical composition, so both spellings give the same ids. Llama 3 has no normalizer.
TEST(RealTokenizerNfc, Qwen3ComposesCombiningMarksLlama3DoesNot) {
  for (const char* family : {"qwen3", "llama3"}) {
    auto tok = load_hf_tokenizer(test::shared_dir() + "/tokenizers/" + family + "/tokenizer.json");
    ASSERT_TRUE(tok.ok()) << tok.status().message();
    const auto composed = (*tok)->encode("caf\xC3\xA9 au lait", false),
               decomposed = (*tok)->encode("cafe\xCC\x81 au lait", false);
    if (std::string(family) == "qwen3")
      EXPECT_EQ(decomposed, composed);
    else
      EXPECT_NE(decomposed, composed);
  }
}

}  // namespace
}  // namespace qf
