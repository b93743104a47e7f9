#include "io/awq_layout.h"

#include "core/half.h"

namespace qf {
namespace {

constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Packs the n values of one row (one per output column) into n/8 words.
void pack_row(const uint8_t* v, int64_t n, int32_t* words) {
  for (int64_t j = 0; j < n / 8; ++j) {
    uint32_t w = 0;
    for (int i = 0; i < 8; ++i) w |= uint32_t(v[8 * j + kAwqOrder[i]] & 0xF) << (4 * i);
    words[j] = int32_t(w);
  }
}

uint8_t unpack_value(const int32_t* words, int64_t col) {
  static constexpr int kSlot[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // column 8j + c sits in slot kSlot[c]
  return uint8_t((uint32_t(words[col / 8]) >> (4 * kSlot[col % 8])) & 0xF);
}

}  // namespace

Status check_awq_packable(const IntGridSpec& s, int64_t n_out, int64_t n_in, const std::string& tensor) {
  if (s.bits != 4 || s.sym)
    return error("{}: the AWQ GEMM layout stores 4-bit asymmetric groups (asked for {} bits{})", tensor,
                 s.bits, s.sym ? ", symmetric" : "");
  if (n_out % 8 != 0)
    return error("{}: the AWQ layout packs 8 output columns per word; n_out is {}", tensor, n_out);
  if (n_in % s.group_len(n_in) != 0)
    return error("{}: {} input columns do not split into groups of {}", tensor, n_in, s.group);
  return {};
}

AwqTensors pack_awq(const IntQuantized& q) {
  const int64_t n_out = q.n_out, n_in = q.n_in, ng = q.n_groups();
  AwqTensors t;
  t.qweight.resize(size_t(n_in * n_out / 8));
  std::vector<uint8_t> row(static_cast<size_t>(n_out));
  for (int64_t i = 0; i < n_in; ++i) {  // row i of qweight: input column i of every output row
    for (int64_t o = 0; o < n_out; ++o) row[size_t(o)] = q.codes[size_t(o * n_in + i)];
    pack_row(row.data(), n_out, t.qweight.data() + i * (n_out / 8));
  }
  t.qzeros.resize(size_t(ng * n_out / 8));
  t.scales.resize(size_t(ng * n_out));
  for (int64_t g = 0; g < ng; ++g) {
    for (int64_t o = 0; o < n_out; ++o) {
      row[size_t(o)] = uint8_t(q.zeros[size_t(o * ng + g)]);
      t.scales[size_t(g * n_out + o)] = f32_to_f16(q.scales[size_t(o * ng + g)]);
    }
    pack_row(row.data(), n_out, t.qzeros.data() + g * (n_out / 8));
  }
  return t;
}

Expected<IntQuantized> unpack_awq(const TensorView& qweight, const TensorView& qzeros,
                                  const TensorView& scales, int bits, int group, const std::string& prefix) {
  if (bits != 4)
    return error("{}: AWQ checkpoints with {} bits are not supported (the GEMM layout is 4-bit)", prefix,
                 bits);
  if (qweight.type != QType::I32 || qzeros.type != QType::I32 || scales.type != QType::F16)
    return error("{}: expected qweight/qzeros int32 and scales fp16", prefix);
  if (qweight.shape.size() != 2 || qzeros.shape.size() != 2 || scales.shape.size() != 2)
    return error("{}: expected 2-D qweight, qzeros and scales", prefix);
  IntQuantized q;
  q.spec = IntGridSpec{4, group, false, false};
  q.n_in = qweight.shape[0];
  q.n_out = qweight.shape[1] * 8;
  const int64_t ng = scales.shape[0];
  if (scales.shape[1] != q.n_out || qzeros.shape[0] != ng || qzeros.shape[1] != q.n_out / 8 ||
      ng != q.n_in / q.spec.group_len(q.n_in) || q.n_in % q.spec.group_len(q.n_in) != 0)
    return error("{}: inconsistent AWQ shapes: qweight {}, qzeros {}, scales {} for group size {}", prefix,
                 qweight.shape_str(), qzeros.shape_str(), scales.shape_str(), group);
  const auto* qw = reinterpret_cast<const int32_t*>(qweight.data);
  const auto* qz = reinterpret_cast<const int32_t*>(qzeros.data);
  const auto* sc = reinterpret_cast<const uint16_t*>(scales.data);
  q.codes.resize(size_t(q.n_out * q.n_in));
  for (int64_t i = 0; i < q.n_in; ++i)
    for (int64_t o = 0; o < q.n_out; ++o)
      q.codes[size_t(o * q.n_in + i)] = unpack_value(qw + i * (q.n_out / 8), o);
  q.scales.resize(size_t(q.n_out * ng));
  q.zeros.resize(q.scales.size());
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t o = 0; o < q.n_out; ++o) {
      q.scales[size_t(o * ng + g)] = f16_to_f32(sc[g * q.n_out + o]);
      q.zeros[size_t(o * ng + g)] = float(unpack_value(qz + g * (q.n_out / 8), o));
    }
  return q;
}

}  // namespace qf
