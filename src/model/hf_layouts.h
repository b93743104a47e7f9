// model/hf_layouts.h — the HF checkpoint layouts qforge reads, one row each: how its
// quantization_config is recognized and parsed, the tensors one Linear stores, the kernel form it
// runs in, and the reader that turns those tensors into a Linear. The loader (model/checkpoint.cc)
// and the forward pass (model/transformer.cc) go through this table only; the writers are the
// codecs of quant/quantize_hf.cc (named in `written_by`). The GGUF block types are the rows of
// formats/qtype.h; `qforge formats` prints both tables.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/checkpoint.h"
#include "model/linear.h"

namespace qf {

struct HfLayout {
  const char* method;      // QuantizationConfig::method
  const char* geometry;    // how one Linear is stored
  const char* kernel;      // the form the CPU kernels run (formats/qtype.h name) or the Linear that runs it
  const char* written_by;  // the qforge --method values that write it
  // Whether a quantization_config is this layout, and its parser (every field typed-checked).
  bool (*matches)(const nlohmann::json& qc);
  Status (*parse)(const std::string& where, const nlohmann::json& qc, QuantizationConfig& q);
  // The tensor suffixes of one quantized Linear; the first tells a quantized Linear from a dense one.
  std::vector<std::string> (*parts)(const QuantizationConfig& q);
  Expected<std::unique_ptr<Linear>> (*read)(const LinearTensors& t, const QuantizationConfig& q);
};

const std::vector<HfLayout>& hf_layouts();
// The row of q.method; a method without a row is a bug (the parser set it).
const HfLayout& hf_layout(const QuantizationConfig& q);

// config.json's quantization_config into q: the matching row's parser, or an error that lists the
// supported layouts. `where` names the file.
Status parse_quantization_config(const std::string& where, const nlohmann::json& qc, QuantizationConfig& q);

// The Linear for one Linear's tensors: dense weights as stored, or the layout's reader.
Expected<std::unique_ptr<Linear>> make_linear(const LinearTensors& t, const QuantizationConfig& q);
// The same computing on `be`: on a device, dense F32/F16/BF16 weights cross as stored and widen
// there (BackendLinear::from_stored); others through on_backend.
Expected<std::unique_ptr<Linear>> make_linear(const LinearTensors& t, const QuantizationConfig& q,
                                              const Backend& be);

}  // namespace qf
