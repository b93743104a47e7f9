#include "formats/bnb4.h"

#include <algorithm>
#include <cmath>

namespace qf {
namespace {

// Index of the value nearest to x in a sorted table; ties go to the smaller value.
template <size_t N>
int nearest_sorted(const std::array<float, N>& sorted, float x) {
  int i = int(std::upper_bound(sorted.begin(), sorted.end(), x) - sorted.begin());
  if (i == 0) return 0;
  if (i == int(N)) return int(N) - 1;
  float mid = (sorted[size_t(i - 1)] + sorted[size_t(i)]) / 2;  // bitsandbytes' pivots
  return x > mid ? i : i - 1;
}

// Code-book values sorted, with the code of each.
struct SortedCode {
  std::array<float, 16> values;
  std::array<uint8_t, 16> codes;
};
SortedCode sort_code(const std::array<float, 16>& code) {
  std::array<int, 16> order;
  for (int i = 0; i < 16; ++i) order[size_t(i)] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return code[size_t(a)] < code[size_t(b)]; });
  SortedCode s;
  for (int i = 0; i < 16; ++i) {
    s.values[size_t(i)] = code[size_t(order[size_t(i)])];
    s.codes[size_t(i)] = uint8_t(order[size_t(i)]);
  }
  return s;
}

uint8_t encode4(Bnb4Type t, float x) {
  if (t == Bnb4Type::NF4) {
    static const SortedCode nf4 = sort_code(bnb4_code(Bnb4Type::NF4));
    return nf4.codes[size_t(nearest_sorted(nf4.values, x))];
  }
  // FP4: sign bit 0b1000 and the nearest magnitude among codes 0..7 (bitsandbytes dQuantizeFP4).
  static const SortedCode fp4 = [] {
    std::array<float, 16> mags{};
    for (int i = 0; i < 16; ++i)
      mags[size_t(i)] = i < 8 ? bnb4_code(Bnb4Type::FP4)[size_t(i)] : 2.0f + float(i);
    return sort_code(mags);
  }();
  uint8_t sign = x < 0 ? 0b1000 : 0;
  return uint8_t(sign | fp4.codes[size_t(nearest_sorted(fp4.values, std::fabs(x)))]);
}

// bitsandbytes quantize_blockwise with the signed dynamic map: per block, absmax and 8-bit codes.
void quantize_blockwise8(const std::vector<float>& x, int blocksize, std::vector<uint8_t>& codes,
                         std::vector<float>& absmax) {
  const auto& map = dynamic_map_signed();
  const size_t nb = (x.size() + size_t(blocksize) - 1) / size_t(blocksize);
  codes.resize(x.size());
  absmax.assign(nb, 0.0f);
  for (size_t b = 0; b < nb; ++b) {
    const size_t lo = b * size_t(blocksize), hi = std::min(x.size(), lo + size_t(blocksize));
    for (size_t i = lo; i < hi; ++i) absmax[b] = std::max(absmax[b], std::fabs(x[i]));
    const float inv = absmax[b] > 0 ? 1.0f / absmax[b] : 0.0f;
    for (size_t i = lo; i < hi; ++i) codes[i] = uint8_t(nearest_sorted(map, x[i] * inv));
  }
}

}  // namespace

const std::array<float, 16>& bnb4_code(Bnb4Type t) {
  // NF4: quantiles of N(0, 1) normalised to [-1, 1], exactly as published in bitsandbytes
  // (functional.py get_4bit_type("nf4"), the QLoRA paper's Appendix E).
  static const std::array<float, 16> nf4 = {-1.0f,
                                            -0.6961928009986877f,
                                            -0.5250730514526367f,
                                            -0.39491748809814453f,
                                            -0.28444138169288635f,
                                            -0.18477343022823334f,
                                            -0.09105003625154495f,
                                            0.0f,
                                            0.07958029955625534f,
                                            0.16093020141124725f,
                                            0.24611230194568634f,
                                            0.33791524171829224f,
                                            0.44070982933044434f,
                                            0.5626170039176941f,
                                            0.7229568362236023f,
                                            1.0f};
  // FP4 (bitsandbytes "fp4", E2M1 with bias 3 and a subnormal 0.0625, normalised by 12):
  // code = sign·8 + e·2 + p; e = 0: p·0.0625, else 2^(4−e)·(1 + p/2); divided by 12.
  static const std::array<float, 16> fp4 = [] {
    std::array<float, 16> c{};
    for (int i = 0; i < 16; ++i) {
      int sign = i >> 3, e = (i >> 1) & 3, p = i & 1;
      float v = e == 0 ? (p ? 0.0625f : 0.0f) : std::ldexp(1.0f, 4 - e) * (p ? 1.5f : 1.0f);
      c[size_t(i)] = (sign ? -v : v) / 12.0f;
    }
    return c;
  }();
  return t == Bnb4Type::NF4 ? nf4 : fp4;
}

