// io/quip_layout.h — qforge's QuIP# checkpoint layout (QuIP#'s tensor names, unfused Linears).
// config.json: quantization_config = {"quant_method": "quip#", "codebook": "E8P12" | "E8P12RVQ3B"
// | "E8P12RVQ4B", "bits": 2 | 3 | 4, "codesz": 8, "opt_scale", "resid_scale", "idx_offset": -32768,
// "hadamard": "randomized: Sylvester ⊗ Paley, signs SU/SV", ...}. Per quantized Linear `<prefix>`
// (W = diag(SV)·Hₒ·W̃·Hᵢᵀ·diag(SU), formats/e8p.h and kernels/cpu/hadamard.h):
//   <prefix>.Qidxs        int16 (n_out, n_in / 8)  E8P code − 32768 (QuIP#'s idx_offset)
//   <prefix>.Qidxs_resid  int16 (4 bits: E8P code − 32768) or uint8 (3 bits: E81B code),
//                         (n_out, n_in / 8); absent for 2 bits
//   <prefix>.SU           float16 (n_in)   ±1
//   <prefix>.SV           float16 (n_out)  ±1
//   <prefix>.Wscale       float32 (1)
// QuIP (scalar grid, "quant_method": "quip"): W̃ in the GPTQ layout (io/gptq_layout.h; one group
// per row, asymmetric) plus .SU and .SV as above.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/e8p.h"
#include "formats/tensor.h"
#include "io/bnb_layout.h"

namespace qf {

// Suffixes, dtypes and shapes (no data) of a quip# Linear, in write order.
std::vector<SerializedTensor> quip_e8_layout(int64_t n_out, int64_t n_in, int bits);
std::vector<SerializedTensor> serialize_quip_e8(const e8p::E8Codes& q, const std::vector<float>& su,
                                                const std::vector<float>& sv);
// The sign vectors alone (the scalar method's extra tensors).
std::vector<SerializedTensor> serialize_signs(const std::vector<float>& su, const std::vector<float>& sv);

struct QuipParts {
  std::vector<float> su, sv;
  e8p::E8Codes e8;
};
// Reads .SU/.SV (and for quip# the codes and Wscale) from a Linear's parts; everything checked.
Expected<QuipParts> deserialize_quip(const std::map<std::string, TensorView>& parts, int64_t n_out,
                                     int64_t n_in, bool lattice, int bits, float resid_scale,
                                     const std::string& prefix);

// The code book's name in QuIP#: E8P12, E8P12RVQ3B, E8P12RVQ4B.
const char* quip_codebook_name(int bits);

}  // namespace qf
