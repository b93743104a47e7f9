// io/gguf.h — reader for GGUF v2/v3 files (llama.cpp's model format).
//
// Layout (ggml docs/gguf.md): magic "GGUF", u32 version, u64 tensor count, u64 metadata count,
// metadata key/value pairs, tensor infos (name, n_dims, dims innermost-first, ggml type,
// offset), padding to `general.alignment` (default 32), tensor data. The file is treated as
// hostile: every count, string length, dimension, offset and alignment is checked against
// the file before use. Tensor views are exposed with row-major (outermost-first) shapes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"
#include "formats/tensor.h"

namespace qf {

enum class GGUFType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
std::string_view gguf_type_name(GGUFType t);

// A numeric array as the file stores it (little-endian elements of the array's elem_type): a
// value then costs its size in the file, not a GGUFValue per element (48× for a u8 array).
struct PackedArray {
  std::string bytes;
};

struct GGUFValue {
  GGUFType type = GGUFType::UINT8;
  GGUFType elem_type = GGUFType::UINT8;  // for arrays
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GGUFValue>, PackedArray> v;

  std::optional<int64_t> as_int() const;   // any integer type
  std::optional<double> as_float() const;  // any number
  const std::string* as_string() const;
  const std::vector<GGUFValue>* as_array() const;  // arrays of strings or arrays; null for numeric ones
  size_t array_size() const;                       // any array's element count
  GGUFValue item(size_t i) const;                  // any array's element i
  std::string to_display(size_t max_items = 4) const;
};

struct GGUFTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the innermost (row length)
  uint32_t ggml_type = 0;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
};

class GGUFFile {
 public:
  static Expected<GGUFFile> open(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return file_->path(); }
  const std::vector<std::pair<std::string, GGUFValue>>& metadata() const { return kv_; }
  const std::vector<GGUFTensorInfo>& tensor_infos() const { return infos_; }

  const GGUFValue* find(const std::string& key) const;
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  // Typed array getters; an error names the key and the type found.
  Expected<std::vector<std::string>> get_string_array(const std::string& key) const;
  Expected<std::vector<double>> get_float_array(const std::string& key) const;

  const GGUFTensorInfo* tensor_info(const std::string& name) const;
  // A view of a tensor whose type qforge decodes; errors name the tensor and its type.
  Expected<TensorView> tensor(const std::string& name) const;

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GGUFTensorInfo> infos_;
  std::map<std::string, size_t> info_index_;
};

}  // namespace qf
