// Writes a random-weight Hugging Face checkpoint of a real model's exact shape, for speed and
// memory measurements only (the weights are N(0, 0.02²) bf16, norms 1: meaningless text comes
// out). The config is the real model's (architecture, dimensions, RoPE and its scaling, tied or
// not, biases); the tokenizer is the real family's, copied from ../shared/tokenizers/. Tensors
// are written in shards of four decoder blocks (the embedding, final norm and head in the first)
// with model.safetensors.index.json, as transformers saves them; one tensor is in memory at a time.
//
// Usage: qforge_make_shape SHAPE OUT_DIR [--layers N] [--tokenizers DIR]
//   SHAPE: llama-3.2-1b | llama-3-8b | qwen2.5-7b;  --layers: the first N blocks only (quick runs);
//   --tokenizers: the folder holding llama3/ and qwen3/ (default ../shared/tokenizers beside the
//   source tree, or $QFORGE_SHARED/tokenizers).
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "core/half.h"
#include "io/safetensors.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Shape {
  json config;            // config.json as the model's own repository has it (the fields qforge reads)
  std::string tokenizer;  // folder under tokenizers/
  bool qkv_bias = false;
};

// The published configs (huggingface.co/meta-llama/Llama-3.2-1B, meta-llama/Meta-Llama-3-8B,
// Qwen/Qwen2.5-7B config.json).
std::map<std::string, Shape> shapes() {
  const json llama = {{"architectures", {"LlamaForCausalLM"}},
                      {"model_type", "llama"},
                      {"hidden_act", "silu"},
                      {"rms_norm_eps", 1e-5},
                      {"rope_theta", 500000.0},
                      {"bos_token_id", 128000},
                      {"eos_token_id", 128001},
                      {"vocab_size", 128256},
                      {"attention_bias", false},
                      {"mlp_bias", false},
                      {"torch_dtype", "bfloat16"}};
  json l1b = llama, l8b = llama;
  l1b.update({{"hidden_size", 2048},
              {"intermediate_size", 8192},
              {"num_hidden_layers", 16},
              {"num_attention_heads", 32},
              {"num_key_value_heads", 8},
              {"head_dim", 64},
              {"max_position_embeddings", 131072},
              {"tie_word_embeddings", true},
              {"rope_scaling",
               {{"rope_type", "llama3"},
                {"factor", 32.0},
                {"low_freq_factor", 1.0},
                {"high_freq_factor", 4.0},
                {"original_max_position_embeddings", 8192}}}});
  l8b.update({{"hidden_size", 4096},
              {"intermediate_size", 14336},
              {"num_hidden_layers", 32},
              {"num_attention_heads", 32},
              {"num_key_value_heads", 8},
              {"head_dim", 128},
              {"max_position_embeddings", 8192},
              {"tie_word_embeddings", false}});
  const json qwen = {{"architectures", {"Qwen2ForCausalLM"}},
                     {"model_type", "qwen2"},
                     {"hidden_act", "silu"},
                     {"hidden_size", 3584},
                     {"intermediate_size", 18944},
                     {"num_hidden_layers", 28},
                     {"num_attention_heads", 28},
                     {"num_key_value_heads", 4},
                     {"max_position_embeddings", 131072},
                     {"rms_norm_eps", 1e-6},
                     {"rope_theta", 1000000.0},
                     {"bos_token_id", 151643},
                     {"eos_token_id", 151643},
                     {"vocab_size", 152064},
                     {"tie_word_embeddings", false},
                     {"torch_dtype", "bfloat16"}};
  return {{"llama-3.2-1b", {l1b, "llama3", false}},
          {"llama-3-8b", {l8b, "llama3", false}},
          {"qwen2.5-7b", {qwen, "qwen3", true}}};
}

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  bool ones = false;  // a norm
};

// The tensors of shard s (0: embedding, final norm, head; then four blocks each).
std::vector<std::vector<Tensor>> shards_of(const Shape& sh, int layers) {
  const json& c = sh.config;
  const int64_t H = c["hidden_size"], FF = c["intermediate_size"], V = c["vocab_size"];
  const int64_t NH = c["num_attention_heads"], NKV = c["num_key_value_heads"];
  const int64_t HD = c.contains("head_dim") ? c["head_dim"].get<int64_t>() : H / NH;
  std::vector<std::vector<Tensor>> shards{
      {{"model.embed_tokens.weight", {V, H}}, {"model.norm.weight", {H}, true}}};
  if (!c["tie_word_embeddings"].get<bool>()) shards[0].push_back({"lm_head.weight", {V, H}});
  for (int l = 0; l < layers; ++l) {
    if (l % 4 == 0) shards.emplace_back();
    const std::string p = fmt::format("model.layers.{}.", l);
    auto& t = shards.back();
    t.push_back({p + "self_attn.q_proj.weight", {NH * HD, H}});
    t.push_back({p + "self_attn.k_proj.weight", {NKV * HD, H}});
    t.push_back({p + "self_attn.v_proj.weight", {NKV * HD, H}});
    if (sh.qkv_bias)
      for (const char* b : {"q", "k", "v"})
        t.push_back({p + "self_attn." + b + "_proj.bias", {(*b == 'q' ? NH : NKV) * HD}});
    t.push_back({p + "self_attn.o_proj.weight", {H, NH * HD}});
    t.push_back({p + "mlp.gate_proj.weight", {FF, H}});
    t.push_back({p + "mlp.up_proj.weight", {FF, H}});
    t.push_back({p + "mlp.down_proj.weight", {H, FF}});
    t.push_back({p + "input_layernorm.weight", {H}, true});
    t.push_back({p + "post_attention_layernorm.weight", {H}, true});
  }
  return shards;
}

