// An importance-matrix file, llama.cpp's .dat or GGUF form.
#include "fuzz/fuzz_input.h"
#include "quant/imatrix.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)qf::read_imatrix(qf::fuzz::write("imatrix.dat", {reinterpret_cast<const char*>(data), size}));
  return 0;
}
