// Loading HF directories and GGUF files: config styles, shards, biases, and the errors users
// see for broken checkpoints. Uses the bundled stories260K model as raw material.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "file_builders.h"
#include "io/safetensors.h"
#include "model/checkpoint.h"
#include "model/transformer.h"
#include "test_paths.h"

namespace qf {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string stories_hf() { return test::bundled_stories() + "/hf"; }

// A copy of the bundled HF directory whose config.json is edited by `edit`.
std::string copy_with_config(const std::string& name, const std::function<void(json&)>& edit) {
  std::string dir = test::temp_dir(name);
  for (const auto& e : fs::directory_iterator(stories_hf()))
    fs::copy(e.path(), dir + "/" + e.path().filename().string());
  json cfg = json::parse(test::slurp(dir + "/config.json"));
  edit(cfg);
  fs::remove(dir + "/config.json");
  test::write_file(dir + "/config.json", cfg.dump(2));
  return dir;
}

std::vector<float> logits_of(const std::string& path, const std::vector<int32_t>& ids) {
  auto ck = load_checkpoint(path);
  EXPECT_TRUE(ck.ok()) << ck.status().message();
  if (!ck.ok()) return {};
  auto tf = Transformer::create(*ck);
  KVCache cache = (*tf)->new_cache(int(ids.size()));
  std::vector<float> out(ids.size() * size_t(ck->config.vocab_size));
  (*tf)->forward(ids.data(), int(ids.size()), cache, out.data());
  return out;
}

const std::vector<int32_t> kIds = {1, 403, 407, 261, 378, 432, 383};

std::string load_error(const std::string& path) {
  auto ck = load_checkpoint(path);
  return ck.ok() ? "" : ck.status().message();
}

TEST(Checkpoint, OldAndNewConfigStylesAgree) {
  std::string modern = copy_with_config("cfg_new", [](json& c) {
    c["rope_parameters"] = {{"rope_theta", c["rope_theta"]}, {"rope_type", "default"}};
    c.erase("rope_theta");
    c.erase("rope_scaling");
    c["dtype"] = c["torch_dtype"];
    c.erase("torch_dtype");
    c.erase("head_dim");  // derived: 64 / 8
  });
  EXPECT_EQ(logits_of(modern, kIds), logits_of(stories_hf(), kIds));
}

TEST(Checkpoint, ShardedSafetensorsAgree) {
  std::string dir = copy_with_config("sharded", [](json&) {});
  auto st = read_safetensors(dir + "/model.safetensors");
  ASSERT_TRUE(st.ok());
  std::map<std::string, test::F32Tensor> shard[2];
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  int i = 0;
  for (const auto& t : st->tensors) {
    int s = i++ % 2;
    shard[s][t.name] = {t.shape, t.to_f32()};
    index["weight_map"][t.name] = fmt::format("model-0000{}-of-00002.safetensors", s + 1);
  }
  fs::remove(dir + "/model.safetensors");
  for (int s = 0; s < 2; ++s)
    test::write_file(fmt::format("{}/model-0000{}-of-00002.safetensors", dir, s + 1),
                     test::safetensors_bytes(shard[s]));
  test::write_file(dir + "/model.safetensors.index.json", index.dump());
  EXPECT_EQ(logits_of(dir, kIds), logits_of(stories_hf(), kIds));
}

// Qwen2 = LLaMA + q/k/v biases. With zero biases it must reproduce the LLaMA logits; with a
// v bias b, attention outputs shift by b (softmax weights sum to 1), i.e. by W_o·b after o_proj.
TEST(Checkpoint, Qwen2BiasesAreLoadedAndApplied) {
  std::string dir = copy_with_config("qwen2", [](json& c) { c["architectures"] = {"Qwen2ForCausalLM"}; });
  auto st = read_safetensors(dir + "/model.safetensors");
  ASSERT_TRUE(st.ok());
  std::map<std::string, test::F32Tensor> tensors;
  for (const auto& t : st->tensors) tensors[t.name] = {t.shape, t.to_f32()};
  for (int l = 0; l < 5; ++l)
    for (auto [proj, n] : {std::pair{"q", 64}, {"k", 32}, {"v", 32}})
      tensors[fmt::format("model.layers.{}.self_attn.{}_proj.bias", l, proj)] = {
          {n}, std::vector<float>(size_t(n), 0.f)};
  fs::remove(dir + "/model.safetensors");
  test::write_file(dir + "/model.safetensors", test::safetensors_bytes(tensors));
  EXPECT_EQ(logits_of(dir, kIds), logits_of(stories_hf(), kIds));

  // Non-zero q bias changes the result; a missing bias is an error naming the tensor.
  tensors["model.layers.0.self_attn.q_proj.bias"].data.assign(64, 0.5f);
  fs::remove(dir + "/model.safetensors");
  test::write_file(dir + "/model.safetensors", test::safetensors_bytes(tensors));
  EXPECT_NE(logits_of(dir, kIds), logits_of(stories_hf(), kIds));
  tensors.erase("model.layers.3.self_attn.k_proj.bias");
  fs::remove(dir + "/model.safetensors");
  test::write_file(dir + "/model.safetensors", test::safetensors_bytes(tensors));
  EXPECT_NE(load_error(dir).find("missing tensor 'model.layers.3.self_attn.k_proj.bias'"), std::string::npos);
}

// Mistral's sliding window W: with W = 2 each of the 5 layers widens the receptive field by one
// position, so the last logits of a 7-token sequence depend only on its last 6 tokens. RoPE
// scores depend only on relative positions, so running those 6 tokens alone must agree (up
// to fp32 rounding of the different rotation angles), while the full-attention model differs.
TEST(Checkpoint, MistralSlidingWindowLimitsAttention) {
  std::string dir = copy_with_config("mistral", [](json& c) {
    c["architectures"] = {"MistralForCausalLM"};
    c["sliding_window"] = 2;
  });
  const int V = 512;
  auto full = logits_of(dir, kIds);
  auto tail = logits_of(dir, std::vector<int32_t>(kIds.begin() + 1, kIds.end()));
  auto llama = logits_of(stories_hf(), kIds);
  float max_diff_tail = 0, max_diff_llama = 0;
  for (int v = 0; v < V; ++v) {
    max_diff_tail = std::max(max_diff_tail, std::fabs(full[6 * V + v] - tail[5 * V + v]));
    max_diff_llama = std::max(max_diff_llama, std::fabs(full[6 * V + v] - llama[6 * V + v]));
  }
  EXPECT_LT(max_diff_tail, 1e-4f);
  EXPECT_GT(max_diff_llama, 1e-2f);
}

TEST(Checkpoint, HfAndGgufOfStoriesAreTheSameModel) {
  // llama.cpp's converter permutes q/k rows into (2i, 2i+1) RoPE pairs; qforge applies RoPE
  // to match, so the logits agree up to fp32 summation order.
  auto a = logits_of(stories_hf(), kIds), b = logits_of(test::bundled_stories() + "/stories260K.gguf", kIds);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4f * std::max(1.0f, std::fabs(a[i])));
}

