#include "kernels/cpu/hadamard.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace qf {
namespace {

bool is_prime(int64_t q) {
  if (q < 2) return false;
  for (int64_t d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

// Legendre symbol χ(a) over GF(q), q an odd prime.
int chi(int64_t a, int64_t q) {
  a = ((a % q) + q) % q;
  if (a == 0) return 0;
  int64_t r = 1, b = a, e = (q - 1) / 2;  // Euler's criterion: a^((q−1)/2) = ±1
  for (; e > 0; e >>= 1, b = b * b % q)
    if (e & 1) r = r * b % q;
  return r == 1 ? 1 : -1;
}

// The (q + 1) × (q + 1) core [[0, 1ᵀ], [±1, Q]] with Q_ij = χ(j − i): skew (first column −1)
// for q ≡ 3 mod 4, symmetric (first column +1) for q ≡ 1 mod 4.
std::vector<int> paley_core(int64_t q) {
  const int64_t n = q + 1;
  const int first_col = q % 4 == 3 ? -1 : 1;
  std::vector<int> c(size_t(n * n), 0);
  for (int64_t j = 1; j < n; ++j) c[size_t(j)] = 1, c[size_t(j * n)] = first_col;
  for (int64_t i = 1; i < n; ++i)
    for (int64_t j = 1; j < n; ++j) c[size_t(i * n + j)] = chi(j - i, q);
  return c;
}

}  // namespace

std::vector<int8_t> small_hadamard(int64_t m) {
  if (m == 1) return {1};
  if (m == 2) return {1, 1, 1, -1};
  if (m % 4 != 0) return {};
  std::vector<int8_t> h;
  if (is_prime(m - 1) && (m - 1) % 4 == 3) {  // Paley I: H = I + S
    const auto s = paley_core(m - 1);
    h.resize(s.size());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j) h[size_t(i * m + j)] = int8_t(s[size_t(i * m + j)] + (i == j ? 1 : 0));
    return h;
  }
  const int64_t q = m / 2 - 1;
  if (is_prime(q) && q % 4 == 1) {  // Paley II: 0 → [[1, −1], [−1, −1]], ±1 → ±[[1, 1], [1, −1]]
    const auto c = paley_core(q);
    const int64_t k = q + 1;
    h.resize(size_t(m * m));
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j)
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b) {
            const int v = c[size_t(i * k + j)];
            const int e = v == 0 ? (a == 0 && b == 0 ? 1 : -1) : v * (a == 1 && b == 1 ? -1 : 1);
            h[size_t((2 * i + a) * m + 2 * j + b)] = int8_t(e);
          }
    return h;
  }
  return {};
}

Expected<Hadamard> Hadamard::of_order(int64_t n, const std::string& what) {
  if (n <= 0) return error("{}: a Hadamard transform needs a positive dimension, got {}", what, n);
  const int twos = __builtin_ctzll(uint64_t(n));
  const int64_t odd = n >> twos;
  for (int k = 0; k <= twos; ++k) {  // the smallest stored factor m = odd · 2^k with n / m a power of two
    const int64_t m = odd << k;
    if (m > 4096) break;
    auto h = small_hadamard(m);
    if (h.empty()) continue;
    Hadamard t;
    t.n_ = n, t.m_ = m, t.p_ = n / m, t.hm_ = std::move(h);
    return t;
  }
  return error(
      "{}: dimension {} = 2^{} · {} has no supported Hadamard factorization (supported: 2^k · m with m = 1, "
      "2, "
      "q + 1 for a prime q ≡ 3 mod 4, or 2(q + 1) for a prime q ≡ 1 mod 4)",
      what, n, twos, odd);
}

template <class T>
void Hadamard::apply_impl(T* x, int64_t count, bool transpose) const {
  const T norm = T(1.0 / std::sqrt(double(n_)));
#pragma omp parallel if (count > 1)
  {
    std::vector<T> mixed(static_cast<size_t>(m_ > 1 ? n_ : 0));
#pragma omp for schedule(static)
    for (int64_t v = 0; v < count; ++v) {
      T* y = x + v * n_;
      // H_p on each of the m contiguous chunks (Sylvester's matrix is symmetric).
      for (int64_t a = 0; a < m_; ++a) {
        T* c = y + a * p_;
        for (int64_t h = 1; h < p_; h *= 2)
          for (int64_t i = 0; i < p_; i += 2 * h)
            for (int64_t j = i; j < i + h; ++j) {
              const T u = c[j], w = c[j + h];
              c[j] = u + w, c[j + h] = u - w;
            }
      }
      // H_m across the chunks: chunk a of the result = Σ_k H_m[a, k] · chunk k.
      if (m_ > 1) {
        for (int64_t a = 0; a < m_; ++a) {
          T* out = mixed.data() + a * p_;
          std::fill(out, out + p_, T(0));
          for (int64_t k = 0; k < m_; ++k) {
            const T h = T(transpose ? hm_[size_t(k * m_ + a)] : hm_[size_t(a * m_ + k)]);
            const T* in = y + k * p_;
            for (int64_t b = 0; b < p_; ++b) out[b] += h * in[b];
          }
        }
        std::copy(mixed.begin(), mixed.end(), y);
      }
      for (int64_t i = 0; i < n_; ++i) y[i] *= norm;
    }
  }
}

void Hadamard::apply(float* x, int64_t count, bool transpose) const { apply_impl(x, count, transpose); }
void Hadamard::apply(double* x, int64_t count, bool transpose) const { apply_impl(x, count, transpose); }

void hadamard_in(const Hadamard& h, const std::vector<float>& s, float* x, int64_t count) {
  for (int64_t v = 0; v < count; ++v)
    for (int64_t i = 0; i < h.n(); ++i) x[v * h.n() + i] *= s[size_t(i)];
  h.apply(x, count, true);
}

void hadamard_out(const Hadamard& h, const std::vector<float>& s, float* y, int64_t count) {
  h.apply(y, count, false);
  for (int64_t v = 0; v < count; ++v)
    for (int64_t i = 0; i < h.n(); ++i) y[v * h.n() + i] *= s[size_t(i)];
}

std::vector<float> random_signs(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> s(static_cast<size_t>(n));
  for (auto& v : s) v = (rng() >> 63) ? -1.0f : 1.0f;
  return s;
}

}  // namespace qf
