// fuzz/fuzz_input.h — what every libFuzzer target shares: the input written to a file the readers
// can open (they read files, mmap'd), inputs of several parts, and a tiny forward pass that makes
// the kernels read whatever a loaded model claims to hold.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "model/transformer.h"

namespace qf::fuzz {

// A scratch directory of this process (under $TMPDIR, /tmp by default), made once.
inline const std::string& scratch() {
  static const std::string dir = [] {
    auto p = std::filesystem::temp_directory_path() / ("qforge_fuzz_" + std::to_string(getpid()));
    std::filesystem::create_directories(p);
    return p.string();
  }();
  return dir;
}

inline std::string write(const std::string& name, std::string_view bytes) {
  const std::string path = scratch() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
  return path;
}

// Inputs of several files are their parts joined by kSplit (scripts/fuzz.sh makes the seeds so).
inline constexpr std::string_view kSplit = "\n--qforge-fuzz-split--\n";
inline std::vector<std::string_view> split(std::string_view in, size_t parts) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    size_t at = in.find(kSplit);
    if (at == std::string_view::npos) break;
    out.push_back(in.substr(0, at));
    in.remove_prefix(at + kSplit.size());
  }
  out.push_back(in);
  out.resize(parts);
  return out;
}

// Reads a view's first and last byte and decodes it when small: a view larger than its bytes faults.
inline void touch(const TensorView& t) {
  if (t.nbytes > 0) {
    volatile uint8_t sink = t.data[0] + t.data[t.nbytes - 1];
    (void)sink;
  }
  if (t.numel() <= (int64_t(1) << 20)) (void)t.to_f32();
}

// The shared stories260K model (its tokenizer and weights are the fixed parts of HF inputs).
inline std::string shared_model_file(const std::string& name) {
  const char* env = std::getenv("QFORGE_SHARED");
  return std::string(env ? env : QFORGE_SOURCE_DIR "/../shared") + "/models/stories260K/hf/" + name;
}

// Loads `path`, builds the model and runs two tokens through it when it is small enough to be quick.
inline void load_and_run(const std::string& path) {
  auto ck = load_checkpoint(path);
  if (!ck.ok()) return;
  (void)ck->tokenizer->encode("Once upon a time");
  const ModelConfig& c = ck->config;
  if (int64_t(c.n_layer) * c.n_embd * (c.n_ff + c.n_embd) > (int64_t(1) << 24) || c.vocab_size > 65536)
    return;
  auto tf = Transformer::create(*ck);
  if (!tf.ok()) return;
  KVCache cache = (*tf)->new_cache(4);
  const int32_t tokens[2] = {0, c.vocab_size - 1};
  std::vector<float> logits(size_t(c.vocab_size));
  (*tf)->forward(tokens, 2, cache, logits.data(), true);
}

}  // namespace qf::fuzz
