#include "model/checkpoint.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <set>

#include "core/mapped_file.h"
#include "core/progress.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/hf_layouts.h"
#include "model/rope.h"

namespace qf {

const LinearTensors& LayerWeights::linear(const std::string& kind) const {
  const auto id = linear_id(kind);
  QF_CHECK(id.has_value(), "no Linear named {} in a decoder block", kind);
  return linears[*id];
}
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Where tensors come from, and how that source names each role.
struct TensorSource {
  std::function<Expected<TensorView>(const std::string&)> find;
  std::string embd, out_norm, output;
  // A block tensor: `hf` and `gguf` are the layer_spec names of the role, `part` ".weight"/".bias".
  std::function<std::string(int layer, const char* hf, const char* gguf, const char* part)> layer_name;
  std::set<std::string> used;  // every tensor the model takes
  std::string where;           // the directory or file, for messages

  Expected<TensorView> get(const std::string& name) {
    auto t = find(name);
    if (t.ok()) used.insert(name);
    return t;
  }
};

Expected<TensorView> fetch(TensorSource& src, const std::string& name, std::vector<int64_t> shape) {
  QF_ASSIGN_OR_RETURN(auto t, src.get(name));
  if (is_raw_integer(t.type))
    return error("{}: tensor '{}' is {}; expected a float weight (F32, F16, BF16) or a GGUF block type",
                 src.where, name, traits(t.type).name);
  if (t.shape != shape) {
    TensorView want;
    want.shape = shape;
    return error("{}: tensor '{}' has wrong shape; expected {}, got {}", src.where, name, want.shape_str(),
                 t.shape_str());
  }
  return t;
}

// Fetches one Linear `prefix` (n_out, n_in): dense `prefix.weight`, or the parts of the
// checkpoint's layout when `quant` says it is quantized (for lm_head, when the parts are there).
Status fetch_linear(TensorSource& src, const QuantizationConfig& quant, const std::string& prefix,
                    int64_t n_out, int64_t n_in, bool maybe_dense, LinearTensors& dst) {
  dst.prefix = prefix;
  dst.n_out = n_out;
  dst.n_in = n_in;
  if (quant.method.empty() || (maybe_dense && !src.find(prefix + hf_layout(quant).parts(quant)[0]).ok())) {
    QF_ASSIGN_OR_RETURN(dst.weight, fetch(src, prefix + ".weight", {n_out, n_in}));
    return {};
  }
  for (const auto& part : hf_layout(quant).parts(quant)) {  // shapes are checked when the parts are unpacked
    QF_ASSIGN_OR_RETURN(dst.parts[part], src.get(prefix + part));
  }
  if (auto f = src.get(prefix + ".weight_format"); f.ok()) dst.parts[".weight_format"] = *f;
  return {};
}

Status map_weights(TensorSource& src, const ModelConfig& c, const QuantizationConfig& quant,
                   ModelWeights& w) {
  const int64_t E = c.n_embd, V = c.vocab_size;
  QF_ASSIGN_OR_RETURN(w.tok_embd, fetch(src, src.embd, {V, E}));
  QF_ASSIGN_OR_RETURN(w.output_norm, fetch(src, src.out_norm, {E}));
  if (c.tied_embeddings) {
    w.output.prefix = src.embd.substr(0, src.embd.size() - 7);
    w.output.n_out = V;
    w.output.n_in = E;
    w.output.weight = w.tok_embd;
  } else {
    QF_RETURN_IF_ERROR(
        fetch_linear(src, quant, src.output.substr(0, src.output.size() - 7), V, E, true, w.output));
  }
  w.layers.resize(size_t(c.n_layer));
  for (int i = 0; i < c.n_layer; ++i) {
    auto& L = w.layers[size_t(i)];
    for (int k = 0; k < kNumNorms; ++k) {
      const NormSpec& n = kBlockNorms[k];
      if (!has_norm(c, NormId(k))) continue;
      QF_ASSIGN_OR_RETURN(L.norms[k],
                          fetch(src, src.layer_name(i, n.hf, n.name, ".weight"), {dim(c, n.size)}));
    }
    for (int k = 0; k < kNumLinears; ++k) {
      const LinearSpec& l = kBlockLinears[k];
      const int64_t n_out = dim(c, l.out), n_in = dim(c, l.in);
      const std::string weight = src.layer_name(i, l.hf, l.name, ".weight");
      QF_RETURN_IF_ERROR(
          fetch_linear(src, quant, weight.substr(0, weight.size() - 7), n_out, n_in, false, L.linears[k]));
      if (has_bias(c, LinearId(k))) {
        QF_ASSIGN_OR_RETURN(L.linears[k].bias, fetch(src, src.layer_name(i, l.hf, l.name, ".bias"), {n_out}));
      }
    }
  }
  return {};
}

// Every tensor of the files is one the model takes, or one `harmless` names: a tensor left over
// is a checkpoint the config does not describe (more layers than num_hidden_layers, another
// architecture's weights, a quantized layout the config does not declare).
Status check_all_used(const std::string& where, const std::vector<TensorView>& all, const TensorSource& src,
                      const ModelConfig& c, const std::function<bool(const std::string&)>& harmless) {
  for (const auto& t : all) {
    if (src.used.count(t.name) || harmless(t.name)) continue;
    int layer = -1;
    if (std::sscanf(t.name.c_str(), "model.layers.%d.", &layer) == 1 ||
        std::sscanf(t.name.c_str(), "blk.%d.", &layer) == 1)
      if (layer >= c.n_layer)
        return error("{}: tensor '{}' belongs to layer {}, but the config has {} layers", where, t.name,
                     layer, c.n_layer);
    if (c.tied_embeddings && (t.name == "lm_head.weight" || t.name == "output.weight"))
      return error(
          "{}: tensor '{}' is stored, but the config ties the output to the embedding (tie_word_embeddings)",
          where, t.name);
    return error("{}: tensor '{}' ({} {}) is not part of a {} model as the config describes it", where,
                 t.name, traits(t.type).name, t.shape_str(), arch_label(c.arch));
  }
  return {};
}

// ---- Hugging Face directories ------------------------------------------------------------

Expected<int> positive_int(const std::string& path, const json& cfg, const char* key) {
  if (!cfg.contains(key)) return error("{}: missing key '{}'", path, key);
  if (!cfg[key].is_number_integer() || cfg[key].get<int64_t>() <= 0 || cfg[key].get<int64_t>() > (1 << 30))
    return error("{}: key '{}' should be a positive integer, found {}", path, key, cfg[key].dump());
  return cfg[key].get<int>();
}

int first_id(const json& v) {
  if (v.is_number_integer()) return v.get<int>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int>();
  return -1;
}

// A number under `key` of `obj` (the rope parameters), or `fallback` when absent or null.
Expected<double> rope_number(const std::string& path, const json& obj, const char* key, double fallback,
                             bool required) {
  if (!obj.contains(key) || obj[key].is_null()) {
    if (required)
      return error("{}: rope_parameters: missing key '{}' (needed by rope_type '{}')", path, key,
                   obj.value("rope_type", obj.value("type", std::string("?"))));
    return fallback;
  }
  if (!obj[key].is_number())
    return error("{}: rope_parameters.{} should be a number, found {}", path, key, obj[key].dump());
  return obj[key].get<double>();
}

// RoPE base and scaling from either config style: transformers ≥ 5 `rope_parameters` (theta
// inside), or `rope_theta` + `rope_scaling` (`rope_type`, or `type` in older files).
Status parse_hf_rope(const std::string& path, const json& cfg, ModelConfig& c) {
  json rope = json::object();
  for (const char* key : {"rope_parameters", "rope_scaling"})
    if (cfg.contains(key) && cfg[key].is_object()) {
      rope = cfg[key];
      break;
    }
  const std::string type = rope.value("rope_type", rope.value("type", std::string("default")));
  static const std::pair<const char*, RopeKind> kKinds[] = {{"default", RopeKind::Default},
                                                            {"linear", RopeKind::Linear},
                                                            {"dynamic", RopeKind::Dynamic},
                                                            {"yarn", RopeKind::Yarn},
                                                            {"llama3", RopeKind::Llama3}};
  const auto kind =
      std::find_if(std::begin(kKinds), std::end(kKinds), [&](const auto& k) { return type == k.first; });
  if (kind == std::end(kKinds))
    return error("{}: unsupported rope_type '{}' (supported: default, linear, dynamic, yarn, llama3)", path,
                 type);
  RopeScaling& r = c.rope;
  r.kind = kind->second;
  const bool scaled = r.kind != RopeKind::Default, llama3 = r.kind == RopeKind::Llama3;
  QF_ASSIGN_OR_RETURN(double theta, rope_number(path, rope, "rope_theta", 10000.0, false));
  if (cfg.contains("rope_theta") && !cfg["rope_theta"].is_null()) {
    QF_ASSIGN_OR_RETURN(theta, rope_number(path, cfg, "rope_theta", theta, false));
  }
  c.rope_theta = float(theta);
  QF_ASSIGN_OR_RETURN(double factor,
                      rope_number(path, rope, "factor", 1.0, scaled && r.kind != RopeKind::Yarn));
  QF_ASSIGN_OR_RETURN(double low, rope_number(path, rope, "low_freq_factor", 1.0, llama3));
  QF_ASSIGN_OR_RETURN(double high, rope_number(path, rope, "high_freq_factor", 4.0, llama3));
  QF_ASSIGN_OR_RETURN(double orig, rope_number(path, rope, "original_max_position_embeddings", 0, llama3));
  QF_ASSIGN_OR_RETURN(double fast, rope_number(path, rope, "beta_fast", 32, false));
  QF_ASSIGN_OR_RETURN(double slow, rope_number(path, rope, "beta_slow", 1, false));
  QF_ASSIGN_OR_RETURN(double attention, rope_number(path, rope, "attention_factor", 0, false));
  QF_ASSIGN_OR_RETURN(double mscale, rope_number(path, rope, "mscale", 0, false));
  QF_ASSIGN_OR_RETURN(double mscale_all, rope_number(path, rope, "mscale_all_dim", 0, false));
  if (r.kind == RopeKind::Yarn && !rope.contains("factor")) {  // HF: the ratio of the two contexts
    if (!(orig > 0))
      return error("{}: rope_type 'yarn' needs factor or original_max_position_embeddings", path);
    factor = c.max_ctx / orig;
  }
  if (!(orig >= 0 && orig <= (1 << 30)))
    return error("{}: original_max_position_embeddings {} is out of range", path, orig);
  r.factor = float(factor);
  r.low_freq_factor = float(low);
  r.high_freq_factor = float(high);
  r.original_ctx = int(orig);
  r.beta_fast = float(fast);
  r.beta_slow = float(slow);
  r.attention_factor = float(attention);
  r.mscale = float(mscale);
  r.mscale_all_dim = float(mscale_all);
  r.truncate = rope.value("truncate", true);
  QF_RETURN_IF_ERROR(check_config_ranges(c, path));
  return check_rope(c, path);
}

Expected<ModelConfig> parse_hf_config(const std::string& path, const json& cfg) {
  ModelConfig c;
  std::string arch;
  if (cfg.contains("architectures") && cfg["architectures"].is_array() && !cfg["architectures"].empty())
    arch = cfg["architectures"][0].get<std::string>();
  else
    arch = cfg.value("model_type", "");
  const ArchInfo* info = find_arch(arch);
  if (!info) return error("{}: unsupported architecture '{}' (supported: {})", path, arch, supported_archs());
  c.arch = info->arch;
  c.arch_name = arch;
  c.qk_norm = info->qk_norm;
  QF_ASSIGN_OR_RETURN(c.n_embd, positive_int(path, cfg, "hidden_size"));
  QF_ASSIGN_OR_RETURN(c.n_ff, positive_int(path, cfg, "intermediate_size"));
  QF_ASSIGN_OR_RETURN(c.n_layer, positive_int(path, cfg, "num_hidden_layers"));
  QF_ASSIGN_OR_RETURN(c.n_head, positive_int(path, cfg, "num_attention_heads"));
  QF_ASSIGN_OR_RETURN(c.vocab_size, positive_int(path, cfg, "vocab_size"));
  c.n_head_kv = c.n_head;
  if (cfg.contains("num_key_value_heads") && !cfg["num_key_value_heads"].is_null()) {
    QF_ASSIGN_OR_RETURN(c.n_head_kv, positive_int(path, cfg, "num_key_value_heads"));
  }
  if (c.n_head % c.n_head_kv != 0)
    return error("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", path, c.n_head,
                 c.n_head_kv);
  if (cfg.contains("head_dim") && !cfg["head_dim"].is_null()) {
    QF_ASSIGN_OR_RETURN(c.head_dim, positive_int(path, cfg, "head_dim"));
  } else {
    if (c.n_embd % c.n_head != 0)
      return error("{}: hidden_size {} is not a multiple of num_attention_heads {} and head_dim is not given",
                   path, c.n_embd, c.n_head);
    c.head_dim = c.n_embd / c.n_head;
  }
  if (c.head_dim % 2 != 0) return error("{}: head_dim {} must be even for RoPE", path, c.head_dim);
  c.max_ctx = cfg.value("max_position_embeddings", 2048);
  if (c.arch == Arch::Mistral && cfg.contains("sliding_window") && cfg["sliding_window"].is_number_integer())
    c.sliding_window = std::max(0, cfg["sliding_window"].get<int>());
  c.rms_eps = cfg.value("rms_norm_eps", 1e-6f);
  QF_RETURN_IF_ERROR(parse_hf_rope(path, cfg, c));
  c.tied_embeddings = cfg.value("tie_word_embeddings", false);
  bool attention_bias = cfg.value("attention_bias", false);
  c.qkv_bias = info->qkv_bias || attention_bias;
  c.o_bias = attention_bias;
  c.mlp_bias = cfg.value("mlp_bias", false);
  if (c.mlp_bias) return error("{}: mlp_bias=true is not supported", path);
  c.bos_id = cfg.contains("bos_token_id") ? first_id(cfg["bos_token_id"]) : -1;
  c.eos_id = cfg.contains("eos_token_id") ? first_id(cfg["eos_token_id"]) : -1;
  c.source_dtype = cfg.value("dtype", cfg.value("torch_dtype", std::string("unknown")));
  return c;
}

Expected<Checkpoint> load_hf(const std::string& dir) {
  Checkpoint ck;
  ck.path = dir;
  ck.format = "hf";
  std::string cfg_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(cfg_path)) return error("{}: missing config.json (expected an HF model directory)", dir);
  QF_ASSIGN_OR_RETURN(auto cfg_text, read_text_file(cfg_path));
  json cfg = json::parse(cfg_text, nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) return error("{}: not a valid JSON object", cfg_path);
  try {
    QF_ASSIGN_OR_RETURN(ck.config, parse_hf_config(cfg_path, cfg));
  } catch (const json::exception& e) {
    return error("{}: unexpected value type: {}", cfg_path, e.what());
  }
  for (auto it = cfg.begin(); it != cfg.end(); ++it)
    if (!it->is_object() && !it->is_array()) ck.metadata.emplace_back(it.key(), it->dump());
  QF_ASSIGN_OR_RETURN(auto tensors, read_safetensors_dir(dir));
  for (const auto& [name, t] : tensors) ck.all_tensors.push_back(t);
  TensorSource src;
  src.find = [&](const std::string& n) -> Expected<TensorView> {
    auto it = tensors.find(n);
    if (it == tensors.end()) return error("{}: missing tensor '{}'", dir, n);
    return it->second;
  };
  src.where = dir;
  src.embd = "model.embed_tokens.weight";
  src.out_norm = "model.norm.weight";
  src.output = "lm_head.weight";
  src.layer_name = [](int i, const char* hf, const char*, const char* part) {
    return fmt::format("model.layers.{}.{}{}", i, hf, part);
  };
  if (cfg.contains("quantization_config"))
    QF_RETURN_IF_ERROR(parse_quantization_config(cfg_path, cfg["quantization_config"], ck.quant));
  QF_RETURN_IF_ERROR(map_weights(src, ck.config, ck.quant, ck.weights));
  QF_RETURN_IF_ERROR(check_all_used(dir, ck.all_tensors, src, ck.config, [](const std::string& n) {
    return n.ends_with(".rotary_emb.inv_freq");  // older Llama checkpoints store RoPE's buffer
  }));
  std::string tok_json = (fs::path(dir) / "tokenizer.json").string();
  std::string tok_model = (fs::path(dir) / "tokenizer.model").string();
  if (fs::exists(tok_json)) {
    QF_ASSIGN_OR_RETURN(ck.tokenizer, load_hf_tokenizer(tok_json));
  } else if (fs::exists(tok_model)) {
    QF_ASSIGN_OR_RETURN(ck.tokenizer, load_sentencepiece_tokenizer(tok_model));
  } else {
    return error("{}: missing tokenizer: expected tokenizer.json or tokenizer.model", dir);
  }
  if (ck.tokenizer->vocab_size() > ck.config.vocab_size)
    return error("{}: token id {} is outside the embedding's {} rows (config vocab_size)",
                 fs::exists(tok_json) ? tok_json : tok_model, ck.tokenizer->vocab_size() - 1,
                 ck.config.vocab_size);
  return ck;
}

