// model/layer_spec.h — what a decoder block holds, as data (after gemma.cpp's LayerConfig).
//
// Every module that walks a block's weights — the loader, the forward pass, calibration, AWQ's
// scaling points, imatrix, the GGUF and HF writers — iterates these two tables instead of
// naming q/k/v/o/gate/up/down itself. A Linear's shape comes from the config through `Dim`;
// whether a bias or a norm exists is a ModelConfig field the row names. Adding an architecture is
// a config mapping (model/config_hf.cc, model/config_gguf.cc) plus, at most, a new op.
//
// Names: `name` is llama.cpp's (GGUF "blk.N.<name>.weight", imatrix entries, AWQ points, the
// CLI); `hf` is the module path inside an HF decoder layer ("model.layers.N.<hf>.weight").
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "model/config.h"

namespace qf {

// A dimension of the block, resolved against a ModelConfig by dim().
enum class Dim { Embd, Q, KV, FF, HeadDim };
int64_t dim(const ModelConfig& c, Dim d);

// The Linears of a decoder block, in forward order (the index is the row's position below).
enum LinearId { kAttnQ, kAttnK, kAttnV, kAttnOut, kFfnGate, kFfnUp, kFfnDown, kNumLinears };

struct LinearSpec {
  const char* name;  // llama.cpp: "attn_q"
  const char* hf;    // HF: "self_attn.q_proj"
  Dim out, in;       // weight (out, in)
  LinearId input;    // the first Linear reading the same input: one Hessian / imatrix / AWQ point per input
  bool ModelConfig::*bias;  // the config flag saying the Linear has a bias (nullptr: never)
  bool rope_rows;           // rows are (head, head_dim) with RoPE pairs: llama.cpp's LLaMA files permute them
};

inline constexpr LinearSpec kBlockLinears[kNumLinears] = {
    {"attn_q", "self_attn.q_proj", Dim::Q, Dim::Embd, kAttnQ, &ModelConfig::qkv_bias, true},
    {"attn_k", "self_attn.k_proj", Dim::KV, Dim::Embd, kAttnQ, &ModelConfig::qkv_bias, true},
    {"attn_v", "self_attn.v_proj", Dim::KV, Dim::Embd, kAttnQ, &ModelConfig::qkv_bias, false},
    {"attn_output", "self_attn.o_proj", Dim::Embd, Dim::Q, kAttnOut, &ModelConfig::o_bias, false},
    {"ffn_gate", "mlp.gate_proj", Dim::FF, Dim::Embd, kFfnGate, nullptr, false},
    {"ffn_up", "mlp.up_proj", Dim::FF, Dim::Embd, kFfnGate, nullptr, false},
    {"ffn_down", "mlp.down_proj", Dim::Embd, Dim::FF, kFfnDown, nullptr, false},
};

// The RMSNorm weights of a block. q/k norms (Qwen3) act per head, before RoPE.
enum NormId { kAttnNorm, kFfnNorm, kQNorm, kKNorm, kNumNorms };

struct NormSpec {
  const char* name;  // llama.cpp: "attn_norm"
  const char* hf;    // HF: "input_layernorm"
  Dim size;
  bool ModelConfig::*present;  // nullptr: every block has it
};

inline constexpr NormSpec kBlockNorms[kNumNorms] = {
    {"attn_norm", "input_layernorm", Dim::Embd, nullptr},
    {"ffn_norm", "post_attention_layernorm", Dim::Embd, nullptr},
    {"attn_q_norm", "self_attn.q_norm", Dim::HeadDim, &ModelConfig::qk_norm},
    {"attn_k_norm", "self_attn.k_norm", Dim::HeadDim, &ModelConfig::qk_norm},
};

// The names alone, in the same order, for loops that only need them.
inline constexpr auto kLinearNames = [] {
  std::array<const char*, kNumLinears> names{};
  for (int i = 0; i < kNumLinears; ++i) names[size_t(i)] = kBlockLinears[i].name;
  return names;
}();

inline bool has_bias(const ModelConfig& c, LinearId id) {
  return kBlockLinears[id].bias && c.*kBlockLinears[id].bias;
}
inline bool has_norm(const ModelConfig& c, NormId id) {
  return !kBlockNorms[id].present || c.*kBlockNorms[id].present;
}

// The Linear llama.cpp calls `name` ("attn_q" … "ffn_down"), or nullopt.
std::optional<LinearId> linear_id(std::string_view name);
// Every Linear name, comma-separated, for messages.
std::string linear_names();

// llama.cpp's name for an HF tensor ("model.layers.3.mlp.down_proj.weight" ->
// "blk.3.ffn_down.weight"), or nullopt for a tensor the block tables do not have.
std::optional<std::string> gguf_tensor_name(const std::string& hf_name);

}  // namespace qf
