#include "quant/gptq.h"

#include "core/profile.h"
#include "formats/ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

namespace qf {
namespace {

// U in H's backend's memory (see damped_inverse_cholesky); H is left as it was.
Expected<Buffer<float>> inverse_cholesky_on(const Buffer<double>& H, int64_t n, double damp,
                                            const std::string& name, double* used) {
  const Backend& be = H.backend();
  double mean_diag = 0;
  for (double v : diagonal(H, n)) mean_diag += v;
  mean_diag /= double(n);
  for (double d = damp; d <= 1.0 + 1e-9; d = d > 0 ? d * std::sqrt(10.0) : 0.01) {
    Buffer<double> U = H.copy();
    be.add_diagonal(U.data(), n, d * mean_diag);
    if (be.inverse_cholesky(U.data(), n)) {
      if (d > damp * 1.0001)
        fmt::print(stderr, "warning: {}: Cholesky failed at damping {}; used {:.3g}\n", name, damp, d);
      if (used) *used = d;
      Buffer<float> Uf(be, n * n);
      be.narrow(U.data(), Uf.data(), n * n);
      return Uf;
    }
  }
  return error("{}: the Hessian is not positive definite even with damping 1.0 × mean(diag H) = {}", name,
               mean_diag);
}

// Rounds one row's lazy batch, columns [i1, i1 + cnt): w holds the row's columns from i1 on (all
// of a group that starts at i1), updated in place; u: rows i1 .. i1 + cnt of U from column i1,
// pitch ldu; e (cnt): the scaled errors the trailing update needs. Returns the row's loss.
double round_row_batch(RowGrid& grid, int64_t r, int64_t i1, int64_t cnt, int64_t gs, float* w,
                       const float* u, int64_t ldu, float* e) {
  double loss = 0;
  for (int64_t i = 0; i < cnt; ++i) {
    if ((i1 + i) % gs == 0) grid.fit(r, i1 + i, w + i);  // a group never straddles a batch it starts inside
    const float x = w[i], q = grid.round(r, i1 + i, x), d = u[i * ldu + i];
    const float e_c = (x - q) / d;
    loss += double(x - q) * double(x - q) / (double(d) * d) / 2;
    w[i] = q;
    const float* ui = u + i * ldu;
    for (int64_t k = i + 1; k < cnt; ++k) w[k] -= e_c * ui[k];
    e[i] = e_c;
  }
  return loss;
}

// The lazy batches with W and U in a device's memory: each batch's columns come to the host, are
// rounded there by round_row_batch (every grid, as on the CPU), and its errors go back for the
// trailing update on the device. w: (n_out, n_in) host, processing order; rounded in place.
double lazy_batches_on_device(const Backend& be, float* w, int64_t n_out, int64_t n_in,
                              const Buffer<float>& U, int64_t B, RowGrid& grid) {
  const int64_t gs = grid.group();
  Buffer<float> wd(be, n_out * n_in), errd(be, n_out * B);
  be.to_device(wd.data(), w, n_out * n_in * 4);
  std::vector<float> wb, ub(size_t(B * B)), err(size_t(n_out * B));
  double loss = 0;
  for (int64_t i1 = 0; i1 < n_in; i1 += B) {
    const int64_t i2 = std::min(i1 + B, n_in), cnt = i2 - i1;
    const int64_t span = i1 % gs == 0 ? std::max(cnt, std::min(gs, n_in - i1)) : cnt;
    wb.resize(size_t(n_out * span));
    {
      PhaseTimer t("gptq: batch to the host", &be);
      be.copy_2d(wb.data(), span * 4, wd.data() + i1, n_in * 4, span * 4, n_out, Backend::Copy::kToHost);
      be.copy_2d(ub.data(), cnt * 4, U.data() + i1 * n_in + i1, n_in * 4, cnt * 4, cnt,
                 Backend::Copy::kToHost);
    }
    PhaseTimer t("gptq: round a batch on the host");
#pragma omp parallel for schedule(static) reduction(+ : loss)
    for (int64_t r = 0; r < n_out; ++r) {
      loss +=
          round_row_batch(grid, r, i1, cnt, gs, wb.data() + r * span, ub.data(), cnt, err.data() + r * cnt);
      std::copy_n(wb.data() + r * span, cnt, w + r * n_in + i1);
    }
    if (i2 < n_in) {  // W[:, i2:] −= Err · U[i1:i2, i2:]
      PhaseTimer t("gptq: trailing update", &be);
      be.to_device(errd.data(), err.data(), n_out * cnt * 4);
      be.gemm_sub(errd.data(), cnt, U.data() + i1 * n_in + i2, n_in, wd.data() + i2, n_in, n_out, n_in - i2,
                  cnt);
    }
  }
  return loss;
}

// The lazy batches rounded by the device itself (Backend::round_int_batch, integer grids): wd
// (n_out, n_in, processing order), U, the errors and the grid's codes, scales and zeros stay in
// its memory; the codes, scales and zeros come to grid.storage() at the end.
double int_batches_on_device(const Backend& be, float* wd, int64_t n_out, int64_t n_in,
                             const Buffer<float>& U, int64_t B, IntRowGrid& grid) {
  const int64_t gs = grid.group(), ng = n_in / gs;
  IntQuantized& q = grid.storage();
  std::vector<int32_t> col(static_cast<size_t>(n_in));
  for (int64_t c = 0; c < n_in; ++c) col[size_t(c)] = int32_t(grid.code_column(c));
  Buffer<float> errd(be, n_out * B), sd(be, n_out * ng), zd(be, n_out * ng);
  Buffer<uint8_t> codes(be, n_out * n_in);
  Buffer<int32_t> cold(be, col);
  Buffer<double> loss(be, std::vector<double>(size_t(n_out), 0.0));
  IntGridBatch a{wd,        U.data(),           errd.data(),    codes.data(), cold.data(), sd.data(),
                 zd.data(), loss.data(),        n_out,          n_in,         0,           0,
                 gs,        grid.spec().maxq(), grid.spec().sym};
  for (int64_t i1 = 0; i1 < n_in; i1 += B) {
    const int64_t i2 = std::min(i1 + B, n_in), cnt = i2 - i1;
    a.i1 = i1;
    a.cnt = cnt;
    {
      PhaseTimer t("gptq: round a batch on the device", &be);
      be.round_int_batch(a);
    }
    if (i2 < n_in) {  // W[:, i2:] −= Err · U[i1:i2, i2:]
      PhaseTimer t("gptq: trailing update", &be);
      be.gemm_sub(errd.data(), cnt, U.data() + i1 * n_in + i2, n_in, wd + i2, n_in, n_out, n_in - i2, cnt);
    }
  }
  PhaseTimer t("gptq: codes to the host", &be);
  be.to_host(q.codes.data(), codes.data(), n_out * n_in);
  be.to_host(q.scales.data(), sd.data(), n_out * ng * 4);
  be.to_host(q.zeros.data(), zd.data(), n_out * ng * 4);
  double total = 0;
  for (double v : loss.to_host()) total += v;
  return total;
}

// What GPTQ does to H before the column loop, and its results: dead columns found (H_ii = 1
// there), H permuted to the processing order, U factorized; B, the lazy-batch width.
struct Prepared {
  std::vector<int64_t> dead;
  Buffer<float> U;
  double damp = 0;
  int64_t B = 0;
};

Expected<Prepared> prepare(Buffer<double> H, int64_t n_in, const GptqSpec& spec, int64_t gs,
                           const std::vector<int64_t>& perm, const std::string& name) {
  const Backend& be = H.backend();
  Prepared p;
  {
    PhaseTimer t("gptq: dead columns, permutation", &be);
    const std::vector<double> diag = diagonal(H, n_in);
    for (int64_t i = 0; i < n_in; ++i)
      if (diag[size_t(i)] == 0) {
        const double one = 1;
        be.to_device(H.data() + i * (n_in + 1), &one, 8);
        p.dead.push_back(i);
      }
    if (!perm.empty()) {
      Buffer<double> Hp(be, n_in * n_in);
      be.permute_symmetric(H.data(), perm.data(), Hp.data(), n_in);
      H = std::move(Hp);
    }
  }
  PhaseTimer t("gptq: inverse Cholesky", &be);
  QF_ASSIGN_OR_RETURN(p.U, inverse_cholesky_on(H, n_in, spec.damp, name, &p.damp));
  p.B = (spec.block % gs == 0 || gs % spec.block == 0) ? spec.block : std::gcd(gs, int64_t(spec.block));
  return p;
}

std::vector<int64_t> inverse(const std::vector<int64_t>& perm) {
  std::vector<int64_t> inv(perm.size());
  for (size_t c = 0; c < perm.size(); ++c) inv[size_t(perm[c])] = int64_t(c);
  return inv;
}

}  // namespace

std::vector<int64_t> act_order_permutation(const std::vector<double>& diag) {
  std::vector<int64_t> perm(diag.size());
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int64_t a, int64_t b) { return diag[size_t(a)] > diag[size_t(b)]; });
  return perm;
}

