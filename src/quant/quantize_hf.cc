#include "quant/quantize_hf.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "core/profile.h"
#include "io/awq_layout.h"
#include "io/bnb_layout.h"
#include "io/gptq_layout.h"
#include "io/quip_layout.h"
#include "io/safetensors.h"
#include "quant/calibration.h"
#include "quant/quip.h"

namespace qf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string torch_dtype(QType t) {
  return t == QType::BF16 ? "bfloat16" : t == QType::F16 ? "float16" : "float32";
}

// What a method writes for one Linear: the tensors' layout (known before quantizing, so the
// header can be written first) and the encoded tensors.
class LinearCodec {
 public:
  virtual ~LinearCodec() = default;
  virtual Status check(const LinearTensors& t) const = 0;
  virtual std::vector<SerializedTensor> layout(const LinearTensors& t) const = 0;
  virtual std::vector<SerializedTensor> encode(const LinearTensors& t, const std::vector<float>& w,
                                               QuantizeReport& rep) const = 0;
  virtual json quantization_config() const = 0;
};

// Bytes of a vector's elements.
template <typename T>
std::vector<uint8_t> bytes(const std::vector<T>& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(v.data());
  return std::vector<uint8_t>(p, p + v.size() * sizeof(T));
}

// The bitsandbytes quantization_config transformers writes; 4-bit keys filled when bnb4.
json bnb_quantization_config(const QuantizeOptions& o, bool bnb4) {
  return {{"quant_method", "bitsandbytes"},
          {"load_in_4bit", bnb4},
          {"load_in_8bit", !bnb4},
          {"bnb_4bit_quant_type", bnb4 ? o.method : "fp4"},
          {"bnb_4bit_use_double_quant", bnb4 && o.double_quant},
          {"bnb_4bit_compute_dtype", "float32"},
          {"bnb_4bit_quant_storage", "uint8"},
          {"llm_int8_threshold", bnb4 ? 6.0 : double(o.int8_threshold)},
          {"llm_int8_skip_modules", o.quantize_head ? json::array() : json(nullptr)},
          {"llm_int8_has_fp16_weight", false},
          {"llm_int8_enable_fp32_cpu_offload", false}};
}

class GptqCodec : public LinearCodec {
 public:
  explicit GptqCodec(const QuantizeOptions& o) : o_(o) {}
  Status check(const LinearTensors& t) const override {
    QF_RETURN_IF_ERROR(validate(o_.grid, t.n_in, t.weight.name));
    return check_gptq_packable(o_.grid, t.n_out, t.n_in, t.weight.name);
  }
  std::vector<SerializedTensor> layout(const LinearTensors& t) const override {
    const int64_t bits = o_.grid.bits, ng = t.n_in / o_.grid.group_len(t.n_in);
    return {{".g_idx", "I32", {t.n_in}, {}},
            {".qweight", "I32", {t.n_in * bits / 32, t.n_out}, {}},
            {".qzeros", "I32", {ng, t.n_out * bits / 32}, {}},
            {".scales", "F16", {ng, t.n_out}, {}}};
  }
  std::vector<SerializedTensor> encode(const LinearTensors& t, const std::vector<float>& w,
                                       QuantizeReport& rep) const override {
    return encode_int(t, quantize_rtn(w.data(), t.n_out, t.n_in, o_.grid), rep);
  }
  std::vector<SerializedTensor> encode_int(const LinearTensors& t, const IntQuantized& q,
                                           QuantizeReport& rep) const {
    GptqTensors g = pack_gptq(q);
    rep.zero_wraps += g.zero_wraps;
    auto out = layout(t);
    out[0].bytes = bytes(g.g_idx);
    out[1].bytes = bytes(g.qweight);
    out[2].bytes = bytes(g.qzeros);
    out[3].bytes = bytes(g.scales);
    return out;
  }
  json quantization_config() const override {
    const bool gptq = o_.method == "gptq";
    const std::string method = o_.awq_scaled && gptq ? "awq+gptq" : o_.method;
    return {{"quant_method", "gptq"},
            {"checkpoint_format", "gptq"},
            {"bits", o_.grid.bits},
            {"group_size", o_.grid.group},
            {"sym", o_.grid.sym},
            {"desc_act", gptq && o_.gptq.act_order},
            {"static_groups", gptq && o_.static_groups},
            {"true_sequential", !gptq || o_.true_sequential},
            {"damp_percent", o_.gptq.damp},
            {"lm_head", o_.quantize_head},
            {"meta",
             {{"quantizer", "qforge"},
              {"method", method},
              {"clip", o_.grid.clip_mse ? "mse" : "none"},
              {"calibration_windows", o_.windows.size()},
              {"calibration_seqlen", o_.windows.empty() ? 0 : o_.windows[0].size()}}}};
  }

