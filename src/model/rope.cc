#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace qf {
namespace {

// HF _compute_default_rope_parameters: 1 / base^(arange(0, d, 2) / d), in fp32.
std::vector<float> default_inv_freq(float base, int d) {
  std::vector<float> f(size_t(d / 2));
  for (int i = 0; i < d / 2; ++i) f[size_t(i)] = 1.0f / std::pow(base, float(2 * i) / float(d));
  return f;
}

int original_ctx(const ModelConfig& c) { return c.rope.original_ctx > 0 ? c.rope.original_ctx : c.max_ctx; }

// HF _compute_llama3_parameters (fp32 tensors, Python-float constants).
void llama3(const RopeScaling& r, std::vector<float>& f) {
  const float two_pi = float(2 * std::numbers::pi), old_ctx = float(r.original_ctx);
  const float low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
  for (float& v : f) {
    const float wavelen = two_pi / v;
    float scaled = wavelen > low_wavelen ? v / r.factor : v;
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    if (medium) {
      const float smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      scaled = (1 - smooth) * scaled / r.factor + smooth * scaled;
    }
    v = scaled;
  }
}

// HF _compute_yarn_parameters (transformers 5: factor given, original context from the
// parameters or max_position_embeddings).
float yarn(const ModelConfig& c, std::vector<float>& f) {
  const RopeScaling& r = c.rope;
  const int d = c.head_dim;
  const double base = c.rope_theta, factor = r.factor;
  auto get_mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
  double attention = r.attention_factor;
  if (attention <= 0)
    attention = r.mscale != 0 && r.mscale_all_dim != 0
                    ? get_mscale(factor, r.mscale) / get_mscale(factor, r.mscale_all_dim)
                    : get_mscale(factor, 1.0);
  auto correction_dim = [&](double rotations) {
    return d * std::log(original_ctx(c) / (rotations * 2 * std::numbers::pi)) / (2 * std::log(base));
  };
  double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
  if (r.truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0);
  high = std::min(high, double(d - 1));
  if (low == high) high += 0.001;  // HF: "prevent singularity"
  for (int i = 0; i < d / 2; ++i) {
    const float pos_freq = std::pow(float(base), float(2 * i) / float(d));
    const float extrapolation = 1.0f / pos_freq, interpolation = 1.0f / (float(factor) * pos_freq);
    const float ramp = std::clamp((float(i) - float(low)) / float(high - low), 0.0f, 1.0f);
    const float keep = 1.0f - ramp;  // the share of the unscaled frequency
    f[size_t(i)] = interpolation * (1 - keep) + extrapolation * keep;
  }
  return float(attention);
}

}  // namespace

const char* rope_kind_name(RopeKind k) {
  switch (k) {
    case RopeKind::Default:
      return "default";
    case RopeKind::Linear:
      return "linear";
    case RopeKind::Dynamic:
      return "dynamic";
    case RopeKind::Yarn:
      return "yarn";
    case RopeKind::Llama3:
      return "llama3";
  }
  return "?";
}

RopeFrequencies rope_frequencies(const ModelConfig& c, int seq_len) {
  const RopeScaling& r = c.rope;
  RopeFrequencies out;
  float base = c.rope_theta;
  if (r.kind == RopeKind::Dynamic && seq_len > original_ctx(c)) {  // HF _compute_dynamic_ntk_parameters
    const double d = c.head_dim, ratio = double(r.factor) * seq_len / original_ctx(c) - (r.factor - 1);
    base = float(base * std::pow(ratio, d / (d - 2)));
  }
  out.inv_freq = default_inv_freq(base, c.head_dim);
  switch (r.kind) {
    case RopeKind::Default:
    case RopeKind::Dynamic:
      break;
    case RopeKind::Linear:
      for (float& v : out.inv_freq) v /= r.factor;
      break;
    case RopeKind::Llama3:
      llama3(r, out.inv_freq);
      break;
    case RopeKind::Yarn:
      out.attention_factor = yarn(c, out.inv_freq);
      break;
  }
  for (size_t i = 0; i < r.freq_factors.size() && i < out.inv_freq.size(); ++i)
    out.inv_freq[i] /= r.freq_factors[i];
  return out;
}

std::vector<float> llama3_rope_freq_factors(const ModelConfig& c) {
  const RopeScaling& r = c.rope;
  const float two_pi = float(2 * std::numbers::pi), old_ctx = float(r.original_ctx);
  const float low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
  std::vector<float> factors;
  for (float freq : default_inv_freq(c.rope_theta, c.head_dim)) {
    const float wavelen = two_pi / freq;
    if (wavelen < high_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      factors.push_back(r.factor);
    } else {
      const float smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      factors.push_back(1.0f / ((1 - smooth) / r.factor + smooth));
    }
  }
  return factors;
}

Status check_rope(const ModelConfig& c, const std::string& where) {
  const RopeScaling& r = c.rope;
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta))
    return error("{}: rope_theta {} should be a positive number", where, c.rope_theta);
  if (r.kind == RopeKind::Default) return {};
  const char* kind = rope_kind_name(r.kind);
  if (!(r.factor >= 1) || !std::isfinite(r.factor))
    return error("{}: rope_type '{}' needs a factor ≥ 1, found {}", where, kind, r.factor);
  if (r.kind == RopeKind::Llama3) {
    if (r.original_ctx <= 0)
      return error("{}: rope_type 'llama3' needs original_max_position_embeddings > 0, found {}", where,
                   r.original_ctx);
    if (!(r.high_freq_factor > r.low_freq_factor) || !(r.low_freq_factor > 0))
      return error("{}: rope_type 'llama3' needs 0 < low_freq_factor < high_freq_factor, found {} and {}",
                   where, r.low_freq_factor, r.high_freq_factor);
  }
  if (r.kind == RopeKind::Yarn && !(r.beta_fast > 0 && r.beta_slow > 0))
    return error("{}: rope_type 'yarn' needs beta_fast and beta_slow > 0, found {} and {}", where,
                 r.beta_fast, r.beta_slow);
  return {};
}

}  // namespace qf
