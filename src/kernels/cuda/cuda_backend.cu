// kernels/cuda/cuda_backend.cu — kernels/backend.h on one GPU (the first visible device).
//
// Every operation is queued on the legacy default stream in call order; copies to the host wait
// for it. cuBLAS does the matrix products: the forward pass's (linear, attention) on TF32 tensor
// cores unless QFORGE_CUDA_MATH=fp32 asks for fp32 (CUBLAS_DEFAULT_MATH); Gram matrices and
// GPTQ's updates always in fp32. cuSOLVER factorizes in fp64 as the CPU path's LAPACK does, so
// the two paths differ only by summation order. Handles are per host thread; a CUDA failure is a
// bug or an exhausted device, fatal with the call and the error in the message.
#include <cublas_v2.h>
#include <cuda_bf16.h>
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

namespace qf {
namespace {

[[noreturn]] void fatal(const char* what, const char* detail) {
  std::fprintf(stderr, "error: CUDA: %s: %s\n", what, detail);
  std::abort();
}
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fatal(what, cudaGetErrorString(e));
}
void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fatal(what, cublasGetStatusString(s));
}
void check(cusolverStatus_t s, const char* what) {
  if (s != CUSOLVER_STATUS_SUCCESS) fatal(what, std::to_string(int(s)).c_str());
}
void check_launch(const char* what) { check(cudaGetLastError(), what); }

std::atomic<int64_t> g_peak_used{0};
void note_memory() {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return;
  const int64_t used = int64_t(total - free);
  int64_t prev = g_peak_used.load();
  while (used > prev && !g_peak_used.compare_exchange_weak(prev, used)) {
  }
}

// Read when a BackendLinear is made.
bool bf16_weights_asked() {
  const char* m = std::getenv("QFORGE_CUDA_MATH");
  return m && std::string(m) == "bf16";
}

// Read at every product, so that a test can switch.
bool tf32_forward() {
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
Handles& handles() {
  static thread_local Handles h;  // destroyed with the context at exit: never freed explicitly
  return h;
}

int blocks_for(int64_t n, int threads) {
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

__global__ void narrow_kernel(const double* src, float* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = float(src[i]);
}

// H (n, n) row-major: the strict lower triangle set to zero.
__global__ void zero_lower_kernel(double* H, int64_t n) {
  const int64_t total = n * n;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x)
    if (e % n < e / n) H[e] = 0.0;
}

// acc (d, d) fp64 += g (d, d) fp32 on the row-major upper triangle (what syrk wrote).
__global__ void accumulate_upper_kernel(double* acc, const float* g, int64_t d) {
  const int64_t total = d * d;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x)
    if (e % d >= e / d) acc[e] += double(g[e]);
}

// x = hi + lo with hi x rounded to TF32's 10 fraction bits (nearest, ties away) and lo exact;
// writes hi and 2·lo.
__global__ void split_tf32_kernel(const float* x, float* hi, float* lo2, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i], h = __uint_as_float((__float_as_uint(v) + 0x1000u) & 0xffffe000u);
    hi[i] = h;
    lo2[i] = 2.0f * (v - h);
  }
}

// acc (d, d) fp64 upper triangle += the symmetric part of g (d, d) fp32, ½(g + gᵀ): 32×32 tiles,
// the mirrored one through shared memory so that both reads are coalesced.
__global__ void accumulate_symmetric_kernel(double* acc, const float* g, int64_t d) {
  __shared__ float mirror[32][33];
  const int64_t r0 = int64_t(blockIdx.y) * 32, c0 = int64_t(blockIdx.x) * 32;
  if (c0 + 31 < r0) return;  // wholly below the diagonal
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t r = c0 + i, c = r0 + threadIdx.x;
    mirror[i][threadIdx.x] = (r < d && c < d) ? g[r * d + c] : 0.0f;
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < d && c < d && c >= r)
      acc[r * d + c] += 0.5 * (double(g[r * d + c]) + double(mirror[threadIdx.x][i]));
  }
}

// H (d, d) = scale · H with the strict lower triangle copied from the upper one.
__global__ void symmetrize_scale_kernel(double* H, int64_t d, double scale) {
  const int64_t total = d * d;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / d, c = e % d;
    if (c >= r) {
      const double v = H[e] * scale;
      H[e] = v;
      if (c > r) H[c * d + r] = v;
    }
  }
}

// out[i] = Σ_t |x[t, i]|^power, t in order, each step rounded as the CPU's (no FMA).
__global__ void column_sums_kernel(const float* x, int64_t n, int64_t d, int power, double* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < d;
       i += int64_t(gridDim.x) * blockDim.x) {
    double s = 0;
    for (int64_t t = 0; t < n; ++t) {
      const double v = x[t * d + i];
      s = __dadd_rn(s, power == 1 ? fabs(v) : __dmul_rn(v, v));
    }
    out[i] = s;
  }
}

