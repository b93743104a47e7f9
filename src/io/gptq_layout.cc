#include "io/gptq_layout.h"

#include <cstring>

#include "core/half.h"

namespace qf {

// Value k of the stream (values[k·stride]) goes to bits [bits·k, bits·k + bits) of
// words[0], words[word_stride], ... (the stream runs down a column of a row-major matrix).
void pack_bits(const uint8_t* values, int64_t count, int stride, int bits, int32_t* words, int word_stride) {
  for (int64_t k = 0; k < count; ++k) {
    const uint64_t v = values[k * stride], bit = uint64_t(k) * bits;
    const int64_t w = int64_t(bit / 32), off = int64_t(bit % 32);
    uint32_t* lo = reinterpret_cast<uint32_t*>(words + w * word_stride);
    *lo |= uint32_t(v << off);
    if (off + bits > 32)
      *reinterpret_cast<uint32_t*>(words + (w + 1) * word_stride) |= uint32_t(v >> (32 - off));
  }
}

uint8_t unpack_bits(const int32_t* words, int word_stride, int64_t k, int bits) {
  const uint64_t bit = uint64_t(k) * bits;
  const int64_t w = int64_t(bit / 32), off = int64_t(bit % 32);
  uint64_t v = uint32_t(words[w * word_stride]) >> off;
  if (off + bits > 32) v |= uint64_t(uint32_t(words[(w + 1) * word_stride])) << (32 - off);
  return uint8_t(v & ((1u << bits) - 1));
}

Status check_gptq_packable(const IntGridSpec& s, int64_t n_out, int64_t n_in, const std::string& tensor) {
  if (n_in * s.bits % 32 != 0 || n_out * s.bits % 32 != 0)
    return error(
        "{}: GPTQ packing needs n_in·bits and n_out·bits to be multiples of 32 (shape {}x{}, {} bits)",
        tensor, n_out, n_in, s.bits);
  return {};
}

GptqTensors pack_gptq(const IntQuantized& q) {
  const int bits = q.spec.bits, maxq = q.spec.maxq();
  const int64_t n_out = q.n_out, n_in = q.n_in, ng = q.n_groups(), g = q.spec.group_len(n_in);
  GptqTensors t;
  t.qweight.assign(size_t(n_in * bits / 32 * n_out), 0);
  // Column o of qweight holds row o of the codes: columns in parallel, 64 per thread at a time
  // (threads never share a cache line).
#pragma omp parallel for schedule(static, 64)
  for (int64_t o = 0; o < n_out; ++o)
    pack_bits(q.codes.data() + o * n_in, n_in, 1, bits, t.qweight.data() + o, int(n_out));
  std::vector<uint8_t> zm1(size_t(ng * n_out));
  for (int64_t j = 0; j < ng; ++j)
    for (int64_t o = 0; o < n_out; ++o) {
      int z = int(q.zeros[size_t(o * ng + j)]);
      if (z == 0) ++t.zero_wraps;
      zm1[size_t(j * n_out + o)] = uint8_t((z - 1) & maxq);
    }
  t.qzeros.assign(size_t(ng * n_out * bits / 32), 0);
  for (int64_t j = 0; j < ng; ++j)  // row j of qzeros: a stream along n_out
    pack_bits(zm1.data() + j * n_out, n_out, 1, bits, t.qzeros.data() + j * (n_out * bits / 32), 1);
  t.scales.resize(size_t(ng * n_out));
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < ng; ++j)
    for (int64_t o = 0; o < n_out; ++o)
      t.scales[size_t(j * n_out + o)] = f32_to_f16(q.scales[size_t(o * ng + j)]);
  t.g_idx.resize(size_t(n_in));
  for (int64_t i = 0; i < n_in; ++i)
    t.g_idx[size_t(i)] = q.g_idx.empty() ? int32_t(i / g) : q.g_idx[size_t(i)];
  return t;
}

Expected<IntQuantized> unpack_gptq(const TensorView& qweight, const TensorView& qzeros,
                                   const TensorView& scales, const TensorView& g_idx, int bits,
                                   const std::string& prefix) {
  if (qweight.type != QType::I32 || qzeros.type != QType::I32 || g_idx.type != QType::I32 ||
      scales.type != QType::F16)
    return error("{}: expected qweight/qzeros/g_idx int32 and scales fp16", prefix);
  if (qweight.shape.size() != 2 || scales.shape.size() != 2 || qzeros.shape.size() != 2 ||
      g_idx.shape.size() != 1)
    return error("{}: expected 2-D qweight/qzeros/scales and 1-D g_idx", prefix);
  IntQuantized q;
  q.spec.bits = bits;
  q.n_out = qweight.shape[1];
  q.n_in = qweight.shape[0] * 32 / bits;
  const int64_t ng = scales.shape[0];
  if (scales.shape[1] != q.n_out || g_idx.shape[0] != q.n_in || qzeros.shape[0] != ng ||
      qzeros.shape[1] != q.n_out * bits / 32 || ng <= 0 || q.n_in % ng != 0)
    return error("{}: inconsistent GPTQ shapes: qweight {}, qzeros {}, scales {}, g_idx {} for {} bits",
                 prefix, qweight.shape_str(), qzeros.shape_str(), scales.shape_str(), g_idx.shape_str(),
                 bits);
  const int64_t g = q.n_in / ng;
  q.spec.group = ng == 1 ? -1 : int(g);
  const auto* gi = reinterpret_cast<const int32_t*>(g_idx.data);
  bool in_order = true;
  for (int64_t i = 0; i < q.n_in; ++i) {
    if (gi[i] < 0 || gi[i] >= ng)
      return error("{}: g_idx[{}] = {}, expected a group in [0, {})", prefix, i, gi[i], ng);
    in_order = in_order && gi[i] == i / g;
  }
  if (!in_order) q.g_idx.assign(gi, gi + q.n_in);  // act-order: columns belong to groups out of order
  const auto* qw = reinterpret_cast<const int32_t*>(qweight.data);
  const auto* qz = reinterpret_cast<const int32_t*>(qzeros.data);
  const auto* sc = reinterpret_cast<const uint16_t*>(scales.data);
  q.codes.resize(size_t(q.n_out * q.n_in));
  for (int64_t o = 0; o < q.n_out; ++o)
    for (int64_t i = 0; i < q.n_in; ++i)
      q.codes[size_t(o * q.n_in + i)] = unpack_bits(qw + o, int(q.n_out), i, bits);
  q.scales.resize(size_t(q.n_out * ng));
  q.zeros.resize(size_t(q.n_out * ng));
  for (int64_t j = 0; j < ng; ++j)
    for (int64_t o = 0; o < q.n_out; ++o) {
      q.scales[size_t(o * ng + j)] = f16_to_f32(sc[j * q.n_out + o]);
      // v1: stored = zero − 1; loaders add 1 back (a stored maxq therefore reads as maxq + 1).
      q.zeros[size_t(o * ng + j)] = float(unpack_bits(qz + j * (q.n_out * bits / 32), 1, o, bits) + 1);
    }
  return q;
}

}  // namespace qf
