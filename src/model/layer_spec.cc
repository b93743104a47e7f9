#include "model/layer_spec.h"

#include <cstdio>

#include <fmt/format.h>

namespace qf {

int64_t dim(const ModelConfig& c, Dim d) {
  switch (d) {
    case Dim::Embd:
      return c.n_embd;
    case Dim::Q:
      return c.q_dim();
    case Dim::KV:
      return c.kv_dim();
    case Dim::FF:
      return c.n_ff;
    case Dim::HeadDim:
      return c.head_dim;
  }
  return 0;
}

std::optional<LinearId> linear_id(std::string_view name) {
  for (int i = 0; i < kNumLinears; ++i)
    if (name == kBlockLinears[i].name) return LinearId(i);
  return std::nullopt;
}

std::string linear_names() {
  std::string s;
  for (const auto& l : kBlockLinears) s += (s.empty() ? "" : ", ") + std::string(l.name);
  return s;
}

std::optional<std::string> gguf_tensor_name(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  int layer = -1, used = 0;
  if (std::sscanf(hf.c_str(), "model.layers.%d.%n", &layer, &used) != 1 || used == 0) return std::nullopt;
  const std::string role = hf.substr(size_t(used));
  for (const auto& l : kBlockLinears)
    for (const char* part : {".weight", ".bias"})
      if (role == std::string(l.hf) + part) return fmt::format("blk.{}.{}{}", layer, l.name, part);
  for (const auto& n : kBlockNorms)
    if (role == std::string(n.hf) + ".weight") return fmt::format("blk.{}.{}.weight", layer, n.name);
  return std::nullopt;
}

}  // namespace qf
