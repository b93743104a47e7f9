// model/config.h — the hyperparameters of a LLaMA-family decoder, whatever file they came from.
#pragma once

#include <string>

namespace qf {

enum class Arch { Llama, Mistral, Qwen2 };

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string arch_name;        // as the file names it: "LlamaForCausalLM", "llama", ...
  int n_embd = 0;               // hidden size
  int n_ff = 0;                 // MLP intermediate size
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;             // given, or n_embd / n_head
  int vocab_size = 0;
  int max_ctx = 0;              // max_position_embeddings / context_length
  int sliding_window = 0;       // Mistral: attend to at most this many positions (0 = unlimited)
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  // RoPE pairs: false = (i, i + head_dim/2) as in HF ("rotate_half", ggml NEOX);
  // true = (2i, 2i+1) as in llama.cpp's LLaMA GGUF files, whose q/k rows are permuted to match.
  bool rope_interleaved = false;
  bool tied_embeddings = false;
  bool qkv_bias = false;        // Qwen2, or attention_bias
  bool o_bias = false;          // attention_bias
  bool mlp_bias = false;
  int bos_id = -1, eos_id = -1;
  std::string source_dtype;     // "bfloat16", "F16", ...

  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_head_kv * head_dim; }
};

const char* arch_label(Arch a);

}  // namespace qf
