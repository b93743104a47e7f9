// quant/awq.h — AWQ (Lin et al., "Activation-aware Weight Quantization"), as AutoAWQ runs it:
// per-channel scales that protect the input channels with large activations, and per-group
// clipping, folded into the model so that it stays a plain LLaMA-family checkpoint.
//
// Block by block on the calibration windows, with the unquantized model's activations (AWQ
// propagates full-precision hidden states, not quantized ones):
//  1. at each scaling point — input_layernorm → q,k,v (scored on the attention sub-layer's
//     output); v_proj → o_proj (only when their shapes match, i.e. without grouped-query
//     attention); post_attention_layernorm → gate,up (scored on the MLP's output);
//     up_proj → down_proj (scored on down_proj's output) — x̄ = mean |x| per input channel, and
//     for α = 0, 1/20, …, 19/20: s = x̄^α (or x̄^α / (w̄^(1−α) + 1e-4) with duo scaling, w̄ the
//     mean group-normalised |w| per channel), clamped ≥ 1e-4, normalised by √(max s · min s);
//     the sub-layer runs with each Linear replaced by Q(W·diag(s))·diag(1/s) and the α whose
//     output has the least mean squared error against the original's is kept (α = 0 is plain
//     rounding, so the search never does worse than it on its own objective);
//  2. the scales are folded in: the previous operator's weights (norm weights, or the previous
//     Linear's output rows and bias) divided by s, the scaled Linears' columns multiplied by s;
//  3. clipping (not for q/k): per output row and group of the scaled weights, max |w| shrunk by
//     0, 5, …, 45 %, the clamped group fake-quantized, and the shrink whose partial products on
//     512 sampled calibration tokens (inputs divided by s) are closest kept; weights clamped.
// Q is the caller's fake quantizer, so the search optimises for the grid the weights will
// really be stored on (the integer grid, or a GGUF type).
//
// The result is written as an HF checkpoint folder: the blocks' norms and Linears (and biases)
// transformed, in F32; everything else copied. Without clipping it computes the original
// function up to fp32 rounding; any method can then quantize it (RTN into the AWQ layout,
// GPTQ, GGUF types).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/int_grid.h"
#include "kernels/backend.h"
#include "model/checkpoint.h"

namespace qf {

struct AwqSpec {
  bool duo_scaling = false;
  bool clip = true;
  int group = 128;  // group length of w̄ and of the clip search (-1, or not dividing a row: the whole row)
  int n_grid = 20;
};

// Replaces w (n_out, n_in) — Linear `kind` ("attn_q" … "ffn_down") of block `layer`, its
// columns already multiplied by col_scale — by its quantized-then-dequantized values.
using FakeQuantizer = std::function<void(int layer, const std::string& kind, float* w, int64_t n_out,
                                         int64_t n_in, const std::vector<float>& col_scale)>;

struct AwqReport {
  std::vector<std::string>
      points;  // "blk.0 attn_norm→attn_q,attn_k,attn_v α=0.45 (mse 1.2e-3 vs 2.5e-3 at α=0)"
  std::map<std::string, std::vector<float>> col_scales;  // GGUF weight name -> s folded into its columns
  int64_t clipped_groups = 0;                            // groups whose range the clip search shrank
  int64_t groups = 0;
};

// Writes the transformed checkpoint into the new folder out_dir (which must not exist).
// progress(done, total) counts blocks. The forward passes, the captured inputs, the scale
// search's scoring and the clip search's products run on `be` (one block's weights there at a
// time); this fake quantization runs on the host.
Expected<AwqReport> awq_transform(const Checkpoint& ck, const std::vector<std::vector<int32_t>>& windows,
                                  const AwqSpec& spec, const FakeQuantizer& quantize,
                                  const std::string& out_dir,
                                  const std::function<void(int64_t, int64_t)>& progress,
                                  const Backend& be = cpu_backend());
// The same with RTN onto an integer grid (formats/int_grid.h, min/max groups) as the fake
// quantizer, computed by `be` where the weights are (Backend::fake_quantize_int): with a device,
// the whole search stays in its memory.
Expected<AwqReport> awq_transform(const Checkpoint& ck, const std::vector<std::vector<int32_t>>& windows,
                                  const AwqSpec& spec, const IntGridSpec& grid, const std::string& out_dir,
                                  const std::function<void(int64_t, int64_t)>& progress,
                                  const Backend& be = cpu_backend());

}  // namespace qf
