// quant/quip.h — QuIP (Chee et al., 2023) and QuIP# (Tseng et al., 2024) for one Linear.
//
// Incoherence: W̃ = Hₒᵀ·diag(sₒ)·W·diag(sᵢ)·Hᵢ and H̃ = Hᵢᵀ·diag(sᵢ)·H·diag(sᵢ)·Hᵢ with
// randomized Hadamard transforms (quant/hadamard.h), which spread every row's and column's
// mass evenly so that no weight is an outlier. Then LDLQ — the rounding with error feedback
// that GPTQ computes, here on W̃ and H̃:
//   quip:  a per-row asymmetric integer grid of `bits`, column by column (gptq_quantize);
//   quip#: BlockLDLQ over blocks of 8 columns: each row's 8 weights (W̃ / Wscale, Wscale =
//          RMS(W̃) / opt_scale) rounded jointly to the E8P codebook (formats/e8p.h); 3 and 4
//          bits add a residual stage on (w − E8P(w))·resid_scale: E81B (3 bits) or E8P again
//          (4 bits) — QuIP#'s E8P12, E8P12RVQ3B and E8P12RVQ4B with their published scales.
// The block's rounding error e = (w − q)·U_BB⁻¹ (U the upper Cholesky factor of H̃⁻¹)
// updates the columns after it: W[:, rest] −= e·U[B, rest] — GPTQ's loop with a grid of groups
// of 8 whose rounding is fixed at each group's start (quant/gptq.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/e8p.h"
#include "formats/int_grid.h"
#include "kernels/backend.h"
#include "kernels/cpu/hadamard.h"
#include "model/linear.h"

namespace qf {

struct QuipSpec {
  bool lattice = true;  // quip# (E8P) or quip (scalar grid)
  int bits = 2;         // quip#: 2, 3, 4; quip: 2..8
  double damp = 0.01;
  uint64_t seed = 0;  // sign vectors
};

struct QuipQuantized {
  bool lattice = true;
  std::vector<float> su, sv;  // (n_in), (n_out) ±1
  e8p::E8Codes e8;            // quip#: W̃
  IntQuantized grid;          // quip: W̃ on the integer grid
};

// Quantizes W (n_out, n_in); H (n_in, n_in) is consumed. `name` is used in messages. The
// incoherence transforms run on the host; the LDLQ (gptq_quantize: H's damping and Cholesky
// factorizations, the trailing updates) on `be`, each lazy batch rounded on the host.
Expected<QuipQuantized> quip_quantize(const float* W, int64_t n_out, int64_t n_in, std::vector<double> H,
                                      const QuipSpec& spec, const std::string& name,
                                      const Backend& be = cpu_backend());

// The Linear that computes with q: QuipLinear around an E8Linear (quip#) or IntLinear (quip).
std::unique_ptr<Linear> quip_linear(const QuipQuantized& q, const TensorView& bias);

// Checks that both dimensions have Hadamard transforms (and n_in is a multiple of 8 for quip#).
Status check_quip_shape(int64_t n_out, int64_t n_in, bool lattice, const std::string& name);

}  // namespace qf
