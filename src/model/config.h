// model/config.h — the hyperparameters of a LLaMA-family decoder, whatever file they came from.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace qf {

enum class Arch { Llama, Mistral, Qwen2, Qwen3 };

// RoPE frequency scaling, as HF's modeling_rope_utils.py defines each `rope_type`
// (model/rope.h computes the frequencies).
enum class RopeKind { Default, Linear, Dynamic, Yarn, Llama3 };

struct RopeScaling {
  RopeKind kind = RopeKind::Default;
  float factor = 1.0f;
  float low_freq_factor = 1.0f, high_freq_factor = 4.0f;  // llama3
  int original_ctx = 0;                        // original_max_position_embeddings (llama3, yarn, dynamic)
  float beta_fast = 32.0f, beta_slow = 1.0f;   // yarn
  float attention_factor = 0.0f;               // yarn: scales cos/sin; 0 = derived from factor and mscale
  float mscale = 0.0f, mscale_all_dim = 0.0f;  // yarn (DeepSeek-style attention factor)
  bool truncate = true;                        // yarn: correction range rounded to whole dimensions
  std::vector<float> freq_factors;             // GGUF `rope_freqs.weight` (head_dim / 2): inv_freq[i] /= f[i]
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string arch_name;  // as the file names it: "LlamaForCausalLM", "llama", ...
  int n_embd = 0;         // hidden size
  int n_ff = 0;           // MLP intermediate size
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;  // given, or n_embd / n_head
  int vocab_size = 0;
  int max_ctx = 0;         // max_position_embeddings / context_length
  int sliding_window = 0;  // Mistral: attend to at most this many positions (0 = unlimited)
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope;
  // RoPE pairs: false = (i, i + head_dim/2) as in HF ("rotate_half", ggml NEOX);
  // true = (2i, 2i+1) as in llama.cpp's LLaMA GGUF files, whose q/k rows are permuted to match.
  bool rope_interleaved = false;
  bool tied_embeddings = false;
  bool qkv_bias = false;  // Qwen2, or attention_bias
  bool o_bias = false;    // attention_bias
  bool mlp_bias = false;
  bool qk_norm = false;  // Qwen3: RMSNorm over each head of q and k, before RoPE
  int bos_id = -1, eos_id = -1;
  std::string source_dtype;  // "bfloat16", "F16", ...

  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_head_kv * head_dim; }
};

// One row per supported architecture: the names files use for it and what sets it apart.
struct ArchInfo {
  Arch arch;
  const char* hf_class;    // config.json architectures[0]
  const char* model_type;  // config.json model_type
  const char* gguf;        // GGUF general.architecture as llama.cpp names it
  bool qkv_bias;           // q/k/v projections always carry biases (Qwen2)
  bool qk_norm;            // per-head RMSNorm on q and k (Qwen3)
  bool gguf_permutes_qk;   // llama.cpp's converter permutes q/k rows to (2i, 2i+1) RoPE pairs
};
const ArchInfo& arch_info(Arch a);
// The row whose hf_class, model_type or gguf name is `name`, or null.
const ArchInfo* find_arch(const std::string& name);
// "LlamaForCausalLM, MistralForCausalLM, ..." for messages.
std::string supported_archs();
const char* arch_label(Arch a);

// Values no model has: rms_norm_eps outside (0, 1) or not finite, a context outside 1..2^24.
Status check_config_ranges(const ModelConfig& c, const std::string& where);

}  // namespace qf
