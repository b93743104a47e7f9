// A safetensors file (header and data offsets), every tensor read and decoded.
#include "fuzz/fuzz_input.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qf::fuzz::write("model.safetensors", {reinterpret_cast<const char*>(data), size});
  auto f = qf::read_safetensors(path);
  if (!f.ok()) return 0;
  for (const auto& t : f->tensors) qf::fuzz::touch(t);
  return 0;
}
