// formats/e8p.h — QuIP#'s lattice codebooks for 8 weights at a time.
//
// E8P (2 bits per weight, 16-bit codes): 256 "absolute" vectors — the 227 distinct |v| of
// D8^ = {v ∈ (Z + 1/2)^8 : Σv even, ‖v‖² ≤ 10}, in lexicographic order, then 29 vectors of
// five 3/2 and three 1/2 (‖v‖² = 12) — with signs and a shift of ±1/4. A code holds
//   bits 15..8  which absolute vector a,
//   bits 7..1   the signs of coordinates 1..7 (bit 7 − k + 1 set: coordinate k negative),
//   bit 0       the shift: +1/4 when set, −1/4 when clear,
// and coordinate 0's sign makes the number of negative coordinates ≡ Σa (mod 2), so that the
// signed vector has an even sum: every entry is a point of E8 (in its D8 + 1/2 coset) ± 1/4.
// (QuIP#'s E8P12 codebook in its unpacked index order.)
//
// E81B (1 bit per weight, 8-bit codes; QuIP#'s residual stage for 3 bits): the 241 points of
// E8 with ‖v‖² ≤ 2 (the origin, 112 of the form ±e_i ± e_j, 128 of (±1/2)^8 with an even
// number of minus signs; integer points first, each set in lexicographic order), then
// +2·e_i for i = 0..7, then −2·e_i for i = 0..6.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace qf::e8p {

// The 256 absolute vectors, doubled (odd integers 1..7).
const std::array<std::array<int8_t, 8>, 256>& abs_grid2();
// The code's 8 values.
void decode(uint16_t code, float* out);
// The code of the entry nearest to x (least squares); its values in out when out is not null.
uint16_t encode(const float* x, float* out);

// E81B: the 256 vectors doubled (integers), decode and nearest-entry encode.
const std::array<std::array<int8_t, 8>, 256>& e81b_grid2();
void decode_e81b(uint8_t code, float* out);
uint8_t encode_e81b(const float* x, float* out);

// QuIP#'s published scales for its 2-, 3- and 4-bit code books: the weights are divided by
// Wscale = RMS / opt_scale before rounding; the residual stage rounds (w − q₁)·resid_scale.
struct Scales {
  float opt_scale, resid_scale;
};
Scales scales(int bits);

// A matrix in E8P codes (QuIP#'s E8P12, E8P12RVQ3B, E8P12RVQ4B): row r, columns 8b … 8b + 7 are
// wscale · (E8P(codes[r, b]) + R(resid[r, b]) / resid_scale), R = E81B (3 bits), E8P (4 bits),
// nothing (2 bits).
struct E8Codes {
  int bits = 2;
  int64_t n_out = 0, n_in = 0;
  std::vector<uint16_t> codes, resid;  // (n_out, n_in / 8); resid empty for 2 bits
  float wscale = 1, resid_scale = 0;
};
// Block `index` (row · n_in / 8 + column / 8) without wscale.
void decode_block(const E8Codes& q, int64_t index, float* out);
// y[t, r] = Σ_i W[r, i]·x[t, i] for rows [r0, r1) and up to 4 tokens (x: (tokens, n_in),
// y: (tokens, n_out)), decoding 8 weights at a time straight into the sums.
void dot_rows(const E8Codes& q, int64_t r0, int64_t r1, const float* x, int64_t tokens, float* y);
// Rows [r0, r0 + rows) into dst (rows, n_in).
void decode_rows(const E8Codes& q, int64_t r0, int64_t rows, float* dst);

}  // namespace qf::e8p
