#include "model/transformer.h"

#include <cmath>
#include <limits>
#include <optional>

#include "core/profile.h"
#include "core/threads.h"
#include "model/hf_layouts.h"
#include "model/rope.h"

namespace qf {
namespace {

// The backend's per-thread buffers (Backend::scratch): a layer's activations cost no
// allocation, page faults or zeroing. Each slot has one user at a time (the enum below); the
// backend keeps the last slot for its own attention scores.
enum Scratch {
  kHidden,
  kSublayerOut,
  kQuery,
  kAttnBuf,
  kGate,
  kUp,
  kRope,
  kKeys,
  kValues,
  kResidual,
  kFinal
};
static_assert(kFinal < Backend::kScratchSlots - 1);

}  // namespace

float* Transformer::scratch(int slot, int64_t n) const { return be_->scratch(slot, n); }

Expected<std::unique_ptr<Transformer>> Transformer::create(const Checkpoint& ck, const Backend& be,
                                                           bool streamed) {
  init_blas_threads();
  std::unique_ptr<Transformer> tf(new Transformer());
  tf->cfg_ = ck.config;
  tf->be_ = &be;
  const auto& w = ck.weights;
  tf->tok_embd_ = w.tok_embd;
  tf->output_norm_ = Buffer<float>(be, w.output_norm.to_f32());
  if (!streamed) {
    QF_ASSIGN_OR_RETURN(tf->output_, make_linear(w.output, ck.quant, be));
  }
  for (const auto& lw : w.layers) {
    Layer L;
    for (int k = 0; k < kNumNorms; ++k)
      if (has_norm(ck.config, NormId(k))) L.norms[k] = Buffer<float>(be, lw.norms[k].to_f32());
    tf->layers_.push_back(std::move(L));
  }
  if (!streamed)
    for (int l = 0; l < tf->cfg_.n_layer; ++l) QF_RETURN_IF_ERROR(tf->load_block(ck, l));
  tf->rope_ = rope_frequencies(tf->cfg_, tf->cfg_.max_ctx);
  return tf;
}

KVCache Transformer::new_cache(int n_ctx) const {
  KVCache c;
  c.n_ctx = n_ctx;
  c.kv_dim = cfg_.kv_dim();
  for (int l = 0; l < cfg_.n_layer; ++l) {
    c.k.emplace_back(*be_, 0);
    c.v.emplace_back(*be_, 0);
  }
  return c;
}

void KVCache::reserve(int positions) {
  const int64_t row = kv_dim, have = k.empty() ? 0 : k[0].size() / row;
  if (positions <= have) return;
  const int64_t rows = std::min<int64_t>(n_ctx, std::max<int64_t>(positions, 2 * have));
  for (auto* side : {&k, &v})
    for (auto& layer : *side) layer.grow(rows * row);
}

int64_t Transformer::weight_bytes_per_token() const {
  int64_t bytes = output_->weight_bytes() + qtype_row_bytes(tok_embd_.type, cfg_.n_embd);
  for (const auto& L : layers_)
    for (const auto& l : L.linears) bytes += l->weight_bytes();
  return bytes;
}

double Transformer::body_bits_per_weight() const {
  int64_t bytes = 0, params = 0;
  for (const auto& L : layers_)
    for (const auto& l : L.linears) {
      bytes += l->weight_bytes();
      params += l->n_in() * l->n_out();
    }
  return 8.0 * double(bytes) / double(params);
}

void Transformer::rope_table(int n, int pos0, float* cs) const {
  const int half = cfg_.head_dim / 2;
  // Dynamic NTK scaling recomputes the frequencies for sequences past the original context.
  const RopeFrequencies dynamic =
      cfg_.rope.kind == RopeKind::Dynamic ? rope_frequencies(cfg_, pos0 + n) : RopeFrequencies{};
  const RopeFrequencies& r = cfg_.rope.kind == RopeKind::Dynamic ? dynamic : rope_;
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < half; ++i) {
      const float angle = float(pos0 + t) * r.inv_freq[size_t(i)];  // fp32 product, as HF computes it
      cs[2 * (t * half + i)] = float(std::cos(double(angle))) * r.attention_factor;
      cs[2 * (t * half + i) + 1] = float(std::sin(double(angle))) * r.attention_factor;
    }
}