// ---- GGUF files --------------------------------------------------------------------------

// llama.cpp's rope scaling keys (`rope.scaling.type` linear | yarn) and the llama3 factors
// tensor `rope_freqs.weight`, as convert_hf_to_gguf.py writes them.
Status parse_gguf_rope(const GGUFFile& g, ModelConfig& c) {
  const std::string a = c.arch_name + ".rope.scaling.";
  RopeScaling& r = c.rope;
  const std::string type = g.get_string(a + "type").value_or("none");
  if (type == "linear" || type == "yarn") {
    r.kind = type == "linear" ? RopeKind::Linear : RopeKind::Yarn;
    r.factor = float(g.get_float(a + "factor").value_or(1.0));
    r.original_ctx = int(g.get_int(a + "original_context_length").value_or(0));
    r.attention_factor = float(g.get_float(a + "yarn_attn_factor").value_or(0.0));
    r.beta_fast = float(g.get_float(a + "yarn_beta_fast").value_or(32.0));
    r.beta_slow = float(g.get_float(a + "yarn_beta_slow").value_or(1.0));
  } else if (type != "none") {
    return error("{}: key '{}type' is '{}'; supported: none, linear, yarn", g.path(), a, type);
  }
  if (g.tensor_info("rope_freqs.weight")) {
    QF_ASSIGN_OR_RETURN(auto t, g.tensor("rope_freqs.weight"));
    if (t.shape != std::vector<int64_t>{c.head_dim / 2})
      return error("{}: tensor 'rope_freqs.weight' has wrong shape; expected {}, got {}", g.path(),
                   c.head_dim / 2, t.shape_str());
    QF_ASSIGN_OR_RETURN(r.freq_factors, t.to_f32_finite());
    for (float f : r.freq_factors)
      if (!(f > 0))
        return error("{}: tensor 'rope_freqs.weight' holds {}; factors must be positive", g.path(), f);
  }
  QF_RETURN_IF_ERROR(check_config_ranges(c, g.path()));
  return check_rope(c, g.path());
}