// out[block] = Σ over the block's share of (a − b)², in fp64.
__global__ void squared_distance_kernel(const float* a, const float* b, int64_t n, double* out) {
  __shared__ double sh[32];
  double s = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const double e = __fsub_rn(a[i], b[i]);
    s += e * e;
  }
  s = block_reduce(s, Sum{}, sh);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

// out[i] = Σ_t (a[t, i] − b[t, i])², t in order, as the CPU's (the squares exact in fp64).
__global__ void column_squared_distances_kernel(const float* a, const float* b, int64_t rows, int64_t n,
                                                double* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    double e = 0;
    for (int64_t t = 0; t < rows; ++t) {
      const double d = __fsub_rn(a[t * n + i], b[t * n + i]);
      e = __dadd_rn(e, d * d);
    }
    out[i] = e;
  }
}

__global__ void diagonal_kernel(const double* H, int64_t n, double* d) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    d[i] = H[i * n + i];
}

__global__ void add_diagonal_kernel(double* H, int64_t n, double v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    H[i * n + i] += v;
}

__global__ void permute_symmetric_kernel(const double* src, const int64_t* perm, double* dst, int64_t n) {
  const int64_t total = n * n;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x)
    dst[e] = src[perm[e / n] * n + perm[e % n]];
}

// One warp per row of an IntGridBatch (kernels/backend.h). The arithmetic is the host's, rounded
// op by op (no FMA: the host code is compiled without it): formats/int_grid.{h,cc}'s
// find_group_params/params_from_range, quantize_value and dequantize_value, and
// quant/gptq.cc's round_row_batch.
__global__ void round_int_batch_kernel(IntGridBatch a) {
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= a.rows) return;
  float* w = a.w + r * a.n_in;
  const int64_t ng = a.n_in / a.group;
  const float maxq = float(a.maxq);
  float scale = 1, zero = 0;
  double loss = 0;
  if (a.i1 % a.group != 0) {  // the group began in an earlier batch
    scale = a.scales[r * ng + a.i1 / a.group];
    zero = a.zeros[r * ng + a.i1 / a.group];
  }
  for (int64_t i = a.i1; i < a.i1 + a.cnt; ++i) {
    if (i % a.group == 0) {  // fit the group that starts here
      float lo = 0, hi = 0;
      for (int64_t k = i + lane; k < i + a.group; k += 32) {
        lo = fminf(lo, w[k]);
        hi = fmaxf(hi, w[k]);
      }
      for (int o = 16; o > 0; o >>= 1) {
        lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
        hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
      }
      if (a.sym) {
        hi = fmaxf(fabsf(lo), hi);
        if (lo < 0) lo = -hi;
      }
      if (lo == 0 && hi == 0) {
        lo = -1;
        hi = 1;
      }
      scale = __fdiv_rn(__fsub_rn(hi, lo), maxq);
      zero = a.sym ? __fdiv_rn(__fadd_rn(maxq, 1.0f), 2.0f) : rintf(__fdiv_rn(-lo, scale));
      if (lane == 0) {
        a.scales[r * ng + i / a.group] = scale;
        a.zeros[r * ng + i / a.group] = zero;
      }
    }
    __syncwarp();
    const float x = w[i];
    const float qf = fminf(fmaxf(__fadd_rn(rintf(__fdiv_rn(x, scale)), zero), 0.0f), maxq);
    const float q = __fmul_rn(scale, __fsub_rn(qf, zero));
    const float* ui = a.u + i * a.n_in;
    const float d = ui[i], e = __fdiv_rn(__fsub_rn(x, q), d);
    __syncwarp();  // every lane has read w[i]
    if (lane == 0) {
      loss += double(__fsub_rn(x, q)) * double(__fsub_rn(x, q)) / (double(d) * d) / 2;
      w[i] = q;
      a.codes[r * a.n_in + a.code_col[i]] = uint8_t(int(qf));
      a.err[r * a.cnt + (i - a.i1)] = e;
    }
    for (int64_t k = i + 1 + lane; k < a.i1 + a.cnt; k += 32) w[k] = __fsub_rn(w[k], __fmul_rn(e, ui[k]));
    __syncwarp();
  }
  if (lane == 0) a.loss[r] += loss;
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

