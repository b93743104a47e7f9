// quant/quantize_hf.h — `qforge quantize`: an HF checkpoint in, a quantized HF checkpoint out.
//
// Streams tensor by tensor (one tensor widened to fp32 at a time; the source stays mmap'd):
// each decoder-block Linear is quantized — rtn: integer grid, written in the GPTQ layout
// (io/gptq_layout.h); awq: the same rounding of a checkpoint awq_transform (quant/awq.h) wrote,
// in the AWQ GEMM layout (io/awq_layout.h) when 4-bit asymmetric, else the GPTQ layout; gptq: the same grid
// and layout, rounded by GPTQ (quant/gptq.h) layer by layer on calibration windows (quant/calibration.h);
// nf4/fp4: bitsandbytes 4-bit, written as transformers serializes Linear4bit; llm-int8: bitsandbytes
// Linear8bitLt (io/bnb_layout.h) — and embeddings and norms are copied unchanged; lm_head too unless
// quantize_head (a tied head is then written as its own quantized lm_head and the config unties it). The
// output is built in a temporary folder next to OUT and renamed when complete, so a failed or interrupted run
// leaves nothing at OUT. Every non-weight file (tokenizer, generation config) is copied; config.json gains
// `quantization_config`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/int_grid.h"
#include "model/checkpoint.h"
#include "quant/gptq.h"

namespace qf {

struct QuantizeOptions {
  std::string method =
      "rtn";  // rtn | gptq | awq (RTN of an AWQ-scaled checkpoint) | nf4 | fp4 | llm-int8 | quip | quip#
  bool awq_scaled = false;      // the checkpoint was transformed by AWQ (quant/awq.h): recorded in the config
  IntGridSpec grid;             // rtn, gptq
  GptqSpec gptq;                // gptq; quip/quip# use its damp
  uint64_t quip_seed = 0;       // quip/quip#: the sign vectors' seed
  bool static_groups = false;   // gptq
  bool true_sequential = true;  // gptq
  std::vector<std::vector<int32_t>> windows;  // gptq, quip: calibration windows (quant/calibration.h)
  int blocksize = 64;                         // nf4/fp4
  bool double_quant = false;                  // nf4/fp4
  float int8_threshold = 6.0f;                // llm-int8: outlier threshold recorded for run time (0: W8A8)
  bool quantize_head = false;
  bool replace = false;                     // replace an existing output folder (--force)
  const Backend* backend = &cpu_backend();  // gptq, quip: where calibration (and GPTQ) computes
};

struct QuantizeReport {
  int64_t linears = 0;
  int64_t quantized_params = 0;
  int64_t zero_wraps = 0;    // rtn, gptq: groups whose zero 0 the GPTQ v1 layout cannot store
  int64_t output_bytes = 0;  // model.safetensors
  double body_bits_per_weight = 0;
  double gptq_loss = 0;  // gptq: Σ over Linears of GPTQ's error (quant/gptq.h)  // of the quantized Linears:
                         // codes and every scale/zero/absmax
  std::string describe;
};

// Checks, before any work, that quantize_hf_checkpoint can write every Linear with `opt`; the
// error names the tensor and the rule.
Status check_quantizable(const Checkpoint& ck, const QuantizeOptions& opt);

// Copies a checkpoint folder's files other than weights (tokenizer, generation config; and
// config.json when with_config) into dst_dir.
Status copy_side_files(const std::string& src_dir, const std::string& dst_dir, bool with_config);

Expected<QuantizeReport> quantize_hf_checkpoint(const Checkpoint& ck, const QuantizeOptions& opt,
                                                const std::string& out_dir,
                                                const std::function<void(int64_t, int64_t)>& progress);

}  // namespace qf
