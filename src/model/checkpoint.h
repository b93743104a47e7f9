// model/checkpoint.h — a LLaMA-family model as loaded from disk: config, tokenizer and named
// weight views (still in their stored format, mmap'd). Loading validates every tensor's
// presence and shape; nothing is converted until the forward pass asks for it.
//
// Sources: an HF directory (config.json + safetensors, tokenizer.json or tokenizer.model) or a
// GGUF file. Supported architectures: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/tensor.h"
#include "io/tokenizer.h"
#include "model/config.h"

namespace qf {

// One Linear as stored: a dense weight, or the parts of a quantized checkpoint layout.
struct LinearTensors {
  std::string prefix;                         // "model.layers.0.self_attn.q_proj" or "blk.0.attn_q"
  int64_t n_out = 0, n_in = 0;
  TensorView weight;                          // (n_out, n_in) when dense
  std::map<std::string, TensorView> parts;    // suffix -> view (".qweight", ".weight.absmax", ...) when quantized
  TensorView bias;                            // (n_out), optional
  bool packed() const { return !parts.empty(); }
};

struct LayerWeights {
  TensorView attn_norm;                // (n_embd)
  LinearTensors wq, wk, wv, wo;        // (q_dim, n_embd), (kv_dim, n_embd) x2, (n_embd, q_dim)
  TensorView ffn_norm;                 // (n_embd)
  LinearTensors w_gate, w_up, w_down;  // (n_ff, n_embd) x2, (n_embd, n_ff)
  // The Linear llama.cpp names `kind` ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
  // "ffn_up", "ffn_down").
  const LinearTensors& linear(const std::string& kind) const;
};

// The seven Linears of a decoder block in llama.cpp's names, in forward order.
inline constexpr const char* kBlockLinears[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

struct ModelWeights {
  TensorView tok_embd;     // (vocab, n_embd)
  TensorView output_norm;  // (n_embd)
  LinearTensors output;    // lm_head (vocab, n_embd); its weight is the embedding itself when tied
  std::vector<LayerWeights> layers;
};

// config.json `quantization_config` of a quantized HF checkpoint.
struct QuantizationConfig {
  std::string method;  // "" (none), "gptq", "awq", "bnb4" (bitsandbytes load_in_4bit), "bnb8" (load_in_8bit),
                       // "quip" or "quip#" (io/quip_layout.h)
  int bits = 0;         // gptq
  int group_size = -1;  // gptq
  bool sym = true;      // gptq
  bool desc_act = false;
  std::string bnb_type = "nf4";  // bnb4: nf4 | fp4
  bool double_quant = false;     // bnb4
  float int8_threshold = 6.0f;   // bnb8: llm_int8_threshold (0: no outlier decomposition)
  float resid_scale = 0;         // quip#: the residual stage's scale (3 and 4 bits)
};

struct Checkpoint {
  std::string path;
  std::string format;  // "hf" or "gguf"
  ModelConfig config;
  QuantizationConfig quant;
  ModelWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<std::pair<std::string, std::string>> metadata;  // for `qforge inspect`
  std::vector<TensorView> all_tensors;                        // every tensor in the files
};

// llama.cpp's name for an HF tensor ("model.layers.3.mlp.down_proj.weight" ->
// "blk.3.ffn_down.weight"), or nullopt for a tensor the LLaMA family does not have.
std::optional<std::string> gguf_tensor_name(const std::string& hf_name);

// Loads an HF directory or a .gguf file.
Expected<Checkpoint> load_checkpoint(const std::string& path);

}  // namespace qf
