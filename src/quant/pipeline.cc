#include "quant/pipeline.h"

#include <fmt/ranges.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>

#include "core/cleanup.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "formats/int_grid.h"
#include "io/gguf.h"
#include "kernels/select_backend.h"
#include "model/checkpoint.h"
#include "quant/awq.h"
#include "quant/calibration.h"
#include "quant/gptq.h"
#include "quant/imatrix.h"
#include "quant/method_spec.h"
#include "quant/quantize_gguf.h"
#include "quant/quantize_hf.h"

namespace qf {
namespace {

// Refuses options that mean nothing for the chosen method (quant/method_spec.h's table), bit widths
// it cannot have, and grid options with --format gguf.
Status check_method_options(const QuantizeRequest& a) {
  const MethodSpec* m = find_method(a.method);
  if (!m)
    return error("--method {}: not a method (supported: {})", a.method, fmt::join(method_names(), ", "));
  QF_RETURN_IF_ERROR(check_method_options(*m, a.given, a.bits, a.format == "gguf"));
  auto given = [&](const char* name) {
    return std::find(a.given.begin(), a.given.end(), name) != a.given.end();
  };
  if (a.format == "gguf")  // llama.cpp's types fix their own grids
    for (const char* name : {"--bits", "--group", "--sym", "--clip", "--static-groups", "--quantize-head"})
      if (given(name))
        return error("{} does not apply to --format gguf (llama.cpp's types fix their own grids)", name);
  return {};
}

// The calibration windows of a calibrated method: the text tokenized as the model does (BOS
// first when it adds one), windows drawn by quant/calibration.h's rule.
Expected<std::vector<std::vector<int32_t>>> calibration_windows(const Checkpoint& ck,
                                                                const QuantizeRequest& a) {
  if (a.calib.empty()) return error("--method {} needs --calib FILE (calibration text)", a.method);
  QF_ASSIGN_OR_RETURN(auto text, read_text_file(a.calib));
  QF_RETURN_IF_ERROR(check_utf8(text, a.calib));
  const std::vector<int32_t> tokens = ck.tokenizer->encode(text, true);
  auto windows = draw_windows(tokens, a.nsamples, a.seqlen, a.seed);
  if (!windows.ok()) return error("{}: {}", a.calib, windows.status().message());
  info("calibration: {} windows of {} tokens from {} ({} tokens)", a.nsamples, a.seqlen, a.calib,
       tokens.size());
  return windows;
}

// A device run's peak GPU memory (cudaMemGetInfo), beside the peak RSS that `time -v` gives.
void report_device(const Backend& be) {
  if (be.on_device())
    info("device: {}, peak device memory in use {:.2f} GiB", be.name(),
         double(device_memory().peak_used) / double(int64_t(1) << 30));
}

// Where a calibrated method computes (--device), said once on stderr.
Expected<const Backend*> calibration_backend(const QuantizeRequest& a) {
  QF_ASSIGN_OR_RETURN(const Backend* be, select_backend(a.device));
  info("device: {}", describe_backend(*be));
  return be;
}

Expected<std::map<std::string, std::vector<float>>> load_imatrix(const std::string& path) {
  QF_ASSIGN_OR_RETURN(auto im, read_imatrix(path));
  info("imatrix {}: {} entries from {} chunks of {}", path, im.mean_sq.size(), im.chunks,
       im.dataset.empty() ? "an unnamed dataset" : im.dataset);
  return std::move(im.mean_sq);
}

// GPTQ's options from the command line.
void set_gptq(const QuantizeRequest& a, GptqSpec& spec, bool& true_sequential) {
  spec.damp = a.damp;
  spec.act_order = a.act_order;
  true_sequential = a.true_sequential;
}

Status write_gguf_with(const Checkpoint& ck, const GgufOptions& opt, const std::string& out,
                       const std::string& how) {
  ProgressBar bar("gguf");
  auto t0 = std::chrono::steady_clock::now();
  QF_ASSIGN_OR_RETURN(auto rep, write_gguf(ck, opt, out, [&](int64_t d, int64_t t) { bar.update(d, t); }));
  std::string counts;
  for (const auto& [name, n] : rep.type_counts)
    counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n, name);
  fmt::print("wrote {}: {}{}, {} bytes, {:.3f} bits per weight (tensors: {}), {:.1f}s\n", out, opt.type, how,
             rep.file_bytes, rep.bits_per_weight, counts, seconds_since(t0));
  report_device(*opt.backend);
  for (const auto& f : rep.fallbacks) fmt::print(stderr, "warning: fallback type for {}\n", f);
  return {};
}

// gptq: the quantize arguments when the matrices are GPTQ-rounded, else null.
Status write_gguf_file_with(const std::string& model, const std::string& out, const std::string& type,
                            const std::string& imatrix, const QuantizeRequest* gptq, bool force) {
  QF_ASSIGN_OR_RETURN(auto ck, load_checkpoint_logged(model));
  GgufOptions opt;
  opt.type = upper(type);
  opt.replace = force;
  if (gptq) {
    QF_ASSIGN_OR_RETURN(opt.backend, calibration_backend(*gptq));
    QF_ASSIGN_OR_RETURN(opt.gptq_windows, calibration_windows(ck, *gptq));
    set_gptq(*gptq, opt.gptq, opt.true_sequential);
  }
  if (!imatrix.empty()) {
    QF_ASSIGN_OR_RETURN(opt.imatrix, load_imatrix(imatrix));
  }
  return write_gguf_with(
      ck, opt, out,
      gptq ? fmt::format(" GPTQ-rounded ({} windows of {})", opt.gptq_windows.size(), gptq->seqlen) : "");
}

Status write_hf(const Checkpoint& ck, const QuantizeOptions& opt, const std::string& out) {
  ProgressBar bar("quantize");
  auto t0 = std::chrono::steady_clock::now();
  QF_ASSIGN_OR_RETURN(auto rep,
                      quantize_hf_checkpoint(ck, opt, out, [&](int64_t d, int64_t t) { bar.update(d, t); }));
  fmt::print(
      "wrote {}: {} Linears ({} weights) as {}, {:.3f} bits per weight, model.safetensors {} bytes, "
      "{:.1f}s\n",
      out, rep.linears, rep.quantized_params, rep.describe, rep.body_bits_per_weight, rep.output_bytes,
      seconds_since(t0));
  report_device(*opt.backend);
  if (rep.zero_wraps > 0)
    fmt::print(
        stderr,
        "warning: {} groups have zero point 0, which the GPTQ v1 layout stores as {} (loaders read {})\n",
        rep.zero_wraps, opt.grid.maxq(), opt.grid.maxq() + 1);
  return {};
}

// The fake quantizer AWQ's search uses for a GGUF file type: each matrix's own type (llama.cpp's
// mix rules), rounded by that type's quantizer with the imatrix of the scaled columns (x/s:
// mean x² / s²).
FakeQuantizer gguf_fake_quantizer(const ModelConfig& c, const std::string& type,
                                  const std::map<std::string, std::vector<float>>& imatrix) {
  return [&c, type, &imatrix](int layer, const std::string& kind, float* w, int64_t n_out, int64_t n_in,
                              const std::vector<float>& s) {
    const std::string name = fmt::format("blk.{}.{}.weight", layer, kind);
    const QType t = *gguf_matrix_type(c, type, name, n_in, !imatrix.empty());
    std::vector<float> im;
    if (auto it = imatrix.find(name); it != imatrix.end())
      for (int64_t j = 0; j < n_in; ++j) im.push_back(it->second[size_t(j)] / (s[size_t(j)] * s[size_t(j)]));
    const auto& tr = traits(t);
    const int64_t row_bytes = qtype_row_bytes(t, n_in);
#pragma omp parallel
    {
      std::vector<uint8_t> row(static_cast<size_t>(row_bytes));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < n_out; ++r) {
        tr.quantize_ref(w + r * n_in, row.data(), n_in, im.empty() ? nullptr : im.data());
        tr.dequantize_ref(row.data(), w + r * n_in, n_in);
      }
    }
  };
}

