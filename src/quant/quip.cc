#include "quant/quip.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "formats/e8p.h"
#include "quant/gptq.h"

namespace qf {
namespace {

// (rows, cols) row-major → (cols, rows).
template <class T>
std::vector<T> transposed(const T* a, int64_t rows, int64_t cols) {
  std::vector<T> t(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[size_t(c * rows + r)] = a[r * cols + c];
  return t;
}

// One row's 8 weights onto the codebook of `bits`: codes, and the values in out.
void round_e8(const float* x, int bits, float resid_scale, uint16_t& code, uint16_t& resid, float* out) {
  code = e8p::encode(x, out);
  resid = 0;
  if (bits == 2) return;
  float r[8], v[8];
  for (int k = 0; k < 8; ++k) r[k] = (x[k] - out[k]) * resid_scale;
  resid = bits == 3 ? e8p::encode_e81b(r, v) : e8p::encode(r, v);
  for (int k = 0; k < 8; ++k) out[k] += v[k] / resid_scale;
}

// BlockLDLQ of w (n_out, n_in), already divided by Wscale, in place; U the upper Cholesky
// factor of H̃⁻¹. Lazy batches of 128 columns as in gptq_quantize.
void block_ldlq(e8p::E8Codes& q, float* w, const std::vector<float>& U) {
  const int64_t n_out = q.n_out, n = q.n_in, B = 128, nb = n / 8;
  std::vector<float> err(size_t(n_out * B));
  for (int64_t i1 = 0; i1 < n; i1 += B) {
    const int64_t i2 = std::min(i1 + B, n), cnt = i2 - i1;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n_out; ++r) {
      float* row = w + r * n;
      float* e = err.data() + r * cnt;
      for (int64_t c = i1; c < i2; c += 8) {
        float v[8];
        uint16_t resid = 0;
        round_e8(row + c, q.bits, q.resid_scale, q.codes[size_t(r * nb + c / 8)], resid, v);
        if (q.bits > 2) q.resid[size_t(r * nb + c / 8)] = resid;
        // e·U_BB = w_B − q_B (U_BB upper triangular): forward substitution.
        for (int j = 0; j < 8; ++j) {
          float s = row[c + j] - v[j];
          for (int k = 0; k < j; ++k) s -= e[c - i1 + k] * U[size_t((c + k) * n + c + j)];
          e[c - i1 + j] = s / U[size_t((c + j) * n + c + j)];
        }
        for (int j = 0; j < 8; ++j) row[c + j] = v[j];
        for (int k = 0; k < 8; ++k) {
          const float ek = e[c - i1 + k];
          const float* u = U.data() + (c + k) * n;
          for (int64_t j = c + 8; j < i2; ++j) row[j] -= ek * u[j];
        }
      }
    }
    if (i2 < n)  // W[:, i2:] −= Err · U[i1:i2, i2:]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n_out), int(n - i2), int(cnt), -1.0f,
                  err.data(), int(cnt), U.data() + i1 * n + i2, int(n), 1.0f, w + i2, int(n));
  }
}

}  // namespace

std::unique_ptr<Linear> quip_linear(const QuipQuantized& q, const TensorView& bias) {
  std::unique_ptr<Linear> inner;
  if (q.lattice)
    inner = std::make_unique<E8Linear>(q.e8);
  else
    inner = std::make_unique<IntLinear>(q.grid, TensorView{});
  auto h_in = Hadamard::of_order(inner->n_in(), "quip"), h_out = Hadamard::of_order(inner->n_out(), "quip");
  QF_CHECK(h_in.ok() && h_out.ok(), "quip_linear: shapes were checked by quip_quantize");
  return std::make_unique<QuipLinear>(std::move(*h_in), std::move(*h_out), q.su, q.sv, std::move(inner),
                                      bias);
}

Status check_quip_shape(int64_t n_out, int64_t n_in, bool lattice, const std::string& name) {
  if (lattice && n_in % 8 != 0)
    return error("{}: quip# rounds 8 weights at a time; {} input columns is not a multiple of 8", name, n_in);
  QF_RETURN_IF_ERROR(Hadamard::of_order(n_in, name + " (input dimension)").status());
  return Hadamard::of_order(n_out, name + " (output dimension)").status();
}

Expected<QuipQuantized> quip_quantize(const float* W, int64_t n_out, int64_t n_in, std::vector<double> H,
                                      const QuipSpec& spec, const std::string& name) {
  QF_RETURN_IF_ERROR(check_quip_shape(n_out, n_in, spec.lattice, name));
  QF_ASSIGN_OR_RETURN(Hadamard hin, Hadamard::of_order(n_in, name));
  QF_ASSIGN_OR_RETURN(Hadamard hout, Hadamard::of_order(n_out, name));
  QuipQuantized q;
  q.lattice = spec.lattice;
  const uint64_t seed = spec.seed ^ std::hash<std::string>()(name);
  q.su = random_signs(n_in, seed * 2 + 1);
  q.sv = random_signs(n_out, seed * 2 + 2);
  // W̃ = Hₒᵀ·diag(sₒ)·W·diag(sᵢ)·Hᵢ: rows through Hᵢᵀ (row·Hᵢ), then columns through Hₒᵀ.
  std::vector<float> w(W, W + n_out * n_in);
  for (int64_t r = 0; r < n_out; ++r)
    for (int64_t c = 0; c < n_in; ++c) w[size_t(r * n_in + c)] *= q.su[size_t(c)] * q.sv[size_t(r)];
  hin.apply(w.data(), n_out, true);
  std::vector<float> wt = transposed(w.data(), n_out, n_in);
  hout.apply(wt.data(), n_in, true);
  w = transposed(wt.data(), n_in, n_out);
  wt = {};
  // H̃ = Hᵢᵀ·D·H·D·Hᵢ: (D·H·D)·Hᵢ by rows, then the transpose's rows again.
  for (int64_t i = 0; i < n_in; ++i)
    for (int64_t j = 0; j < n_in; ++j) H[size_t(i * n_in + j)] *= double(q.su[size_t(i)] * q.su[size_t(j)]);
  hin.apply(H.data(), n_in, true);
  H = transposed(H.data(), n_in, n_in);
  hin.apply(H.data(), n_in, true);

  if (!spec.lattice) {
    IntGridSpec grid_spec;
    grid_spec.bits = spec.bits, grid_spec.group = -1, grid_spec.sym = false;
    IntRowGrid grid(grid_spec, n_out, n_in, {}, nullptr);
    GptqSpec g;
    g.damp = spec.damp;
    QF_RETURN_IF_ERROR(gptq_quantize(w.data(), n_out, n_in, std::move(H), g, grid, {}, name).status());
    q.grid = std::move(grid).result();
    return q;
  }
  const e8p::Scales sc = e8p::scales(spec.bits);
  double ss = 0;
  for (float v : w) ss += double(v) * v;
  e8p::E8Codes& e = q.e8;
  e.bits = spec.bits, e.n_out = n_out, e.n_in = n_in;
  e.wscale = float(std::sqrt(ss / double(w.size()))) / sc.opt_scale;
  if (!(e.wscale > 0)) e.wscale = 1;
  e.resid_scale = sc.resid_scale;
  for (float& v : w) v /= e.wscale;
  QF_ASSIGN_OR_RETURN(std::vector<float> U,
                      damped_inverse_cholesky(std::move(H), n_in, spec.damp, name, nullptr));
  e.codes.resize(size_t(n_out * n_in / 8));
  if (spec.bits > 2) e.resid.resize(e.codes.size());
  block_ldlq(e, w.data(), U);
  return q;
}

}  // namespace qf
