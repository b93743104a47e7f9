#include "io/bnb_layout.h"

#include <nlohmann/json.hpp>

#include <cstring>

namespace qf {
namespace {

template <typename T>
std::vector<uint8_t> bytes_of(const T* data, size_t n) {
  std::vector<uint8_t> b(n * sizeof(T));
  std::memcpy(b.data(), data, b.size());
  return b;
}

// Python json.dumps of the non-tensor quant state: ", " and ": " separators, repr floats.
std::string quant_state_json(Bnb4Type type, int blocksize, bool dq, float offset, int64_t n_out, int64_t n_in,
                             const std::string& dtype) {
  std::string s = fmt::format(R"({{"quant_type": "{}", "blocksize": {}, "dtype": "{}", "shape": [{}, {}])",
                              bnb4_type_name(type), blocksize, dtype, n_out, n_in);
  if (dq)
    s += fmt::format(R"(, "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": {})",
                     double(offset));
  return s + "}";
}

}  // namespace

const char* bnb4_type_name(Bnb4Type t) { return t == Bnb4Type::NF4 ? "nf4" : "fp4"; }

std::vector<SerializedTensor> bnb4_layout(Bnb4Type type, int blocksize, bool dq, float offset, int64_t n_out,
                                          int64_t n_in, const std::string& dtype) {
  const int64_t n = n_out * n_in, nb = n / blocksize, nn = (nb + 255) / 256;
  std::vector<SerializedTensor> t = {
      {".weight", "U8", {n / 2, 1}, {}},
      {".weight.absmax", dq ? "U8" : "F32", {nb}, {}},
      {".weight.quant_map", "F32", {16}, {}},
  };
  if (dq) {
    t.push_back({".weight.nested_absmax", "F32", {nn}, {}});
    t.push_back({".weight.nested_quant_map", "F32", {256}, {}});
  }
  std::string js = quant_state_json(type, blocksize, dq, offset, n_out, n_in, dtype);
  t.push_back({std::string(".weight.quant_state.bitsandbytes__") + bnb4_type_name(type),
               "U8",
               {int64_t(js.size())},
               std::vector<uint8_t>(js.begin(), js.end())});
  return t;
}

std::vector<SerializedTensor> serialize_bnb4(const Bnb4Quantized& q, int64_t n_out, int64_t n_in,
                                             const std::string& dtype) {
  auto t = bnb4_layout(q.type, q.blocksize, q.double_quant, q.offset, n_out, n_in, dtype);
  t[0].bytes = q.packed;
  if (q.double_quant) {
    t[1].bytes = q.absmax_q;
  } else {
    t[1].bytes = bytes_of(q.absmax.data(), q.absmax.size());
  }
  t[2].bytes = bytes_of(bnb4_code(q.type).data(), 16);
  if (q.double_quant) {
    t[3].bytes = bytes_of(q.nested_absmax.data(), q.nested_absmax.size());
    t[4].bytes = bytes_of(dynamic_map_signed().data(), 256);
  }
  return t;
}

Expected<Bnb4Quantized> deserialize_bnb4(const std::map<std::string, TensorView>& parts, int64_t n_out,
                                         int64_t n_in, const std::string& prefix) {
  auto get = [&](const std::string& suffix) -> const TensorView* {
    auto it = parts.find(suffix);
    return it == parts.end() ? nullptr : &it->second;
  };
  const TensorView* state = nullptr;
  for (const auto& [suffix, view] : parts)
    if (suffix.rfind(".weight.quant_state.bitsandbytes__", 0) == 0) state = &view;
  if (!state) return error("{}: missing the quant_state.bitsandbytes__* tensor", prefix);
  nlohmann::json js = nlohmann::json::parse(state->data, state->data + state->nbytes, nullptr, false);
  if (js.is_discarded() || !js.is_object())
    return error("{}: the bitsandbytes quant state is not valid JSON", prefix);
  Bnb4Quantized q;
  std::string type = js.value("quant_type", "");
  if (type != "nf4" && type != "fp4") return error("{}: quant_type '{}' is not nf4 or fp4", prefix, type);
  q.type = type == "nf4" ? Bnb4Type::NF4 : Bnb4Type::FP4;
  q.blocksize = js.value("blocksize", 0);
  q.n = n_out * n_in;
  QF_RETURN_IF_ERROR(validate_bnb4(q.blocksize, q.n, prefix));
  auto shape = js.value("shape", std::vector<int64_t>{});
  if (shape != std::vector<int64_t>{n_out, n_in})
    return error("{}: quant state shape {} does not match the model's {}x{}", prefix, js["shape"].dump(),
                 n_out, n_in);
  const TensorView *w = get(".weight"), *absmax = get(".weight.absmax"), *map = get(".weight.quant_map");
  if (!w || !absmax || !map)
    return error("{}: expected .weight, .weight.absmax and .weight.quant_map", prefix);
  const int64_t nb = q.n / q.blocksize;
  if (w->type != QType::U8 || w->nbytes != q.n / 2)
    return error("{}.weight: expected {} uint8 bytes, found {} {}", prefix, q.n / 2, w->nbytes,
                 traits(w->type).name);
  if (map->type != QType::F32 || map->numel() != 16)
    return error("{}.weight.quant_map: expected 16 float32 values", prefix);
  const float* code = reinterpret_cast<const float*>(map->data);
  for (int i = 0; i < 16; ++i)
    if (code[i] != bnb4_code(q.type)[size_t(i)])
      return error("{}.weight.quant_map differs from the {} code book at {}", prefix, type, i);
  q.packed.assign(w->data, w->data + w->nbytes);
  q.double_quant = js.contains("nested_offset");
  if (!q.double_quant) {
    if (absmax->type != QType::F32 || absmax->numel() != nb)
      return error("{}.weight.absmax: expected {} float32 values", prefix, nb);
    q.absmax = absmax->to_f32();
    return q;
  }
  const TensorView *nabs = get(".weight.nested_absmax"), *nmap = get(".weight.nested_quant_map");
  const int64_t nn = (nb + 255) / 256;
  if (!nabs || !nmap || absmax->type != QType::U8 || absmax->numel() != nb || nabs->type != QType::F32 ||
      nabs->numel() != nn || nmap->type != QType::F32 || nmap->numel() != 256 ||
      js.value("nested_blocksize", 0) != 256)
    return error(
        "{}: inconsistent double-quantization tensors (absmax uint8 ({}), nested_absmax float32 ({}), "
        "nested_quant_map float32 (256), nested_blocksize 256)",
        prefix, nb, nn);
  q.offset = js.value("nested_offset", 0.0f);
  q.absmax_q.assign(absmax->data, absmax->data + nb);
  q.nested_absmax = nabs->to_f32();
  const float* nm = reinterpret_cast<const float*>(nmap->data);
  q.absmax.resize(size_t(nb));
  for (int64_t i = 0; i < nb; ++i)
    q.absmax[size_t(i)] = nm[q.absmax_q[size_t(i)]] * q.nested_absmax[size_t(i / 256)] + q.offset;
  return q;
}

std::vector<SerializedTensor> int8_layout(int64_t n_out, int64_t n_in) {
  return {
      {".weight", "I8", {n_out, n_in}, {}}, {".SCB", "F32", {n_out}, {}}, {".weight_format", "U8", {}, {0}}};
}

std::vector<SerializedTensor> serialize_int8(const Int8Rowwise& q) {
  auto t = int8_layout(q.n_out, q.n_in);
  t[0].bytes = bytes_of(q.codes.data(), q.codes.size());
  t[1].bytes = bytes_of(q.scb.data(), q.scb.size());
  return t;
}

Expected<Int8Rowwise> deserialize_int8(const std::map<std::string, TensorView>& parts, int64_t n_out,
                                       int64_t n_in, const std::string& prefix) {
  auto w = parts.find(".weight"), scb = parts.find(".SCB"), format = parts.find(".weight_format");
  if (w == parts.end() || scb == parts.end()) return error("{}: expected .weight (int8) and .SCB", prefix);
  if (w->second.type != QType::I8 || w->second.shape != std::vector<int64_t>{n_out, n_in})
    return error("{}.weight: expected int8 [{}, {}], found {} {}", prefix, n_out, n_in,
                 traits(w->second.type).name, w->second.shape_str());
  if (scb->second.numel() != n_out || scb->second.shape.size() != 1)
    return error("{}.SCB: expected {} row scales, found shape {}", prefix, n_out, scb->second.shape_str());
  if (format != parts.end() && format->second.to_f32() != std::vector<float>{0.0f})
    return error("{}.weight_format: expected 0 (row-major), found another layout", prefix);
  Int8Rowwise q;
  q.n_out = n_out;
  q.n_in = n_in;
  const auto* c = reinterpret_cast<const int8_t*>(w->second.data);
  q.codes.assign(c, c + n_out * n_in);
  q.scb = scb->second.to_f32();
  return q;
}

}  // namespace qf
