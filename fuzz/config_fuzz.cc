// config.json of an HF directory whose weights and tokenizer are stories260K's: the config parser
// (architectures, sizes, RoPE scaling, quantization_config), the checks of the tensors it implies,
// and two tokens through the model it describes.
#include <filesystem>

#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  for (const char* name : {"model.safetensors", "tokenizer.json"})
    std::filesystem::create_symlink(qf::fuzz::shared_model_file(name), qf::fuzz::scratch() + "/" + name);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qf::fuzz::write("config.json", {reinterpret_cast<const char*>(data), size});
  qf::fuzz::load_and_run(qf::fuzz::scratch());
  return 0;
}
