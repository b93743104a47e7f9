// kernels/select_backend.cc — `--device` to a Backend (kernels/select_backend.h).
#include "kernels/select_backend.h"

namespace qf {

#if !QFORGE_HAS_CUDA
const Backend* cuda_backend(std::string* why) {
  if (why) *why = "this qforge was built without CUDA (configure with -DQFORGE_CUDA=ON)";
  return nullptr;
}
DeviceMemory device_memory() { return {}; }
const char* cuda_forward_math() { return ""; }
#endif

Expected<const Backend*> select_backend(const std::string& device) {
  if (device == "cpu") return &cpu_backend();
  std::string why;
  const Backend* cuda = (device == "cuda" || device == "auto") ? cuda_backend(&why) : nullptr;
  if (cuda) return cuda;
  if (device == "auto") return &cpu_backend();
  if (device == "cuda") return error("--device cuda: {}", why);
  return error("--device: expected cpu, cuda or auto, got '{}'", device);
}

std::string describe_backend(const Backend& be) {
  if (!be.on_device()) return be.name();
  return std::string(be.name()) + " (forward products in " + cuda_forward_math() + ")";
}

}  // namespace qf