Expected<std::vector<float>> damped_inverse_cholesky(std::vector<double> H, int64_t n, double damp,
                                                     const std::string& name, double* used) {
  QF_ASSIGN_OR_RETURN(Buffer<float> U,
                      inverse_cholesky_on(Buffer<double>(cpu_backend(), H), n, damp, name, used));
  return U.to_host();
}

Expected<GptqStats> gptq_quantize(float* W, int64_t n_out, int64_t n_in, std::vector<double> H,
                                  const GptqSpec& spec, RowGrid& grid, const std::vector<int64_t>& perm,
                                  const std::string& name, const Backend& be) {
  return gptq_quantize(W, n_out, n_in, Buffer<double>(be, H), spec, grid, perm, name);
}

Expected<GptqStats> gptq_quantize(float* W, int64_t n_out, int64_t n_in, Buffer<double> H,
                                  const GptqSpec& spec, RowGrid& grid, const std::vector<int64_t>& perm,
                                  const std::string& name) {
  const Backend& be = H.backend();
  if (auto* ig = dynamic_cast<IntRowGrid*>(&grid); be.on_device() && ig && ig->device_roundable()) {
    Buffer<float> wd(be, n_out * n_in);
    be.to_device(wd.data(), W, n_out * n_in * 4);
    QF_ASSIGN_OR_RETURN(GptqStats st, gptq_quantize(wd, n_out, n_in, std::move(H), spec, *ig, perm, name));
    be.to_host(W, wd.data(), n_out * n_in * 4);
    return st;
  }
  PhaseTimer t_all("gptq", &be);
  const int64_t gs = grid.group();
  QF_ASSIGN_OR_RETURN(Prepared p, prepare(std::move(H), n_in, spec, gs, perm, name));
  GptqStats st;
  st.damp = p.damp;
  st.dead_columns = int(p.dead.size());
  const Backend& host = cpu_backend();  // W's copies and permutations are on the host
  if (!p.dead.empty())
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n_out; ++r)
      for (int64_t i : p.dead) W[r * n_in + i] = 0;
  std::vector<float> Wp;  // W with columns in processing order
  float* w = W;
  if (!perm.empty()) {
    Wp.resize(size_t(n_out * n_in));
    host.gather_columns(W, perm.data(), Wp.data(), n_out, n_in);
    w = Wp.data();
  }
  const int64_t B = p.B;
  double loss = 0;
  if (be.on_device()) {
    loss = lazy_batches_on_device(be, w, n_out, n_in, p.U, B, grid);
  } else {
    const float* Uf = p.U.data();
    std::vector<float> err(size_t(n_out * B));
    for (int64_t i1 = 0; i1 < n_in; i1 += B) {
      const int64_t i2 = std::min(i1 + B, n_in), cnt = i2 - i1;
#pragma omp parallel for schedule(static) reduction(+ : loss)
      for (int64_t r = 0; r < n_out; ++r)  // the batch's columns are updated in place
        loss += round_row_batch(grid, r, i1, cnt, gs, w + r * n_in + i1, Uf + i1 * n_in + i1, n_in,
                                err.data() + r * cnt);
      if (i2 < n_in)  // W[:, i2:] −= Err · U[i1:i2, i2:]
        be.gemm_sub(err.data(), cnt, Uf + i1 * n_in + i2, n_in, w + i2, n_in, n_out, n_in - i2, cnt);
    }
  }
  st.loss = loss;
  PhaseTimer t_un("gptq: columns back in order");
  if (!perm.empty()) host.gather_columns(Wp.data(), inverse(perm).data(), W, n_out, n_in);
  return st;
}

