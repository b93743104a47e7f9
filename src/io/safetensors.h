// io/safetensors.h — reader for Hugging Face .safetensors files (single or sharded).
//
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the data section. Every field is
// validated before use: header length, dtype, shape products, offsets inside the file and
// their agreement with dtype × shape. Tensors are returned as views into the mapping.
#pragma once

#include <cstdio>
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

namespace qf {

// Streaming writer: the header (every name, dtype, shape) is written first, then each tensor's
// bytes in the declared order, so only one tensor need be in memory at a time. The file lays the
// tensors out as the reference writer does (wider dtypes first, then by name: all aligned).
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    std::string dtype;  // "F32", "F16", "BF16", "I32", "I8", "U8"
    std::vector<int64_t> shape;
  };
  static Expected<std::unique_ptr<SafetensorsWriter>> create(
      const std::string& path, std::vector<Entry> entries,
      const std::map<std::string, std::string>& metadata);
  // Writes the next tensor; its name and byte count must match the next declared entry.
  Status write(const std::string& name, const void* data, size_t nbytes);
  // Checks that every tensor was written and closes the file.
  Status finish();
  ~SafetensorsWriter();

 private:
  SafetensorsWriter() = default;
  std::string path_;
  std::FILE* file_ = nullptr;
  std::vector<Entry> entries_;
  std::vector<size_t> sizes_;
  std::vector<uint64_t> offsets_;  // within the data section, per declared entry
  uint64_t data_start_ = 0;
  size_t next_ = 0;
};

}  // namespace qf
