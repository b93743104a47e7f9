// quant/gptq.h — GPTQ (Frantar et al., 2022) as the reference implementation (IST-DASLab
// gptq.py `fasterquant`) defines it, over any grid: columns are rounded one at a time and each
// column's rounding error, weighted by the inverse Hessian, is pushed into the columns not yet
// rounded.
//
//   dead columns (H_ii = 0): H_ii = 1, W[:, i] = 0;
//   act-order: columns processed by decreasing H_ii;
//   H += λ·mean(diag H)·I (λ = damp); U = chol(H⁻¹)ᵀ (upper); if a Cholesky factorization fails
//   the damping is raised (×√10 steps up to λ = 1) and the tensor named in a warning;
//   lazy batches of `block` columns: within a batch, q = grid(w), err = (w − q)/U_cc,
//   W[:, c+1:] −= err·U[c, c+1:]; after it, the trailing columns get one matrix product.
//
// Rows are independent given U, so threads split rows; only U is shared. Groups are fitted when
// the processing reaches their first column, from the weights as they are then (already
// carrying the earlier columns' error). The reference fits a group that starts inside a batch
// from weights that miss that batch's updates; qforge uses the updated ones.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/int_grid.h"
#include "formats/qtype.h"
#include "kernels/backend.h"

namespace qf {

struct GptqSpec {
  double damp = 0.01;  // λ: fraction of mean(diag H) added to the diagonal
  bool act_order = false;
  int block = 128;  // lazy-batch width
};

// A grid onto which rows are rounded, group by group. Positions are processing positions
// (column perm[c] of the matrix under act-order). Calls for one row come from one thread.
class RowGrid {
 public:
  virtual ~RowGrid() = default;
  // Columns per group (n_in for one group per row).
  virtual int64_t group() const = 0;
  // Fits row r's grid for the group starting at position c0 from the row's current weights
  // there, w[0 .. group()).
  virtual void fit(int64_t r, int64_t c0, const float* w) = 0;
  // Records the grid point for row r at position c nearest to w and returns its value.
  virtual float round(int64_t r, int64_t c, float w) = 0;
};

struct GptqStats {
  double damp = 0;  // λ finally used
  double loss = 0;  // Σ (w − q)² / U_cc² / 2 (the reference's reported error)
  int dead_columns = 0;
};

// Rounds W (n_out, n_in) row-major in place onto `grid`; H (n_in, n_in), in the memory of the
// backend that computes, is consumed. perm (when act_order) receives the processing order:
// position c is column perm[c]. `name` is used in messages. On a device backend H's
// permutation, damping and Cholesky factorizations (fp64) and the trailing updates run there, W
// held in its memory; integer grids (IntRowGrid::device_roundable) are rounded there too, with
// the host's arithmetic; other grids' batches (GGUF block types, clip search, static groups) are
// rounded on the host by the CPU's code, travelling back and forth once per batch.
Expected<GptqStats> gptq_quantize(float* W, int64_t n_out, int64_t n_in, Buffer<double> H,
                                  const GptqSpec& spec, RowGrid& grid, const std::vector<int64_t>& perm,
                                  const std::string& name);
// The same with H on the host, copied to be's memory first.
Expected<GptqStats> gptq_quantize(float* W, int64_t n_out, int64_t n_in, std::vector<double> H,
                                  const GptqSpec& spec, RowGrid& grid, const std::vector<int64_t>& perm,
                                  const std::string& name, const Backend& be = cpu_backend());

// U, upper triangular with UᵀU = (H + λ·mean(diag H)·I)⁻¹, in fp32: λ = damp, raised in steps of
// √10 up to 1 while the Cholesky factorization fails (a warning names `name`); *used gets λ.
Expected<std::vector<float>> damped_inverse_cholesky(std::vector<double> H, int64_t n, double damp,
                                                     const std::string& name, double* used);

// Processing order for act-order from diag H: columns by decreasing H_ii (stable), dead columns
// included.
std::vector<int64_t> act_order_permutation(const std::vector<double>& diag);

// The integer grid of GPTQ checkpoints (formats/int_grid.h): per row and group, scale and zero
// from the group's weights, or with static groups from the original weights before any update.
class IntRowGrid : public RowGrid {
 public:
  // perm: processing order (empty: identity). static_w: the original (n_out, n_in) weights when
  // groups are static (fitted up front from columns in their natural groups), else null.
  IntRowGrid(const IntGridSpec& spec, int64_t n_out, int64_t n_in, std::vector<int64_t> perm,
             const float* static_w);
  int64_t group() const override { return static_ ? n_in_ : spec_.group_len(n_in_); }
  void fit(int64_t r, int64_t c0, const float* w) override;
  float round(int64_t r, int64_t c, float w) override;
  // The codes, scales, zeros and g_idx (act-order without static groups) of what was rounded.
  IntQuantized result() &&;
  // Whether a device may round the batches itself (Backend::round_int_batch): groups fitted as
  // they come, without the clip search. Then the device fills storage(): codes at
  // code_column(c) for processing position c, scales and zeros by group of positions.
  bool device_roundable() const { return !static_ && !spec_.clip_mse; }
  const IntGridSpec& spec() const { return spec_; }
  int64_t code_column(int64_t c) const { return perm_.empty() ? c : perm_[size_t(c)]; }
  IntQuantized& storage() { return q_; }

 private:
  IntGridSpec spec_;
  int64_t n_in_, gs_;
  bool static_;
  std::vector<int64_t> perm_;
  IntQuantized q_;
};

// GPTQ with W (n_out, n_in) in H's backend's memory (a device) and rounded there, in place, onto
// an integer grid the device rounds (IntRowGrid::device_roundable); the codes, scales and zeros
// land in grid.storage(). The same algorithm and results as the host-W form above.
Expected<GptqStats> gptq_quantize(Buffer<float>& W, int64_t n_out, int64_t n_in, Buffer<double> H,
                                  const GptqSpec& spec, IntRowGrid& grid, const std::vector<int64_t>& perm,
                                  const std::string& name);

// A llama.cpp block type (Q4_K, Q3_K, IQ4_XS, Q4_0, ...) as a GPTQ grid. At a block's first
// column the row's block is encoded from the current weights by the type's own quantizer
// (importance-weighted when `importance` is given), which fixes the block's scales and mins;
// every weight is then rounded, at its turn, to the nearest value those scales allow at its
// position, and the codes are packed when the block is complete. The result is a row of
// standard blocks any llama.cpp loads.
class BlockRowGrid : public RowGrid {
 public:
  // importance: one weight per input column (an imatrix row), or null.
  BlockRowGrid(QType type, int64_t n_out, int64_t n_in, const float* importance);
  int64_t group() const override { return block_; }
  void fit(int64_t r, int64_t c0, const float* w) override;
  float round(int64_t r, int64_t c, float w) override;
  // (n_out, row bytes): the rows as the type stores them.
  std::vector<uint8_t> result() && { return std::move(bytes_); }

 private:
  const QTypeTraits& tr_;
  int64_t block_, row_bytes_;
  const float* importance_;
  std::vector<float> levels_;   // code -> level: the value at a position is a·level + b
  std::vector<uint8_t> bytes_;  // (n_out, row_bytes)
  std::vector<float> a_, b_;    // (n_out, block): the current block's a and b per position
  std::vector<uint8_t> codes_;  // (n_out, block)
};

}  // namespace qf
