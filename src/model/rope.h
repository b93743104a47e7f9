// model/rope.h — rotary position embedding frequencies for every RoPE scaling kind.
//
// The formulas are HF transformers' (modeling_rope_utils.py: default, linear, dynamic, yarn,
// llama3), evaluated in fp32 where HF evaluates tensors and in double where it uses Python
// floats, so that the angles match HF's to the last bit where the operations are the same.
// A GGUF file's `rope_freqs.weight` (llama.cpp's llama3 factors) divides the default frequencies.
#pragma once

#include <vector>

#include "core/status.h"
#include "model/config.h"

namespace qf {

struct RopeFrequencies {
  std::vector<float> inv_freq;    // (head_dim / 2)
  float attention_factor = 1.0f;  // multiplies cos and sin (yarn)
};

// The frequencies for a forward pass whose last position is seq_len − 1 (only `dynamic` depends
// on it, as HF's dynamic_rope_update recomputes them for sequences past the original context).
RopeFrequencies rope_frequencies(const ModelConfig& c, int seq_len);

// llama.cpp's `rope_freqs.weight` for a llama3-scaled config, as convert_hf_to_gguf.py computes it:
// the factor dividing each default frequency (1 for high frequencies, `factor` for low ones).
std::vector<float> llama3_rope_freq_factors(const ModelConfig& c);

// Checks the scaling parameters of `c`; the error names `where` (a file and key).
Status check_rope(const ModelConfig& c, const std::string& where);

const char* rope_kind_name(RopeKind k);

}  // namespace qf