const std::array<float, 256>& dynamic_map_signed() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for i in 0..6,
  // 2^i + 1 points of linspace(0.1, 1) → their 2^i midpoints, scaled by ±10^(i − 6); plus 0 and
  // 1; sorted. Computed in fp32 as torch does.
  static const std::array<float, 256> map = [] {
    std::vector<float> d;
    for (int i = 0; i < 7; ++i) {
      const int n = (1 << i) + 1;
      const float step = (1.0f - 0.1f) / float(n - 1);
      std::vector<float> b(n);
      for (int k = 0; k < n; ++k)
        b[size_t(k)] = k < n / 2 ? 0.1f + float(k) * step : 1.0f - float(n - 1 - k) * step;
      const float scale = float(std::pow(10.0, double(i - 6)));
      for (int k = 0; k + 1 < n; ++k) {
        const float mean = (b[size_t(k)] + b[size_t(k + 1)]) / 2.0f;
        d.push_back(scale * mean);
        d.push_back(-scale * mean);
      }
    }
    d.push_back(0.0f);
    d.push_back(1.0f);
    std::sort(d.begin(), d.end());
    std::array<float, 256> out{};
    std::copy(d.begin(), d.end(), out.begin());
    return out;
  }();
  return map;
}

double Bnb4Quantized::bits_per_weight() const {
  const double blocks = double(absmax.size());
  double bits = 4.0 * double(n) +
                (double_quant ? 8.0 * blocks + 32.0 * double(nested_absmax.size()) + 32.0 : 32.0 * blocks);
  return bits / double(n);
}

Status validate_bnb4(int blocksize, int64_t n, const std::string& tensor) {
  if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0)
    return error("{}: blocksize must be a power of two from 32 to 4096, got {}", tensor, blocksize);
  if (n % blocksize != 0)
    return error("{}: {} weights are not a multiple of the blocksize {}", tensor, n, blocksize);
  return {};
}

namespace {
float block_absmax(const float* x, int blocksize) {
  float amax = 0;
  for (int i = 0; i < blocksize; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}
float mean_of(const std::vector<float>& v) {
  double sum = 0;
  for (float a : v) sum += a;
  return float(sum / double(v.size()));
}
}  // namespace

float bnb4_absmax_offset(const float* x, int64_t n, int blocksize) {
  std::vector<float> absmax(size_t(n / blocksize));
  for (int64_t b = 0; b < n / blocksize; ++b) absmax[size_t(b)] = block_absmax(x + b * blocksize, blocksize);
  return mean_of(absmax);
}

Bnb4Quantized quantize_bnb4(const float* x, int64_t n, Bnb4Type type, int blocksize, bool double_quant) {
  Bnb4Quantized q;
  q.type = type;
  q.blocksize = blocksize;
  q.n = n;
  q.packed.assign(size_t(n / 2), 0);
  q.absmax.assign(size_t(n / blocksize), 0.0f);
  for (int64_t b = 0; b < n / blocksize; ++b) {
    const float amax = block_absmax(x + b * blocksize, blocksize);
    q.absmax[size_t(b)] = amax;
    const float inv = amax > 0 ? 1.0f / amax : 0.0f;
    for (int64_t i = b * blocksize; i < (b + 1) * blocksize; ++i)
      q.packed[size_t(i / 2)] |= uint8_t(encode4(type, x[i] * inv) << (i % 2 == 0 ? 4 : 0));
  }
  if (double_quant) {
    q.double_quant = true;
    q.offset = mean_of(q.absmax);
    std::vector<float> centred(q.absmax.size());
    for (size_t i = 0; i < centred.size(); ++i) centred[i] = q.absmax[i] - q.offset;
    quantize_blockwise8(centred, 256, q.absmax_q, q.nested_absmax);
    const auto& map = dynamic_map_signed();
    for (size_t i = 0; i < q.absmax.size(); ++i)  // what a loader reconstructs
      q.absmax[i] = map[q.absmax_q[i]] * q.nested_absmax[i / 256] + q.offset;
  }
  return q;
}

void dequantize_bnb4(const Bnb4Quantized& q, int64_t begin, int64_t count, float* dst) {
  const auto& code = bnb4_code(q.type);
  for (int64_t i = begin; i < begin + count; ++i) {
    const uint8_t byte = q.packed[size_t(i / 2)];
    const uint8_t c = i % 2 == 0 ? byte >> 4 : byte & 0xF;
    dst[i - begin] = code[c] * q.absmax[size_t(i / q.blocksize)];
  }
}

}  // namespace qf
