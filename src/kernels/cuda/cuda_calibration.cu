// kernels/cuda/cuda_calibration.cu — the CUDA backend's calibration and GPTQ operations
// (kernels/cuda/cuda_calibration.h): Gram accumulation, Hessian diagonal/permutation/damping, the
// fp64 inverse Cholesky (cuSOLVER), GPTQ's integer-grid rounding, and the column statistics of
// imatrix and AWQ. The forward pass, memory and scoring are in cuda_backend.cu.
#include "kernels/cuda/cuda_calibration.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/cuda_common.cuh"

namespace qf::cuda {
namespace {

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

// x rounded to bf16 (nearest even), as linear_bf16 rounds its input.
__global__ void round_bf16_kernel(const float* x, __nv_bfloat16* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16_rn(x[i]);
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

__global__ void gather_columns_kernel(const float* src, const int64_t* idx, float* dst, int64_t rows,
                                      int64_t n) {
  const int64_t total = rows * n;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x)
    dst[e] = src[e - e % n + idx[e % n]];
}

// formats/int_grid.{h,cc}'s integer grid on the device, op by op as the host computes it (no FMA:
// the host code is compiled without it).
struct Range {
  float lo, hi;
};
// min(0, x…) and max(0, x…) of x[0 .. n) over a warp, every lane with the result.
__device__ Range warp_range(const float* x, int64_t n, int lane) {
  Range r{0, 0};
  for (int64_t k = lane; k < n; k += 32) {
    r.lo = fminf(r.lo, x[k]);
    r.hi = fmaxf(r.hi, x[k]);
  }
  for (int o = 16; o > 0; o >>= 1) {
    r.lo = fminf(r.lo, __shfl_xor_sync(0xffffffffu, r.lo, o));
    r.hi = fmaxf(r.hi, __shfl_xor_sync(0xffffffffu, r.hi, o));
  }
  return r;
}
// params_from_range.
__device__ void fit_group(Range r, float maxq, bool sym, float& scale, float& zero) {
  if (sym) {
    r.hi = fmaxf(fabsf(r.lo), r.hi);
    if (r.lo < 0) r.lo = -r.hi;
  }
  if (r.lo == 0 && r.hi == 0) {
    r.lo = -1;
    r.hi = 1;
  }
  scale = __fdiv_rn(__fsub_rn(r.hi, r.lo), maxq);
  zero = sym ? __fdiv_rn(__fadd_rn(maxq, 1.0f), 2.0f) : rintf(__fdiv_rn(-r.lo, scale));
}
// quantize_value, as a float.
__device__ float code_of(float x, float scale, float zero, float maxq) {
  return fminf(fmaxf(__fadd_rn(rintf(__fdiv_rn(x, scale)), zero), 0.0f), maxq);
}

// One warp per (row, group) of a FakeQuantArgs (kernels/backend.h); x staged in dst.
__global__ void fake_quantize_int_kernel(FakeQuantArgs a) {
  const int64_t ng = a.n_in / a.group, task = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (task >= a.rows * ng) return;
  const int64_t r = task / ng, g = task % ng, c0 = g * a.group;
  const float* in = a.src + r * a.n_in + c0;
  float* out = a.dst + r * a.n_in + c0;
  const float m = a.group_max ? __fmul_rn(a.group_max[task], a.shrink) : 0.0f;
  for (int64_t k = lane; k < a.group; k += 32)
    out[k] = a.col_scale   ? __fmul_rn(in[k], a.col_scale[c0 + k])
             : a.group_max ? fminf(fmaxf(in[k], -m), m)
                           : in[k];
  __syncwarp();
  const float maxq = float((1 << a.bits) - 1);
  float scale, zero;
  fit_group(warp_range(out, a.group, lane), maxq, a.sym, scale, zero);
  for (int64_t k = lane; k < a.group; k += 32) {
    const float q = __fmul_rn(scale, __fsub_rn(code_of(out[k], scale, zero, maxq), zero));
    out[k] = a.col_scale ? __fdiv_rn(q, a.col_scale[c0 + k]) : q;
  }
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
      fit_group(warp_range(w + i, a.group, lane), maxq, a.sym, scale, zero);
      if (lane == 0) {
        a.scales[r * ng + i / a.group] = scale;
        a.zeros[r * ng + i / a.group] = zero;
      }
    }
    __syncwarp();
    const float x = w[i];
    const float qf = code_of(x, scale, zero, maxq), q = __fmul_rn(scale, __fsub_rn(qf, zero));
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

// U = J·L⁻¹·J with L = chol(J·H·J) lower and J the reversal: UᵀU = J·(J·H·J)⁻¹·J = H⁻¹, U upper
// with a positive diagonal, so U is the CPU's chol(H⁻¹) up to fp64 rounding — one factorization
// and one triangular inverse (⅔n³ flops) where the CPU backend's LAPACK sequence (potrf, potri,
// potrf) does 4⁄3n³. Both flips are index maps (flip_kernel, unflip_kernel); H is read on its
// row-major upper triangle and is the workspace.
__global__ void flip_kernel(const double* H, double* R, int64_t n) {  // R = J·H·J
  const int64_t total = n * n;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = n - 1 - e / n, c = n - 1 - e % n;
    R[e] = r <= c ? H[r * n + c] : H[c * n + r];
  }
}
// U (row-major) = J·M·J for M = L⁻¹ column-major lower: U[r][c] = M(n−1−r, n−1−c) for c ≥ r, else 0.
__global__ void unflip_kernel(const double* M, double* U, int64_t n) {
  const int64_t total = n * n;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / n, c = e % n;
    U[e] = c >= r ? M[(n - 1 - c) * n + (n - 1 - r)] : 0.0;
  }
}