const float* Transformer::device_rope_table(int rows) const {
  std::lock_guard<std::mutex> lock(rope_mu_);
  if (rows > rope_rows_) {
    const int grown = std::max(rows, std::min(2 * rope_rows_, cfg_.max_ctx));
    std::vector<float> host(size_t(grown) * cfg_.head_dim);
    rope_table(grown, 0, host.data());
    rope_device_.emplace_back(*be_, host);
    rope_rows_ = grown;
  }
  return rope_device_.back().data();
}

bool Transformer::attention(const Layer& L, int layer, const float* x, float* out, int n, float* kc,
                            float* vc, int n_past, const InputObserver* observe,
                            std::string_view stop_at) const {
  const int hd = cfg_.head_dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim();
  const int p = n_past;
  float* q = scratch(kQuery, int64_t(n) * qd);
  if (observe) (*observe)(layer, {"attn_q", "attn_k", "attn_v"}, x, n, cfg_.n_embd);
  if (stop_at == "attn_q") return true;
  {
    PhaseTimer t("forward: linears", be_);
    L.linears[kAttnQ]->forward(x, q, n);
    L.linears[kAttnK]->forward(x, kc + int64_t(p) * kvd, n);  // written straight into the cache
    L.linears[kAttnV]->forward(x, vc + int64_t(p) * kvd, n);
  }
  std::optional<PhaseTimer> t_core(std::in_place, "forward: RoPE and attention", be_);
  if (cfg_.qk_norm) {  // Qwen3: RMSNorm over each head, before RoPE (in place: one row per head)
    be_->rms_norm(q, L.norms[kQNorm].data(), q, n * cfg_.n_head, hd, cfg_.rms_eps);
    be_->rms_norm(kc + int64_t(p) * kvd, L.norms[kKNorm].data(), kc + int64_t(p) * kvd, n * cfg_.n_head_kv,
                  hd, cfg_.rms_eps);
  }
  const float* cs;
  if (be_->on_device() && cfg_.rope.kind != RopeKind::Dynamic) {
    cs = device_rope_table(p + n) + int64_t(p) * hd;
  } else {
    float* table = scratch(kRope, int64_t(n) * hd);
    if (be_->on_device()) {  // computed on the host
      std::vector<float> host(size_t(n) * hd);
      rope_table(n, p, host.data());
      be_->to_device(table, host.data(), int64_t(host.size()) * 4);
    } else {
      rope_table(n, p, table);
    }
    cs = table;
  }
  be_->rope(q, n, cfg_.n_head, hd, cfg_.rope_interleaved, cs);
  be_->rope(kc + int64_t(p) * kvd, n, cfg_.n_head_kv, hd, cfg_.rope_interleaved, cs);
  float* attn = scratch(kAttnBuf, int64_t(n) * qd);
  be_->attention({q, kc, vc, attn, n, p, cfg_.n_head, cfg_.n_head_kv, hd, cfg_.sliding_window});
  t_core.reset();
  if (observe) (*observe)(layer, {"attn_output"}, attn, n, qd);
  if (stop_at == "attn_output") return true;
  PhaseTimer t("forward: linears", be_);
  L.linears[kAttnOut]->forward(attn, out, n);
  return false;
}

bool Transformer::mlp(const Layer& L, int layer, const float* x, float* out, int n,
                      const InputObserver* observe, std::string_view stop_at) const {
  const int64_t ff = cfg_.n_ff;
  if (observe) (*observe)(layer, {"ffn_gate", "ffn_up"}, x, n, cfg_.n_embd);
  if (stop_at == "ffn_gate") return true;
  float *gate = scratch(kGate, n * ff), *up = scratch(kUp, n * ff);
  {
    PhaseTimer t("forward: linears", be_);
    L.linears[kFfnGate]->forward(x, gate, n);
    L.linears[kFfnUp]->forward(x, up, n);
  }
  be_->silu_mul(gate, up, n * ff);
  if (observe) (*observe)(layer, {"ffn_down"}, gate, n, int(ff));
  if (stop_at == "ffn_down") return true;
  PhaseTimer t("forward: linears", be_);
  L.linears[kFfnDown]->forward(gate, out, n);
  return false;
}