// ---- the Gram accumulator: syrk per call in fp32, the running sum in fp64 ----
class CudaGram final : public GramAccumulator {
 public:
  CudaGram(const Backend& be, int d) : be_(be), d_(d), g_(be, int64_t(d) * d), hi_(be, 0), lo2_(be, 0) {}
  // Row-major x (n, d) is column-major xᵀ (d × n). With QFORGE_CUDA_MATH=fp32: G = xᵀ·x by fp32
  // syrk (column-major lower = row-major upper). Otherwise on TF32 tensor cores at about fp32's
  // accuracy: x = hi + lo (split_tf32_kernel), G = hiᵀ·hi + (2·lo)ᵀ·hi, whose symmetric part is
  // xᵀ·x − loᵀ·lo — each product exact but for lo's own TF32 rounding and the dropped loᵀ·lo,
  // ≤ 1.3·2^-20·|xᵢ·xⱼ| (tests/cuda_test.cc) — two GEMMs, ~3× faster than syrk on an H200.
  void add(const float* x, int n) override {
    const float one = 1.0f, zero = 0.0f;
    if (!tf32_forward()) {
      check(cublasSsyrk(handles().exact, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, d_, n, &one, x, d_, &zero,
                        g_.data(), d_),
            "cublasSsyrk");
      accumulate_upper_kernel<<<blocks_for(g_.size(), 256), 256>>>(sum().data(), g_.data(), d_);
      check_launch("accumulate_upper_kernel");
      return;
    }
    const int64_t m = int64_t(n) * d_;
    hi_.grow(m);
    lo2_.grow(m);
    split_tf32_kernel<<<blocks_for(m, 256), 256>>>(x, hi_.data(), lo2_.data(), m);
    check_launch("split_tf32_kernel");
    cublasHandle_t h = handles().exact;
    check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, d_, d_, n, &one, hi_.data(), CUDA_R_32F, d_, hi_.data(),
                       CUDA_R_32F, d_, &zero, g_.data(), CUDA_R_32F, d_, CUBLAS_COMPUTE_32F_FAST_TF32,
                       CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx (Gram hi·hi)");
    check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, d_, d_, n, &one, lo2_.data(), CUDA_R_32F, d_, hi_.data(),
                       CUDA_R_32F, d_, &one, g_.data(), CUDA_R_32F, d_, CUBLAS_COMPUTE_32F_FAST_TF32,
                       CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx (Gram 2·lo·hi)");
    const int tiles = int((d_ + 31) / 32);
    accumulate_symmetric_kernel<<<dim3(tiles, tiles), dim3(32, 8)>>>(sum().data(), g_.data(), d_);
    check_launch("accumulate_symmetric_kernel");
  }
  Buffer<double> take(double scale) override {
    Buffer<double> h = std::move(sum());
    symmetrize_scale_kernel<<<blocks_for(h.size(), 256), 256>>>(h.data(), d_, scale);
    check_launch("symmetrize_scale_kernel");
    return h;
  }

