// io/gguf_writer.h — writes GGUF v3 files as llama.cpp's gguf.cpp does: header, metadata in
// insertion order, tensor infos (dims innermost first), padding to `general.alignment` (32),
// then each tensor's data padded to the alignment. Streaming: the header is written when the
// first tensor arrives (every tensor's type and shape is declared up front), each tensor is
// written as it is produced, and the file appears under its name only when finish() succeeds
// (a temporary file is renamed; an unfinished writer removes it).
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/cleanup.h"
#include "core/status.h"
#include "formats/qtype.h"
#include "io/gguf.h"

namespace qf {

class GGUFWriter {
 public:
  // replace: an existing file at `path` is replaced when the writer finishes (--force).
  explicit GGUFWriter(std::string path, bool replace = false) : path_(std::move(path)), replace_(replace) {}
  ~GGUFWriter();

  // Metadata, in the order written; setting a key again replaces its value in place.
  void set(const std::string& key, GGUFValue v);
  void set_u32(const std::string& key, uint32_t v) {
    set(key, {GGUFType::UINT32, GGUFType::UINT8, uint64_t(v)});
  }
  void set_i32(const std::string& key, int32_t v) {
    set(key, {GGUFType::INT32, GGUFType::UINT8, int64_t(v)});
  }
  void set_f32(const std::string& key, float v) { set(key, {GGUFType::FLOAT32, GGUFType::UINT8, double(v)}); }
  void set_bool(const std::string& key, bool v) { set(key, {GGUFType::BOOL, GGUFType::UINT8, v}); }
  void set_str(const std::string& key, std::string v) {
    set(key, {GGUFType::STRING, GGUFType::UINT8, std::move(v)});
  }
  void set_str_array(const std::string& key, const std::vector<std::string>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);

  // Declares a tensor; `shape` is row-major (outermost first) like TensorView's.
  void add_tensor(const std::string& name, QType type, const std::vector<int64_t>& shape);
  // Writes the next declared tensor's bytes (name and size are checked).
  Status write_tensor(const std::string& name, const void* data, size_t nbytes);
  // Checks every tensor was written, closes and renames into place.
  Status finish();

 private:
  Status begin();
  std::string path_, tmp_;
  std::unique_ptr<CleanupOnSignal> on_signal_;  // tmp_, while it exists
  std::FILE* file_ = nullptr;
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::vector<GGUFTensorInfo> infos_;
  size_t next_ = 0;
  bool finished_ = false;
  bool replace_ = false;
};

}  // namespace qf