// ---- the Gram accumulator: syrk per call in fp32, the running sum in fp64 ----
class CudaGram final : public GramAccumulator {
 public:
  CudaGram(const Backend& be, int d)
      : be_(be), d_(d), g_(be, int64_t(d) * d), hi_(be, 0), lo2_(be, 0), xb_(be, 0) {}
  // Row-major x (n, d) is column-major xᵀ (d × n). With QFORGE_CUDA_MATH=fp32: G = xᵀ·x by fp32
  // syrk (column-major lower = row-major upper). With QFORGE_CUDA_MATH=bf16 — the precision of
  // GPTQModel and llm-compressor, whose models run in bf16 and hand their Hessians bf16
  // activations — x rounded to bf16, G = xᵀ·x on bf16 tensor cores: the products exact, the sums
  // in fp32. Otherwise on TF32 tensor cores at about fp32's accuracy: x = hi + lo
  // (split_tf32_kernel), G = hiᵀ·hi + (2·lo)ᵀ·hi, whose symmetric part is xᵀ·x − loᵀ·lo — each
  // product exact but for lo's own TF32 rounding and the dropped loᵀ·lo, ≤ 1.3·2^-20·|xᵢ·xⱼ|
  // (tests/cuda_test.cc) — two GEMMs, ~3× faster than syrk on an H200 (and 2× faster than the
  // same split by syrk + syr2k on a TF32 handle, which measured 62 s against 32 s for GPTQ of the
  // 8B shape's first 8 layers).
  void add(const float* x, int n) override {
    const float one = 1.0f, zero = 0.0f;
    cublasHandle_t h = handles().exact;
    const int64_t m = int64_t(n) * d_;
    const int tiles = int((d_ + 31) / 32);
    if (bf16_weights_asked()) {
      xb_.grow(m);
      auto* xb = reinterpret_cast<__nv_bfloat16*>(xb_.data());
      round_bf16_kernel<<<blocks_for(m, 256), 256>>>(x, xb, m);
      check_launch("round_bf16_kernel");
      check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, d_, d_, n, &one, xb, CUDA_R_16BF, d_, xb, CUDA_R_16BF,
                         d_, &zero, g_.data(), CUDA_R_32F, d_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx (Gram bf16)");
      accumulate_symmetric_kernel<<<dim3(tiles, tiles), dim3(32, 8)>>>(sum().data(), g_.data(), d_);
      check_launch("accumulate_symmetric_kernel");
      return;
    }
    if (!tf32_forward()) {
      check(cublasSsyrk(h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, d_, n, &one, x, d_, &zero, g_.data(), d_),
            "cublasSsyrk");
      accumulate_upper_kernel<<<blocks_for(g_.size(), 256), 256>>>(sum().data(), g_.data(), d_);
      check_launch("accumulate_upper_kernel");
      return;
    }
    hi_.grow(m);
    lo2_.grow(m);
    split_tf32_kernel<<<blocks_for(m, 256), 256>>>(x, hi_.data(), lo2_.data(), m);
    check_launch("split_tf32_kernel");
    check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, d_, d_, n, &one, hi_.data(), CUDA_R_32F, d_, hi_.data(),
                       CUDA_R_32F, d_, &zero, g_.data(), CUDA_R_32F, d_, CUBLAS_COMPUTE_32F_FAST_TF32,
                       CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx (Gram hi·hi)");
    check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, d_, d_, n, &one, lo2_.data(), CUDA_R_32F, d_, hi_.data(),
                       CUDA_R_32F, d_, &one, g_.data(), CUDA_R_32F, d_, CUBLAS_COMPUTE_32F_FAST_TF32,
                       CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx (Gram 2·lo·hi)");
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
  Buffer<uint16_t> xb_;     // or its bf16 rounding
};

}  // namespace

std::unique_ptr<GramAccumulator> make_gram(const Backend& be, int d) {
  return std::make_unique<CudaGram>(be, d);
}