 private:
  Buffer<double>& sum() {  // allocated (zero) at the first use after a take
    if (!acc_.size()) {
      acc_ = Buffer<double>(be_, int64_t(d_) * d_);
      check(cudaMemset(acc_.data(), 0, size_t(acc_.size()) * sizeof(double)), "cudaMemset");
    }
    return acc_;
  }
  const Backend& be_;
  int d_;
  Buffer<double> acc_;      // (d, d) row-major upper triangle valid
  Buffer<float> g_;         // (d, d) this call's product
  Buffer<float> hi_, lo2_;  // the TF32 split of a call's x
};

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  bool on_device() const override { return true; }
  void synchronize() const override { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

  void* alloc(int64_t bytes) const override {
    if (bytes <= 0) return nullptr;
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, size_t(bytes));
    if (e != cudaSuccess) {
      const std::string what = "cudaMalloc of " + std::to_string(bytes) + " bytes";
      fatal(what.c_str(), cudaGetErrorString(e));
    }
    note_memory();
    return p;
  }
  void release(void* p) const override {
    if (p) check(cudaFree(p), "cudaFree");
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
               int64_t n, int64_t k) const override {
    // Column-major: Cᵀ (n × m) = B (n × k, stored as Bᵀ) · Aᵀ (k × m).
    const float one = 1.0f, zero = 0.0f;
    check(cublasSgemm_64(handles().forward(), CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, B, ldb, A, lda, &zero,
                         C, ldc),
          "cublasSgemm (gemm_nt)");
  }
  void column_squared_distances(const float* a, const float* b, int64_t rows, int64_t n,
                                double* out) const override {
    if (n == 0) return;
    Buffer<double> d(*this, n);
    column_squared_distances_kernel<<<blocks_for(n, 128), 128>>>(a, b, rows, n, d.data());
    check_launch("column_squared_distances_kernel");
    to_host(out, d.data(), n * 8);
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

  // Row-major 'U' is column-major 'L': potrf(L), potri(L), potrf(L), then the row-major strict
  // lower triangle zeroed — the CPU backend's LAPACK sequence on the same memory.
  bool inverse_cholesky(double* H, int64_t n) const override {
    cusolverDnHandle_t s = handles().solver;
    const int m = int(n);
    int lwork = 0, lwork2 = 0;
    check(cusolverDnDpotrf_bufferSize(s, CUBLAS_FILL_MODE_LOWER, m, H, m, &lwork), "potrf_bufferSize");
    check(cusolverDnDpotri_bufferSize(s, CUBLAS_FILL_MODE_LOWER, m, H, m, &lwork2), "potri_bufferSize");
    Buffer<double> work(*this, std::max(lwork, lwork2));
    Buffer<int> info(*this, 1);
    int ok = 0;
    auto failed = [&] {
      to_host(&ok, info.data(), sizeof(int));
      return ok != 0;
    };
    check(cusolverDnDpotrf(s, CUBLAS_FILL_MODE_LOWER, m, H, m, work.data(), lwork, info.data()), "potrf");
    if (failed()) return false;
    check(cusolverDnDpotri(s, CUBLAS_FILL_MODE_LOWER, m, H, m, work.data(), lwork2, info.data()), "potri");
    if (failed()) return false;
    check(cusolverDnDpotrf(s, CUBLAS_FILL_MODE_LOWER, m, H, m, work.data(), lwork, info.data()), "potrf");
    if (failed()) return false;
    zero_lower_kernel<<<blocks_for(n * n, 256), 256>>>(H, n);
    check_launch("zero_lower_kernel");
    return true;
  }

  void narrow(const double* src, float* dst, int64_t n) const override {
    if (n == 0) return;
    narrow_kernel<<<blocks_for(n, 256), 256>>>(src, dst, n);
    check_launch("narrow_kernel");
  }

  void column_sums(const float* x, int64_t n, int64_t d, int power, double* out) const override {
    if (d == 0) return;
    column_sums_kernel<<<blocks_for(d, 128), 128>>>(x, n, d, power, out);
    check_launch("column_sums_kernel");
  }
  double squared_distance(const float* a, const float* b, int64_t n, double start) const override {
    if (n == 0) return start;
    constexpr int kBlocks = 256;
    Buffer<double> part(*this, kBlocks);
    squared_distance_kernel<<<kBlocks, 256>>>(a, b, n, part.data());
    check_launch("squared_distance_kernel");
    for (double v : part.to_host()) start += v;
    return start;
  }
  void diagonal(const double* H, int64_t n, double* out) const override {
    if (n == 0) return;
    Buffer<double> d(*this, n);  // one copy, not n strided ones
    diagonal_kernel<<<blocks_for(n, 256), 256>>>(H, n, d.data());
    check_launch("diagonal_kernel");
    to_host(out, d.data(), n * 8);
  }
  void add_diagonal(double* H, int64_t n, double v) const override {
    if (n == 0) return;
    add_diagonal_kernel<<<blocks_for(n, 256), 256>>>(H, n, v);
    check_launch("add_diagonal_kernel");
  }
  void permute_symmetric(const double* src, const int64_t* perm, double* dst, int64_t n) const override {
    if (n == 0) return;
    Buffer<int64_t> p(*this, n);
    to_device(p.data(), perm, n * 8);
    permute_symmetric_kernel<<<blocks_for(n * n, 256), 256>>>(src, p.data(), dst, n);
    check_launch("permute_symmetric_kernel");
  }

  std::unique_ptr<GramAccumulator> gram(int d) const override { return std::make_unique<CudaGram>(*this, d); }

  bool round_int_batch(const IntGridBatch& a) const override {
    if (a.rows == 0 || a.cnt == 0) return true;
    constexpr int kWarps = 8;
    round_int_batch_kernel<<<int((a.rows + kWarps - 1) / kWarps), 32 * kWarps>>>(a);
    check_launch("round_int_batch_kernel");
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

const Backend* cuda_backend(std::string* why) {
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
  static const CudaBackend backend;
  return &backend;
}

const char* cuda_forward_math() {
  return bf16_weights_asked() ? "bf16 (weights) and TF32" : tf32_forward() ? "TF32" : "fp32";
}

DeviceMemory device_memory() {
  DeviceMemory m;
  if (!cuda_backend(nullptr)) return m;
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return m;
  m.free = int64_t(free);
  m.total = int64_t(total);
  note_memory();
  m.peak_used = g_peak_used.load();
  return m;
}

}  // namespace qf
