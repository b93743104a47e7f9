#include "formats/e8p.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

namespace qf::e8p {
namespace {

using Grid = std::array<std::array<int8_t, 8>, 256>;

// Calls f(v) for every v ∈ {lo, lo + step, …, hi}^8, first coordinate slowest (torch.cartesian_prod's order).
template <class F>
void for_each_point(int lo, int hi, int step, F&& f) {
  std::array<int8_t, 8> v;
  v.fill(int8_t(lo));
  while (true) {
    f(v);
    int k = 7;
    while (k >= 0 && v[size_t(k)] == hi) v[size_t(k--)] = int8_t(lo);
    if (k < 0) return;
    v[size_t(k)] = int8_t(v[size_t(k)] + step);
  }
}

Grid make_abs_grid() {
  std::set<std::array<int8_t, 8>> abs;  // doubled: odd integers; lexicographic like torch.unique
  for_each_point(-7, 7, 2, [&](const std::array<int8_t, 8>& v) {  // doubled half-integers: odd
    int sum = 0, norm = 0;
    for (int8_t c : v) sum += c, norm += c * c;
    if (sum % 4 != 0 || norm > 40) return;  // Σv even, ‖v‖² ≤ 10 (doubled: Σ ≡ 0 mod 4, ≤ 40)
    std::array<int8_t, 8> a;
    for (int k = 0; k < 8; ++k) a[size_t(k)] = int8_t(std::abs(v[size_t(k)]));
    abs.insert(a);
  });
  static const int8_t kNorm12[29][8] = {
      {3, 1, 1, 1, 3, 3, 3, 3}, {1, 3, 1, 1, 3, 3, 3, 3}, {1, 1, 3, 1, 3, 3, 3, 3}, {1, 1, 1, 3, 3, 3, 3, 3},
      {3, 3, 3, 1, 3, 3, 1, 1}, {3, 3, 3, 1, 3, 1, 3, 1}, {3, 3, 3, 1, 1, 3, 3, 1}, {3, 3, 3, 1, 3, 1, 1, 3},
      {3, 3, 3, 1, 1, 3, 1, 3}, {3, 3, 3, 1, 1, 1, 3, 3}, {3, 3, 1, 3, 3, 3, 1, 1}, {3, 3, 1, 3, 3, 1, 3, 1},
      {3, 3, 1, 3, 1, 3, 3, 1}, {3, 3, 1, 3, 3, 1, 1, 3}, {3, 3, 1, 3, 1, 3, 1, 3}, {3, 3, 1, 3, 1, 1, 3, 3},
      {3, 1, 3, 3, 3, 3, 1, 1}, {3, 1, 3, 3, 3, 1, 3, 1}, {3, 1, 3, 3, 1, 3, 3, 1}, {3, 1, 3, 3, 3, 1, 1, 3},
      {3, 1, 3, 3, 1, 3, 1, 3}, {1, 3, 3, 3, 1, 1, 3, 3}, {1, 3, 3, 3, 3, 3, 1, 1}, {1, 3, 3, 3, 3, 1, 3, 1},
      {1, 3, 3, 3, 1, 3, 3, 1}, {1, 3, 3, 3, 3, 1, 1, 3}, {1, 3, 3, 3, 1, 3, 1, 3}, {1, 1, 3, 3, 1, 3, 3, 3},
      {3, 3, 1, 1, 3, 3, 3, 1}};
  Grid g{};
  size_t i = 0;
  for (const auto& a : abs)
    if (i < 256) g[i++] = a;
  for (const auto& row : kNorm12)
    if (i < 256) std::copy(row, row + 8, g[i++].begin());
  return i == 256 && abs.size() == 227 ? g : Grid{};  // a wrong count leaves zeros: the tests say so
}

Grid make_e81b_grid() {
  Grid g{};
  size_t i = 0;
  auto take = [&](const std::array<int8_t, 8>& v2) {  // doubled coordinates
    int sum = 0, norm = 0;
    for (int8_t c : v2) sum += c, norm += c * c;
    if (sum % 4 == 0 && norm <= 8 && i < 256) g[i++] = v2;  // Σv even, ‖v‖² ≤ 2
  };
  for_each_point(-4, 3, 1, [&](const std::array<int8_t, 8>& v) {  // integer points
    std::array<int8_t, 8> v2;
    for (int k = 0; k < 8; ++k) v2[size_t(k)] = int8_t(2 * v[size_t(k)]);
    take(v2);
  });
  for_each_point(-4, 3, 1, [&](const std::array<int8_t, 8>& v) {  // half-integer points v + 1/2
    std::array<int8_t, 8> v2;
    for (int k = 0; k < 8; ++k) v2[size_t(k)] = int8_t(2 * v[size_t(k)] + 1);
    take(v2);
  });
  for (int sign : {1, -1})
    for (int k = 0; k < 8 && i < 256; ++k) {
      g[i] = {};
      g[i++][size_t(k)] = int8_t(4 * sign);
    }
  return g;
}

int parity_of_sum(const std::array<int8_t, 8>& a2) {  // (Σa) mod 2 for doubled odd coordinates
  int s = 0;
  for (int8_t c : a2) s += c;
  return (s / 2) & 1;
}

}  // namespace

const Grid& abs_grid2() {
  static const Grid g = make_abs_grid();
  return g;
}

const Grid& e81b_grid2() {
  static const Grid g = make_e81b_grid();
  return g;
}

namespace {

// Decoding tables: the absolute vectors as floats, each 7-bit sign field as a mask over
// coordinates 1..7 with its parity, and for every 8-bit mask the coordinates' sign bits.
struct DecodeTables {
  float abs[256][8];
  float half_t[8][256], aa[256];  // the absolute vectors (coordinate-major) and their squared norms
  uint8_t abs_parity[256];
  uint8_t mask7[128], parity7[128];
  uint32_t sign[256][8];
  float e81b[256][8];
  DecodeTables() {
    for (int i = 0; i < 256; ++i)
      for (int k = 0; k < 8; ++k) e81b[i][k] = 0.5f * float(e81b_grid2()[size_t(i)][size_t(k)]);
    const auto& g = abs_grid2();
    for (int i = 0; i < 256; ++i) {
      aa[i] = 0;
      for (int k = 0; k < 8; ++k) {
        const int8_t a = g[size_t(i)][size_t(k)];
        abs[i][k] = half_t[k][i] = 0.5f * float(a);
        aa[i] += 0.25f * float(a * a);  // in encode's order
      }
      abs_parity[i] = uint8_t(parity_of_sum(g[size_t(i)]));
    }
    for (unsigned s = 0; s < 128; ++s) {
      unsigned m = 0;
      for (int k = 1; k < 8; ++k) m |= ((s >> (7 - k)) & 1u) << k;
      mask7[s] = uint8_t(m);
      parity7[s] = uint8_t(__builtin_popcount(s) & 1);
    }
    for (unsigned m = 0; m < 256; ++m)
      for (int k = 0; k < 8; ++k) sign[m][k] = ((m >> k) & 1u) ? 0x80000000u : 0u;
  }
};

const DecodeTables& tables() {
  static const DecodeTables t;
  return t;
}

inline void decode_with(const DecodeTables& t, uint16_t code, float* out) {
  const unsigned i = code >> 8, s = (code >> 1) & 127;
  const unsigned mask =
      t.mask7[s] | (t.parity7[s] != t.abs_parity[i] ? 1u : 0u);  // coordinate 0 fixes the parity
  const float shift = (code & 1) ? 0.25f : -0.25f;
  for (int k = 0; k < 8; ++k) {
    uint32_t bits;
    std::memcpy(&bits, &t.abs[i][k], 4);
    bits ^= t.sign[mask][k];
    float v;
    std::memcpy(&v, &bits, 4);
    out[k] = v + shift;
  }
}

}  // namespace

void decode(uint16_t code, float* out) { decode_with(tables(), code, out); }

namespace {

// For each absolute vector a (lane i): the squared distance from y to a with y's signs and the
// parity fixed — the best signs are y's; when their count of minus signs has the wrong parity,
// the coordinate with the least a_k·|y_k| flips (costing 2·a_k·|y_k|) — and that coordinate.
// The 256 lanes side by side, each lane's arithmetic in the sequential order.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
void abs_distances(const DecodeTables& t, const float* ay, float yy, int neg, float* d, int32_t* least_k) {
  float dot[256] = {}, least[256];
  for (int i = 0; i < 256; ++i) least[i] = std::numeric_limits<float>::infinity(), least_k[i] = 0;
  for (int k = 0; k < 8; ++k) {
    const float a_y = ay[k];
#pragma omp simd
    for (int i = 0; i < 256; ++i) {
      const float v = t.half_t[k][i] * a_y;
      dot[i] += v;
      const bool lower = v < least[i];
      least[i] = lower ? v : least[i];
      least_k[i] = lower ? k : least_k[i];
    }
  }
#pragma omp simd
  for (int i = 0; i < 256; ++i) {
    const bool flip = (neg & 1) != t.abs_parity[i];
    d[i] = yy + t.aa[i] - 2 * (dot[i] - (flip ? 2 * least[i] : 0.0f));
  }
}

}  // namespace

uint16_t encode(const float* x, float* out) {
  const DecodeTables& t = tables();
  float best = std::numeric_limits<float>::infinity();
  uint16_t best_code = 0;
  for (int up = 0; up < 2; ++up) {  // shift +1/4 (bit 0 set) or −1/4
    float y[8], ay[8], yy = 0;
    int neg = 0;
    unsigned sign_bits = 0;
    for (int k = 0; k < 8; ++k) {
      y[k] = x[k] - (up ? 0.25f : -0.25f);
      ay[k] = std::fabs(y[k]);
      yy += y[k] * y[k];
      if (y[k] < 0) {
        ++neg;
        if (k > 0) sign_bits |= 1u << (7 - k);
      }
    }
    float d[256];
    int32_t least_k[256];
    abs_distances(t, ay, yy, neg, d, least_k);
    for (int i = 0; i < 256; ++i)  // the first minimum, as one candidate after another finds it
      if (d[i] < best) {
        best = d[i];
        unsigned bits = sign_bits;
        const bool flip = (neg & 1) != t.abs_parity[i];
        if (flip && least_k[i] > 0) bits ^= 1u << (7 - least_k[i]);  // coordinate 0's sign is implied
        best_code = uint16_t((i << 8) | (bits << 1) | unsigned(up));
      }
  }
  if (out) decode(best_code, out);
  return best_code;
}

void decode_e81b(uint8_t code, float* out) { std::memcpy(out, tables().e81b[code], sizeof(float) * 8); }

uint8_t encode_e81b(const float* x, float* out) {
  const auto& grid = e81b_grid2();
  float best = std::numeric_limits<float>::infinity();
  int best_i = 0;
  for (int i = 0; i < 256; ++i) {
    float d = 0;
    for (int k = 0; k < 8; ++k) {
      const float e = x[k] - 0.5f * float(grid[size_t(i)][size_t(k)]);
      d += e * e;
    }
    if (d < best) best = d, best_i = i;
  }
  if (out) decode_e81b(uint8_t(best_i), out);
  return uint8_t(best_i);
}

Scales scales(int bits) {
  if (bits == 3) return {0.98f, 2.04f};
  if (bits == 4) return {1.03f, 3.45f};
  return {1.03f, 0.0f};
}

void decode_block(const E8Codes& q, int64_t index, float* out) {
  decode(q.codes[size_t(index)], out);
  if (q.bits == 2) return;
  float v[8];
  if (q.bits == 3)
    decode_e81b(uint8_t(q.resid[size_t(index)]), v);
  else
    decode(q.resid[size_t(index)], v);
  const float inv = 1.0f / q.resid_scale;
  for (int k = 0; k < 8; ++k) out[k] += v[k] * inv;
}

// Compiled twice — for Haswell-class x86 (AVX2 + FMA: the 8-float decode is one vector) and
// generic — and chosen at load time (GCC's target_clones).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("arch=haswell", "default")))
#endif
void dot_rows(const E8Codes& q, int64_t r0, int64_t r1, const float* x, int64_t tokens, float* y) {
  const DecodeTables& t = tables();
  const int64_t n = q.n_in, nb = n / 8;
  const float inv = q.bits > 2 ? 1.0f / q.resid_scale : 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    float acc[4][8] = {};
    const uint16_t* codes = q.codes.data() + r * nb;
    const uint16_t* resid = q.bits > 2 ? q.resid.data() + r * nb : nullptr;
    for (int64_t b = 0; b < nb; ++b) {
      float w[8];
      decode_with(t, codes[b], w);
      if (resid) {
        const float* v = t.e81b[resid[b] & 255];
        float e8[8];
        if (q.bits == 4) decode_with(t, resid[b], e8), v = e8;
        for (int k = 0; k < 8; ++k) w[k] += v[k] * inv;
      }
      if (tokens == 1) {  // the common case, with a fixed trip count
        for (int k = 0; k < 8; ++k) acc[0][k] += w[k] * x[8 * b + k];
        continue;
      }
      for (int64_t tk = 0; tk < tokens; ++tk)
        for (int k = 0; k < 8; ++k) acc[tk][k] += w[k] * x[tk * n + 8 * b + k];
    }
    for (int64_t tk = 0; tk < tokens; ++tk) {
      float s = 0;
      for (int k = 0; k < 8; ++k) s += acc[tk][k];
      y[tk * q.n_out + r] = q.wscale * s;
    }
  }
}

void decode_rows(const E8Codes& q, int64_t r0, int64_t rows, float* dst) {
  const int64_t nb = q.n_in / 8;
  for (int64_t r = r0; r < r0 + rows; ++r)
    for (int64_t b = 0; b < nb; ++b) {
      float* out = dst + (r - r0) * q.n_in + 8 * b;
      decode_block(q, r * nb + b, out);
      for (int k = 0; k < 8; ++k) out[k] *= q.wscale;
    }
}

}  // namespace qf::e8p
