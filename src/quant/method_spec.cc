#include "quant/method_spec.h"

#include <algorithm>

#include <fmt/format.h>

namespace qf {

const std::vector<MethodSpec>& method_specs() {
  static const std::vector<const char*> grid = {"--group", "--sym"},
                                        calib = {"--calib", "--nsamples", "--seqlen", "--seed"},
                                        ldlq = {"--damp", "--true-sequential", "--no-true-sequential"},
                                        gptq = {"--act-order", "--static-groups"},
                                        awq = {"--duo-scaling", "--awq-clip", "--no-awq-clip"};
  auto join = [](std::initializer_list<std::vector<const char*>> parts) {
    std::vector<const char*> all;
    for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
    return all;
  };
  static const std::vector<MethodSpec> specs = {
      {"rtn", "GPTQ layout (or GGUF)", 0, 0, "", false, true, join({grid, {"--clip"}})},
      {"gptq", "GPTQ layout (or GPTQ-rounded GGUF)", 0, 0, "", false, true,
       join({grid, {"--clip"}, calib, ldlq, gptq})},
      {"awq", "AWQ GEMM layout (4-bit), else GPTQ layout (or GGUF)", 0, 0, "", false, true,
       join({grid, calib, awq})},
      {"awq+gptq", "GPTQ layout of the AWQ-scaled model (or GGUF)", 0, 0, "", false, true,
       join({grid, calib, ldlq, gptq, awq})},
      {"nf4",
       "bitsandbytes 4-bit layout",
       4,
       4,
       "nf4 codes are 4 bits",
       false,
       false,
       {"--blocksize", "--double-quant"}},
      {"fp4",
       "bitsandbytes 4-bit layout",
       4,
       4,
       "fp4 codes are 4 bits",
       false,
       false,
       {"--blocksize", "--double-quant"}},
      {"llm-int8",
       "bitsandbytes 8-bit layout",
       8,
       8,
       "its weights are 8 bits",
       false,
       false,
       {"--int8-threshold"}},
      {"quip", "QuIP layout (io/quip_layout.h)", 2, 8, "expected 2..8", true, false, join({calib, ldlq})},
      {"quip#", "QuIP# layout (io/quip_layout.h)", 2, 4,
       "its code books are 2 (E8P), 3 (E8P + E81B) and 4 bits (E8P + E8P)", true, false, join({calib, ldlq})},
  };
  return specs;
}

const MethodSpec* find_method(std::string_view name) {
  for (const auto& m : method_specs())
    if (name == m.name) return &m;
  return nullptr;
}

std::vector<std::string> method_names() {
  std::vector<std::string> names;
  for (const auto& m : method_specs()) names.emplace_back(m.name);
  return names;
}

std::vector<std::string> method_option_names() {
  std::vector<std::string> names;
  for (const auto& m : method_specs())
    for (const char* o : m.options)
      if (std::find(names.begin(), names.end(), o) == names.end()) names.emplace_back(o);
  return names;
}

Status check_method_options(const MethodSpec& m, const std::vector<std::string>& given, int bits, bool gguf) {
  auto is_given = [&](std::string_view o) { return std::find(given.begin(), given.end(), o) != given.end(); };
  if (m.max_bits > 0 && (is_given("--bits") || m.check_default_bits) &&
      (bits < m.min_bits || bits > m.max_bits))
    return error("--bits {} with --method {}: {}", bits, m.name, m.bits_rule);
  if (gguf && !m.gguf) {
    if (std::string_view(m.name).starts_with("quip"))
      return error("--method {} writes its own layout (io/quip_layout.h), not GGUF", m.name);
    return error(
        "--method {} with --format gguf: GGUF types are written by their own rounding (rtn), gptq, awq or "
        "awq+gptq",
        m.name);
  }
  for (const std::string& option : method_option_names()) {
    if (!is_given(option) || std::find(m.options.begin(), m.options.end(), option) != m.options.end())
      continue;
    std::vector<const char*> owners;
    for (const auto& other : method_specs())
      if (std::find(other.options.begin(), other.options.end(), option) != other.options.end())
        owners.push_back(other.name);
    return error("{} does not apply to --method {} (it is for {})", option, m.name, fmt::join(owners, ", "));
  }
  return {};
}

}  // namespace qf