 private:
  QuantizeOptions o_;
};

// AutoAWQ's GEMM layout: the integer grid, 4-bit asymmetric, groups in column order.
class AwqCodec : public LinearCodec {
 public:
  explicit AwqCodec(const QuantizeOptions& o) : o_(o) {}
  Status check(const LinearTensors& t) const override {
    QF_RETURN_IF_ERROR(validate(o_.grid, t.n_in, t.weight.name));
    return check_awq_packable(o_.grid, t.n_out, t.n_in, t.weight.name);
  }
  std::vector<SerializedTensor> layout(const LinearTensors& t) const override {
    const int64_t ng = t.n_in / o_.grid.group_len(t.n_in);
    return {{".qweight", "I32", {t.n_in, t.n_out / 8}, {}},
            {".qzeros", "I32", {ng, t.n_out / 8}, {}},
            {".scales", "F16", {ng, t.n_out}, {}}};
  }
  std::vector<SerializedTensor> encode(const LinearTensors& t, const std::vector<float>& w,
                                       QuantizeReport&) const override {
    AwqTensors a = pack_awq(quantize_rtn(w.data(), t.n_out, t.n_in, o_.grid));
    auto out = layout(t);
    out[0].bytes = bytes(a.qweight);
    out[1].bytes = bytes(a.qzeros);
    out[2].bytes = bytes(a.scales);
    return out;
  }
  json quantization_config() const override {
    return {{"quant_method", "awq"},
            {"bits", o_.grid.bits},
            {"group_size", o_.grid.group},
            {"zero_point", true},
            {"version", "gemm"},
            {"modules_to_not_convert", nullptr},
            {"meta",
             {{"quantizer", "qforge"},
              {"calibration_windows", o_.windows.size()},
              {"calibration_seqlen", o_.windows.empty() ? 0 : o_.windows[0].size()}}}};
  }

 private:
  QuantizeOptions o_;
};

class Bnb4Codec : public LinearCodec {
 public:
  explicit Bnb4Codec(const QuantizeOptions& o)
      : o_(o), type_(o.method == "nf4" ? Bnb4Type::NF4 : Bnb4Type::FP4) {}
  Status check(const LinearTensors& t) const override {
    return validate_bnb4(o_.blocksize, t.n_out * t.n_in, t.weight.name);
  }
  std::vector<SerializedTensor> layout(const LinearTensors& t) const override {
    float offset = 0;
    if (o_.double_quant) {  // the quant-state JSON records the offset: one extra read of the weight
      std::vector<float> w = t.weight.to_f32();
      offset = bnb4_absmax_offset(w.data(), int64_t(w.size()), o_.blocksize);
      release_mapped_pages(t.weight.data, size_t(t.weight.nbytes));
    }
    return bnb4_layout(type_, o_.blocksize, o_.double_quant, offset, t.n_out, t.n_in,
                       torch_dtype(t.weight.type));
  }
  std::vector<SerializedTensor> encode(const LinearTensors& t, const std::vector<float>& w,
                                       QuantizeReport&) const override {
    Bnb4Quantized q = quantize_bnb4(w.data(), int64_t(w.size()), type_, o_.blocksize, o_.double_quant);
    return serialize_bnb4(q, t.n_out, t.n_in, torch_dtype(t.weight.type));
  }
  json quantization_config() const override { return bnb_quantization_config(o_, true); }

 private:
  QuantizeOptions o_;
  Bnb4Type type_;
};

