#include "formats/int_grid.h"

#include <algorithm>
#include <cmath>

namespace qf {

std::string IntGridSpec::describe() const {
  return fmt::format("INT{} {} {}{}", bits,
                     group < 0 ? std::string("per-channel") : fmt::format("g{}", group), sym ? "sym" : "asym",
                     clip_mse ? " clip-mse" : "");
}

Status validate(const IntGridSpec& s, int64_t n_in, const std::string& tensor) {
  if (s.bits < 2 || s.bits > 8) return error("{}: integer grids take 2..8 bits, got {}", tensor, s.bits);
  if (s.group == 0 || s.group < -1)
    return error("{}: group size must be positive or -1 (per channel), got {}", tensor, s.group);
  if (s.group > 0 && n_in % s.group != 0)
    return error("{}: group size {} does not divide the row length {}", tensor, s.group, n_in);
  return {};
}

namespace {

GroupParams params_from_range(float xmin, float xmax, const IntGridSpec& s) {
  const float maxq = float(s.maxq());
  if (s.sym) {
    xmax = std::max(std::fabs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  GroupParams p;
  p.scale = (xmax - xmin) / maxq;
  p.zero = s.sym ? (maxq + 1) / 2 : std::nearbyint(-xmin / p.scale);
  return p;
}

}  // namespace

GroupParams find_group_params(std::span<const float> x, const IntGridSpec& s) {
  float xmin = 0, xmax = 0;
  for (float v : x) {
    xmin = std::min(xmin, v);
    xmax = std::max(xmax, v);
  }
  GroupParams best = params_from_range(xmin, xmax, s);
  if (!s.clip_mse) return best;
  // Reference: for i in range(int(maxshrink * grid)): p = 1 - i / grid, scale/zero from
  // (p·xmin, p·xmax) (sym keeps zero), error Σ|q(x) − x|^norm; strictly smaller error wins.
  const int maxq = s.maxq();
  double best_err = INFINITY;
  for (int i = 0; i < 80; ++i) {
    const float p = 1.0f - float(i) / 100.0f;
    GroupParams cand = params_from_range(p * xmin, p * xmax, s);
    if (s.sym) cand.zero = best.zero;
    double err = 0;
    for (float v : x)
      err += std::pow(std::fabs(double(dequantize_value(quantize_value(v, cand, maxq), cand) - v)), 2.4);
    if (err < best_err) {
      best_err = err;
      best = cand;
    }
  }
  return best;
}

IntQuantized quantize_rtn(const float* w, int64_t n_out, int64_t n_in, const IntGridSpec& spec) {
  IntQuantized q;
  q.spec = spec;
  q.n_out = n_out;
  q.n_in = n_in;
  const int64_t g = spec.group_len(n_in), ng = n_in / g;
  q.codes.resize(size_t(n_out * n_in));
  q.scales.resize(size_t(n_out * ng));
  q.zeros.resize(size_t(n_out * ng));
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t r = 0; r < n_out; ++r) {
    for (int64_t j = 0; j < ng; ++j) {
      const float* x = w + r * n_in + j * g;
      GroupParams p = find_group_params({x, size_t(g)}, spec);
      q.scales[size_t(r * ng + j)] = p.scale;
      q.zeros[size_t(r * ng + j)] = p.zero;
      for (int64_t i = 0; i < g; ++i)
        q.codes[size_t(r * n_in + j * g + i)] = uint8_t(quantize_value(x[i], p, spec.maxq()));
    }
  }
  return q;
}

void IntQuantized::dequantize_rows(int64_t r0, int64_t rows, float* dst) const {
  const int64_t ng = n_groups();
  for (int64_t r = r0; r < r0 + rows; ++r)
    for (int64_t i = 0; i < n_in; ++i) {
      const size_t k = size_t(r * ng + group_of(i));
      dst[(r - r0) * n_in + i] = dequantize_value(codes[size_t(r * n_in + i)], {scales[k], zeros[k]});
    }
}

PackedInt::PackedInt(const IntQuantized& q)
    : bits_(q.spec.bits),
      n_out_(q.n_out),
      n_in_(q.n_in),
      n_groups_(q.n_groups()),
      group_(q.spec.group_len(q.n_in)),
      row_bytes_((q.n_in * q.spec.bits + 7) / 8),
      packed_(size_t(q.n_out * row_bytes_ + 1), 0),
      scales_(q.scales),
      zeros_(q.zeros),
      g_idx_(q.g_idx) {
  for (int64_t r = 0; r < n_out_; ++r) {
    uint8_t* row = packed_.data() + r * row_bytes_;
    for (int64_t i = 0; i < n_in_; ++i) {
      const int64_t bit = i * bits_;
      const unsigned v = unsigned(q.codes[size_t(r * n_in_ + i)]) << (bit % 8);
      row[bit / 8] |= uint8_t(v);
      if (bit % 8 + bits_ > 8) row[bit / 8 + 1] |= uint8_t(v >> 8);
    }
  }
}

void PackedInt::dequantize_rows(int64_t r0, int64_t rows, float* dst) const {
  const unsigned mask = (1u << bits_) - 1;
  for (int64_t r = r0; r < r0 + rows; ++r) {
    const uint8_t* row = packed_.data() + r * row_bytes_;
    const float* sc = scales_.data() + r * n_groups_;
    const float* ze = zeros_.data() + r * n_groups_;
    float* out = dst + (r - r0) * n_in_;
    auto code = [&](int64_t i) {
      const int64_t bit = i * bits_;
      return float(((unsigned(row[bit / 8]) | unsigned(row[bit / 8 + 1]) << 8) >> (bit % 8)) & mask);
    };
    if (g_idx_.empty()) {  // contiguous groups: one scale/zero lookup per group
      for (int64_t g = 0; g < n_groups_; ++g)
        for (int64_t i = g * group_; i < (g + 1) * group_; ++i) out[i] = sc[g] * (code(i) - ze[g]);
    } else {
      for (int64_t i = 0; i < n_in_; ++i) out[i] = sc[g_idx_[size_t(i)]] * (code(i) - ze[g_idx_[size_t(i)]]);
    }
  }
}

}  // namespace qf
