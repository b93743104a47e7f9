#include "model/hf_layouts.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "formats/e8p.h"
#include "io/awq_layout.h"
#include "io/bnb_layout.h"
#include "io/gptq_layout.h"
#include "io/json_get.h"
#include "io/quip_layout.h"

namespace qf {
namespace {

using json = nlohmann::json;
using LinearPtr = std::unique_ptr<Linear>;

std::string quant_method(const json& qc) {
  auto it = qc.find("quant_method");
  return it != qc.end() && it->is_string() ? it->get<std::string>() : "";
}
bool is_true(const json& qc, const char* key) {
  auto it = qc.find(key);
  return it != qc.end() && it->is_boolean() && it->get<bool>();
}

Status check_bits(const std::string& where, int bits, int lo, int hi) {
  if (bits < lo || bits > hi) return error("{}.bits {} is not in {}..{}", where, bits, lo, hi);
  return {};
}

Status check_shape(const IntQuantized& q, const LinearTensors& t) {
  if (q.n_out != t.n_out || q.n_in != t.n_in)
    return error("{}: packed weight is {}x{}, the config says {}x{}", t.prefix, q.n_out, q.n_in, t.n_out,
                 t.n_in);
  return {};
}

Expected<IntQuantized> read_gptq_grid(const LinearTensors& t, int bits) {
  const auto& p = t.parts;
  QF_ASSIGN_OR_RETURN(auto q, unpack_gptq(p.at(".qweight"), p.at(".qzeros"), p.at(".scales"), p.at(".g_idx"),
                                          bits, t.prefix));
  QF_RETURN_IF_ERROR(check_shape(q, t));
  return q;
}

// ---- GPTQ (AutoGPTQ / GPTQModel v1) -------------------------------------------------------

Status parse_gptq(const std::string& where, const json& qc, QuantizationConfig& q) {
  std::string format = "gptq";
  q.bits = 4;
  QF_RETURN_IF_ERROR(json_get(qc, "checkpoint_format", format, where));
  if (format != "gptq")
    return error("{}.checkpoint_format '{}' is not supported (supported: gptq)", where, format);
  QF_RETURN_IF_ERROR(json_get(qc, "bits", q.bits, where));
  QF_RETURN_IF_ERROR(json_get(qc, "group_size", q.group_size, where));
  QF_RETURN_IF_ERROR(json_get(qc, "sym", q.sym, where));
  QF_RETURN_IF_ERROR(json_get(qc, "desc_act", q.desc_act, where));
  return check_bits(where, q.bits, 2, 8);
}
std::vector<std::string> parts_gptq(const QuantizationConfig&) {
  return {".qweight", ".qzeros", ".scales", ".g_idx"};
}
Expected<LinearPtr> read_gptq(const LinearTensors& t, const QuantizationConfig& c) {
  QF_ASSIGN_OR_RETURN(auto q, read_gptq_grid(t, c.bits));
  q.spec.sym = c.sym;
  return LinearPtr(new IntLinear(q, t.bias));
}

// ---- AWQ (AutoAWQ GEMM) -----------------------------------------------------------------

Status parse_awq(const std::string& where, const json& qc, QuantizationConfig& q) {
  // transformers' AwqConfig names (bits, group_size, zero_point) or AutoAWQ's (w_bit, q_group_size)
  q.bits = 4;
  q.group_size = 128;
  bool zero_point = true;
  std::string version = "gemm";
  QF_RETURN_IF_ERROR(json_get(qc, "w_bit", q.bits, where));
  QF_RETURN_IF_ERROR(json_get(qc, "bits", q.bits, where));
  QF_RETURN_IF_ERROR(json_get(qc, "q_group_size", q.group_size, where));
  QF_RETURN_IF_ERROR(json_get(qc, "group_size", q.group_size, where));
  QF_RETURN_IF_ERROR(json_get(qc, "zero_point", zero_point, where));
  QF_RETURN_IF_ERROR(json_get(qc, "version", version, where));
  q.sym = !zero_point;
  if (version != "gemm" && version != "GEMM")
    return error("{}.version '{}' is not supported (supported: gemm)", where, version);
  if (q.bits != 4) return error("{}.bits {}: AWQ's GEMM layout is 4-bit", where, q.bits);
  if (q.sym) return error("{}.zero_point false is not supported (AWQ GEMM stores zero points)", where);
  return {};
}
std::vector<std::string> parts_awq(const QuantizationConfig&) { return {".qweight", ".qzeros", ".scales"}; }
Expected<LinearPtr> read_awq(const LinearTensors& t, const QuantizationConfig& c) {
  const auto& p = t.parts;
  QF_ASSIGN_OR_RETURN(
      auto q, unpack_awq(p.at(".qweight"), p.at(".qzeros"), p.at(".scales"), c.bits, c.group_size, t.prefix));
  QF_RETURN_IF_ERROR(check_shape(q, t));
  return LinearPtr(new IntLinear(q, t.bias));
}

// ---- bitsandbytes ---------------------------------------------------------------------

Status parse_bnb4(const std::string& where, const json& qc, QuantizationConfig& q) {
  bool load_in_4bit = false;
  QF_RETURN_IF_ERROR(json_get(qc, "load_in_4bit", load_in_4bit, where));
  if (!load_in_4bit) return error("{}: bitsandbytes with neither load_in_4bit nor load_in_8bit true", where);
  q.bnb_type = "fp4";
  QF_RETURN_IF_ERROR(json_get(qc, "bnb_4bit_quant_type", q.bnb_type, where));
  QF_RETURN_IF_ERROR(json_get(qc, "bnb_4bit_use_double_quant", q.double_quant, where));
  if (q.bnb_type != "nf4" && q.bnb_type != "fp4")
    return error("{}.bnb_4bit_quant_type '{}' is not nf4 or fp4", where, q.bnb_type);
  return {};
}
std::vector<std::string> parts_bnb4(const QuantizationConfig& q) {
  std::vector<std::string> p = {".weight.absmax", ".weight", ".weight.quant_map",
                                ".weight.quant_state.bitsandbytes__" + q.bnb_type};
  if (q.double_quant) {
    p.push_back(".weight.nested_absmax");
    p.push_back(".weight.nested_quant_map");
  }
  return p;
}
Expected<LinearPtr> read_bnb4(const LinearTensors& t, const QuantizationConfig&) {
  QF_ASSIGN_OR_RETURN(auto q, deserialize_bnb4(t.parts, t.n_out, t.n_in, t.prefix));
  return LinearPtr(new Bnb4Linear(std::move(q), t.n_out, t.n_in, t.bias));
}

Status parse_bnb8(const std::string& where, const json& qc, QuantizationConfig& q) {
  QF_RETURN_IF_ERROR(json_get(qc, "llm_int8_threshold", q.int8_threshold, where));
  if (!(q.int8_threshold >= 0) || !std::isfinite(q.int8_threshold))
    return error("{}.llm_int8_threshold {} is not a finite number ≥ 0", where, q.int8_threshold);
  return {};
}
std::vector<std::string> parts_bnb8(const QuantizationConfig&) { return {".SCB", ".weight"}; }
Expected<LinearPtr> read_bnb8(const LinearTensors& t, const QuantizationConfig& c) {
  QF_ASSIGN_OR_RETURN(auto q, deserialize_int8(t.parts, t.n_out, t.n_in, t.prefix));
  return LinearPtr(new Int8Linear(std::move(q), c.int8_threshold, t.bias));
}

// ---- QuIP / QuIP# ------------------------------------------------------------------------

Status parse_quip(const std::string& where, const json& qc,
                  QuantizationConfig& q) {  // one asymmetric group per row
  q.bits = 4;
  q.group_size = -1;
  q.sym = false;
  QF_RETURN_IF_ERROR(json_get(qc, "bits", q.bits, where));
  return check_bits(where, q.bits, 2, 8);
}
Status parse_quip_sharp(const std::string& where, const json& qc, QuantizationConfig& q) {
  q.bits = 2;
  std::string codebook;
  QF_RETURN_IF_ERROR(json_get(qc, "bits", q.bits, where));
  QF_RETURN_IF_ERROR(json_get(qc, "codebook", codebook, where));
  if (q.bits < 2 || q.bits > 4 || codebook != quip_codebook_name(q.bits))
    return error(
        "{}: codebook '{}' with bits {} is not supported (supported: E8P12 2, E8P12RVQ3B 3, E8P12RVQ4B 4)",
        where, codebook, q.bits);
  q.resid_scale = e8p::scales(q.bits).resid_scale;
  QF_RETURN_IF_ERROR(json_get(qc, "resid_scale", q.resid_scale, where));
  if (q.bits > 2 && !(q.resid_scale > 0 && std::isfinite(q.resid_scale)))
    return error("{}.resid_scale {} is not a finite positive number", where, q.resid_scale);
  return {};
}
std::vector<std::string> parts_quip(const QuantizationConfig&) {
  return {".qweight", ".qzeros", ".scales", ".g_idx", ".SU", ".SV"};
}
std::vector<std::string> parts_quip_sharp(const QuantizationConfig& q) {
  std::vector<std::string> p = {".Qidxs", ".SU", ".SV", ".Wscale"};
  if (q.bits > 2) p.push_back(".Qidxs_resid");
  return p;
}
Expected<LinearPtr> read_quip_any(const LinearTensors& t, const QuantizationConfig& c) {
  const bool lattice = c.method == "quip#";
  QF_ASSIGN_OR_RETURN(auto h_in, Hadamard::of_order(t.n_in, t.prefix + " (input dimension)"));
  QF_ASSIGN_OR_RETURN(auto h_out, Hadamard::of_order(t.n_out, t.prefix + " (output dimension)"));
  QF_ASSIGN_OR_RETURN(auto qp,
                      deserialize_quip(t.parts, t.n_out, t.n_in, lattice, c.bits, c.resid_scale, t.prefix));
  LinearPtr inner;
  if (lattice) {
    inner = std::make_unique<E8Linear>(std::move(qp.e8));
  } else {
    QF_ASSIGN_OR_RETURN(auto q, read_gptq_grid(t, c.bits));
    q.spec.sym = false;
    inner = std::make_unique<IntLinear>(q, TensorView{});
  }
  return LinearPtr(new QuipLinear(std::move(h_in), std::move(h_out), std::move(qp.su), std::move(qp.sv),
                                  std::move(inner), t.bias));
}

}  // namespace

const std::vector<HfLayout>& hf_layouts() {
  static const std::vector<HfLayout> kLayouts = {
      {"gptq",
       "codes packed along n_in in int32 (2/3/4/8 bits; 5/6 qforge only), fp16 scale and zero − 1 per group, "
       "g_idx (act-order)",
       "GRID4 / GRID8", "rtn, gptq, awq (other grids), awq+gptq",
       [](const json& qc) { return quant_method(qc) == "gptq"; }, parse_gptq, parts_gptq, read_gptq},
      {"awq",
       "4-bit codes packed along n_out in AutoAWQ's order, fp16 scales and packed zeros per group of 128",
       "GRID4", "awq (4-bit asymmetric)", [](const json& qc) { return quant_method(qc) == "awq"; }, parse_awq,
       parts_awq, read_awq},
      {"bnb4",
       "bitsandbytes NF4/FP4: two codes per byte, absmax per block (optionally 8-bit double-quantized)",
       "BNB4", "nf4, fp4",
       [](const json& qc) { return quant_method(qc) == "bitsandbytes" && !is_true(qc, "load_in_8bit"); },
       parse_bnb4, parts_bnb4, read_bnb4},
      {"bnb8", "LLM.int8(): int8 rows with an fp32 absmax per row (SCB)",
       "Int8Linear (int8 × int8 with fp outliers)", "llm-int8",
       [](const json& qc) { return quant_method(qc) == "bitsandbytes" && is_true(qc, "load_in_8bit"); },
       parse_bnb8, parts_bnb8, read_bnb8},
      {"quip",
       "the GPTQ layout of W̃ (one group per row) with the random sign vectors SU, SV of the Hadamard "
       "transforms",
       "QuipLinear over GRID4 / GRID8", "quip", [](const json& qc) { return quant_method(qc) == "quip"; },
       parse_quip, parts_quip, read_quip_any},
      {"quip#", "E8P12 lattice codes (16 bits per 8 weights; + residual codes at 3/4 bits), Wscale, SU, SV",
       "QuipLinear over E8Linear", "quip#", [](const json& qc) { return quant_method(qc) == "quip#"; },
       parse_quip_sharp, parts_quip_sharp, read_quip_any},
  };
  return kLayouts;
}

const HfLayout& hf_layout(const QuantizationConfig& q) {
  for (const auto& l : hf_layouts())
    if (q.method == l.method) return l;
  QF_CHECK(false, "no HF layout row for method '{}'", q.method);
  return hf_layouts()[0];
}

Status parse_quantization_config(const std::string& where, const json& qc, QuantizationConfig& q) {
  const std::string key = where + ": quantization_config";
  if (!qc.is_object()) return error("{}: expected an object, found {}", key, qc.dump().substr(0, 60));
  std::string method;
  QF_RETURN_IF_ERROR(json_get(qc, "quant_method", method, key));
  for (const auto& l : hf_layouts())
    if (l.matches(qc)) {
      q.method = l.method;
      return l.parse(key, qc, q);
    }
  return error(
      "{}.quant_method '{}' is not supported (supported: gptq, awq, bitsandbytes 4-bit and 8-bit, quip, "
      "quip#)",
      key, method);
}

Expected<std::unique_ptr<Linear>> make_linear(const LinearTensors& t, const QuantizationConfig& q) {
  if (!t.packed()) return LinearPtr(new StoredLinear(t.weight, t.bias));
  return hf_layout(q).read(t, q);
}

Expected<std::unique_ptr<Linear>> make_linear(const LinearTensors& t, const QuantizationConfig& q,
                                              const Backend& be) {
  if (be.on_device() && !t.packed())
    if (auto l = BackendLinear::from_stored(be, t.weight, t.bias)) return LinearPtr(std::move(l));
  QF_ASSIGN_OR_RETURN(auto l, make_linear(t, q));
  return on_backend(std::move(l), be);
}

}  // namespace qf
