// kernels/cuda/cuda_calibration.h — the CUDA backend's calibration and GPTQ operations, each the
// contract of the Backend method of the same name (kernels/backend.h) on device pointers; be is
// the CUDA backend (its memory for workspaces). Internal to kernels/cuda/.
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/backend.h"

namespace qf::cuda {

std::unique_ptr<GramAccumulator> make_gram(const Backend& be, int d);
bool inverse_cholesky(const Backend& be, double* H, int64_t n);
void diagonal(const Backend& be, const double* H, int64_t n, double* out);
void add_diagonal(double* H, int64_t n, double v);
void permute_symmetric(const Backend& be, const double* src, const int64_t* perm, double* dst, int64_t n);
void gather_columns(const Backend& be, const float* src, const int64_t* idx, float* dst, int64_t rows,
                    int64_t n);
void round_int_batch(const IntGridBatch& a);
void fake_quantize_int(const FakeQuantArgs& a);
void column_sums(const float* x, int64_t n, int64_t d, int power, double* out);
double squared_distance(const Backend& be, const float* a, const float* b, int64_t n, double start);
void column_squared_distances(const Backend& be, const float* a, const float* b, int64_t rows, int64_t n,
                              double* out);

}  // namespace qf::cuda