void Transformer::block(const Layer& L, int layer, float* x, int n, float* kc, float* vc, int n_past,
                        const InputObserver* observe, std::string_view stop_at) const {
  const int64_t size = int64_t(n) * cfg_.n_embd;
  float *h = scratch(kHidden, size), *tmp = scratch(kSublayerOut, size);
  be_->rms_norm(x, L.norms[kAttnNorm].data(), h, n, cfg_.n_embd, cfg_.rms_eps);
  if (attention(L, layer, h, tmp, n, kc, vc, n_past, observe, stop_at)) return;
  be_->add(x, tmp, size);
  be_->rms_norm(x, L.norms[kFfnNorm].data(), h, n, cfg_.n_embd, cfg_.rms_eps);
  if (mlp(L, layer, h, tmp, n, observe, stop_at)) return;
  be_->add(x, tmp, size);
}

void Transformer::embed(const int32_t* tokens, int n, float* x) const {
  const int E = cfg_.n_embd;
  const auto& tr = traits(tok_embd_.type);
  const int64_t row_bytes = qtype_row_bytes(tok_embd_.type, E);
  std::vector<float> host(be_->on_device() ? size_t(n) * E : 0);  // rows decoded on the host
  float* dst = be_->on_device() ? host.data() : x;
  for (int t = 0; t < n; ++t) {
    QF_CHECK(tokens[t] >= 0 && tokens[t] < cfg_.vocab_size, "token id {} outside vocabulary {}", tokens[t],
             cfg_.vocab_size);
    tr.dequantize_ref(tok_embd_.data + tokens[t] * row_bytes, dst + int64_t(t) * E, E);
  }
  if (be_->on_device()) be_->to_device(x, host.data(), int64_t(host.size()) * 4);
}

void Transformer::run_block(int layer, float* x, int n, const InputObserver* observe,
                            std::string_view stop_at) const {
  const int64_t kv = int64_t(n) * cfg_.kv_dim();
  block(layers_[size_t(layer)], layer, x, n, scratch(kKeys, kv), scratch(kValues, kv), 0, observe, stop_at);
}

void Transformer::run_sublayer(int layer, std::string_view which, const float* x, float* out, int n) const {
  const Layer& L = layers_[size_t(layer)];
  if (which == "mlp") {
    mlp(L, layer, x, out, n, nullptr, {});
    return;
  }
  QF_CHECK(which == "attn", "no sub-layer named {}", which);
  const int64_t kv = int64_t(n) * cfg_.kv_dim();
  attention(L, layer, x, out, n, scratch(kKeys, kv), scratch(kValues, kv), 0, nullptr, {});
}

Status Transformer::load_block(const Checkpoint& ck, int layer) {
  const LayerWeights& lw = ck.weights.layers[size_t(layer)];
  for (int k = 0; k < kNumLinears; ++k) {
    QF_ASSIGN_OR_RETURN(layers_[size_t(layer)].linears[k], make_linear(lw.linears[k], ck.quant, *be_));
  }
  return {};
}

void Transformer::set_linear(int layer, const std::string& kind, std::unique_ptr<Linear> linear) {
  const auto id = linear_id(kind);
  QF_CHECK(id.has_value(), "no Linear named {} in a decoder block", kind);
  layers_[size_t(layer)].linears[*id] = linear ? on_backend(std::move(linear), *be_) : nullptr;
}

const Linear* Transformer::linear(int layer, const std::string& kind) const {
  const auto id = linear_id(kind);
  QF_CHECK(id.has_value(), "no Linear named {} in a decoder block", kind);
  return layers_[size_t(layer)].linears[*id].get();
}

void Transformer::forward(const int32_t* tokens, int n, KVCache& cache, float* logits, bool last_only,
                          const InputObserver* observe) const {
  QF_CHECK(n > 0 && cache.n_past + n <= cache.n_ctx, "{} tokens after {} do not fit a cache of {}", n,
           cache.n_past, cache.n_ctx);
  cache.reserve(cache.n_past + n);
  const int E = cfg_.n_embd;
  float *x = scratch(kResidual, int64_t(n) * E), *h = scratch(kFinal, int64_t(n) * E);
  embed(tokens, n, x);
  for (size_t l = 0; l < layers_.size(); ++l)
    block(layers_[l], int(l), x, n, cache.k[l].data(), cache.v[l].data(), cache.n_past, observe, {});
  cache.n_past += n;
  if (!logits) return;
  const int first = last_only ? n - 1 : 0;
  be_->rms_norm(x + int64_t(first) * E, output_norm_.data(), h, n - first, E, cfg_.rms_eps);
  output_->forward(h, logits, n - first);
}

}  // namespace qf
