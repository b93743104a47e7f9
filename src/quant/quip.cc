#include "quant/quip.h"

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

// QuIP#'s lattice as a GPTQ grid (BlockLDLQ is GPTQ's loop over groups of 8): at a block's first
// column each row's 8 current weights are rounded jointly, and the columns then take their
// values from that block in turn. GPTQ's column-by-column error feedback inside the block, with
// the block's rounding fixed at its start, is BlockLDLQ's e = (w − q)·U_BB⁻¹ by forward
// substitution, and its updates of later columns are the same.
class E8RowGrid final : public RowGrid {
 public:
  explicit E8RowGrid(e8p::E8Codes& q) : q_(q), values_(static_cast<size_t>(q.n_out * 8)) {}
  int64_t group() const override { return 8; }
  void fit(int64_t r, int64_t c0, const float* w) override {
    const auto b = size_t(r * (q_.n_in / 8) + c0 / 8);
    uint16_t resid = 0;
    round_e8(w, q_.bits, q_.resid_scale, q_.codes[b], resid, values_.data() + r * 8);
    if (q_.bits > 2) q_.resid[b] = resid;
  }
  float round(int64_t r, int64_t c, float) override { return values_[size_t(r * 8 + c % 8)]; }

 private:
  e8p::E8Codes& q_;
  std::vector<float> values_;  // (n_out, 8): each row's current block
};

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
                                      const QuipSpec& spec, const std::string& name, const Backend& be) {
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

  GptqSpec g;
  g.damp = spec.damp;
  if (!spec.lattice) {
    IntGridSpec grid_spec;
    grid_spec.bits = spec.bits, grid_spec.group = -1, grid_spec.sym = false;
    IntRowGrid grid(grid_spec, n_out, n_in, {}, nullptr);
    QF_RETURN_IF_ERROR(gptq_quantize(w.data(), n_out, n_in, std::move(H), g, grid, {}, name, be).status());
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
  e.codes.resize(size_t(n_out * n_in / 8));
  if (spec.bits > 2) e.resid.resize(e.codes.size());
  E8RowGrid grid(e);
  QF_RETURN_IF_ERROR(gptq_quantize(w.data(), n_out, n_in, std::move(H), g, grid, {}, name, be).status());
  return q;
}

}  // namespace qf
