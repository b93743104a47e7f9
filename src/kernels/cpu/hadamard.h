// kernels/cpu/hadamard.h — Hadamard transforms for incoherence processing (QuIP, QuIP#).
//
// An order-n Hadamard matrix here is H = H_m ⊗ H_p / √n with p = 2^k (Sylvester: the fast
// Walsh–Hadamard transform, O(n log p)) and H_m one small stored factor (m = 1, 2, or a Paley
// matrix: order q + 1 for a prime q ≡ 3 mod 4, order 2(q + 1) for a prime q ≡ 1 mod 4) —
// qf-27m's 1536 = 12 · 128 (Paley, q = 11), Llama-3's 14336 = 28 · 512 (q = 13), Qwen2-7B's
// 18944 = 148 · 128 (q = 73). Orders with no such factor (Llama-2's 11008 = 2^8 · 43 needs an
// order-172 matrix: Williamson's, not a Paley one) are refused with the reason.
//
// The randomized Hadamard transform of a Linear (QuIP#): W̃ = Hₒᵀ·diag(sₒ)·W·diag(sᵢ)·Hᵢ with
// random sign vectors sᵢ, sₒ; its Hessian H̃ = Hᵢᵀ·diag(sᵢ)·H·diag(sᵢ)·Hᵢ; at run time
// y = sₒ ⊙ Hₒ·(W̃·(Hᵢᵀ·(sᵢ ⊙ x))).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace qf {

class Hadamard {
 public:
  // The transform of order n; an error naming `what` when n has no supported factorization.
  static Expected<Hadamard> of_order(int64_t n, const std::string& what);
  int64_t n() const { return n_; }
  int64_t factor() const { return m_; }  // the stored factor's order (1: pure Sylvester)
  // x ← H·x (or Hᵀ·x) for `count` contiguous vectors of length n.
  void apply(float* x, int64_t count, bool transpose) const;
  void apply(double* x, int64_t count, bool transpose) const;
  // The stored factor's ±1 entries, row-major (m, m).
  const std::vector<int8_t>& factor_matrix() const { return hm_; }

 private:
  template <class T>
  void apply_impl(T* x, int64_t count, bool transpose) const;
  int64_t n_ = 0, m_ = 1, p_ = 1;
  std::vector<int8_t> hm_;  // (m, m) ±1
};

// The Paley (or order 1/2) Hadamard matrix of order m, ±1 row-major, or empty when m is not
// such an order.
std::vector<int8_t> small_hadamard(int64_t m);

// In place on (count, n) rows of x: x ← Hᵀ·(s ⊙ x), the activations' way into W̃.
void hadamard_in(const Hadamard& h, const std::vector<float>& s, float* x, int64_t count);
// In place on (count, n) rows of y: y ← s ⊙ (H·y), the way out of W̃.
void hadamard_out(const Hadamard& h, const std::vector<float>& s, float* y, int64_t count);

// ±1 signs from a seed (mt19937_64: the checkpoint stores them, so only reproducibility matters).
std::vector<float> random_signs(int64_t n, uint64_t seed);

}  // namespace qf