std::string model_name(const std::string& path) {
  std::filesystem::path p = std::filesystem::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

// AWQ: the transformed checkpoint (quant/awq.h) in a scratch folder beside OUT, then RTN into the
// AWQ layout (awq), GPTQ (awq+gptq) or a GGUF type on it; the scratch folder is removed after.
Status run_awq(const QuantizeRequest& a) {
  const bool gguf = a.format == "gguf", with_gptq = a.method == "awq+gptq";
  QF_ASSIGN_OR_RETURN(auto ck, load_checkpoint_logged(a.model));
  QF_ASSIGN_OR_RETURN(auto windows, calibration_windows(ck, a));
  QF_ASSIGN_OR_RETURN(const Backend* be, calibration_backend(a));
  AwqSpec spec;
  spec.duo_scaling = a.duo_scaling;
  spec.clip = a.awq_clip;
  const IntGridSpec grid{a.bits, a.group, a.sym, false};
  QuantizeOptions opt;  // hf output
  opt.replace = a.force;
  opt.method = with_gptq ? "gptq" : "awq";
  opt.awq_scaled = true;
  opt.grid = grid;
  set_gptq(a, opt.gptq, opt.true_sequential);
  opt.static_groups = a.static_groups;
  std::map<std::string, std::vector<float>> imatrix;
  FakeQuantizer quantize;
  if (gguf) {
    if (!a.imatrix.empty()) {
      QF_ASSIGN_OR_RETURN(imatrix, load_imatrix(a.imatrix));
    }
    for (int layer = 0; layer < ck.config.n_layer; ++layer)
      for (const char* kind : kLinearNames) {
        const std::string name = fmt::format("blk.{}.{}.weight", layer, kind);
        const int64_t cols = ck.weights.layers[size_t(layer)].linear(kind).n_in;
        if (auto it = imatrix.find(name); it != imatrix.end() && int64_t(it->second.size()) != cols)
          return error("imatrix entry '{}' has {} values, the tensor has {} columns", name, it->second.size(),
                       cols);
      }
    QF_RETURN_IF_ERROR(
        gguf_matrix_type(ck.config, upper(a.type), "blk.0.attn_q.weight", ck.config.n_embd, false).status());
    spec.group = 32;  // the blocks of the legacy types and the sub-blocks of the k-quants
    quantize = gguf_fake_quantizer(ck.config, upper(a.type), imatrix);
  } else {
    QF_RETURN_IF_ERROR(check_quantizable(ck, opt));  // before the search, not after
    spec.group = a.group;
  }
  TempDir scratch{temporary_for(a.out, "awq")};
  const std::string scaled_dir = scratch.path + "/" + model_name(a.model);
  auto t0 = std::chrono::steady_clock::now();
  AwqReport rep;
  {
    ProgressBar bar("awq");
    auto progress = [&](int64_t d, int64_t t) { bar.update(d, t); };
    QF_ASSIGN_OR_RETURN(rep, gguf ? awq_transform(ck, windows, spec, quantize, scaled_dir, progress, *be)
                                  : awq_transform(ck, windows, spec, grid, scaled_dir, progress, *be));
  }
  for (const auto& line : rep.points) info("awq: {}", line);
  info("awq: search {:.1f}s; clipping shrank {} of {} groups", seconds_since(t0), rep.clipped_groups,
       rep.groups);
  QF_ASSIGN_OR_RETURN(auto scaled, load_checkpoint(scaled_dir));
  if (gguf) {
    GgufOptions opt;
    opt.type = upper(a.type);
    opt.replace = a.force;
    for (auto& [name, v] : imatrix)  // the imatrix was measured on the unscaled model
      if (auto s = rep.col_scales.find(name); s != rep.col_scales.end())
        for (size_t j = 0; j < v.size(); ++j) v[j] /= s->second[j] * s->second[j];
    opt.imatrix = std::move(imatrix);
    if (with_gptq) {
      opt.backend = be;
      opt.gptq_windows = windows;
      set_gptq(a, opt.gptq, opt.true_sequential);
    }
    return write_gguf_with(scaled, opt, a.out,
                           fmt::format(" AWQ-scaled{} ({} windows of {})", with_gptq ? ", GPTQ-rounded" : "",
                                       windows.size(), a.seqlen));
  }
  opt.windows = std::move(windows);
  if (with_gptq) opt.backend = be;
  return write_hf(scaled, opt, a.out);
}

}  // namespace

