// kernels/cuda/cuda_common.cuh — what the CUDA backend's translation units share: fatal errors
// with the failing call named, the per-thread cuBLAS/cuSOLVER handles and the math mode
// (QFORGE_CUDA_MATH), grid sizes, and block reductions. Internal to kernels/cuda/.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace qf::cuda {

[[noreturn]] inline void fatal(const char* what, const char* detail) {
  std::fprintf(stderr, "error: CUDA: %s: %s\n", what, detail);
  std::abort();
}
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fatal(what, cudaGetErrorString(e));
}
inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fatal(what, cublasGetStatusString(s));
}
inline void check(cusolverStatus_t s, const char* what) {
  if (s != CUSOLVER_STATUS_SUCCESS) fatal(what, std::to_string(int(s)).c_str());
}
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

// Read when a BackendLinear is made.
inline bool bf16_weights_asked() {
  const char* m = std::getenv("QFORGE_CUDA_MATH");
  return m && std::string(m) == "bf16";
}

// Read at every product, so that a test can switch.
inline bool tf32_forward() {
  const char* m = std::getenv("QFORGE_CUDA_MATH");
  return !(m && std::string(m) == "fp32");
}

// Per-thread library handles: `exact` in fp32, `fast` (forward()) with TF32 unless asked not to.
struct Handles {
  cublasHandle_t exact = nullptr, fast = nullptr;
  cusolverDnHandle_t solver = nullptr;
  bool fast_tf32 = false;
  Handles() {
    check(cublasCreate(&exact), "cublasCreate");
    check(cublasCreate(&fast), "cublasCreate");
    check(cusolverDnCreate(&solver), "cusolverDnCreate");
  }
  cublasHandle_t forward() {
    const bool tf32 = tf32_forward();
    if (tf32 != fast_tf32)
      check(cublasSetMathMode(fast, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
            "cublasSetMathMode");
    fast_tf32 = tf32;
    return fast;
  }
};
inline Handles& handles() {
  static thread_local Handles h;  // destroyed with the context at exit: never freed explicitly
  return h;
}

inline int blocks_for(int64_t n, int threads) {
  return int(std::min<int64_t>((n + threads - 1) / threads, 1 << 20));
}

// ---- block reductions (blockDim.x a multiple of 32, ≤ 1024) ----
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* shared) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();  // shared may still be read by a previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = shared[0];
  for (int w = 1; w < warps; ++w) v = op(v, shared[w]);
  return v;
}
struct Sum {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

}  // namespace qf::cuda
