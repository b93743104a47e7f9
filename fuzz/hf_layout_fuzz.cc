// A quantized HF checkpoint — config.json (quantization_config) and model.safetensors from the
// input, stories260K's tokenizer — through the layout readers (GPTQ, AWQ, bitsandbytes, QuIP#)
// and two tokens through the kernels that read what they built.
#include <filesystem>

#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::filesystem::create_symlink(qf::fuzz::shared_model_file("tokenizer.json"),
                                  qf::fuzz::scratch() + "/tokenizer.json");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = qf::fuzz::split({reinterpret_cast<const char*>(data), size}, 2);
  qf::fuzz::write("config.json", parts[0]);
  qf::fuzz::write("model.safetensors", parts[1]);
  qf::fuzz::load_and_run(qf::fuzz::scratch());
  return 0;
}