// N(0, 0.02²) in bf16 (Box–Muller on a splitmix64 stream per chunk of 64 Ki values: the same
// file whatever the thread count), or ones.
std::vector<uint16_t> values(const Tensor& t, uint64_t seed) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  std::vector<uint16_t> v(static_cast<size_t>(n), qf::f32_to_bf16(1.0f));
  if (t.ones) return v;
  constexpr int64_t kChunk = 1 << 16;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    uint64_t s = seed ^ (uint64_t(c0) * 0x9E3779B97F4A7C15ull);
    auto next = [&] {  // splitmix64, 53 bits into (0, 1)
      uint64_t z = (s += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      return (double((z ^ (z >> 31)) >> 11) + 0.5) * 0x1.0p-53;
    };
    for (int64_t i = c0; i < std::min(n, c0 + kChunk); i += 2) {
      const double r = 0.02 * std::sqrt(-2 * std::log(next())), a = 2 * M_PI * next();
      v[size_t(i)] = qf::f32_to_bf16(float(r * std::cos(a)));
      if (i + 1 < n) v[size_t(i + 1)] = qf::f32_to_bf16(float(r * std::sin(a)));
    }
  }
  return v;
}

int fail(const std::string& msg) {
  fmt::print(stderr, "qforge_make_shape: {}\n", msg);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const auto all = shapes();
  std::string tok_root = std::getenv("QFORGE_SHARED")
                             ? std::string(std::getenv("QFORGE_SHARED")) + "/tokenizers"
                             : std::string(QFORGE_SOURCE_DIR) + "/../shared/tokenizers";
  int layers = -1;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--layers" && i + 1 < argc)
      layers = std::atoi(argv[++i]);
    else if (a == "--tokenizers" && i + 1 < argc)
      tok_root = argv[++i];
    else
      pos.push_back(a);
  }
  if (pos.size() != 2 || !all.count(pos[0]))
    return fail(
        "usage: qforge_make_shape llama-3.2-1b|llama-3-8b|qwen2.5-7b OUT_DIR [--layers N] [--tokenizers "
        "DIR]");
  Shape sh = all.at(pos[0]);
  const std::string out = pos[1], tok = tok_root + "/" + sh.tokenizer;
  if (fs::exists(out)) return fail(out + ": exists; refusing to overwrite it");
  if (!fs::exists(tok + "/tokenizer.json"))
    return fail(tok + "/tokenizer.json: not found (see --tokenizers)");
  const int n_layer = sh.config["num_hidden_layers"];
  if (layers < 0 || layers > n_layer) layers = n_layer;
  sh.config["num_hidden_layers"] = layers;

  const std::string tmp = out + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  const auto shards = shards_of(sh, layers);
  json weight_map = json::object();
  int64_t total = 0;
  uint64_t seed = 1;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
    std::vector<qf::SafetensorsWriter::Entry> entries;
    for (const Tensor& t : shards[s]) entries.push_back({t.name, "BF16", t.shape});
    auto w = qf::SafetensorsWriter::create(tmp + "/" + file, entries, {{"format", "pt"}});
    if (!w.ok()) return fail(w.status().message());
    for (const Tensor& t : shards[s]) {  // in the declared order (the writer places them)
      const std::vector<uint16_t> v = values(t, seed++ * 0xD1B54A32D192ED03ull);
      if (auto st = (*w)->write(t.name, v.data(), v.size() * 2); !st.ok()) return fail(st.message());
      weight_map[t.name] = file;
      total += int64_t(v.size()) * 2;
    }
    if (auto st = (*w)->finish(); !st.ok()) return fail(st.message());
  }
  const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  std::FILE* f = std::fopen((tmp + "/model.safetensors.index.json").c_str(), "w");
  std::FILE* g = std::fopen((tmp + "/config.json").c_str(), "w");
  if (!f || !g) return fail(tmp + ": cannot write the index or config");
  fmt::print(f, "{}\n", index.dump(1));
  fmt::print(g, "{}\n", sh.config.dump(1));
  std::fclose(f);
  std::fclose(g);
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"})
    if (fs::exists(tok + "/" + name)) {
      fs::copy_file(tok + "/" + name, tmp + "/" + name);
      fs::permissions(tmp + "/" + name, fs::perms::owner_write,
                      fs::perm_options::add);  // shared/ is read-only
    }
  fs::rename(tmp, out);
  fmt::print("wrote {}: {} ({} of {} blocks), {:.2f} GiB of bf16 weights in {} shards\n", out, pos[0], layers,
             n_layer, double(total) / double(1 << 30), shards.size());
  return 0;
}
