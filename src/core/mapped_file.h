// core/mapped_file.h — a read-only memory-mapped file. Owns the mapping (RAII, move-only).
// Tensors loaded from checkpoints are views into these mappings, so loading is lazy: pages are
// read from disk when a tensor is first converted or used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/cleanup.h"
#include "core/status.h"

namespace qf {

class MappedFile {
 public:
  static Expected<std::shared_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

// Tells the kernel the pages under [p, p + n) of a read-only mapping are no longer needed, so
// streaming over a checkpoint keeps resident only what is being worked on (pages are read
// again from the file if touched later). Partial pages at either end are kept.
void release_mapped_pages(const void* p, size_t n);

// Reads a whole (small) file into a string: a regular file of at most kMaxTextBytes (FIFOs,
// devices and folders are refused rather than read forever).
constexpr uint64_t kMaxTextBytes = uint64_t(4) << 30;
Expected<std::string> read_text_file(const std::string& path);

// A folder under construction: removed with its contents on destruction unless `keep` is set
// (outputs built beside their final path and renamed when complete).
// Registered for removal on SIGINT/SIGTERM (core/cleanup.h) while it exists.
struct TempDir {
  explicit TempDir(std::string p) : path(std::move(p)), on_signal(path) {}
  ~TempDir();
  std::string path;
  bool keep = false;
  CleanupOnSignal on_signal;
};

// Writes `bytes` to `path` atomically: a temporary file in the same folder, then rename (core/
// cleanup.h publish: an existing file is replaced only when `replace`).
Status write_file_atomic(const std::string& path, const std::string& bytes, bool replace = false);

}  // namespace qf
