#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace qf {

Expected<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return error("{}: not a regular file", path);
  }
  size_t size = size_t(st.st_size);
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      return error("{}: mmap failed: {}", path, std::strerror(errno));
    }
    data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
}

void release_mapped_pages(const void* p, size_t n) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  uintptr_t begin = (uintptr_t(p) + page - 1) / page * page, end = (uintptr_t(p) + n) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

Expected<std::string> read_text_file(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (!ec && st.type() != std::filesystem::file_type::regular)
    return error("{}: not a regular file (a text, config or tokenizer must be a file)", path);
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxTextBytes)
    return error("{}: {} bytes, more than the {} bytes a text file may have", path, size, kMaxTextBytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) return error("{}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return error("{}: read failed", path);
  return ss.str();
}

Status write_file_atomic(const std::string& path, const std::string& bytes, bool replace) {
  const std::string tmp = temporary_for(path);
  CleanupOnSignal on_signal(tmp);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return error("{}: cannot create: {}", tmp, std::strerror(errno));
    out.write(bytes.data(), std::streamsize(bytes.size()));
    if (!out.flush()) {
      std::remove(tmp.c_str());
      return error("{}: write failed", tmp);
    }
  }
  Status st = publish(tmp, path, replace);
  if (!st.ok()) std::remove(tmp.c_str());
  return st;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!keep && !path.empty()) std::filesystem::remove_all(path, ec);
}

}  // namespace qf
