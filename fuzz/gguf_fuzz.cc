// A GGUF file: the reader (header, metadata, tensor infos, every tensor's view), then the whole
// checkpoint loader (config, tokenizer, layer tensors) and two tokens through the model.
#include "fuzz/fuzz_input.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qf::fuzz::write("model.gguf", {reinterpret_cast<const char*>(data), size});
  auto g = qf::GGUFFile::open(path);
  if (!g.ok()) return 0;
  for (const auto& [key, value] : g->metadata()) (void)value.to_display();
  for (const auto& info : g->tensor_infos()) {
    auto t = g->tensor(info.name);
    if (t.ok()) qf::fuzz::touch(*t);
  }
  qf::fuzz::load_and_run(path);
  return 0;
}
