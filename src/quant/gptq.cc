#include "quant/gptq.h"

#include "formats/ggml_quants.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qf {
namespace {

// U, upper triangular with UᵀU = H⁻¹, from the damped H (n, n): Cholesky, inverse from the
// factor, Cholesky again (torch: cholesky → cholesky_inverse → cholesky(upper=True)).
bool inverse_cholesky(std::vector<double>& H, int64_t n) {
  const lapack_int m = lapack_int(n);
  if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', m, H.data(), m) != 0) return false;
  if (LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', m, H.data(), m) != 0) return false;
  if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', m, H.data(), m) != 0) return false;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) H[size_t(i * n + j)] = 0.0;
  return true;
}

}  // namespace

std::vector<int64_t> act_order_permutation(const std::vector<double>& H, int64_t n_in) {
  std::vector<int64_t> perm(static_cast<size_t>(n_in));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int64_t a, int64_t b) { return H[size_t(a * n_in + a)] > H[size_t(b * n_in + b)]; });
  return perm;
}

Expected<std::vector<float>> damped_inverse_cholesky(std::vector<double> H, int64_t n, double damp,
                                                     const std::string& name, double* used) {
  double mean_diag = 0;
  for (int64_t i = 0; i < n; ++i) mean_diag += H[size_t(i * n + i)];
  mean_diag /= double(n);
  std::vector<double> U;
  for (double d = damp; d <= 1.0 + 1e-9; d = d > 0 ? d * std::sqrt(10.0) : 0.01) {
    U = H;
    for (int64_t i = 0; i < n; ++i) U[size_t(i * n + i)] += d * mean_diag;
    if (inverse_cholesky(U, n)) {
      if (d > damp * 1.0001)
        fmt::print(stderr, "warning: {}: Cholesky failed at damping {}; used {:.3g}\n", name, damp, d);
      if (used) *used = d;
      return std::vector<float>(U.begin(), U.end());
    }
  }
  return error("{}: the Hessian is not positive definite even with damping 1.0 × mean(diag H) = {}", name,
               mean_diag);
}

Expected<GptqStats> gptq_quantize(float* W, int64_t n_out, int64_t n_in, std::vector<double> H,
                                  const GptqSpec& spec, RowGrid& grid, const std::vector<int64_t>& perm,
                                  const std::string& name) {
  GptqStats st;
  const auto h = [&](int64_t i, int64_t j) -> double& { return H[size_t(i * n_in + j)]; };
  for (int64_t i = 0; i < n_in; ++i)
    if (h(i, i) == 0) {
      h(i, i) = 1;
      for (int64_t r = 0; r < n_out; ++r) W[r * n_in + i] = 0;
      st.dead_columns++;
    }
  std::vector<float> Wp;  // W with columns in processing order
  float* w = W;
  if (!perm.empty()) {
    Wp.resize(size_t(n_out * n_in));
    for (int64_t r = 0; r < n_out; ++r)
      for (int64_t c = 0; c < n_in; ++c) Wp[size_t(r * n_in + c)] = W[r * n_in + perm[size_t(c)]];
    std::vector<double> Hp(H.size());
    for (int64_t i = 0; i < n_in; ++i)
      for (int64_t j = 0; j < n_in; ++j) Hp[size_t(i * n_in + j)] = h(perm[size_t(i)], perm[size_t(j)]);
    H.swap(Hp);
    w = Wp.data();
  }
  QF_ASSIGN_OR_RETURN(std::vector<float> Uf,
                      damped_inverse_cholesky(std::move(H), n_in, spec.damp, name, &st.damp));
  const int64_t gs = grid.group();
  const int64_t B =
      (spec.block % gs == 0 || gs % spec.block == 0) ? spec.block : std::gcd(gs, int64_t(spec.block));
  std::vector<float> err(size_t(n_out * B));
  double loss = 0;
  for (int64_t i1 = 0; i1 < n_in; i1 += B) {
    const int64_t i2 = std::min(i1 + B, n_in), cnt = i2 - i1;
#pragma omp parallel for schedule(static) reduction(+ : loss)
    for (int64_t r = 0; r < n_out; ++r) {
      float* row = w + r * n_in;  // the batch's columns are updated in place
      float* e = err.data() + r * cnt;
      for (int64_t i = 0; i < cnt; ++i) {
        const int64_t c = i1 + i;
        if (c % gs == 0) grid.fit(r, c, row + c);  // a group never straddles a batch it starts inside
        const float x = row[c], q = grid.round(r, c, x), d = Uf[size_t(c * n_in + c)];
        const float e_c = (x - q) / d;
        loss += double(x - q) * double(x - q) / (double(d) * d) / 2;
        row[c] = q;
        const float* u = Uf.data() + c * n_in;
        for (int64_t k = c + 1; k < i2; ++k) row[k] -= e_c * u[k];
        e[i] = e_c;
      }
    }
    if (i2 < n_in) {  // W[:, i2:] −= Err · U[i1:i2, i2:]
      const int64_t rows_per = std::max<int64_t>(16, (n_out + 63) / 64);
#pragma omp parallel for schedule(dynamic)
      for (int64_t r0 = 0; r0 < n_out; r0 += rows_per)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(std::min(rows_per, n_out - r0)),
                    int(n_in - i2), int(cnt), -1.0f, err.data() + r0 * cnt, int(cnt),
                    Uf.data() + i1 * n_in + i2, int(n_in), 1.0f, w + r0 * n_in + i2, int(n_in));
    }
  }
  st.loss = loss;
  if (!perm.empty())
    for (int64_t r = 0; r < n_out; ++r)
      for (int64_t c = 0; c < n_in; ++c) W[r * n_in + perm[size_t(c)]] = Wp[size_t(r * n_in + c)];
  return st;
}

