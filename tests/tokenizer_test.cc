// Tokenizers: HF tokenizer.json (merge-ranked) against the same vocabulary stored by llama.cpp
// in GGUF (score-ranked SentencePiece / gpt2 merges): two independent encodings of one
// tokenizer must agree token for token. Plus byte fallback, special tokens, round trips, and
// SentencePiece .model files through libsentencepiece.
#include <gtest/gtest.h>

#include <sentencepiece_trainer.h>

#include "file_builders.h"
#include "io/gguf.h"
#include "io/tokenizer.h"
#include "test_paths.h"

namespace qf {
namespace {

std::unique_ptr<Tokenizer> hf(const std::string& dir) {
  auto t = load_hf_tokenizer(dir + "/tokenizer.json");
  EXPECT_TRUE(t.ok()) << t.status().message();
  return std::move(t).value();
}
std::unique_ptr<Tokenizer> gguf(const std::string& path) {
  auto g = GGUFFile::open(path);
  EXPECT_TRUE(g.ok());
  auto t = load_gguf_tokenizer(*g);
  EXPECT_TRUE(t.ok()) << t.status().message();
  return std::move(t).value();
}

const std::vector<std::string> kSamples = {
    "Once upon a time, there was a little girl.",
    "  two  spaces\tand a tab\nnew line\n\n",
    "Ünïcödé café — naïve “quotes” 日本語 🙂",
    "numbers 12345 and 3.14159, symbols #$%^&*()",
    "",
    " leading space",
};

TEST(Tokenizer, StoriesHfMergesAgreeWithGgufScores) {
  auto a = hf(test::bundled_stories() + "/hf");
  auto b = gguf(test::bundled_stories() + "/stories260K.gguf");
  for (const auto& s : kSamples) EXPECT_EQ(a->encode(s), b->encode(s)) << s;
  std::string text = test::slurp(test::text_path("tinystories-val-head")).substr(0, 200000);
  EXPECT_EQ(a->encode(text), b->encode(text));
}

TEST(Tokenizer, Qf27mHfAgreesWithGgufMerges) {
  auto a = hf(test::qf27m());
  auto b = gguf(test::qf27m() + "/qf-27m-f16.gguf");
  EXPECT_TRUE(a->adds_bos());
  EXPECT_FALSE(b->adds_bos());  // llama.cpp's converter wrote no add_bos_token for this gpt2 vocab
  for (const auto& s : kSamples) EXPECT_EQ(a->encode(s, false), b->encode(s, false)) << s;
  std::string text = test::slurp(test::text_path("wikitext2-test")).substr(0, 300000);
  EXPECT_EQ(a->encode(text, false), b->encode(text, false));
}

TEST(Tokenizer, RoundTrips) {
  auto a = hf(test::bundled_stories() + "/hf");
  auto b = hf(test::qf27m());
  for (const auto& s : kSamples) {
    EXPECT_EQ(b->decode(b->encode(s)), s);
    if (!s.empty() && s[0] != ' ') {
      EXPECT_EQ(a->decode(a->encode(s)), s);
    }  // SPM drops one leading space
  }
}

TEST(Tokenizer, ByteFallbackUsesByteTokens) {
  auto a = hf(test::bundled_stories() + "/hf");
  // "日" is U+65E5 = E6 97 A5 and not in the 512-token vocabulary: three <0xXX> tokens (id 3 + byte).
  auto ids = a->encode("日", false);
  ASSERT_GE(ids.size(), 3u);
  std::vector<int32_t> tail(ids.end() - 3, ids.end());
  EXPECT_EQ(tail, (std::vector<int32_t>{3 + 0xE6, 3 + 0x97, 3 + 0xA5}));
  EXPECT_EQ(a->decode(ids), "日");
}

TEST(Tokenizer, SpecialTokensInTextAndBos) {
  auto b = hf(test::qf27m());
  auto ids = b->encode("a<|end_of_text|>b");
  ASSERT_EQ(ids.front(), 0);  // BOS from the post-processor template
  EXPECT_NE(std::find(ids.begin(), ids.end(), 1), ids.end());
  EXPECT_EQ(b->decode(ids), "ab");  // special tokens are skipped when decoding
}

TEST(Tokenizer, Utf8Check) {
  EXPECT_TRUE(check_utf8("héllo 🙂", "x").ok());
  auto st = check_utf8(std::string("ab\xff", 3), "input.txt");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "input.txt: not UTF-8: invalid byte 0xff at offset 2");
  EXPECT_FALSE(check_utf8(std::string("\xe6\x97", 2), "x").ok());  // truncated sequence
}

TEST(Tokenizer, BadTokenizerJson) {
  std::string dir = test::temp_dir("badtok");
  test::write_file(dir + "/tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})");
  auto t = load_hf_tokenizer(dir + "/tokenizer.json");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("unsupported tokenizer model 'Unigram'"), std::string::npos);
}

TEST(Tokenizer, SentencePieceModelFile) {
  std::string dir = test::temp_dir("spm");
  std::string corpus = dir + "/corpus.txt";
  test::write_file(corpus, test::slurp(test::text_path("tinystories-val-head")).substr(0, 100000));
  auto st = sentencepiece::SentencePieceTrainer::Train("--input=" + corpus + " --model_prefix=" + dir +
                                                       "/tok --vocab_size=400 --model_type=bpe "
                                                       "--byte_fallback=true --minloglevel=2");
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto t = load_sentencepiece_tokenizer(dir + "/tok.model");
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto ids = (*t)->encode("Once upon a time 日本");
  EXPECT_EQ(ids.front(), (*t)->bos_id());
  EXPECT_EQ((*t)->decode(ids), "Once upon a time 日本");
  EXPECT_EQ((*t)->vocab_size(), 400);
  auto bad = load_sentencepiece_tokenizer(corpus);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not a SentencePiece model"), std::string::npos);
}

// Found by fuzz/tokenizer_fuzz.cc: a vocabulary id written as a float (7.96e47) was converted to
// int unchecked (undefined behaviour). Ids must be integers in 0..10^7.
TEST(Tokenizer, IdsThatAreNotSmallIntegersAreRefused) {
  const std::string src = test::bundled_stories() + "/hf/tokenizer.json";
  for (const auto& [bad, shown] : {std::pair{nlohmann::json(7.96167e+47), "7.96167e+47"},
                                   {nlohmann::json(3.5), "3.5"},
                                   {nlohmann::json(-1), "-1"},
                                   {nlohmann::json(uint64_t(1) << 40), "1099511627776"}}) {
    auto tok = nlohmann::json::parse(test::slurp(src));
    tok["model"]["vocab"]["<unk>"] = bad;
    const std::string path = test::temp_dir("tok_bad_id") + "/tokenizer.json";
    test::write_file(path, tok.dump());
    auto t = load_hf_tokenizer(path);
    ASSERT_FALSE(t.ok()) << shown;
    EXPECT_NE(t.status().message().find(std::string("token '<unk>' has id ") + shown +
                                        ", expected an integer in 0..10000000"),
              std::string::npos)
        << t.status().message();
  }
}

}  // namespace
}  // namespace qf
