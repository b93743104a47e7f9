#include "formats/qtype.h"

#include <cmath>
#include <cstring>

#include "core/half.h"
#include "core/status.h"
#include "formats/ggml_quants.h"

namespace qf {
namespace {

void dequant_f32(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, size_t(n) * 4); }
void quant_f32(const float* src, void* dst, int64_t n, const float*) { std::memcpy(dst, src, size_t(n) * 4); }

void dequant_f16(const void* src, float* dst, int64_t n) {
  auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
}
void quant_f16(const float* src, void* dst, int64_t n, const float*) {
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
}

void dequant_bf16(const void* src, float* dst, int64_t n) {
  auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
}
void quant_bf16(const float* src, void* dst, int64_t n, const float*) {
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
}

void dequant_q8_0(const void* src, float* dst, int64_t n) {
  auto* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    float d = f16_to_f32(b[i].d);
    for (int j = 0; j < 32; ++j) dst[i * 32 + j] = d * float(b[i].qs[j]);
  }
}

// llama.cpp quantize_row_q8_0_ref: d = amax/127, q = round(x/d).
void quant_q8_0(const float* src, void* dst, int64_t n, const float*) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float* x = src + i * 32;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    float d = amax / 127.0f;
    float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f32_to_f16(d);
    for (int j = 0; j < 32; ++j) b[i].qs[j] = int8_t(std::lround(x[j] * id));
  }
}

void pack_q8_0(const uint8_t* codes, void* block) {  // code = q + 128
  auto* b = static_cast<BlockQ8_0*>(block);
  for (int j = 0; j < 32; ++j) b->qs[j] = int8_t(int(codes[j]) - 128);
}

template <typename Int>
void dequant_int(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    Int v;
    std::memcpy(&v, static_cast<const uint8_t*>(src) + i * int64_t(sizeof(Int)), sizeof(Int));
    dst[i] = float(v);
  }
}
template <typename Int>
void quant_int(const float* src, void* dst, int64_t n, const float*) {
  for (int64_t i = 0; i < n; ++i) {
    Int v = Int(std::lround(src[i]));
    std::memcpy(static_cast<uint8_t*>(dst) + i * int64_t(sizeof(Int)), &v, sizeof(Int));
  }
}

// Rows in QType order.
const QTypeTraits kTraits[] = {
    {QType::F32, "F32", 0, 1, 4, dequant_f32, quant_f32},
    {QType::F16, "F16", 1, 1, 2, dequant_f16, quant_f16},
    {QType::BF16, "BF16", 30, 1, 2, dequant_bf16, quant_bf16},
    {QType::Q8_0, "Q8_0", 8, 32, 34, dequant_q8_0, quant_q8_0, 256, pack_q8_0},
    {QType::I8, "I8", 24, 1, 1, dequant_int<int8_t>, quant_int<int8_t>},
    {QType::U8, "U8", -1, 1, 1, dequant_int<uint8_t>, quant_int<uint8_t>},
    {QType::I32, "I32", 26, 1, 4, dequant_int<int32_t>, quant_int<int32_t>},
    {QType::Q4_0, "Q4_0", 2, 32, 18, dequantize_q4_0, quantize_q4_0, 16, pack_codes_q4_0},
    {QType::Q4_1, "Q4_1", 3, 32, 20, dequantize_q4_1, quantize_q4_1, 16, pack_codes_q4_1},
    {QType::Q5_0, "Q5_0", 6, 32, 22, dequantize_q5_0, quantize_q5_0, 32, pack_codes_q5_0},
    {QType::Q5_1, "Q5_1", 7, 32, 24, dequantize_q5_1, quantize_q5_1, 32, pack_codes_q5_1},
    {QType::Q2_K, "Q2_K", 10, 256, 84, dequantize_q2_K, quantize_q2_K, 4, pack_codes_q2_K},
    {QType::Q3_K, "Q3_K", 11, 256, 110, dequantize_q3_K, quantize_q3_K, 8, pack_codes_q3_K},
    {QType::Q4_K, "Q4_K", 12, 256, 144, dequantize_q4_K, quantize_q4_K, 16, pack_codes_q4_K},
    {QType::Q5_K, "Q5_K", 13, 256, 176, dequantize_q5_K, quantize_q5_K, 32, pack_codes_q5_K},
    {QType::Q6_K, "Q6_K", 14, 256, 210, dequantize_q6_K, quantize_q6_K, 64, pack_codes_q6_K},
    {QType::IQ4_NL, "IQ4_NL", 20, 32, 18, dequantize_iq4_nl, quantize_iq4_nl, 16, pack_codes_iq4_nl},
    {QType::IQ4_XS, "IQ4_XS", 23, 256, 136, dequantize_iq4_xs, quantize_iq4_xs, 16, pack_codes_iq4_xs},
    {QType::IQ2_XXS, "IQ2_XXS", 16, 256, 66, dequantize_iq2_xxs, nullptr},
    {QType::IQ2_XS, "IQ2_XS", 17, 256, 74, dequantize_iq2_xs, nullptr},
    {QType::IQ3_XXS, "IQ3_XXS", 18, 256, 98, dequantize_iq3_xxs, nullptr},
    {QType::I16, "I16", 25, 1, 2, dequant_int<int16_t>, quant_int<int16_t>},
    // Kernel forms of the HF layouts: their codecs need the side arrays (io/hf_layouts.h).
    {QType::GRID4, "GRID4", -1, 32, 16, nullptr, nullptr},
    {QType::GRID8, "GRID8", -1, 32, 32, nullptr, nullptr},
    {QType::BNB4, "BNB4", -1, 32, 16, nullptr, nullptr},
};

}  // namespace

const QTypeTraits& traits(QType t) {
  const auto& tr = kTraits[static_cast<int>(t)];
  QF_CHECK(tr.type == t, "traits table out of order at {}", static_cast<int>(t));
  return tr;
}

std::optional<QType> qtype_from_ggml_id(uint32_t id) {
  for (const auto& tr : kTraits)
    if (tr.ggml_id >= 0 && uint32_t(tr.ggml_id) == id) return tr.type;
  return std::nullopt;
}

std::optional<QType> qtype_from_name(std::string_view name) {
  for (const auto& tr : kTraits)
    if (tr.name == name) return tr.type;
  return std::nullopt;
}

std::string_view ggml_type_name(uint32_t id) {
  // llama.cpp ggml.h enum ggml_type (ids 4 and 5 were removed upstream).
  static constexpr std::string_view kNames[] = {
      "F32",   "F16",    "Q4_0", "Q4_1", "Q4_2?", "Q4_3?",   "Q5_0",   "Q5_1",    "Q8_0",  "Q8_1",   "Q2_K",
      "Q3_K",  "Q4_K",   "Q5_K", "Q6_K", "Q8_K",  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
      "IQ2_S", "IQ4_XS", "I8",   "I16",  "I32",   "I64",     "F64",    "IQ1_M",   "BF16"};
  if (id < std::size(kNames)) return kNames[id];
  return "unknown";
}

}  // namespace qf