Expected<GptqStats> gptq_quantize(Buffer<float>& W, int64_t n_out, int64_t n_in, Buffer<double> H,
                                  const GptqSpec& spec, IntRowGrid& grid, const std::vector<int64_t>& perm,
                                  const std::string& name) {
  const Backend& be = H.backend();
  QF_CHECK(be.on_device() && grid.device_roundable() && &W.backend() == &be && W.size() == n_out * n_in,
           "{}: GPTQ with W on the device needs a device-roundable grid and W ({}, {}) there", name, n_out,
           n_in);
  PhaseTimer t_all("gptq", &be);
  QF_ASSIGN_OR_RETURN(Prepared p, prepare(std::move(H), n_in, spec, grid.group(), perm, name));
  GptqStats st;
  st.damp = p.damp;
  st.dead_columns = int(p.dead.size());
  if (!p.dead.empty()) {  // W[:, i] = 0, one pitched copy per dead column
    const Buffer<float> zeros(be, std::vector<float>(size_t(n_out), 0.0f));
    for (int64_t i : p.dead)
      be.copy_2d(W.data() + i, n_in * 4, zeros.data(), 4, 4, n_out, Backend::Copy::kWithin);
  }
  if (perm.empty()) {
    st.loss = int_batches_on_device(be, W.data(), n_out, n_in, p.U, p.B, grid);
    return st;
  }
  Buffer<float> wp(be, n_out * n_in);  // processing order
  be.gather_columns(W.data(), perm.data(), wp.data(), n_out, n_in);
  st.loss = int_batches_on_device(be, wp.data(), n_out, n_in, p.U, p.B, grid);
  be.gather_columns(wp.data(), inverse(perm).data(), W.data(), n_out, n_in);
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