bool inverse_cholesky(const Backend& be, double* H, int64_t n) {
  cusolverDnHandle_t s = handles().solver;
  Buffer<double> R(be, n * n);
  flip_kernel<<<blocks_for(n * n, 256), 256>>>(H, R.data(), n);
  check_launch("flip_kernel");
  const int m = int(n);
  int lwork = 0;
  check(cusolverDnDpotrf_bufferSize(s, CUBLAS_FILL_MODE_LOWER, m, R.data(), m, &lwork), "potrf_bufferSize");
  size_t dev_bytes = 0, host_bytes = 0;
  check(cusolverDnXtrtri_bufferSize(s, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, R.data(),
                                    n, &dev_bytes, &host_bytes),
        "trtri_bufferSize");
  Buffer<double> work(be, std::max<int64_t>(lwork, int64_t(dev_bytes + 7) / 8));
  std::vector<char> host_work(host_bytes);
  Buffer<int> info(be, 1);
  int ok = 0;
  auto failed = [&] {
    be.to_host(&ok, info.data(), sizeof(int));
    return ok != 0;
  };
  check(cusolverDnDpotrf(s, CUBLAS_FILL_MODE_LOWER, m, R.data(), m, work.data(), lwork, info.data()),
        "potrf");
  if (failed()) return false;
  check(cusolverDnXtrtri(s, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, R.data(), n,
                         work.data(), dev_bytes, host_work.data(), host_bytes, info.data()),
        "trtri");
  if (failed()) return false;
  unflip_kernel<<<blocks_for(n * n, 256), 256>>>(R.data(), H, n);
  check_launch("unflip_kernel");
  return true;
}

void diagonal(const Backend& be, const double* H, int64_t n, double* out) {
  if (n == 0) return;
  Buffer<double> d(be, n);  // one copy, not n strided ones
  diagonal_kernel<<<blocks_for(n, 256), 256>>>(H, n, d.data());
  check_launch("diagonal_kernel");
  be.to_host(out, d.data(), n * 8);
}

void add_diagonal(double* H, int64_t n, double v) {
  if (n == 0) return;
  add_diagonal_kernel<<<blocks_for(n, 256), 256>>>(H, n, v);
  check_launch("add_diagonal_kernel");
}

void permute_symmetric(const Backend& be, const double* src, const int64_t* perm, double* dst, int64_t n) {
  if (n == 0) return;
  Buffer<int64_t> p(be, n);
  be.to_device(p.data(), perm, n * 8);
  permute_symmetric_kernel<<<blocks_for(n * n, 256), 256>>>(src, p.data(), dst, n);
  check_launch("permute_symmetric_kernel");
}

void gather_columns(const Backend& be, const float* src, const int64_t* idx, float* dst, int64_t rows,
                    int64_t n) {
  if (rows * n == 0) return;
  Buffer<int64_t> p(be, n);
  be.to_device(p.data(), idx, n * 8);
  gather_columns_kernel<<<blocks_for(rows * n, 256), 256>>>(src, p.data(), dst, rows, n);
  check_launch("gather_columns_kernel");
}

void fake_quantize_int(const FakeQuantArgs& a) {
  const int64_t tasks = a.rows * (a.n_in / a.group);
  if (tasks == 0) return;
  constexpr int kWarps = 8;
  fake_quantize_int_kernel<<<int((tasks + kWarps - 1) / kWarps), 32 * kWarps>>>(a);
  check_launch("fake_quantize_int_kernel");
}

void round_int_batch(const IntGridBatch& a) {
  if (a.rows == 0 || a.cnt == 0) return;
  constexpr int kWarps = 8;
  round_int_batch_kernel<<<int((a.rows + kWarps - 1) / kWarps), 32 * kWarps>>>(a);
  check_launch("round_int_batch_kernel");
}

void column_sums(const float* x, int64_t n, int64_t d, int power, double* out) {
  if (d == 0) return;
  column_sums_kernel<<<blocks_for(d, 128), 128>>>(x, n, d, power, out);
  check_launch("column_sums_kernel");
}

double squared_distance(const Backend& be, const float* a, const float* b, int64_t n, double start) {
  if (n == 0) return start;
  constexpr int kBlocks = 256;
  Buffer<double> part(be, kBlocks);
  squared_distance_kernel<<<kBlocks, 256>>>(a, b, n, part.data());
  check_launch("squared_distance_kernel");
  for (double v : part.to_host()) start += v;
  return start;
}

void column_squared_distances(const Backend& be, const float* a, const float* b, int64_t rows, int64_t n,
                              double* out) {
  if (n == 0) return;
  Buffer<double> d(be, n);
  column_squared_distances_kernel<<<blocks_for(n, 128), 128>>>(a, b, rows, n, d.data());
  check_launch("column_squared_distances_kernel");
  be.to_host(out, d.data(), n * 8);
}

}  // namespace qf::cuda
