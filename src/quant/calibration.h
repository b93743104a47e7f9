// quant/calibration.h — what the calibrated methods (GPTQ, AWQ) share: calibration windows
// drawn as the reference implementations draw them, and a layer-by-layer run of the model.
//
// Windows: the calibration text tokenized as the model tokenizes (BOS first when it adds one),
// then `nsamples` windows of `seqlen` tokens, window k starting at the k-th
// `random.Random(seed).randrange(0, n_tokens − seqlen)` — the GPTQ reference's datautils rule
// (CPython's Mersenne Twister, reproduced by PyRandom), so qforge sees the reference's tokens.
//
// Layer by layer: the windows' hidden states live in one buffer (nsamples · seqlen · n_embd
// fp32). For block i the Linears are quantized in sub-groups — true-sequential: q/k/v, then o,
// then gate/up, then down, each sub-group's inputs gathered by running block i with the earlier
// sub-groups already quantized; otherwise all seven from one run of the unquantized block —
// and then block i, fully quantized, turns the buffer into block i+1's inputs. Only block i's
// weights are widened to fp32 at any time; the checkpoint stays mmap'd.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/checkpoint.h"
#include "model/linear.h"

namespace qf {

// CPython's `random.Random(seed)` for a seed in [0, 2^32): MT19937 (Matsumoto & Nishimura's
// reference) seeded by init_by_array([seed]); getrandbits/randrange/random as CPython
// computes them.
class PyRandom {
 public:
  explicit PyRandom(uint32_t seed);
  uint32_t getrandbits(int k);   // 1 ≤ k ≤ 32
  int64_t randrange(int64_t n);  // uniform in [0, n), 0 < n < 2^32, by rejection as _randbelow
  double random();               // 53-bit float in [0, 1)

 private:
  uint32_t next();
  std::array<uint32_t, 624> mt_;
  int index_ = 624;
};

// The calibration windows; an error when the text is shorter than seqlen + 1 tokens.
Expected<std::vector<std::vector<int32_t>>> draw_windows(const std::vector<int32_t>& tokens, int nsamples,
                                                         int seqlen, uint32_t seed);

// One decoder-block Linear ready to quantize.
struct LinearJob {
  int layer = 0;
  std::string kind;  // llama.cpp's name: "attn_q", ..., "ffn_down"
  const LinearTensors* tensors = nullptr;
  Buffer<double> hessian;  // (n_in, n_in) = 2/N · Σ x·xᵀ over every calibration token, N = windows,
                           // in the calibrating backend's memory
  const float* resident = nullptr;  // the block's fp32 weights there when it is a device, else null

  // The weights (n_out, n_in) fp32, refused when one is NaN or ±Inf (the error names it): on the
  // host, widened from the checkpoint; or in the hessian's backend's memory, copied from the
  // resident weights when there are some, else (on a device) copied as stored and widened there.
  Expected<std::vector<float>> host_weight() const;
  Expected<Buffer<float>> backend_weight() const;
};

// Quantizes one Linear and returns the Linear that computes with the quantized weights; it
// replaces the original for the rest of the calibration.
using LinearQuantizer = std::function<Expected<std::unique_ptr<Linear>>(LinearJob& job)>;

// Calls `quantize` for every decoder-block Linear, layer by layer, in the order q, k, v, o,
// gate, up, down. progress(done, total) counts Linears. The forward passes and the Gram
// matrices run on `be` (hidden states, the block's weights and the products in its memory);
// `quantize` gets the job's Hessian in be's memory and takes its weights where it needs them.
Status calibrate_layerwise(const Checkpoint& ck, const std::vector<std::vector<int32_t>>& windows,
                           bool true_sequential, const LinearQuantizer& quantize,
                           const std::function<void(int64_t, int64_t)>& progress,
                           const Backend& be = cpu_backend());

}  // namespace qf