Expected<ModelConfig> parse_gguf_config(const GGUFFile& g) {
  ModelConfig c;
  auto arch = g.get_string("general.architecture");
  if (!arch) return error("{}: missing key 'general.architecture'", g.path());
  const ArchInfo* info = *arch == "llama" ? &arch_info(Arch::Llama) : find_arch(*arch);
  if (!info || *arch != info->gguf)
    return error("{}: unsupported architecture '{}' (supported: llama, qwen2, qwen3 = {})", g.path(), *arch,
                 supported_archs());
  c.arch = info->arch;
  c.arch_name = *arch;
  c.qk_norm = info->qk_norm;
  auto req = [&](const std::string& key, int* out) -> Status {
    auto v = g.get_int(*arch + "." + key);
    if (!v || *v <= 0 || *v > (1 << 30))
      return error("{}: key '{}.{}' should be a positive integer", g.path(), *arch, key);
    *out = int(*v);
    return {};
  };
  QF_RETURN_IF_ERROR(req("embedding_length", &c.n_embd));
  QF_RETURN_IF_ERROR(req("feed_forward_length", &c.n_ff));
  QF_RETURN_IF_ERROR(req("block_count", &c.n_layer));
  QF_RETURN_IF_ERROR(req("attention.head_count", &c.n_head));
  c.n_head_kv = int(g.get_int(*arch + ".attention.head_count_kv").value_or(c.n_head));
  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0)
    return error("{}: head_count {} is not a multiple of head_count_kv {}", g.path(), c.n_head, c.n_head_kv);
  c.head_dim = int(g.get_int(*arch + ".attention.key_length").value_or(c.n_embd / c.n_head));
  if (c.head_dim <= 0 || c.head_dim % 2)
    return error("{}: head dimension {} must be positive and even", g.path(), c.head_dim);
  c.max_ctx = int(g.get_int(*arch + ".context_length").value_or(2048));
  c.rms_eps = float(g.get_float(*arch + ".attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = float(g.get_float(*arch + ".rope.freq_base").value_or(10000.0));
  c.rope_interleaved = info->gguf_permutes_qk;  // llama.cpp permutes LLaMA q/k rows to (2i, 2i+1) pairs
  QF_RETURN_IF_ERROR(parse_gguf_rope(g, c));
  c.bos_id = int(g.get_int("tokenizer.ggml.bos_token_id").value_or(-1));
  c.eos_id = int(g.get_int("tokenizer.ggml.eos_token_id").value_or(-1));
  return c;
}

Expected<Checkpoint> load_gguf(const std::string& path) {
  Checkpoint ck;
  ck.path = path;
  ck.format = "gguf";
  QF_ASSIGN_OR_RETURN(auto g, GGUFFile::open(path));
  QF_ASSIGN_OR_RETURN(ck.config, parse_gguf_config(g));
  for (const auto& [k, v] : g.metadata()) ck.metadata.emplace_back(k, v.to_display());
  QF_ASSIGN_OR_RETURN(ck.tokenizer, load_gguf_tokenizer(g));
  auto& c = ck.config;
  auto has = [&](const std::string& n) { return g.tensor_info(n) != nullptr; };
  c.vocab_size = ck.tokenizer->vocab_size();
  c.tied_embeddings = !has("output.weight");
  c.qkv_bias = has("blk.0.attn_q.bias");
  c.o_bias = has("blk.0.attn_output.bias");
  for (const auto& info : g.tensor_infos()) {
    c.source_dtype = std::string(ggml_type_name(info.ggml_type));
    if (info.ne.size() == 2) break;  // the first matrix's type describes the file best
  }
  TensorSource src;
  src.find = [&](const std::string& n) { return g.tensor(n); };
  src.where = path;
  src.embd = "token_embd.weight";
  src.out_norm = "output_norm.weight";
  src.output = "output.weight";
  src.layer_name = [](int i, const char*, const char* gguf, const char* part) {
    return fmt::format("blk.{}.{}{}", i, gguf, part);
  };
  QF_RETURN_IF_ERROR(map_weights(src, c, ck.quant, ck.weights));
  for (const auto& info : g.tensor_infos()) {
    auto t = g.tensor(info.name);
    if (t) ck.all_tensors.push_back(*t);
  }
  QF_RETURN_IF_ERROR(check_all_used(path, ck.all_tensors, src, c,
                                    [](const std::string& n) { return n == "rope_freqs.weight"; }));
  return ck;
}

}  // namespace

std::string non_finite_weight(const Checkpoint& ck) {
  for (const auto& t : ck.all_tensors) {
    if (is_raw_integer(t.type)) continue;
    if (auto w = t.to_f32_finite(); !w.ok()) return "; " + w.status().message();
  }
  return "";
}

Expected<Checkpoint> load_checkpoint_logged(const std::string& path) {
  auto t0 = std::chrono::steady_clock::now();
  auto ck = load_checkpoint(path);
  if (ck) info("loaded {} in {:.2f}s", path, seconds_since(t0));
  return ck;
}

Expected<Checkpoint> load_checkpoint(const std::string& path) {
  if (fs::is_directory(path)) return load_hf(path);
  if (!fs::exists(path)) return error("{}: no such file or directory", path);
  return load_gguf(path);
}

}  // namespace qf
