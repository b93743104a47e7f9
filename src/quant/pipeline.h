// quant/pipeline.h — `qforge quantize` as one call: a request (the command line's options)
// checked against the method's spec (quant/method_spec.h), calibration windows drawn, and the
// method's pipeline run — RTN/GPTQ/QuIP/NF4/LLM.int8 into their HF layouts, AWQ's search then
// its rounding, or a GGUF file (± imatrix, ± GPTQ rounding, ± AWQ scaling). The CLI only parses.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace qf {

struct QuantizeRequest {
  std::string model, out, method = "rtn", clip = "none";
  std::string format = "hf", type;  // gguf: a llama.cpp file type (Q4_K_M, ...)
  std::string imatrix;              // gguf: importance matrix file
  int bits = 4, group = 128, blocksize = 64;
  bool sym = false, double_quant = false, quantize_head = false;
  bool force = false;  // replace an existing output (when the new one is complete)
  float int8_threshold = 6.0f;
  // gptq: calibration and GPTQ's options
  std::string calib;
  int nsamples = 128, seqlen = 512;
  unsigned seed = 0;
  double damp = 0.01;
  bool act_order = false, static_groups = false, true_sequential = true;
  bool duo_scaling = false, awq_clip = true;  // awq
  std::string device = "auto";     // calibrated methods: cpu | cuda | auto (kernels/select_backend.h)
  std::vector<std::string> given;  // method options present on the command line
};

// s in upper case (llama.cpp file types: "q4_k_m" → "Q4_K_M").
std::string upper(std::string s);

// Quantizes req.model into req.out (which must not exist), printing what it wrote.
Status quantize_model(const QuantizeRequest& req);

// An HF checkpoint as a GGUF file of llama.cpp file type `type` (F16, Q8_0, Q4_K_M, ...).
Status write_gguf_file(const std::string& model, const std::string& out, const std::string& type, bool force);

}  // namespace qf
