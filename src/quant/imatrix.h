// quant/imatrix.h — importance matrices: the mean of x² per input column of every decoder-block
// Linear over calibration tokens (llama-imatrix's statistic), in llama.cpp's imatrix file format.
//
// Calibration as llama-imatrix runs it: the text tokenized with the model's BOS rule, cut into
// chunks of ctx tokens (remainder dropped), the first token of each chunk replaced by BOS when
// the model adds one, every position of every chunk contributing. Keys are llama.cpp weight
// names ("blk.0.attn_q.weight"); q/k/v share their input, as do gate/up. lm_head is left out,
// as llama-imatrix does without --process-output.
//
// File format (llama.cpp's ".dat", which llama-quantize reads): int32 n_entries; per entry
// sorted by name: int32 len, name, int32 ncall, int32 nval, float values[nval] = mean(x²)·ncall;
// then int32 chunks, int32 len, dataset file name. ncall = ceil(tokens / ctx). Readers divide
// by ncall. read_imatrix also reads the GGUF imatrix files newer llama-imatrix writes by default
// (`<name>.in_sum2` / `<name>.counts`).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/transformer.h"

namespace qf {

struct Imatrix {
  std::map<std::string, std::vector<float>> mean_sq;  // weight name -> mean x² per input column
  std::map<std::string, int64_t> tokens;              // weight name -> tokens seen
  int ctx = 512;                                      // chunk size
  int chunks = 0;
  std::string dataset;
};

Expected<Imatrix> compute_imatrix(const Transformer& tf, const std::vector<int32_t>& tokens, int ctx,
                                  int64_t max_chunks, int32_t bos_first,
                                  const std::function<void(int64_t, int64_t)>& progress);

// replace: an existing file is replaced (--force).
Status write_imatrix(const Imatrix& im, const std::string& path, bool replace = false);
Expected<Imatrix> read_imatrix(const std::string& path);

}  // namespace qf
