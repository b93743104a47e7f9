// io/bnb_layout.h — the bitsandbytes serializations transformers writes. 4-bit (Linear4bit /
// QuantState.as_dict(packed=True)), per quantized Linear `<prefix>`:
//   <prefix>.weight                                   uint8 (n/2, 1)  codes, first in the high nibble
//   <prefix>.weight.absmax                            float32 (n_blocks), or uint8 with double quant
//   <prefix>.weight.quant_map                         float32 (16)    the code book
//   <prefix>.weight.nested_absmax                     float32 (ceil(n_blocks/256))   double quant only
//   <prefix>.weight.nested_quant_map                  float32 (256)   double quant only
//   <prefix>.weight.quant_state.bitsandbytes__<type>  uint8: UTF-8 JSON of
//       {"quant_type", "blocksize", "dtype", "shape", ["nested_blocksize", "nested_dtype", "nested_offset"]}
//       in that order, as Python's json.dumps writes it.
//
// LLM.int8() (Linear8bitLt._save_to_state_dict), per Linear:
//   <prefix>.weight         int8 (n_out, n_in)  CB
//   <prefix>.SCB            float32 (n_out)     row absmax
//   <prefix>.weight_format  uint8 scalar 0      "row" layout (kept by bitsandbytes for compatibility)
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/bnb4.h"
#include "formats/int8_rowwise.h"
#include "formats/tensor.h"

namespace qf {

struct SerializedTensor {
  std::string suffix;  // appended to the Linear's prefix
  std::string dtype;   // safetensors dtype
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Tensors of one Linear, in the order they are written. `dtype` is the original weight dtype
// ("bfloat16", "float16", "float32") recorded in the quant state.
std::vector<SerializedTensor> serialize_bnb4(const Bnb4Quantized& q, int64_t n_out, int64_t n_in,
                                             const std::string& dtype);
// The same suffixes, dtypes and shapes without the data (the quant-state JSON is filled in:
// its length depends on the double-quant offset), for writing a header before quantizing.
std::vector<SerializedTensor> bnb4_layout(Bnb4Type type, int blocksize, bool double_quant, float offset,
                                          int64_t n_out, int64_t n_in, const std::string& dtype);

// Rebuilds a quantized weight from its parts (suffix → view); everything is checked.
Expected<Bnb4Quantized> deserialize_bnb4(const std::map<std::string, TensorView>& parts, int64_t n_out,
                                         int64_t n_in, const std::string& prefix);

const char* bnb4_type_name(Bnb4Type t);

std::vector<SerializedTensor> int8_layout(int64_t n_out, int64_t n_in);
std::vector<SerializedTensor> serialize_int8(const Int8Rowwise& q);
Expected<Int8Rowwise> deserialize_int8(const std::map<std::string, TensorView>& parts, int64_t n_out,
                                       int64_t n_in, const std::string& prefix);

}  // namespace qf
