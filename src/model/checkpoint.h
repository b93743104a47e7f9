// model/checkpoint.h — a LLaMA-family model as loaded from disk: config, tokenizer and named
// weight views (still in their stored format, mmap'd). Loading validates every tensor's
// presence and shape; nothing is converted until the forward pass asks for it.
//
// Sources: an HF directory (config.json + safetensors, tokenizer.json or tokenizer.model) or a
// GGUF file. Supported architectures: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/tensor.h"
#include "io/tokenizer.h"
#include "model/config.h"

namespace qf {

struct LayerWeights {
  TensorView attn_norm;              // (n_embd)
  TensorView wq, wk, wv, wo;         // (q_dim, n_embd), (kv_dim, n_embd) x2, (n_embd, q_dim)
  TensorView bq, bk, bv, bo;         // optional biases (q_dim), (kv_dim) x2, (n_embd)
  TensorView ffn_norm;               // (n_embd)
  TensorView w_gate, w_up, w_down;   // (n_ff, n_embd) x2, (n_embd, n_ff)
};

struct ModelWeights {
  TensorView tok_embd;     // (vocab, n_embd)
  TensorView output_norm;  // (n_embd)
  TensorView output;       // (vocab, n_embd); the embedding itself when tied
  std::vector<LayerWeights> layers;
};

struct Checkpoint {
  std::string path;
  std::string format;  // "hf" or "gguf"
  ModelConfig config;
  ModelWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<std::pair<std::string, std::string>> metadata;  // for `qforge inspect`
  std::vector<TensorView> all_tensors;                        // every tensor in the files
};

// Loads an HF directory or a .gguf file.
Expected<Checkpoint> load_checkpoint(const std::string& path);

}  // namespace qf