std::string upper(std::string s) {
  for (char& ch : s) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

Status write_gguf_file(const std::string& model, const std::string& out, const std::string& type,
                       bool force) {
  QF_RETURN_IF_ERROR(check_new_output(out, {model}, OutputKind::File, force));
  return write_gguf_file_with(model, out, type, "", nullptr, force);
}

Status quantize_model(const QuantizeRequest& a) {
  QF_RETURN_IF_ERROR(check_new_output(a.out, {a.model, a.calib, a.imatrix},
                                      a.format == "gguf" ? OutputKind::File : OutputKind::Folder, a.force));
  QF_RETURN_IF_ERROR(check_method_options(a));
  if (a.format == "gguf" && a.type.empty())
    return error("--format gguf needs --type ({})", gguf_file_types());
  if (a.format != "gguf" && !a.type.empty()) return error("--type {} needs --format gguf", a.type);
  if (a.format != "gguf" && !a.imatrix.empty()) return error("--imatrix needs --format gguf");
  if (a.method == "awq" || a.method == "awq+gptq") return run_awq(a);
  if (a.format == "gguf") {
    return write_gguf_file_with(a.model, a.out, a.type, a.imatrix, a.method == "gptq" ? &a : nullptr,
                                a.force);
  }
  QF_ASSIGN_OR_RETURN(auto ck, load_checkpoint_logged(a.model));
  QuantizeOptions opt;
  opt.replace = a.force;
  opt.method = a.method;
  opt.grid.bits = a.bits;
  opt.grid.group = a.group;
  opt.grid.sym = a.sym;
  opt.grid.clip_mse = a.clip == "mse";
  opt.blocksize = a.blocksize;
  opt.double_quant = a.double_quant;
  opt.int8_threshold = a.int8_threshold;
  opt.quantize_head = a.quantize_head;
  if (a.method == "gptq" || a.method == "quip" || a.method == "quip#") {
    QF_ASSIGN_OR_RETURN(opt.backend, calibration_backend(a));
    QF_ASSIGN_OR_RETURN(opt.windows, calibration_windows(ck, a));
    set_gptq(a, opt.gptq, opt.true_sequential);
    opt.static_groups = a.static_groups;
    opt.quip_seed = a.seed;
  }
  return write_hf(ck, opt, a.out);
}

}  // namespace qf
