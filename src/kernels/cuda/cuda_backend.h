// kernels/cuda/cuda_backend.h — choosing where qforge computes: `--device cpu|cuda|auto`.
//
// The CUDA backend (cuda_backend.cu, built with QFORGE_CUDA=ON into libqforge_cuda.so) runs every Backend
// operation on the first visible GPU: cuBLAS for the matrix products (the forward pass's on TF32 tensor
// cores, or in fp32 with QFORGE_CUDA_MATH=fp32; with QFORGE_CUDA_MATH=bf16 the Linears' weights are kept in
// bf16 and multiplied on bf16 tensor cores; Gram matrices and GPTQ's updates in fp32), cuSOLVER for GPTQ's
// Cholesky factorizations in fp64, its own kernels for norms, RoPE, softmax, SwiGLU and scoring. Without the
// build option or without a device, asking for it is an error naming why (kernels/select_backend.h); the CPU
// path never depends on it. This header is included by CUDA code: no fmt, no Status.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/backend.h"

namespace qf {

// The CUDA backend, or null with *why set (not built with QFORGE_CUDA, no device, driver too old,
// libqforge_cuda.so not found). The backend and the CUDA libraries live in libqforge_cuda.so,
// loaded on the first call (kernels/select_backend.cc): a run that never asks for the GPU never maps
// cuBLAS and cuSOLVER (~270 MB resident when linked in).
const Backend* cuda_backend(std::string* why);

// What the forward pass's products use now: "TF32", "fp32" or "bf16 (weights) and TF32" (QFORGE_CUDA_MATH).
const char* cuda_forward_math();

// Device memory: (free, total) bytes by cudaMemGetInfo, and the most ever in use since the
// backend started (total − the least free seen at the backend's own allocations). Zeros on the CPU.
struct DeviceMemory {
  int64_t free = 0, total = 0, peak_used = 0;
};
DeviceMemory device_memory();

// libqforge_cuda.so's one exported symbol, `qforge_cuda_entry` (C linkage, found by dlsym).
struct CudaEntry {
  const Backend* (*backend)(std::string* why);
  const char* (*forward_math)();
  DeviceMemory (*memory)();
};

}  // namespace qf

extern "C" const qf::CudaEntry* qforge_cuda_entry();
