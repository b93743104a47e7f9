#include "io/quip_layout.h"

#include <cmath>
#include <cstring>

#include "core/half.h"

namespace qf {
namespace {

std::vector<uint8_t> f16_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t h = f32_to_f16(v[i]);
    std::memcpy(b.data() + 2 * i, &h, 2);
  }
  return b;
}

std::vector<uint8_t> codes_bytes(const std::vector<uint16_t>& codes, bool one_byte) {
  std::vector<uint8_t> b(codes.size() * (one_byte ? 1 : 2));
  for (size_t i = 0; i < codes.size(); ++i) {
    if (one_byte) {
      b[i] = uint8_t(codes[i]);
    } else {
      const uint16_t v = codes[i] ^ 0x8000;  // code − 32768 as int16
      std::memcpy(b.data() + 2 * i, &v, 2);
    }
  }
  return b;
}

// A ±1 vector of n values from a float16 tensor.
Expected<std::vector<float>> signs(const std::map<std::string, TensorView>& parts, const std::string& suffix,
                                   int64_t n, const std::string& prefix) {
  auto it = parts.find(suffix);
  if (it == parts.end()) return error("{}: missing {}", prefix, suffix);
  const TensorView& t = it->second;
  if (t.type != QType::F16 || t.shape != std::vector<int64_t>{n})
    return error("{}{}: expected float16 [{}], found {} {}", prefix, suffix, n, traits(t.type).name,
                 t.shape_str());
  std::vector<float> s = t.to_f32();
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] != 1.0f && s[i] != -1.0f)
      return error("{}{}: entry {} is {}, expected ±1", prefix, suffix, i, s[i]);
  return s;
}

Expected<std::vector<uint16_t>> codes(const std::map<std::string, TensorView>& parts,
                                      const std::string& suffix, int64_t n_out, int64_t n_in, bool one_byte,
                                      const std::string& prefix) {
  auto it = parts.find(suffix);
  if (it == parts.end()) return error("{}: missing {}", prefix, suffix);
  const TensorView& t = it->second;
  const QType want = one_byte ? QType::U8 : QType::I16;
  if (t.type != want || t.shape != std::vector<int64_t>{n_out, n_in / 8})
    return error("{}{}: expected {} [{}, {}], found {} {}", prefix, suffix, traits(want).name, n_out,
                 n_in / 8, traits(t.type).name, t.shape_str());
  std::vector<uint16_t> c(size_t(n_out * (n_in / 8)));
  for (size_t i = 0; i < c.size(); ++i) {
    if (one_byte) {
      c[i] = t.data[i];
    } else {
      uint16_t v;
      std::memcpy(&v, t.data + 2 * i, 2);
      c[i] = v ^ 0x8000;
    }
  }
  return c;
}

}  // namespace

const char* quip_codebook_name(int bits) {
  return bits == 3 ? "E8P12RVQ3B" : bits == 4 ? "E8P12RVQ4B" : "E8P12";
}

std::vector<SerializedTensor> quip_e8_layout(int64_t n_out, int64_t n_in, int bits) {
  std::vector<SerializedTensor> t = {{".Qidxs", "I16", {n_out, n_in / 8}, {}}};
  if (bits > 2) t.push_back({".Qidxs_resid", bits == 3 ? "U8" : "I16", {n_out, n_in / 8}, {}});
  t.push_back({".SU", "F16", {n_in}, {}});
  t.push_back({".SV", "F16", {n_out}, {}});
  t.push_back({".Wscale", "F32", {1}, {}});
  return t;
}

std::vector<SerializedTensor> serialize_signs(const std::vector<float>& su, const std::vector<float>& sv) {
  return {{".SU", "F16", {int64_t(su.size())}, f16_bytes(su)},
          {".SV", "F16", {int64_t(sv.size())}, f16_bytes(sv)}};
}

std::vector<SerializedTensor> serialize_quip_e8(const e8p::E8Codes& q, const std::vector<float>& su,
                                                const std::vector<float>& sv) {
  auto t = quip_e8_layout(q.n_out, q.n_in, q.bits);
  size_t k = 0;
  t[k++].bytes = codes_bytes(q.codes, false);
  if (q.bits > 2) t[k++].bytes = codes_bytes(q.resid, q.bits == 3);
  t[k++].bytes = f16_bytes(su);
  t[k++].bytes = f16_bytes(sv);
  t[k].bytes.resize(4);
  std::memcpy(t[k].bytes.data(), &q.wscale, 4);
  return t;
}

Expected<QuipParts> deserialize_quip(const std::map<std::string, TensorView>& parts, int64_t n_out,
                                     int64_t n_in, bool lattice, int bits, float resid_scale,
                                     const std::string& prefix) {
  QuipParts p;
  QF_ASSIGN_OR_RETURN(p.su, signs(parts, ".SU", n_in, prefix));
  QF_ASSIGN_OR_RETURN(p.sv, signs(parts, ".SV", n_out, prefix));
  if (!lattice) return p;
  if (n_in % 8 != 0)
    return error("{}: {} input columns is not a multiple of 8 (E8P codes hold 8)", prefix, n_in);
  e8p::E8Codes& e = p.e8;
  e.bits = bits, e.n_out = n_out, e.n_in = n_in, e.resid_scale = resid_scale;
  QF_ASSIGN_OR_RETURN(e.codes, codes(parts, ".Qidxs", n_out, n_in, false, prefix));
  if (bits > 2) {
    QF_ASSIGN_OR_RETURN(e.resid, codes(parts, ".Qidxs_resid", n_out, n_in, bits == 3, prefix));
  }
  auto ws = parts.find(".Wscale");
  if (ws == parts.end() || ws->second.numel() != 1 || ws->second.type != QType::F32)
    return error("{}.Wscale: expected one float32", prefix);
  e.wscale = ws->second.to_f32()[0];
  if (!(e.wscale > 0) || !std::isfinite(e.wscale))
    return error("{}.Wscale: expected a positive number, found {}", prefix, e.wscale);
  return p;
}

}  // namespace qf
