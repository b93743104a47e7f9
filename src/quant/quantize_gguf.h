// quant/quantize_gguf.h — an HF checkpoint written as a GGUF file llama.cpp loads unchanged:
// `qforge convert` (F32/F16/BF16/Q8_0) and `qforge quantize --format gguf --type T`.
//
// Metadata as llama.cpp's convert_hf_to_gguf.py writes it for the LLaMA family and Qwen2
// (general.*, <arch>.* hyperparameters, tokenizer.ggml.*), tensors under llama.cpp's names and
// in the checkpoint's order, LLaMA q/k rows permuted for llama.cpp's interleaved RoPE.
// Matrices get the file type's tensor type, adjusted per tensor by llama.cpp's mix rules
// (output → Q6_K, attn_v/ffn_down upgrades in chosen layers, ...; see kMixRules); norms stay
// F32. A matrix whose rows do not split into the type's blocks falls back to a type that
// fits, and the report lists it. Streams one tensor at a time from the mmap'd checkpoint.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/checkpoint.h"
#include "quant/gptq.h"

namespace qf {

struct GgufOptions {
  std::string type = "F16";  // F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M
                             // Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS
  // Per-tensor importance (GGUF tensor name -> one weight per input column), or empty.
  std::map<std::string, std::vector<float>> imatrix;
  // GPTQ rounding of the decoder-block matrices onto each one's type (quant/gptq.h
  // BlockRowGrid), calibrated layer by layer on these windows; empty: the types' own rounding.
  // Block scales are fitted with the imatrix when given, else with the Hessian's diagonal.
  std::vector<std::vector<int32_t>> gptq_windows;
  GptqSpec gptq;
  bool true_sequential = true;
  bool replace = false;                     // replace an existing output file (--force)
  const Backend* backend = &cpu_backend();  // GPTQ rounding: where calibration and GPTQ compute
};

struct GgufReport {
  int64_t file_bytes = 0;
  int64_t params = 0;
  double bits_per_weight = 0;                  // whole file: every tensor's bytes over every parameter
  std::map<std::string, int64_t> type_counts;  // tensor type name -> tensors
  std::vector<std::string>
      fallbacks;         // "blk.0.ffn_down.weight: Q4_K → Q5_0 (row 172 is not a multiple of 256)"
  double gptq_loss = 0;  // with GPTQ: Σ of its error over the matrices
};

// The file types `--type` accepts, for messages.
std::string gguf_file_types();
bool is_gguf_file_type(const std::string& name);  // upper case: "Q4_K_M"

// The tensor type write_gguf gives the matrix `gguf_name` of `cols` columns in a file of
// `file_type` (llama.cpp's mix rules, then its fallbacks).
Expected<QType> gguf_matrix_type(const ModelConfig& c, const std::string& file_type,
                                 const std::string& gguf_name, int64_t cols, bool has_imatrix);

Expected<GgufReport> write_gguf(const Checkpoint& ck, const GgufOptions& opt, const std::string& out_path,
                                const std::function<void(int64_t, int64_t)>& progress);

}  // namespace qf
