// model/transformer.h — the LLaMA-family decoder forward pass, fp32 arithmetic, through a Backend
// (kernels/backend.h: norms, RoPE, attention, activations) and the Linears' own products.
//
// Embedding → n_layer × [RMSNorm → GQA attention with RoPE and causal mask → residual →
// RMSNorm → SwiGLU MLP → residual] → RMSNorm → lm_head. Prompts go through BLAS as matrices;
// generation reuses a KV cache. A Transformer is immutable after creation; each caller owns its
// KVCache, so independent sequences may run concurrently on separate caches.
//
// Everything runs on the backend given at creation: on a device backend (CUDA) the norms, the
// KV cache, the activations and every Linear's weights (widened to fp32, model/linear.h
// BackendLinear) live in device memory, and the pointers forward/embed/run_block take or give
// (x, logits, observed inputs) are device pointers; token ids stay on the host.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "kernels/backend.h"
#include "model/checkpoint.h"
#include "model/linear.h"
#include "model/rope.h"

namespace qf {

// Memory grows with use: rows are added (doubling, up to n_ctx) as positions are stored, so a
// long --n-predict or context costs only what the run reaches. Lives in the model's backend.
struct KVCache {
  int n_ctx = 0;   // the most positions it may hold
  int n_past = 0;  // positions already stored
  int kv_dim = 0;
  std::vector<Buffer<float>> k, v;  // per layer: (rows, kv_dim), rows ≥ n_past
  void clear() { n_past = 0; }
  // Makes room for `positions` rows in every layer.
  void reserve(int positions);
};

// Sees the input of every decoder-block Linear during a forward pass (for importance
// matrices): the layer, the llama.cpp names of the weights that read this input ("attn_q",
// "attn_k", "attn_v" share one), and x (n, n_in).
using InputObserver =
    std::function<void(int layer, std::initializer_list<const char*> kinds, const float* x, int n, int n_in)>;

class Transformer {
 public:
  // Decodes the checkpoint's weights into Linear layers. Borrows nothing from `ck` but the
  // embedding view (which keeps its mapping alive).
  // streamed: only the embeddings and norms are loaded (no block Linears, no lm_head); the caller
  // sets each block's Linears (set_linear / load_block) before running it — layer-by-layer work
  // that holds one block's weights at a time, on a device too.
  static Expected<std::unique_ptr<Transformer>> create(const Checkpoint& ck,
                                                       const Backend& be = cpu_backend(),
                                                       bool streamed = false);
  // Sets block `layer`'s Linears from the checkpoint it was created from (the same `ck`).
  Status load_block(const Checkpoint& ck, int layer);

  const ModelConfig& config() const { return cfg_; }
  const Backend& backend() const { return *be_; }
  KVCache new_cache(int n_ctx) const;
  // Weight bytes read to generate one token: every Linear once, plus one embedding row.
  int64_t weight_bytes_per_token() const;
  // Bits per weight of the decoder blocks' Linears as they are held (codes, scales, zeros).
  double body_bits_per_weight() const;

  // Runs `n` tokens at positions cache.n_past .. cache.n_past + n - 1 and appends them to the
  // cache. logits: (n, vocab) for every position, or (1, vocab) for the last one when
  // last_only; may be null. Token ids must be in [0, vocab) (checked).
  void forward(const int32_t* tokens, int n, KVCache& cache, float* logits, bool last_only = false,
               const InputObserver* observe = nullptr) const;

  // Layer-by-layer access for calibrated quantization. embed: x (n, n_embd) = the tokens'
  // embeddings. run_block: decoder block `layer` on one sequence of n tokens at positions
  // 0 .. n−1, x (n, n_embd) updated in place (residuals included). set_linear replaces one of a
  // block's Linears, named as llama.cpp names them ("attn_q" ... "ffn_down"); null releases it
  // (the block cannot run again until it is set). stop_at: an input name ("attn_q",
  // "attn_output", "ffn_gate", "ffn_down") after whose observation the block returns early,
  // x then left half-updated.
  void embed(const int32_t* tokens, int n, float* x) const;
  void run_block(int layer, float* x, int n, const InputObserver* observe = nullptr,
                 std::string_view stop_at = {}) const;
  // A host Linear is moved to the model's backend first (BackendLinear on a device).
  void set_linear(int layer, const std::string& kind, std::unique_ptr<Linear> linear);
  // The Linear that block `layer` computes `kind` with now, or null when released.
  const Linear* linear(int layer, const std::string& kind) const;
  // One sub-layer of block `layer` alone — "attn" (q/k/v, RoPE, causal attention, o) or "mlp"
  // (gate/up, SiLU, down) — on its normalized input x (n, n_embd), one sequence at positions
  // 0 .. n−1: out (n, n_embd), the residual not added.
  void run_sublayer(int layer, std::string_view which, const float* x, float* out, int n) const;

 private:
  struct Layer {
    Buffer<float> norms[kNumNorms];                // kBlockNorms' sizes; empty when absent
    std::unique_ptr<Linear> linears[kNumLinears];  // kBlockLinears; biases live inside the Linear
  };
  Transformer() = default;
  float* scratch(int slot, int64_t n) const;  // the backend's per-thread buffer `slot`
  // kc, vc: the layer's key/value rows (positions 0 .. n_past + n), n_past already filled.
  // attention and mlp return true when they stopped at stop_at.
  bool attention(const Layer& L, int layer, const float* x, float* out, int n, float* kc, float* vc,
                 int n_past, const InputObserver* observe, std::string_view stop_at) const;
  void block(const Layer& L, int layer, float* x, int n, float* kc, float* vc, int n_past,
             const InputObserver* observe, std::string_view stop_at) const;
  // cs (host): (n, head_dim / 2) pairs (cos, sin) of positions pos0 .. pos0 + n − 1.
  void rope_table(int n, int pos0, float* cs) const;
  // On a device: rope_table of positions 0 .. rows − 1 in its memory, computed once and grown on
  // demand (a position's pairs do not depend on the call, but under dynamic NTK scaling, which
  // computes per call). Tables outgrown stay alive: other threads may still read them.
  const float* device_rope_table(int rows) const;
  bool mlp(const Layer& L, int layer, const float* x, float* out, int n, const InputObserver* observe,
           std::string_view stop_at) const;

  ModelConfig cfg_;
  const Backend* be_ = nullptr;     // every operation but the Linears' products (kernels/backend.h)
  TensorView tok_embd_;             // (vocab, n_embd), any format: rows decoded on lookup
  Buffer<float> output_norm_;       // (n_embd)
  std::unique_ptr<Linear> output_;  // lm_head
  std::vector<Layer> layers_;
  RopeFrequencies rope_;        // (head_dim / 2) frequencies, fp32 as in HF (dynamic: recomputed per call)
  mutable std::mutex rope_mu_;  // guards the two below
  mutable std::vector<Buffer<float>> rope_device_;  // device_rope_table's, the last the largest
  mutable int rope_rows_ = 0;
};

}  // namespace qf
