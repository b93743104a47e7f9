#include "quant/calibration.h"

#include <bit>
#include <map>

#include "core/mapped_file.h"
#include "core/profile.h"
#include "core/progress.h"
#include "model/linear.h"
#include "model/transformer.h"

namespace qf {

PyRandom::PyRandom(uint32_t seed) {
  constexpr int N = 624;
  mt_[0] = 19650218u;  // init_genrand(19650218)
  for (int i = 1; i < N; ++i) mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + uint32_t(i);
  int i = 1;  // init_by_array({seed}, 1)
  for (int k = N; k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + seed;
    if (++i >= N) {
      mt_[0] = mt_[N - 1];
      i = 1;
    }
  }
  for (int k = N - 1; k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - uint32_t(i);
    if (++i >= N) {
      mt_[0] = mt_[N - 1];
      i = 1;
    }
  }
  mt_[0] = 0x80000000u;
}

uint32_t PyRandom::next() {
  constexpr int N = 624, M = 397;
  if (index_ >= N) {
    for (int k = 0; k < N; ++k) {
      const uint32_t y = (mt_[k] & 0x80000000u) | (mt_[(k + 1) % N] & 0x7fffffffu);
      mt_[k] = mt_[(k + M) % N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    index_ = 0;
  }
  uint32_t y = mt_[index_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  return y ^ (y >> 18);
}

uint32_t PyRandom::getrandbits(int k) { return next() >> (32 - k); }

int64_t PyRandom::randrange(int64_t n) {
  const int k = std::bit_width(uint64_t(n));
  QF_CHECK(n > 0 && k <= 32, "randrange({}) outside (0, 2^32)", n);
  int64_t r = getrandbits(k);
  while (r >= n) r = getrandbits(k);
  return r;
}

double PyRandom::random() {
  const uint32_t a = next() >> 5, b = next() >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

Expected<std::vector<std::vector<int32_t>>> draw_windows(const std::vector<int32_t>& tokens, int nsamples,
                                                         int seqlen, uint32_t seed) {
  if (nsamples < 1 || seqlen < 1)
    return error("--nsamples {} --seqlen {}: both must be positive", nsamples, seqlen);
  if (int64_t(tokens.size()) <= seqlen)
    return error("the calibration text has {} tokens; windows of --seqlen {} need more", tokens.size(),
                 seqlen);
  PyRandom rng(seed);
  std::vector<std::vector<int32_t>> windows;
  for (int k = 0; k < nsamples; ++k) {
    const int64_t start = rng.randrange(int64_t(tokens.size()) - seqlen);
    windows.emplace_back(tokens.begin() + start, tokens.begin() + start + seqlen);
  }
  return windows;
}

namespace {

// The inputs of a block: the Linears that read each (layer_spec's `input`), keyed by the first one's name.
struct Input {
  const char* key;
  std::vector<const char*> kinds;
};
const std::vector<Input> kInputs = [] {
  std::vector<Input> inputs;
  for (const LinearSpec& l : kBlockLinears) {
    const char* key = kBlockLinears[l.input].name;
    if (inputs.empty() || inputs.back().key != key) inputs.push_back({key, {}});
    inputs.back().kinds.push_back(l.name);
  }
  return inputs;
}();

}  // namespace

Expected<std::vector<float>> LinearJob::host_weight() const {
  PhaseTimer t("calibrate: weight to fp32 on the host");
  return tensors->weight.to_f32_finite();
}

Expected<Buffer<float>> LinearJob::backend_weight() const {
  const Backend& be = hessian.backend();
  const TensorView& t = tensors->weight;
  const bool dense = t.type == QType::F32 || t.type == QType::F16 || t.type == QType::BF16;
  if (!resident && !(be.on_device() && dense)) {
    QF_ASSIGN_OR_RETURN(auto w, host_weight());
    return Buffer<float>(be, w);
  }
  const int64_t n = tensors->n_out * tensors->n_in;
  Buffer<float> w = resident ? Buffer<float>(be, n) : widened_on(be, t);  // widened on the device
  if (resident) be.copy(w.data(), resident, n * 4);
  if (const int64_t i = be.first_nonfinite(w.data(), n); i < n) {
    float v = 0;
    be.to_host(&v, w.data() + i, 4);
    return nonfinite_weight(t.name, i, v);
  }
  return w;
}

Status calibrate_layerwise(const Checkpoint& ck, const std::vector<std::vector<int32_t>>& windows,
                           bool true_sequential, const LinearQuantizer& quantize,
                           const std::function<void(int64_t, int64_t)>& progress, const Backend& be) {
  QF_ASSIGN_OR_RETURN(auto tf, Transformer::create(ck, be, /*streamed=*/true));
  const ModelConfig& c = ck.config;
  const int E = c.n_embd;
  const int64_t total = int64_t(c.n_layer) * kNumLinears;
  int64_t done = 0;
  std::vector<int64_t> offset;
  int64_t tokens = 0;
  for (const auto& w : windows) {
    offset.push_back(tokens * E);
    tokens += int64_t(w.size());
  }
  Buffer<float> hidden(be, tokens * E);  // (windows, seqlen, E) in the backend's memory
  for (size_t w = 0; w < windows.size(); ++w)
    tf->embed(windows[w].data(), int(windows[w].size()), hidden.data() + offset[w]);
  std::vector<std::vector<const Input*>> stages(true_sequential ? 0
                                                                : 1);  // one stage per input, or one for all
  for (const Input& in : kInputs) {
    if (true_sequential) stages.emplace_back();
    stages.back().push_back(&in);
  }
  int64_t longest = 0;
  for (const auto& w : windows) longest = std::max<int64_t>(longest, int64_t(w.size()));
  Buffer<float> x(be, longest * E);
  const auto t0 = std::chrono::steady_clock::now();
  double quantizing = 0;  // seconds in `quantize` (the rest: loading, forward passes, Gram matrices)
  for (int layer = 0; layer < c.n_layer; ++layer) {
    const LayerWeights& lw = ck.weights.layers[size_t(layer)];
    {
      PhaseTimer t("calibrate: load block", &be);
      QF_RETURN_IF_ERROR(tf->load_block(ck, layer));  // this block's weights only: streamed
    }
    for (const auto& stage : stages) {
      std::map<std::string, std::unique_ptr<GramAccumulator>> H;  // input key -> Σ x·xᵀ
      for (const Input* in : stage) H[in->key] = be.gram(int(lw.linear(in->key).n_in));
      InputObserver observe = [&](int l, std::initializer_list<const char*> kinds, const float* xin, int n,
                                  int) {
        auto it = H.find(*kinds.begin());
        if (l == layer && it != H.end()) {
          PhaseTimer t("calibrate: Gram", &be);
          it->second->add(xin, n);
        }
      };
      {
        PhaseTimer t("calibrate: forward + Gram", &be);
        for (size_t w = 0; w < windows.size(); ++w) {
          const int n = int(windows[w].size());
          be.copy(x.data(), hidden.data() + offset[w], int64_t(n) * E * 4);
          tf->run_block(layer, x.data(), n, &observe, stage.size() == 1 ? stage[0]->key : "");
        }
      }
      for (const Input* in : stage) {
        Buffer<double> h = H[in->key]->take(2.0 / double(windows.size()));
        for (const char* kind : in->kinds) {
          LinearJob job;
          job.layer = layer;
          job.kind = kind;
          job.tensors = &lw.linear(kind);
          if (const auto* bl = dynamic_cast<const BackendLinear*>(tf->linear(layer, kind)))
            job.resident = bl->fp32_weights();
          // GPTQ damps and factorizes it in place: a copy, except for the input's last reader
          job.hessian = kind == in->kinds.back() ? std::move(h) : h.copy();
          be.synchronize();
          const auto tq = std::chrono::steady_clock::now();
          std::unique_ptr<Linear> linear;
          {
            PhaseTimer t("calibrate: quantize a Linear", &be);
            QF_ASSIGN_OR_RETURN(linear, quantize(job));
          }
          quantizing += seconds_since(tq);
          release_mapped_pages(job.tensors->weight.data, size_t(job.tensors->weight.nbytes));
          PhaseTimer t("calibrate: the quantized Linear to the backend", &be);
          tf->set_linear(layer, kind, std::move(linear));
          if (progress) progress(++done, total);
        }
      }
    }
    PhaseTimer t("calibrate: forward of the quantized block", &be);
    for (size_t w = 0; w < windows.size(); ++w)  // the quantized block's outputs: the next block's inputs
      tf->run_block(layer, hidden.data() + offset[w], int(windows[w].size()));
    for (const auto& in : kInputs)
      for (const char* kind : in.kinds) tf->set_linear(layer, kind, nullptr);
  }
  const double total_s = seconds_since(t0);
  info(
      "calibration on {}: {:.1f} s, of which {:.1f} s quantizing Linears and {:.1f} s loading blocks, "
      "forward passes and Gram matrices",
      be.name(), total_s, quantizing, total_s - quantizing);
  return {};
}

}  // namespace qf