class Int8Codec : public LinearCodec {
 public:
  explicit Int8Codec(const QuantizeOptions& o) : o_(o) {}
  Status check(const LinearTensors&) const override { return {}; }
  std::vector<SerializedTensor> layout(const LinearTensors& t) const override {
    return int8_layout(t.n_out, t.n_in);
  }
  std::vector<SerializedTensor> encode(const LinearTensors& t, const std::vector<float>& w,
                                       QuantizeReport&) const override {
    return serialize_int8(quantize_int8_rowwise(w.data(), t.n_out, t.n_in));
  }
  json quantization_config() const override { return bnb_quantization_config(o_, false); }

 private:
  QuantizeOptions o_;
};

// QuIP / QuIP# (io/quip_layout.h): the transformed weights' codes and the sign vectors.
class QuipCodec : public LinearCodec {
 public:
  explicit QuipCodec(const QuantizeOptions& o)
      : o_(o), lattice_(o.method == "quip#"), grid_(grid_options(o)) {}
  Status check(const LinearTensors& t) const override {
    QF_RETURN_IF_ERROR(check_quip_shape(t.n_out, t.n_in, lattice_, t.weight.name));
    return lattice_ ? Status{} : grid_.check(t);
  }
  std::vector<SerializedTensor> layout(const LinearTensors& t) const override {
    if (lattice_) return quip_e8_layout(t.n_out, t.n_in, o_.grid.bits);
    auto parts = grid_.layout(t);
    for (auto& s : serialize_signs(std::vector<float>(size_t(t.n_in)), std::vector<float>(size_t(t.n_out)))) {
      s.bytes.clear();
      parts.push_back(std::move(s));
    }
    return parts;
  }
  std::vector<SerializedTensor> encode(const LinearTensors& t, const std::vector<float>&,
                                       QuantizeReport&) const override {
    QF_CHECK(false, "{}: quip needs the calibrated path", t.weight.name);
    return {};
  }
  std::vector<SerializedTensor> encode_quip(const LinearTensors& t, const QuipQuantized& q,
                                            QuantizeReport& rep) const {
    if (lattice_) return serialize_quip_e8(q.e8, q.su, q.sv);
    auto parts = grid_.encode_int(t, q.grid, rep);
    for (auto& s : serialize_signs(q.su, q.sv)) parts.push_back(std::move(s));
    return parts;
  }
  json quantization_config() const override {
    json meta = {{"quantizer", "qforge"},
                 {"calibration_windows", o_.windows.size()},
                 {"calibration_seqlen", o_.windows.empty() ? 0 : o_.windows[0].size()},
                 {"damp_percent", o_.gptq.damp},
                 {"seed", o_.quip_seed}};
    if (!lattice_)
      return {{"quant_method", "quip"},
              {"bits", o_.grid.bits},
              {"group_size", -1},
              {"sym", false},
              {"hadamard", "randomized: Sylvester x Paley, signs SU/SV"},
              {"meta", meta}};
    const e8p::Scales sc = e8p::scales(o_.grid.bits);
    return {{"quant_method", "quip#"},
            {"codebook", quip_codebook_name(o_.grid.bits)},
            {"bits", o_.grid.bits},
            {"codesz", 8},
            {"opt_scale", sc.opt_scale},
            {"resid_scale", sc.resid_scale},
            {"idx_offset", -32768},
            {"hadamard", "randomized: Sylvester x Paley, signs SU/SV"},
            {"meta", meta}};
  }

 private:
  static QuantizeOptions grid_options(QuantizeOptions o) {  // quip's W̃: one asymmetric group per row
    o.grid.group = -1;
    o.grid.sym = false;
    return o;
  }
  QuantizeOptions o_;
  bool lattice_;
  GptqCodec grid_;
};

Status write_config(const std::string& src_dir, const std::string& dst_dir, const LinearCodec& codec,
                    bool untie) {
  QF_ASSIGN_OR_RETURN(auto text, read_text_file(src_dir + "/config.json"));
  json cfg = json::parse(text);
  cfg["quantization_config"] = codec.quantization_config();
  if (untie) cfg["tie_word_embeddings"] = false;
  return write_file_atomic(dst_dir + "/config.json", cfg.dump(2) + "\n");
}

