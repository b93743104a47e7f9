#include "model/config.h"

#include <cmath>

namespace qf {
namespace {

// Mistral files are "llama" in GGUF (llama.cpp's converter writes them so).
constexpr ArchInfo kArchs[] = {
    {Arch::Llama, "LlamaForCausalLM", "llama", "llama", false, false, true},
    {Arch::Mistral, "MistralForCausalLM", "mistral", "llama", false, false, true},
    {Arch::Qwen2, "Qwen2ForCausalLM", "qwen2", "qwen2", true, false, false},
    {Arch::Qwen3, "Qwen3ForCausalLM", "qwen3", "qwen3", false, true, false},
};

}  // namespace

const ArchInfo& arch_info(Arch a) {
  for (const auto& i : kArchs)
    if (i.arch == a) return i;
  return kArchs[0];
}

const ArchInfo* find_arch(const std::string& name) {
  for (const auto& i : kArchs)
    if (name == i.hf_class || name == i.model_type) return &i;
  return nullptr;
}

std::string supported_archs() {
  std::string s;
  for (const auto& i : kArchs) s += (s.empty() ? "" : ", ") + std::string(i.hf_class);
  return s;
}

const char* arch_label(Arch a) { return arch_info(a).model_type; }

Status check_config_ranges(const ModelConfig& c, const std::string& where) {
  if (!(c.rms_eps > 0 && c.rms_eps < 1) || !std::isfinite(c.rms_eps))
    return error("{}: rms_norm_eps {} should be a number in (0, 1)", where, c.rms_eps);
  // Sizes past any model's (the largest have ~128 layers, widths ~53k, vocabularies ~256k): a
  // corrupt or hostile config, refused before anything is allocated by them.
  const std::pair<const char*, int64_t> sizes[] = {
      {"num_hidden_layers", c.n_layer},     {"hidden_size", c.n_embd},
      {"intermediate_size", c.n_ff},        {"num_attention_heads", c.n_head},
      {"num_key_value_heads", c.n_head_kv}, {"head_dim", c.head_dim}};
  for (const auto& [key, v] : sizes)
    if (v < 1 || v > (1 << 20)) return error("{}: {} {} should be in 1..{}", where, key, v, 1 << 20);
  if (c.n_layer > 4096) return error("{}: num_hidden_layers {} should be in 1..4096", where, c.n_layer);
  if (c.max_ctx < 1 || c.max_ctx > (1 << 24))
    return error("{}: max_position_embeddings {} should be in 1..{}", where, c.max_ctx, 1 << 24);
  return {};
}

}  // namespace qf
