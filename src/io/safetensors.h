// io/safetensors.h — reader for Hugging Face .safetensors files (single or sharded).
//
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the data section. Every field is
// validated before use: header length, dtype, shape products, offsets inside the file and
// their agreement with dtype × shape. Tensors are returned as views into the mapping.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"
#include "formats/tensor.h"

namespace qf {

struct SafetensorsFile {
  std::shared_ptr<MappedFile> file;
  std::vector<TensorView> tensors;
  std::map<std::string, std::string> metadata;
};

Expected<SafetensorsFile> read_safetensors(const std::string& path);

// Loads `model.safetensors` or the shards listed by `model.safetensors.index.json` in `dir`.
// Returns every tensor by name; errors name the shard and tensor at fault.
Expected<std::map<std::string, TensorView>> read_safetensors_dir(const std::string& dir);

}  // namespace qf
