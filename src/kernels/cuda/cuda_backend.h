// kernels/cuda/cuda_backend.h — choosing where qforge computes: `--device cpu|cuda|auto`.
//
// The CUDA backend (cuda_backend.cu, built with QFORGE_CUDA=ON) runs every Backend operation on
// the first visible GPU: cuBLAS for the matrix products (the forward pass's on TF32 tensor cores,
// or in fp32 with QFORGE_CUDA_MATH=fp32; with QFORGE_CUDA_MATH=bf16 the Linears' weights are kept
// in bf16 and multiplied on bf16 tensor cores; Gram matrices and GPTQ's updates in fp32), cuSOLVER for GPTQ's
// Cholesky factorizations in fp64, its own kernels for norms, RoPE, softmax, SwiGLU and scoring. Without the
// build option or without a device, asking for it is an error naming why (kernels/select_backend.h); the CPU
// path never depends on it. This header is included by CUDA code: no fmt, no Status.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/backend.h"

namespace qf {

// The CUDA backend, or null with *why set (not built with QFORGE_CUDA, no device, driver too old).
const Backend* cuda_backend(std::string* why);

// What the forward pass's products use now: "TF32", "fp32" or "bf16 (weights) and TF32" (QFORGE_CUDA_MATH).
const char* cuda_forward_math();

// Device memory: (free, total) bytes by cudaMemGetInfo, and the most ever in use since the
// backend started (total − the least free seen at the backend's own allocations). Zeros on the CPU.
struct DeviceMemory {
  int64_t free = 0, total = 0, peak_used = 0;
};
DeviceMemory device_memory();

}  // namespace qf
