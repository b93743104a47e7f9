#include "quant/quantize_hf.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "io/gptq_layout.h"
#include "io/safetensors.h"

namespace qf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string dtype_name(QType t) {
  switch (t) {
    case QType::F32: return "F32";
    case QType::F16: return "F16";
    case QType::BF16: return "BF16";
    case QType::I8: return "I8";
    case QType::U8: return "U8";
    case QType::I32: return "I32";
    default: return "";
  }
}

// Removes the temporary output folder unless the run completed.
struct TempDirGuard {
  std::string path;
  bool keep = false;
  ~TempDirGuard() {
    std::error_code ec;
    if (!keep) fs::remove_all(path, ec);
  }
};

Status check_finite(const std::vector<float>& w, const std::string& name) {
  for (size_t i = 0; i < w.size(); ++i)
    if (!std::isfinite(w[i])) return error("tensor '{}': element {} is {}, expected a finite weight", name, i, w[i]);
  return {};
}

Status write_config(const std::string& src_dir, const std::string& dst_dir, const QuantizeOptions& opt) {
  QF_ASSIGN_OR_RETURN(auto text, read_text_file(src_dir + "/config.json"));
  json cfg = json::parse(text);
  cfg["quantization_config"] = {
      {"quant_method", "gptq"},   {"checkpoint_format", "gptq"}, {"bits", opt.grid.bits},
      {"group_size", opt.grid.group}, {"sym", opt.grid.sym},     {"desc_act", false},
      {"static_groups", false},   {"true_sequential", true},    {"damp_percent", 0.01},
      {"meta", {{"quantizer", "qforge"}, {"method", opt.method}, {"clip", opt.grid.clip_mse ? "mse" : "none"}}}};
  return write_file_atomic(dst_dir + "/config.json", cfg.dump(2) + "\n");
}

}  // namespace

Expected<QuantizeReport> quantize_hf_checkpoint(const Checkpoint& ck, const QuantizeOptions& opt,
                                                const std::string& out_dir,
                                                const std::function<void(int64_t, int64_t)>& progress) {
  if (ck.format != "hf") return error("{}: quantize reads Hugging Face directories (GGUF input is not supported yet)", ck.path);
  if (!ck.quant.method.empty()) return error("{}: the checkpoint is already quantized ({})", ck.path, ck.quant.method);
  if (opt.method != "rtn") return error("--method {}: not available (supported: rtn)", opt.method);
  if (fs::exists(out_dir)) return error("{}: already exists; choose a new output folder", out_dir);
  std::map<std::string, const LinearTensors*> linears;  // weight name -> linear
  for (const auto& L : ck.weights.layers)
    for (const LinearTensors* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
      QF_RETURN_IF_ERROR(validate(opt.grid, t->n_in, t->weight.name));
      QF_RETURN_IF_ERROR(check_gptq_packable(opt.grid, t->n_out, t->n_in, t->weight.name));
      linears[t->weight.name] = t;
    }
  std::vector<SafetensorsWriter::Entry> entries;
  std::vector<const TensorView*> sources;
  for (const auto& t : ck.all_tensors) {
    auto it = linears.find(t.name);
    if (it == linears.end()) {
      entries.push_back({t.name, dtype_name(t.type), t.shape});
      continue;
    }
    const int64_t n_out = it->second->n_out, n_in = it->second->n_in, bits = opt.grid.bits;
    const int64_t ng = n_in / opt.grid.group_len(n_in);
    const std::string& p = it->second->prefix;
    entries.push_back({p + ".g_idx", "I32", {n_in}});
    entries.push_back({p + ".qweight", "I32", {n_in * bits / 32, n_out}});
    entries.push_back({p + ".qzeros", "I32", {ng, n_out * bits / 32}});
    entries.push_back({p + ".scales", "F16", {ng, n_out}});
  }
  TempDirGuard tmp{out_dir + ".tmp-" + std::to_string(getpid())};
  std::error_code ec;
  if (!fs::create_directories(tmp.path, ec)) return error("{}: cannot create: {}", tmp.path, ec.message());
  QF_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::create(tmp.path + "/model.safetensors", entries,
                                                             {{"format", "pt"}, {"quantizer", "qforge"}}));
  QuantizeReport rep;
  int64_t done = 0, packed_bits = 0;
  for (const auto& t : ck.all_tensors) {
    auto it = linears.find(t.name);
    if (it == linears.end()) {
      QF_RETURN_IF_ERROR(writer->write(t.name, t.data, size_t(t.nbytes)));
    } else {
      std::vector<float> w = t.to_f32();
      QF_RETURN_IF_ERROR(check_finite(w, t.name));
      IntQuantized q = quantize_rtn(w.data(), it->second->n_out, it->second->n_in, opt.grid);
      GptqTensors g = pack_gptq(q);
      const std::string& p = it->second->prefix;
      QF_RETURN_IF_ERROR(writer->write(p + ".g_idx", g.g_idx.data(), g.g_idx.size() * 4));
      QF_RETURN_IF_ERROR(writer->write(p + ".qweight", g.qweight.data(), g.qweight.size() * 4));
      QF_RETURN_IF_ERROR(writer->write(p + ".qzeros", g.qzeros.data(), g.qzeros.size() * 4));
      QF_RETURN_IF_ERROR(writer->write(p + ".scales", g.scales.data(), g.scales.size() * 2));
      rep.linears++;
      rep.quantized_params += t.numel();
      rep.zero_wraps += g.zero_wraps;
      packed_bits += int64_t(g.qweight.size() + g.qzeros.size()) * 32 + int64_t(g.scales.size()) * 16;
    }
    if (progress) progress(++done, int64_t(ck.all_tensors.size()));
  }
  QF_RETURN_IF_ERROR(writer->finish());
  for (const auto& e : fs::directory_iterator(ck.path)) {
    std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name == "config.json" || name == "model.safetensors.index.json" ||
        e.path().extension() == ".safetensors" || name == "golden.json" || e.path().extension() == ".gguf")
      continue;
    fs::copy_file(e.path(), tmp.path + "/" + name, ec);
    if (ec) return error("{}: cannot copy to {}: {}", e.path().string(), tmp.path, ec.message());
  }
  QF_RETURN_IF_ERROR(write_config(ck.path, tmp.path, opt));
  rep.output_bytes = int64_t(fs::file_size(tmp.path + "/model.safetensors"));
  rep.body_bits_per_weight = double(packed_bits) / double(rep.quantized_params);
  fs::rename(tmp.path, out_dir, ec);
  if (ec) return error("{}: cannot rename from {}: {}", out_dir, tmp.path, ec.message());
  tmp.keep = true;
  return rep;
}

}  // namespace qf