TEST(Checkpoint, MissingConfig) {
  std::string dir = test::temp_dir("nocfg");
  EXPECT_NE(load_error(dir).find("missing config.json"), std::string::npos);
}
TEST(Checkpoint, InvalidConfigJson) {
  std::string dir = copy_with_config("badjson", [](json&) {});
  fs::remove(dir + "/config.json");
  test::write_file(dir + "/config.json", "{\"hidden_size\": 64,");
  EXPECT_NE(load_error(dir).find("config.json: not a valid JSON object"), std::string::npos);
}
TEST(Checkpoint, UnsupportedArchitectureListsSupported) {
  std::string dir = copy_with_config("gpt2", [](json& c) { c["architectures"] = {"GPT2LMHeadModel"}; });
  std::string e = load_error(dir);
  EXPECT_NE(e.find("unsupported architecture 'GPT2LMHeadModel'"), std::string::npos) << e;
  EXPECT_NE(e.find("LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"), std::string::npos) << e;
}
TEST(Checkpoint, MissingKey) {
  std::string dir = copy_with_config("nokey", [](json& c) { c.erase("hidden_size"); });
  EXPECT_NE(load_error(dir).find("missing key 'hidden_size'"), std::string::npos);
}
TEST(Checkpoint, WrongTypeForKey) {
  std::string dir = copy_with_config("badkey", [](json& c) { c["num_hidden_layers"] = "five"; });
  EXPECT_NE(load_error(dir).find("'num_hidden_layers' should be a positive integer, found \"five\""),
            std::string::npos);
}
// Wrong-typed quantization_config fields (issue 19's std::terminate cases) are one error naming
// the key and what was found; the config is refused before any tensor is read.
TEST(Checkpoint, WrongTypedQuantizationConfigNamesTheKey) {
  const std::pair<json, std::string> cases[] = {
      {json{{"quant_method", "gptq"}, {"bits", "8"}},
       "quantization_config.bits: expected an integer, found \"8\""},
      {json{{"quant_method", "gptq"}, {"sym", "no"}},
       "quantization_config.sym: expected true or false, found \"no\""},
      {json{{"quant_method", "gptq"}, {"bits", 4.5}},
       "quantization_config.bits: expected an integer in range, found 4.5"},
      {json(nullptr), "quantization_config: expected an object, found null"},
      {json("gptq"), "quantization_config: expected an object, found \"gptq\""},
      {json{{"quant_method", 7}}, "quantization_config.quant_method: expected a string, found 7"},
      {json{{"quant_method", "bitsandbytes"}, {"load_in_8bit", true}, {"llm_int8_threshold", "six"}},
       "quantization_config.llm_int8_threshold: expected a number, found \"six\""},
      {json{{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}, {"bnb_4bit_use_double_quant", 1}},
       "quantization_config.bnb_4bit_use_double_quant: expected true or false, found 1"},
      {json{{"quant_method", "hqq"}},
       "quantization_config.quant_method 'hqq' is not supported (supported: gptq, awq"},
  };
  int k = 0;
  for (const auto& [qc, want] : cases) {
    std::string dir =
        copy_with_config("qcfg" + std::to_string(k++), [&](json& c) { c["quantization_config"] = qc; });
    const std::string e = load_error(dir);
    EXPECT_NE(e.find(want), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

TEST(Checkpoint, ConfigValuesNoModelHasAreRefused) {
  EXPECT_NE(load_error(copy_with_config("eps0", [](json& c) { c["rms_norm_eps"] = 0; }))
                .find("rms_norm_eps 0 should be a number in (0, 1)"),
            std::string::npos);
  EXPECT_NE(
      load_error(copy_with_config("eps-", [](json& c) { c["rms_norm_eps"] = -1e-5; })).find("rms_norm_eps"),
      std::string::npos);
  EXPECT_NE(load_error(copy_with_config("ctx0", [](json& c) { c["max_position_embeddings"] = 0; }))
                .find("max_position_embeddings 0 should be in 1..16777216"),
            std::string::npos);
  EXPECT_NE(load_error(copy_with_config("theta0", [](json& c) { c["rope_theta"] = 0; })).find("rope_theta"),
            std::string::npos);
}

TEST(Checkpoint, ShapeMismatchNamesTensor) {
  std::string dir = copy_with_config("shape", [](json& c) { c["intermediate_size"] = 128; });
  std::string e = load_error(dir);
  EXPECT_NE(
      e.find("tensor 'model.layers.0.mlp.gate_proj.weight' has wrong shape; expected 128x64, got 172x64"),
      std::string::npos)
      << e;
}
TEST(Checkpoint, MissingTokenizer) {
  std::string dir = copy_with_config("notok", [](json&) {});
  fs::remove(dir + "/tokenizer.json");
  EXPECT_NE(load_error(dir).find("missing tokenizer: expected tokenizer.json or tokenizer.model"),
            std::string::npos);
}
TEST(Checkpoint, UnknownRopeTypeNamesTheSupportedOnes) {
  std::string dir = copy_with_config("rope", [](json& c) {
    c["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 8}};
  });
  const std::string e = load_error(dir);
  EXPECT_NE(e.find("config.json: unsupported rope_type 'longrope' (supported: default, linear, dynamic, "
                   "yarn, llama3)"),
            std::string::npos)
      << e;
}
TEST(Checkpoint, Llama3RopeWithoutItsKeysNamesTheKey) {
  std::string dir = copy_with_config("rope3", [](json& c) {
    c["rope_parameters"] = {{"rope_type", "llama3"},
                            {"factor", 8.0},
                            {"rope_theta", 500000.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 2048}};
  });
  const std::string e = load_error(dir);
  EXPECT_NE(e.find("missing key 'low_freq_factor' (needed by rope_type 'llama3')"), std::string::npos) << e;
}
TEST(Checkpoint, RopeFactorOfTheWrongTypeIsAnError) {
  std::string dir = copy_with_config("ropet", [](json& c) {
    c["rope_scaling"] = {{"type", "linear"}, {"factor", "two"}};
  });
  const std::string e = load_error(dir);
  EXPECT_NE(e.find("rope_parameters.factor should be a number, found \"two\""), std::string::npos) << e;
}
TEST(Checkpoint, QNormOfTheWrongSizeNamesTheTensor) {
  // stories260K as a Qwen3 model: q_norm/k_norm of head_dim 8 are expected; give q_norm 16 values.
  std::string dir = copy_with_config("qnorm", [](json& c) { c["architectures"] = {"Qwen3ForCausalLM"}; });
  std::map<std::string, test::F32Tensor> extra;
  for (int l = 0; l < 5; ++l) {
    extra[fmt::format("model.layers.{}.self_attn.q_norm.weight", l)] = {{16}, std::vector<float>(16, 1.0f)};
    extra[fmt::format("model.layers.{}.self_attn.k_norm.weight", l)] = {{8}, std::vector<float>(8, 1.0f)};
  }
  test::write_file(dir + "/extra.safetensors", test::safetensors_bytes(extra));
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  auto base = read_safetensors_dir(stories_hf());
  ASSERT_TRUE(base.ok());
  fs::rename(dir + "/model.safetensors", dir + "/model-1.safetensors");
  for (const auto& [name, t] : *base) index["weight_map"][name] = "model-1.safetensors";
  for (const auto& [name, t] : extra) index["weight_map"][name] = "extra.safetensors";
  test::write_file(dir + "/model.safetensors.index.json", index.dump());
  const std::string e = load_error(dir);
  EXPECT_NE(e.find("tensor 'model.layers.0.self_attn.q_norm.weight' has wrong shape; expected 8, got 16"),
            std::string::npos)
      << e;
}
TEST(Checkpoint, TokenizerIdsBeyondTheEmbeddingAreAnError) {
  std::string dir = copy_with_config("tokids", [](json&) {});
  json tok = json::parse(test::slurp(dir + "/tokenizer.json"));
  tok["added_tokens"].push_back({{"id", 600},
                                 {"content", "<|extra|>"},
                                 {"special", true},
                                 {"single_word", false},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", false}});
  fs::remove(dir + "/tokenizer.json");
  test::write_file(dir + "/tokenizer.json", tok.dump());
  const std::string e = load_error(dir);
  EXPECT_NE(e.find("tokenizer.json: token id 600 is outside the embedding's 512 rows (config vocab_size)"),
            std::string::npos)
      << e;
}
// stories260K's weights rewritten after `edit`, in one file or split over two shards by `shard_of`.
std::string with_tensors(const std::string& name,
                         const std::function<void(std::map<std::string, test::F32Tensor>&)>& edit,
                         const std::function<int(const std::string&)>& shard_of = nullptr) {
  std::string dir = copy_with_config(name, [](json&) {});
  auto st = read_safetensors(dir + "/model.safetensors");
  EXPECT_TRUE(st.ok());
  std::map<std::string, test::F32Tensor> tensors;
  for (const auto& t : st->tensors) tensors[t.name] = {t.shape, t.to_f32()};
  edit(tensors);
  fs::remove(dir + "/model.safetensors");
  if (!shard_of) {
    test::write_file(dir + "/model.safetensors", test::safetensors_bytes(tensors));
    return dir;
  }
  std::map<std::string, test::F32Tensor> shard[2];
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  for (const auto& [n, t] : tensors) {
    shard[shard_of(n)][n] = t;
    index["weight_map"][n] = fmt::format("model-0000{}-of-00002.safetensors", shard_of(n) + 1);
  }
  for (int s = 0; s < 2; ++s)
    test::write_file(fmt::format("{}/model-0000{}-of-00002.safetensors", dir, s + 1),
                     test::safetensors_bytes(shard[s]));
  test::write_file(dir + "/model.safetensors.index.json", index.dump());
  return dir;
}

// A checkpoint is checked as a whole: every tensor in the files is one the config implies.
TEST(Checkpoint, EveryStoredTensorIsOneTheConfigImplies) {
  std::string fewer = copy_with_config("layers4", [](json& c) { c["num_hidden_layers"] = 4; });
  std::string e = load_error(fewer);
  EXPECT_NE(e.find("tensor 'model.layers.4."), std::string::npos) << e;
  EXPECT_NE(e.find("belongs to layer 4, but the config has 4 layers"), std::string::npos) << e;

  e = load_error(with_tensors("extra", [](auto& t) { t["model.vision_tower.weight"] = {{2}, {1, 2}}; }));
  EXPECT_NE(e.find("tensor 'model.vision_tower.weight' (F32 2) is not part of a"), std::string::npos) << e;

  e = load_error(
      with_tensors("tied_head", [](auto& t) { t["lm_head.weight"] = t["model.embed_tokens.weight"]; }));
  EXPECT_NE(e.find("tensor 'lm_head.weight' is stored, but the config ties the output to the embedding"),
            std::string::npos)
      << e;

  // RoPE's inverse frequencies, which older Llama checkpoints store, are known to be harmless.
  EXPECT_EQ(load_error(with_tensors("inv_freq",
                                    [](auto& t) {
                                      t["model.layers.0.self_attn.rotary_emb.inv_freq"] = {{4}, {1, 1, 1, 1}};
                                    })),
            "");
}

TEST(Checkpoint, IntegerTensorsAreNotWeights) {
  const std::string e =
      load_error(with_tensors("int_norm", [](auto& t) { t["model.norm.weight"].as_i32 = true; }));
  EXPECT_NE(e.find("tensor 'model.norm.weight' is I32; expected a float weight"), std::string::npos) << e;
}

// One tensor in two shards (the later used to win) or in a shard the index does not name for it.
TEST(Checkpoint, ShardsMustAgreeWithTheirIndex) {
  std::string dir = with_tensors(
      "dup_shard", [](auto&) {},
      [](const std::string& n) { return n.find("layers.1.") != std::string::npos; });
  auto second = read_safetensors(dir + "/model-00002-of-00002.safetensors");
  ASSERT_TRUE(second.ok());
  std::map<std::string, test::F32Tensor> both;
  for (const auto& t : second->tensors) both[t.name] = {t.shape, t.to_f32()};
  both["model.norm.weight"] = {{64},
                               std::vector<float>(64, 1.0f)};  // also in shard 1, where the index puts it
  fs::remove(dir + "/model-00002-of-00002.safetensors");
  test::write_file(dir + "/model-00002-of-00002.safetensors", test::safetensors_bytes(both));
  const std::string e = load_error(dir);
  EXPECT_NE(e.find("model-00002-of-00002.safetensors: holds tensor 'model.norm.weight', which"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("places in model-00001-of-00002.safetensors"), std::string::npos) << e;
}

// A cache for a million positions costs nothing until positions are stored (generate -n N used to
// allocate all of it up front), and growing it changes no result.
TEST(Transformer, KvCacheGrowsWithUse) {
  auto ck = load_checkpoint(stories_hf());
  ASSERT_TRUE(ck.ok());
  auto tf = Transformer::create(*ck);
  ASSERT_TRUE(tf.ok());
  const size_t row = size_t(ck->config.kv_dim());
  KVCache big = (*tf)->new_cache(1 << 20);
  EXPECT_EQ(big.k[0].size() + big.v[0].size(), 0u);
  std::vector<float> a(size_t(ck->config.vocab_size)), b(a.size());
  (*tf)->forward(kIds.data(), 3, big, a.data(), true);
  EXPECT_EQ(big.k[0].size(), 3 * row);
  (*tf)->forward(kIds.data() + 3, 1, big, a.data(), true);
  EXPECT_EQ(big.k[0].size(), 6 * row);  // doubled
  KVCache exact = (*tf)->new_cache(4);  // the same steps, the whole cache reached at once
  (*tf)->forward(kIds.data(), 3, exact, b.data(), true);
  (*tf)->forward(kIds.data() + 3, 1, exact, b.data(), true);
  EXPECT_EQ(exact.k[0].size(), 4 * row);
  EXPECT_EQ(a, b);
}

TEST(Checkpoint, GgufShapeErrorsNameTheFile) {
  std::string bytes = test::slurp(test::bundled_stories() + "/stories260K.gguf");
  const size_t at = bytes.find("output_norm.weight");
  ASSERT_NE(at, std::string::npos);
  const size_t ne0 =
      at + std::strlen("output_norm.weight") + 4;  // after the name: u32 n_dims, then i64 ne[0]
  int64_t dim = 0;
  std::memcpy(&dim, bytes.data() + ne0, 8);
  ASSERT_EQ(dim, 64);
  dim = 32;
  std::memcpy(bytes.data() + ne0, &dim, 8);
  const std::string path = test::temp_dir("gguf_shape") + "/narrow.gguf";
  test::write_file(path, bytes);
  const std::string e = load_error(path);
  EXPECT_EQ(e, path + ": tensor 'output_norm.weight' has wrong shape; expected 64, got 32");
}

TEST(Checkpoint, MissingPath) {
  EXPECT_NE(load_error("/nonexistent/model.gguf").find("no such file or directory"), std::string::npos);
}

}  // namespace
}  // namespace qf