IntRowGrid::IntRowGrid(const IntGridSpec& spec, int64_t n_out, int64_t n_in, std::vector<int64_t> perm,
                       const float* static_w)
    : spec_(spec),
      n_in_(n_in),
      gs_(spec.group_len(n_in)),
      static_(static_w != nullptr),
      perm_(std::move(perm)) {
  q_.spec = spec;
  q_.n_out = n_out;
  q_.n_in = n_in;
  q_.codes.resize(size_t(n_out * n_in));
  const int64_t ng = n_in / gs_;
  q_.scales.resize(size_t(n_out * ng));
  q_.zeros.resize(size_t(n_out * ng));
  if (!perm_.empty() && !static_) {
    q_.g_idx.resize(size_t(n_in));
    for (int64_t c = 0; c < n_in; ++c) q_.g_idx[size_t(perm_[size_t(c)])] = int32_t(c / gs_);
  }
  if (static_)
    for (int64_t r = 0; r < n_out; ++r)
      for (int64_t g = 0; g < ng; ++g) {
        GroupParams p = find_group_params({static_w + r * n_in + g * gs_, size_t(gs_)}, spec_);
        q_.scales[size_t(r * ng + g)] = p.scale;
        q_.zeros[size_t(r * ng + g)] = p.zero;
      }
}

void IntRowGrid::fit(int64_t r, int64_t c0, const float* w) {
  if (static_) return;
  const int64_t ng = n_in_ / gs_, g = c0 / gs_;
  GroupParams p = find_group_params({w, size_t(gs_)}, spec_);
  q_.scales[size_t(r * ng + g)] = p.scale;
  q_.zeros[size_t(r * ng + g)] = p.zero;
}

float IntRowGrid::round(int64_t r, int64_t c, float w) {
  const int64_t col = perm_.empty() ? c : perm_[size_t(c)];
  const int64_t ng = n_in_ / gs_, g = static_ ? col / gs_ : c / gs_;
  const GroupParams p{q_.scales[size_t(r * ng + g)], q_.zeros[size_t(r * ng + g)]};
  const int code = quantize_value(w, p, spec_.maxq());
  q_.codes[size_t(r * n_in_ + col)] = uint8_t(code);
  return dequantize_value(code, p);
}

IntQuantized IntRowGrid::result() && { return std::move(q_); }

BlockRowGrid::BlockRowGrid(QType type, int64_t n_out, int64_t n_in, const float* importance)
    : tr_(traits(type)), block_(tr_.block), row_bytes_(qtype_row_bytes(type, n_in)), importance_(importance) {
  QF_CHECK(tr_.pack_codes && n_in % block_ == 0, "{} is not a block type GPTQ can round onto ({} columns)",
           tr_.name, n_in);
  for (int q = 0; q < tr_.n_codes; ++q)
    levels_.push_back(type == QType::IQ4_NL || type == QType::IQ4_XS ? float(kIq4nlValues[q]) : float(q));
  bytes_.resize(size_t(n_out * row_bytes_));
  a_.resize(size_t(n_out * block_));
  b_.resize(a_.size());
  codes_.resize(a_.size());
}

void BlockRowGrid::fit(int64_t r, int64_t c0, const float* w) {
  uint8_t* blk = bytes_.data() + r * row_bytes_ + c0 / block_ * tr_.bytes_per_block;
  tr_.quantize_ref(w, blk, block_, importance_ ? importance_ + c0 : nullptr);
  // Each position's value is affine in its code's level: probe codes 0 and 1.
  const auto n = static_cast<size_t>(block_);
  std::vector<uint8_t> probe(blk, blk + tr_.bytes_per_block), codes(n);
  std::vector<float> v0(n), v1(n);
  tr_.pack_codes(codes.data(), probe.data());
  tr_.dequantize_ref(probe.data(), v0.data(), block_);
  std::fill(codes.begin(), codes.end(), uint8_t(1));
  tr_.pack_codes(codes.data(), probe.data());
  tr_.dequantize_ref(probe.data(), v1.data(), block_);
  const float dl = levels_[1] - levels_[0];
  for (int64_t j = 0; j < block_; ++j) {
    const float a = (v1[size_t(j)] - v0[size_t(j)]) / dl;
    a_[size_t(r * block_ + j)] = a;
    b_[size_t(r * block_ + j)] = v0[size_t(j)] - a * levels_[0];
  }
}

float BlockRowGrid::round(int64_t r, int64_t c, float w) {
  const int64_t j = c % block_, k = r * block_ + j;
  const float a = a_[size_t(k)], b = b_[size_t(k)];
  int q = 0;
  if (a != 0) {
    const float t = (w - b) / a;  // the level wanted
    const auto it = std::lower_bound(levels_.begin(), levels_.end(), t);
    q = int(it - levels_.begin());
    if (q == int(levels_.size()) || (q > 0 && t - levels_[size_t(q - 1)] <= levels_[size_t(q)] - t)) --q;
  }
  codes_[size_t(k)] = uint8_t(q);
  if (j == block_ - 1)
    tr_.pack_codes(codes_.data() + r * block_,
                   bytes_.data() + r * row_bytes_ + c / block_ * tr_.bytes_per_block);
  return a * levels_[size_t(q)] + b;
}

}  // namespace qf
