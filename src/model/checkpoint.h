// model/checkpoint.h — a LLaMA-family model as loaded from disk: config, tokenizer and named
// weight views (still in their stored format, mmap'd). Loading validates every tensor's
// presence and shape; nothing is converted until the forward pass asks for it.
//
// Sources: an HF directory (config.json + safetensors, tokenizer.json or tokenizer.model) or a
// GGUF file. Supported architectures: model/config.cc's table (Llama 1–3.x, Mistral, Qwen2, Qwen3).
// A block's tensors are the rows of model/layer_spec.h.
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
#include "model/layer_spec.h"

namespace qf {

// One Linear as stored: a dense weight, or the parts of a quantized checkpoint layout.
struct LinearTensors {
  std::string prefix;  // "model.layers.0.self_attn.q_proj" or "blk.0.attn_q"
  int64_t n_out = 0, n_in = 0;
  TensorView weight;  // (n_out, n_in) when dense
  std::map<std::string, TensorView>
      parts;        // suffix -> view (".qweight", ".weight.absmax", ...) when quantized
  TensorView bias;  // (n_out), optional
  bool packed() const { return !parts.empty(); }
};

struct LayerWeights {
  LinearTensors linears[kNumLinears];  // kBlockLinears' shapes: (q_dim, n_embd), ..., (n_embd, n_ff)
  TensorView norms[kNumNorms];         // kBlockNorms' sizes; empty when the config has none (q/k norms)
  // The Linear llama.cpp names `kind` ("attn_q" … "ffn_down"); a bad name is a bug.
  const LinearTensors& linear(const std::string& kind) const;
};

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
  int bits = 0;        // gptq
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

// Loads an HF directory or a .gguf file.
Expected<Checkpoint> load_checkpoint(const std::string& path);
// The same, saying "loaded PATH in N s" on stderr (the commands' progress lines).
Expected<Checkpoint> load_checkpoint_logged(const std::string& path);

// "; tensor 'X': element i is nan, ..." (TensorView::to_f32_finite) for the first stored float tensor
// (weights, scales, norms) with a NaN/Inf, or "" — to explain a non-finite result without scanning every
// load.
std::string non_finite_weight(const Checkpoint& ck);

}  // namespace qf