// The method's codec, once every Linear (and a quantized head) is checked against it.
Expected<std::unique_ptr<LinearCodec>> make_codec(const Checkpoint& ck, const QuantizeOptions& opt) {
  if (ck.format != "hf")
    return error("{}: quantize reads Hugging Face directories (GGUF input is not supported yet)", ck.path);
  if (!ck.quant.method.empty())
    return error("{}: the checkpoint is already quantized ({})", ck.path, ck.quant.method);
  std::unique_ptr<LinearCodec> codec;
  if (opt.method == "awq" && opt.grid.bits == 4 && !opt.grid.sym)
    codec = std::make_unique<AwqCodec>(opt);
  else if (opt.method == "rtn" || opt.method == "gptq" || opt.method == "awq")
    codec = std::make_unique<GptqCodec>(opt);
  else if (opt.method == "nf4" || opt.method == "fp4")
    codec = std::make_unique<Bnb4Codec>(opt);
  else if (opt.method == "llm-int8")
    codec = std::make_unique<Int8Codec>(opt);
  else if (opt.method == "quip" || opt.method == "quip#")
    codec = std::make_unique<QuipCodec>(opt);
  else
    return error("--method {}: not available (supported: rtn, gptq, awq, nf4, fp4, llm-int8, quip, quip#)",
                 opt.method);
  for (const auto& L : ck.weights.layers)
    for (const char* kind : kLinearNames) QF_RETURN_IF_ERROR(codec->check(L.linear(kind)));
  if (opt.quantize_head) QF_RETURN_IF_ERROR(codec->check(ck.weights.output));
  return codec;
}

}  // namespace

Status check_quantizable(const Checkpoint& ck, const QuantizeOptions& opt) {
  return make_codec(ck, opt).status();
}

Status copy_side_files(const std::string& src_dir, const std::string& dst_dir, bool with_config) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(src_dir)) {
    std::string name = e.path().filename().string();
    if (!e.is_regular_file() || (name == "config.json" && !with_config) ||
        name == "model.safetensors.index.json" || e.path().extension() == ".safetensors" ||
        name == "golden.json" || e.path().extension() == ".gguf")
      continue;
    fs::copy_file(e.path(), dst_dir + "/" + name, ec);
    if (ec) return error("{}: cannot copy to {}: {}", e.path().string(), dst_dir, ec.message());
  }
  return {};
}

