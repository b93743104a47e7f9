// kernels/select_backend.cc — `--device` to a Backend (kernels/select_backend.h), and the loader
// of the CUDA backend's shared library (kernels/cuda/cuda_backend.h).
#include "kernels/select_backend.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>

namespace qf {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_cuda_loaded{false};

struct CudaLibrary {
  const CudaEntry* entry = nullptr;
  std::string why;  // when entry is null
};

// libqforge_cuda.so from $QFORGE_CUDA_LIB, beside the executable, one folder up (build/tests/), or
// the loader's search path; once.
const CudaLibrary& cuda_library() {
  static const CudaLibrary lib = [] {
    CudaLibrary l;
    if (!QFORGE_HAS_CUDA) {
      l.why = "this qforge was built without CUDA (configure with -DQFORGE_CUDA=ON)";
      return l;
    }
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec).parent_path();
    std::vector<std::string> paths;
    if (const char* env = std::getenv("QFORGE_CUDA_LIB")) paths.emplace_back(env);
    paths.push_back((exe / "libqforge_cuda.so").string());
    paths.push_back((exe.parent_path() / "libqforge_cuda.so").string());
    paths.emplace_back("libqforge_cuda.so");
    std::string errors;
    for (const std::string& p : paths) {
      if (p.find('/') != std::string::npos && !fs::exists(p)) continue;
      void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
      const char* err = h ? nullptr : dlerror();
      auto* entry = h ? reinterpret_cast<const CudaEntry* (*)()>(dlsym(h, "qforge_cuda_entry")) : nullptr;
      if (entry) {
        l.entry = entry();
        g_cuda_loaded = true;
        return l;
      }
      errors += (errors.empty() ? "" : "; ") + p + ": " + (err ? err : "no qforge_cuda_entry");
    }
    l.why = "the CUDA backend's library libqforge_cuda.so could not be loaded (" + errors + ")";
    return l;
  }();
  return lib;
}

// Whether an NVIDIA driver is present, without loading any CUDA library.
bool nvidia_driver_present() {
  std::error_code ec;
  return fs::exists("/dev/nvidiactl", ec) || fs::exists("/proc/driver/nvidia/version", ec);
}

}  // namespace

const Backend* cuda_backend(std::string* why) {
  const CudaLibrary& l = cuda_library();
  if (!l.entry) {
    if (why) *why = l.why;
    return nullptr;
  }
  return l.entry->backend(why);
}

const char* cuda_forward_math() { return g_cuda_loaded ? cuda_library().entry->forward_math() : ""; }

DeviceMemory device_memory() { return g_cuda_loaded ? cuda_library().entry->memory() : DeviceMemory{}; }

Expected<const Backend*> select_backend(const std::string& device) {
  if (device == "cpu") return &cpu_backend();
  if (device == "auto" && !nvidia_driver_present()) return &cpu_backend();  // no GPU: load nothing
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
