#include "formats/int8_rowwise.h"

#include <cmath>

namespace qf {

float quantize_row_absmax_int8(const float* x, int64_t n, int8_t* q) {
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float s = amax > 0 ? 127.0f / amax : 0.0f;
  for (int64_t i = 0; i < n; ++i) q[i] = int8_t(std::nearbyint(x[i] * s));  // torch.round: half to even
  return amax;
}

Int8Rowwise quantize_int8_rowwise(const float* w, int64_t n_out, int64_t n_in) {
  Int8Rowwise q;
  q.n_out = n_out;
  q.n_in = n_in;
  q.codes.resize(size_t(n_out * n_in));
  q.scb.resize(size_t(n_out));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n_out; ++r)
    q.scb[size_t(r)] = quantize_row_absmax_int8(w + r * n_in, n_in, q.codes.data() + r * n_in);
  return q;
}

}  // namespace qf
