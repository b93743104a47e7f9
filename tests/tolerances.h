// tests/tolerances.h — how far two fp32 evaluations of the same model may differ.
//
// Logit tolerance. Both sides evaluate the same fp32 function; they differ only in the order
// of floating-point operations (BLAS blocking, fused multiply-adds, reduction trees). A dot
// product of length K in fp32 carries a rounding error of about u·sqrt(K)·|a|·|b| (u = 2^-24,
// the probabilistic bound of Higham & Mary 2019); the residual stream passes through
// S = 7·n_layer + 1 such accumulation stages (q, k, v, attention scores, attention·V, o, MLP;
// lm_head), whose independent errors add in quadrature, each reaching the logits at most at
// the logits' own scale. So |Δlogit| ≤ sqrt(S) · u · sqrt(K_max) · max|logit| · c, with c = 4
// covering the sum of two independent error sequences (ours and PyTorch's, ×2) and the
// non-linearities' gain (×2: softmax and SiLU have slope ≤ 1, RMSNorm rescales by ≤ the
// ratio of norms, measured ≈ 1 on these models).
#pragma once

#include <algorithm>
#include <cmath>

#include "model/config.h"

namespace qf::test {

inline double logit_tolerance(const ModelConfig& c, double max_abs_logit) {
  const double u = std::ldexp(1.0, -24);
  const double stages = 7.0 * c.n_layer + 1;
  const double k_max = std::max({c.n_embd, c.n_ff, c.q_dim()});
  return 4.0 * std::sqrt(stages) * u * std::sqrt(k_max) * max_abs_logit;
}

}  // namespace qf::test
