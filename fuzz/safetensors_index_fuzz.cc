// A sharded safetensors checkpoint: model.safetensors.index.json and its two shards, all three
// from the input (tensors listed twice, in two shards, in none, shards that disagree).
#include "fuzz/fuzz_input.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = qf::fuzz::split({reinterpret_cast<const char*>(data), size}, 3);
  qf::fuzz::write("model.safetensors.index.json", parts[0]);
  qf::fuzz::write("model-00001-of-00002.safetensors", parts[1]);
  qf::fuzz::write("model-00002-of-00002.safetensors", parts[2]);
  auto tensors = qf::read_safetensors_dir(qf::fuzz::scratch());
  if (!tensors.ok()) return 0;
  for (const auto& [name, t] : *tensors) qf::fuzz::touch(t);
  return 0;
}
