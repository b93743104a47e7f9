// tests/file_builders.h — writers for handcrafted (often deliberately corrupt) test files.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace qf::test {

// A byte buffer with little-endian appenders, for GGUF and safetensors headers.
struct Bytes {
  std::string b;
  template <typename T>
  Bytes& put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
  Bytes& pad_to(size_t align) {
    while (b.size() % align) b += '\0';
    return *this;
  }
};

inline std::string temp_dir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("qforge_test_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace qf::test

#include <map>
#include <nlohmann/json.hpp>

namespace qf::test {

struct F32Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  bool as_i32 = false;  // stored as I32 (the values truncated), a tensor of the wrong kind
};

// A safetensors file of F32 tensors (header padded to 8 bytes as the reference writer does).
inline std::string safetensors_bytes(const std::map<std::string, F32Tensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    size_t begin = data.size();
    for (float v : t.data) {
      const int32_t i = int32_t(v);
      data.append(t.as_i32 ? reinterpret_cast<const char*>(&i) : reinterpret_cast<const char*>(&v), 4);
    }
    header[name] = {
        {"dtype", t.as_i32 ? "I32" : "F32"}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  Bytes b;
  b.put<uint64_t>(h.size());
  return b.b + h + data;
}

}  // namespace qf::test
