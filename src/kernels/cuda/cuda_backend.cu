// kernels/cuda/cuda_backend.cu — kernels/backend.h on one GPU (the first visible device).
//
// Every operation is queued on the legacy default stream in call order; copies to the host wait
// for it. cuBLAS does the matrix products: the forward pass's (linear, attention) on TF32 tensor
// cores unless QFORGE_CUDA_MATH=fp32 asks for fp32 (CUBLAS_DEFAULT_MATH); Gram matrices and
// GPTQ's updates always in fp32. cuSOLVER factorizes in fp64 as the CPU path's LAPACK does, so
// the two paths differ only by summation order. Handles are per host thread; a CUDA failure is a
// bug or an exhausted device, fatal with the call and the error in the message. This file: memory,
// the forward pass and scoring; calibration and GPTQ's operations are in cuda_calibration.cu.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_calibration.h"
#include "kernels/cuda/cuda_common.cuh"

namespace qf {
namespace {

using namespace cuda;  // NOLINT: the shared helpers of kernels/cuda/

std::atomic<int64_t> g_peak_used{0};
void note_memory() {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return;
  const int64_t used = int64_t(total - free);
  int64_t prev = g_peak_used.load();
  while (used > prev && !g_peak_used.compare_exchange_weak(prev, used)) {
  }
}

// ---- element-wise and row kernels (contracts as in kernels/backend.h) ----
__global__ void rms_norm_kernel(const float* x, const float* w, float* y, int dim, float eps) {
  __shared__ double sh[32];
  const float* xr = x + int64_t(blockIdx.x) * dim;
  float* yr = y + int64_t(blockIdx.x) * dim;
  double ss = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += double(xr[i]) * xr[i];
  ss = block_reduce(ss, Sum{}, sh);
  const float inv = 1.0f / sqrtf(float(ss / dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = w[i] * (xr[i] * inv);
}

__global__ void rope_kernel(float* x, int n, int n_heads, int hd, bool inter, const float* cs) {
  const int half = hd / 2;
  const int64_t total = int64_t(n) * n_heads * half;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int i = int(e % half);
    const int64_t th = e / half;  // t · n_heads + h
    const int t = int(th / n_heads);
    float* v = x + th * hd;
    const float c = cs[2 * (int64_t(t) * half + i)], s = cs[2 * (int64_t(t) * half + i) + 1];
    const int a = inter ? 2 * i : i, b = inter ? 2 * i + 1 : i + half;
    const float x0 = v[a], x1 = v[b];
    v[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));  // no FMA: the CPU path rounds each product
    v[b] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
  }
}

__global__ void silu_mul_kernel(float* gate, const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__global__ void add_bias_kernel(float* y, const float* bias, int64_t tokens, int64_t n_out) {
  const int64_t total = tokens * n_out;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[i % n_out];
}

__global__ void to_bf16_kernel(const float* src, __nv_bfloat16* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void widen_16_kernel(const uint16_t* src, bool bf16, float* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = bf16 ? __uint_as_float(uint32_t(src[i]) << 16) : __half2float(__ushort_as_half(src[i]));
}

__global__ void first_nonfinite_kernel(const float* x, int64_t n, unsigned long long* first) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    if (!isfinite(x[i])) {
      atomicMin(first, static_cast<unsigned long long>(i));
      return;  // this thread's later elements come after i
    }
}

__global__ void narrow_kernel(const double* src, float* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = float(src[i]);
}

// Causal softmax of scores (n_head · rows, keys) in place: row (h, i) is query position
// p + t0 + i, which sees positions [first, p + t0 + i]; the others become 0.
__global__ void causal_softmax_kernel(float* s, int rows, int keys, int q0, int window) {
  __shared__ float shf[32];
  __shared__ double shd[32];
  float* row = s + int64_t(blockIdx.x) * keys;
  const int visible = q0 + int(blockIdx.x % rows) + 1;
  const int first = window > 0 ? max(0, visible - window) : 0;
  float mx = -FLT_MAX;
  for (int j = first + threadIdx.x; j < visible; j += blockDim.x) mx = fmaxf(mx, row[j]);
  mx = block_reduce(mx, Max{}, shf);
  double sum = 0;
  for (int j = first + threadIdx.x; j < visible; j += blockDim.x) {
    const float e = expf(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  sum = block_reduce(sum, Sum{}, shd);
  const float inv = float(1.0 / sum);
  for (int j = threadIdx.x; j < keys; j += blockDim.x)
    row[j] = (j >= first && j < visible) ? row[j] * inv : 0.0f;
}

struct MaxAt {
  float v;
  int i;
};
__device__ MaxAt max_at(MaxAt a, MaxAt b) { return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a; }

// lse and first argmax of one row of logits (block-wide).
__device__ void row_lse(const float* l, int vocab, double* lse, int* argmax, MaxAt* sh_m, double* sh_d) {
  MaxAt m{-FLT_MAX, vocab};
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) m = max_at(m, MaxAt{l[i], i});
  for (int o = 16; o > 0; o >>= 1) {
    MaxAt other{__shfl_xor_sync(0xffffffffu, m.v, o), __shfl_xor_sync(0xffffffffu, m.i, o)};
    m = max_at(m, other);
  }
  __syncthreads();
  if (threadIdx.x % 32 == 0) sh_m[threadIdx.x / 32] = m;
  __syncthreads();
  m = sh_m[0];
  for (int w = 1; w < int(blockDim.x / 32); ++w) m = max_at(m, sh_m[w]);
  double sum = 0;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) sum += exp(double(l[i]) - m.v);
  sum = block_reduce(sum, Sum{}, sh_d);
  *lse = log(sum) + m.v;
  *argmax = m.i;
}

__global__ void score_kernel(const float* logits, const float* base, const int32_t* targets, int vocab,
                             PositionStats* out) {
  __shared__ MaxAt sh_m[32];
  __shared__ double sh_d[32];
  const int64_t off = int64_t(blockIdx.x) * vocab;
  const float* q = logits + off;
  double lse_q = 0;
  int am_q = 0;
  row_lse(q, vocab, &lse_q, &am_q, sh_m, sh_d);
  PositionStats s;
  const int32_t target = targets[blockIdx.x];
  s.nll = lse_q - q[target];
  if (base) {
    const float* b = base + off;
    double lse_b = 0;
    int am_b = 0;
    row_lse(b, vocab, &lse_b, &am_b, sh_m, sh_d);
    s.base_nll = lse_b - b[target];
    double kld = 0;
    for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
      const double lb = b[v] - lse_b, lq = q[v] - lse_q;
      kld += exp(lb) * (lb - lq);
    }
    s.kld = block_reduce(kld, Sum{}, sh_d);
    s.agree = am_q == am_b;
  }
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  bool on_device() const override { return true; }
  void synchronize() const override { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

  // Stream-ordered (cudaMallocAsync on the default stream, where every operation runs): a freed
  // block goes back to the device's pool, kept there for the next allocation, so that neither
  // call synchronizes the device as cudaMalloc/cudaFree do (AWQ and GPTQ allocate per step). When
  // the pool cannot serve a request, what it caches is returned to the device and the request
  // tried once more.
  void* alloc(int64_t bytes) const override {
    if (bytes <= 0) return nullptr;
    static const cudaMemPool_t pool = [] {
      cudaMemPool_t p = nullptr;
      check(cudaDeviceGetDefaultMemPool(&p, 0), "cudaDeviceGetDefaultMemPool");
      uint64_t keep = UINT64_MAX;
      check(cudaMemPoolSetAttribute(p, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
      return p;
    }();
    void* p = nullptr;
    cudaError_t e = cudaMallocAsync(&p, size_t(bytes), 0);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
      check(cudaMemPoolTrimTo(pool, 0), "cudaMemPoolTrimTo");
      e = cudaMallocAsync(&p, size_t(bytes), 0);
    }
    if (e != cudaSuccess) {
      const std::string what = "cudaMallocAsync of " + std::to_string(bytes) + " bytes";
      fatal(what.c_str(), cudaGetErrorString(e));
    }
    note_memory();
    return p;
  }
  void release(void* p) const override {
    if (p) check(cudaFreeAsync(p, 0), "cudaFreeAsync");
  }
  void to_device(void* dst, const void* host, int64_t bytes) const override {
    if (bytes) check(cudaMemcpy(dst, host, size_t(bytes), cudaMemcpyHostToDevice), "cudaMemcpy to device");
  }
  void to_host(void* host, const void* src, int64_t bytes) const override {
    if (bytes) check(cudaMemcpy(host, src, size_t(bytes), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
  }
  void copy(void* dst, const void* src, int64_t bytes) const override {
    if (bytes) check(cudaMemcpy(dst, src, size_t(bytes), cudaMemcpyDeviceToDevice), "cudaMemcpy on device");
  }
  void copy_2d(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width, int64_t rows,
               Copy direction) const override {
    const cudaMemcpyKind kind = direction == Copy::kToDevice ? cudaMemcpyHostToDevice
                                : direction == Copy::kToHost ? cudaMemcpyDeviceToHost
                                                             : cudaMemcpyDeviceToDevice;
    if (rows && width)
      check(cudaMemcpy2D(dst, size_t(dst_pitch), src, size_t(src_pitch), size_t(width), size_t(rows), kind),
            "cudaMemcpy2D");
  }
  float* scratch(int slot, int64_t n) const override {
    struct Slots {
      float* p[kScratchSlots] = {};
      int64_t n[kScratchSlots] = {};
    };
    static thread_local Slots s;  // released with the context at exit
    if (slot < 0 || slot >= kScratchSlots) fatal("scratch", "slot out of range");
    if (s.n[slot] < n) {
      release(s.p[slot]);
      s.p[slot] = static_cast<float*>(alloc(n * 4));
      s.n[slot] = n;
    }
    return s.p[slot];
  }

  void rms_norm(const float* x, const float* w, float* y, int n, int dim, float eps) const override {
    if (n <= 0) return;
    rms_norm_kernel<<<n, 256>>>(x, w, y, dim, eps);
    check_launch("rms_norm_kernel");
  }
  void rope(float* x, int n, int n_heads, int hd, bool inter, const float* cs) const override {
    const int64_t total = int64_t(n) * n_heads * (hd / 2);
    if (total == 0) return;
    rope_kernel<<<blocks_for(total, 256), 256>>>(x, n, n_heads, hd, inter, cs);
    check_launch("rope_kernel");
  }
  void silu_mul(float* gate, const float* up, int64_t n) const override {
    if (n == 0) return;
    silu_mul_kernel<<<blocks_for(n, 256), 256>>>(gate, up, n);
    check_launch("silu_mul_kernel");
  }
  void add(float* x, const float* y, int64_t n) const override {
    if (n == 0) return;
    add_kernel<<<blocks_for(n, 256), 256>>>(x, y, n);
    check_launch("add_kernel");
  }

  // Per chunk of query rows and per KV head: scores = Q·Kᵀ·scale for its `group` query heads in
  // one strided-batched product, the causal softmax, out = P·V likewise. Scores: ≤ 64 Mi floats.
  void attention(const AttentionArgs& a) const override {
    const int hd = a.head_dim, qd = a.n_head * hd, kvd = a.n_head_kv * hd, group = a.n_head / a.n_head_kv;
    const float scale = 1.0f / sqrtf(float(hd)), one = 1.0f, zero = 0.0f;
    const int64_t all_keys = int64_t(a.n_past) + a.n;
    const int chunk =
        int(std::max<int64_t>(1, std::min<int64_t>(a.n, (int64_t(1) << 26) / (a.n_head * all_keys))));
    float* S = scratch(kScratchSlots - 1, int64_t(a.n_head) * chunk * all_keys);
    cublasHandle_t h = handles().forward();
    for (int t0 = 0; t0 < a.n; t0 += chunk) {
      const int rows = std::min(chunk, a.n - t0), keys = a.n_past + t0 + rows;
      for (int g = 0; g < a.n_head_kv; ++g) {
        // Column-major: S_hᵀ (keys × rows) = K_g (keys × hd) · Q_hᵀ (hd × rows).
        check(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, keys, rows, hd, &scale, a.k + g * hd,
                                        kvd, 0, a.q + int64_t(t0) * qd + int64_t(g) * group * hd, qd, hd,
                                        &zero, S + int64_t(g) * group * rows * keys, keys,
                                        int64_t(rows) * keys, group),
              "cublasSgemmStridedBatched (scores)");
      }
      causal_softmax_kernel<<<a.n_head * rows, 256>>>(S, rows, keys, a.n_past + t0, a.sliding_window);
      check_launch("causal_softmax_kernel");
      for (int g = 0; g < a.n_head_kv; ++g) {
        // Column-major: out_hᵀ (hd × rows) = V_gᵀ (hd × keys) · P_hᵀ (keys × rows).
        check(
            cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, hd, rows, keys, &one, a.v + g * hd, kvd, 0,
                                      S + int64_t(g) * group * rows * keys, keys, int64_t(rows) * keys, &zero,
                                      a.out + int64_t(t0) * qd + int64_t(g) * group * hd, qd, hd, group),
            "cublasSgemmStridedBatched (values)");
      }
    }
  }

  void linear(const float* x, const float* w, const float* bias, float* y, int64_t tokens, int64_t n_in,
              int64_t n_out) const override {
    // Column-major: yᵀ (n_out × tokens) = W (n_out × n_in, stored as Wᵀ) · xᵀ (n_in × tokens).
    const float one = 1.0f, zero = 0.0f;
    check(cublasSgemm_64(handles().forward(), CUBLAS_OP_T, CUBLAS_OP_N, n_out, tokens, n_in, &one, w, n_in, x,
                         n_in, &zero, y, n_out),
          "cublasSgemm (linear)");
    if (bias) {
      add_bias_kernel<<<blocks_for(tokens * n_out, 256), 256>>>(y, bias, tokens, n_out);
      check_launch("add_bias_kernel");
    }
  }

  void gemm_nt(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t m,
               int64_t n, int64_t k, int64_t groups) const override {
    // Column-major: Cᵀ (n × m) = B (n × k, stored as Bᵀ) · Aᵀ (k × m); group g starts k columns of
    // A and B and n columns of C further on.
    const float one = 1.0f, zero = 0.0f;
    if (groups > 0)
      check(cublasSgemmStridedBatched_64(handles().forward(), CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, B, ldb,
                                         k, A, lda, k, &zero, C, ldc, n, groups),
            "cublasSgemmStridedBatched (gemm_nt)");
  }
  void column_squared_distances(const float* a, const float* b, int64_t rows, int64_t n,
                                double* out) const override {
    cuda::column_squared_distances(*this, a, b, rows, n, out);
  }

  bool bf16_weights() const override { return bf16_weights_asked(); }
  void linear_bf16(const float* x, const uint16_t* w, const float* bias, float* y, int64_t tokens,
                   int64_t n_in, int64_t n_out) const override {
    struct Staging {
      void* p = nullptr;
      int64_t n = 0;
    };
    static thread_local Staging xb;  // x in bf16; released with the context at exit, as scratch()
    if (xb.n < tokens * n_in) {
      release(xb.p);
      xb.p = alloc(tokens * n_in * 2);
      xb.n = tokens * n_in;
    }
    auto* xh = static_cast<__nv_bfloat16*>(xb.p);
    to_bf16_kernel<<<blocks_for(tokens * n_in, 256), 256>>>(x, xh, tokens * n_in);
    check_launch("to_bf16_kernel");
    const float one = 1.0f, zero = 0.0f;  // as linear(): yᵀ = W · xᵀ, column-major
    check(cublasGemmEx(handles().exact, CUBLAS_OP_T, CUBLAS_OP_N, int(n_out), int(tokens), int(n_in), &one, w,
                       CUDA_R_16BF, int(n_in), xh, CUDA_R_16BF, int(n_in), &zero, y, CUDA_R_32F, int(n_out),
                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx (linear bf16)");
    if (bias) {
      add_bias_kernel<<<blocks_for(tokens * n_out, 256), 256>>>(y, bias, tokens, n_out);
      check_launch("add_bias_kernel");
    }
  }

  void gemm_sub(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t m,
                int64_t n, int64_t k) const override {
    // Column-major: Cᵀ (n × m) −= Bᵀ (n × k) · Aᵀ (k × m).
    const float minus = -1.0f, one = 1.0f;
    check(cublasSgemm_64(handles().exact, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &minus, B, ldb, A, lda, &one, C,
                         ldc),
          "cublasSgemm (gemm_sub)");
  }

  bool inverse_cholesky(double* H, int64_t n) const override { return cuda::inverse_cholesky(*this, H, n); }

  void narrow(const double* src, float* dst, int64_t n) const override {
    if (n == 0) return;
    narrow_kernel<<<blocks_for(n, 256), 256>>>(src, dst, n);
    check_launch("narrow_kernel");
  }

  void column_sums(const float* x, int64_t n, int64_t d, int power, double* out) const override {
    cuda::column_sums(x, n, d, power, out);
  }
  double squared_distance(const float* a, const float* b, int64_t n, double start) const override {
    return cuda::squared_distance(*this, a, b, n, start);
  }
  void diagonal(const double* H, int64_t n, double* out) const override { cuda::diagonal(*this, H, n, out); }
  void add_diagonal(double* H, int64_t n, double v) const override { cuda::add_diagonal(H, n, v); }
  void permute_symmetric(const double* src, const int64_t* perm, double* dst, int64_t n) const override {
    cuda::permute_symmetric(*this, src, perm, dst, n);
  }

  void gather_columns(const float* src, const int64_t* idx, float* dst, int64_t rows,
                      int64_t n) const override {
    cuda::gather_columns(*this, src, idx, dst, rows, n);
  }
  void widen_16(const uint16_t* src, bool bf16, float* dst, int64_t n) const override {
    if (n == 0) return;
    widen_16_kernel<<<blocks_for(n, 256), 256>>>(src, bf16, dst, n);
    check_launch("widen_16_kernel");
  }
  int64_t first_nonfinite(const float* x, int64_t n) const override {
    if (n == 0) return 0;
    Buffer<unsigned long long> first(*this,
                                     std::vector<unsigned long long>{static_cast<unsigned long long>(n)});
    first_nonfinite_kernel<<<blocks_for(n, 256), 256>>>(x, n, first.data());
    check_launch("first_nonfinite_kernel");
    return int64_t(first.to_host()[0]);
  }

  std::unique_ptr<GramAccumulator> gram(int d) const override { return cuda::make_gram(*this, d); }

  void fake_quantize_int(const FakeQuantArgs& a) const override { cuda::fake_quantize_int(a); }
  bool round_int_batch(const IntGridBatch& a) const override {
    cuda::round_int_batch(a);
    return true;
  }

  void score(const float* logits, const float* base, const int32_t* targets, int rows, int vocab,
             PositionStats* out) const override {
    if (rows <= 0) return;
    Buffer<int32_t> t(*this, rows);
    Buffer<PositionStats> o(*this, rows);
    to_device(t.data(), targets, int64_t(rows) * 4);
    score_kernel<<<rows, 512>>>(logits, base, t.data(), vocab, o.data());
    check_launch("score_kernel");
    to_host(out, o.data(), int64_t(rows) * int64_t(sizeof(PositionStats)));
  }
};

}  // namespace

namespace {

const Backend* backend(std::string* why) {
  static const std::string reason = [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(e) + ")";
    if (n == 0) return std::string("no CUDA device is visible");
    return std::string();
  }();
  if (!reason.empty()) {
    if (why) *why = reason;
    return nullptr;
  }
  static const CudaBackend instance;
  return &instance;
}

const char* forward_math() {
  return bf16_weights_asked() ? "bf16 (weights) and TF32" : tf32_forward() ? "TF32" : "fp32";
}

DeviceMemory memory() {
  DeviceMemory m;
  if (!backend(nullptr)) return m;
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return m;
  m.free = int64_t(free);
  m.total = int64_t(total);
  note_memory();
  m.peak_used = g_peak_used.load();
  return m;
}

}  // namespace

}  // namespace qf

extern "C" __attribute__((visibility("default"))) const qf::CudaEntry* qforge_cuda_entry() {
  static const qf::CudaEntry entry{qf::backend, qf::forward_math, qf::memory};
  return &entry;
}