Expected<QuantizeReport> quantize_hf_checkpoint(const Checkpoint& ck, const QuantizeOptions& opt,
                                                const std::string& out_dir,
                                                const std::function<void(int64_t, int64_t)>& progress) {
  if (!opt.replace && fs::exists(out_dir))
    return error("{}: already exists; choose a new output folder", out_dir);
  QF_ASSIGN_OR_RETURN(auto codec, make_codec(ck, opt));
  const bool awq_layout = dynamic_cast<const AwqCodec*>(codec.get()) != nullptr;
  const bool gptq = opt.method == "gptq", quip = opt.method == "quip" || opt.method == "quip#";
  if ((gptq || quip) && opt.quantize_head)
    return error("--quantize-head: {} quantizes the decoder blocks only (use rtn for the head)", opt.method);
  if ((gptq || quip) && opt.windows.empty())
    return error("--method {} needs calibration windows (--calib)", opt.method);
  // One job per output tensor group: tensors copied as they are (in file order), then the
  // decoder-block Linears layer by layer in the order q, k, v, o, gate, up, down (the order
  // calibrated methods produce them), then a quantized head.
  struct Job {
    const TensorView* src;
    const LinearTensors* linear;  // null: copy
  };
  std::vector<Job> jobs, linear_jobs;
  std::map<std::string, const LinearTensors*> linears;  // weight name -> linear
  for (const auto& L : ck.weights.layers)
    for (const LinearTensors* t = L.linears; t != L.linears + kNumLinears; ++t) {
      linears[t->weight.name] = t;
      linear_jobs.push_back({&t->weight, t});
    }
  const bool untie = opt.quantize_head && ck.config.tied_embeddings;
  LinearTensors head = ck.weights.output;
  if (untie) head.prefix = "lm_head";
  if (opt.quantize_head) {
    linears[head.weight.name] = &head;
    linear_jobs.push_back({&head.weight, &head});
  }
  for (const auto& t : ck.all_tensors)
    if (!linears.count(t.name) || (untie && t.name == head.weight.name)) jobs.push_back({&t, nullptr});
  jobs.insert(jobs.end(), linear_jobs.begin(), linear_jobs.end());
  std::vector<SafetensorsWriter::Entry> entries;
  for (const auto& j : jobs) {
    if (!j.linear) {
      entries.push_back(
          {j.src->name, std::string(traits(j.src->type).name), j.src->shape});  // safetensors names match
      continue;
    }
    for (const auto& s : codec->layout(*j.linear))
      entries.push_back({j.linear->prefix + s.suffix, s.dtype, s.shape});
  }
  TempDir tmp{temporary_for(out_dir)};
  std::error_code ec;
  if (!fs::create_directories(tmp.path, ec)) return error("{}: cannot create: {}", tmp.path, ec.message());
  QF_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::create(tmp.path + "/model.safetensors", entries,
                                                             {{"format", "pt"}, {"quantizer", "qforge"}}));
  QuantizeReport rep;
  int64_t done = 0, quantized_bytes = 0;
  const auto write_linear = [&](const LinearTensors& t,
                                const std::vector<SerializedTensor>& parts) -> Status {
    for (const auto& s : parts) {
      QF_RETURN_IF_ERROR(writer->write(t.prefix + s.suffix, s.bytes.data(), s.bytes.size()));
      if (s.suffix != ".g_idx" && s.suffix != ".weight_format" &&
          s.suffix.find("quant_map") == std::string::npos &&
          s.suffix.find("quant_state") == std::string::npos)
        quantized_bytes += int64_t(s.bytes.size());  // codes, scales, zeros, absmax
    }
    rep.linears++;
    rep.quantized_params += t.n_out * t.n_in;
    if (progress) progress(++done, int64_t(jobs.size()));
    return {};
  };
  for (const auto& j : jobs) {
    const TensorView& t = *j.src;
    if (!j.linear) {
      QF_RETURN_IF_ERROR(writer->write(t.name, t.data, size_t(t.nbytes)));
      if (progress) progress(++done, int64_t(jobs.size()));
    } else if (!gptq && !quip) {
      QF_ASSIGN_OR_RETURN(auto w, t.to_f32_finite());
      QF_RETURN_IF_ERROR(write_linear(*j.linear, codec->encode(*j.linear, w, rep)));
    }
    release_mapped_pages(t.data, size_t(t.nbytes));
  }
  if (gptq) {
    const auto& int_codec = static_cast<const GptqCodec&>(*codec);
    QF_RETURN_IF_ERROR(calibrate_layerwise(
        ck, opt.windows, opt.true_sequential,
        [&](LinearJob& job) -> Expected<std::unique_ptr<Linear>> {
          const LinearTensors& t = *job.tensors;
          const Backend& be = *opt.backend;
          std::vector<int64_t> perm;
          if (opt.gptq.act_order) perm = act_order_permutation(diagonal(job.hessian, t.n_in));
          std::vector<float> w;  // on the host unless the device rounds the grid (W stays there)
          Buffer<float> wd;
          const bool on_device = be.on_device() && !opt.static_groups && !opt.grid.clip_mse;
          if (on_device) {
            QF_ASSIGN_OR_RETURN(wd, job.backend_weight());
          } else {
            QF_ASSIGN_OR_RETURN(w, job.host_weight());
          }
          IntRowGrid grid(opt.grid, t.n_out, t.n_in, perm, opt.static_groups ? w.data() : nullptr);
          QF_ASSIGN_OR_RETURN(GptqStats st,
                              on_device ? gptq_quantize(wd, t.n_out, t.n_in, std::move(job.hessian), opt.gptq,
                                                        grid, perm, t.weight.name)
                                        : gptq_quantize(w.data(), t.n_out, t.n_in, std::move(job.hessian),
                                                        opt.gptq, grid, perm, t.weight.name));
          rep.gptq_loss += st.loss;
          IntQuantized q = std::move(grid).result();
          {
            PhaseTimer pt("quantize: encode and write");
            QF_RETURN_IF_ERROR(write_linear(t, int_codec.encode_int(t, q, rep)));
          }
          PhaseTimer pt("quantize: the Linear that computes with it");
          // On a device: W holds s·(q − z), what the codes decode to (IntLinear rounds the same value in
          // another order, within an ulp of s·z: tests/gptq_test.cc)
          const std::vector<float> bias = t.bias.valid() ? t.bias.to_f32() : std::vector<float>{};
          if (on_device)
            return std::unique_ptr<Linear>(new BackendLinear(be, t.n_out, t.n_in, std::move(wd), bias,
                                                             /*stored_bytes=*/0));  // never reported
          if (be.on_device())
            return std::unique_ptr<Linear>(new BackendLinear(be, t.n_out, t.n_in, w, bias, 0));
          return std::unique_ptr<Linear>(new IntLinear(q, t.bias));
        },
        nullptr, *opt.backend));
  }
  if (quip) {
    const auto& quip_codec = static_cast<const QuipCodec&>(*codec);
    QuipSpec spec;
    spec.lattice = opt.method == "quip#";
    spec.bits = opt.grid.bits;
    spec.damp = opt.gptq.damp;
    spec.seed = opt.quip_seed;
    QF_RETURN_IF_ERROR(calibrate_layerwise(
        ck, opt.windows, opt.true_sequential,
        [&](LinearJob& job) -> Expected<std::unique_ptr<Linear>> {
          const LinearTensors& t = *job.tensors;
          QF_ASSIGN_OR_RETURN(auto w, job.host_weight());
          QF_ASSIGN_OR_RETURN(QuipQuantized q, quip_quantize(w.data(), t.n_out, t.n_in, job.hessian.to_host(),
                                                             spec, t.weight.name, *opt.backend));
          QF_RETURN_IF_ERROR(write_linear(t, quip_codec.encode_quip(t, q, rep)));
          return quip_linear(q, t.bias);
        },
        nullptr, *opt.backend));
  }
  QF_RETURN_IF_ERROR(writer->finish());
  QF_RETURN_IF_ERROR(copy_side_files(ck.path, tmp.path, false));
  QF_RETURN_IF_ERROR(write_config(ck.path, tmp.path, *codec, untie));
  rep.output_bytes = int64_t(fs::file_size(tmp.path + "/model.safetensors"));
  rep.body_bits_per_weight = 8.0 * double(quantized_bytes) / double(rep.quantized_params);
  if (opt.method == "rtn")
    rep.describe = opt.grid.describe() + " in the GPTQ layout";
  else if (opt.method == "awq")
    rep.describe = fmt::format(
        "AWQ {}, {} windows of {} tokens, in the {}", opt.grid.describe(), opt.windows.size(),
        opt.windows.empty() ? 0 : opt.windows[0].size(),
        awq_layout ? "AWQ layout" : "GPTQ layout (the AWQ layout holds 4-bit asymmetric codes only)");
  else if (gptq)
    rep.describe = fmt::format(
        "{}GPTQ {}{}{}, damp {}, {} windows of {} tokens, in the GPTQ layout",
        opt.awq_scaled ? "AWQ-scaled, " : "", opt.grid.describe(), opt.gptq.act_order ? " act-order" : "",
        opt.static_groups ? " static-groups" : "", opt.gptq.damp, opt.windows.size(), opt.windows[0].size());
  else if (quip)
    rep.describe = fmt::format(
        "{} {}-bit{} over randomized Hadamard transforms, damp {}, {} windows of {} tokens", opt.method,
        opt.grid.bits,
        opt.method == "quip#" ? fmt::format(" ({})", quip_codebook_name(opt.grid.bits)) : " (per-row grid)",
        opt.gptq.damp, opt.windows.size(), opt.windows[0].size());
  else if (opt.method == "llm-int8")
    rep.describe =
        fmt::format("LLM.int8() (outlier threshold {}) in the bitsandbytes layout", opt.int8_threshold);
  else
    rep.describe = fmt::format("{} blocksize {}{} in the bitsandbytes layout", opt.method, opt.blocksize,
                               opt.double_quant ? " double-quant" : "");
  if (opt.quantize_head)
    rep.describe += untie ? ", lm_head quantized (untied from the embedding)" : ", lm_head quantized";
  QF_RETURN_IF_ERROR(publish(tmp.path, out_dir, opt.replace));
  tmp.keep = true;
  return rep;
}

}  // namespace qf
