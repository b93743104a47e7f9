#include "quant/quantize_gguf.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "io/bpe_tokenizer.h"
#include "io/gguf_writer.h"
#include "model/layer_spec.h"
#include "model/rope.h"
#include "quant/calibration.h"

namespace qf {
namespace {

// llama.cpp's file types (enum llama_ftype) and the tensor type each starts from.
struct FileType {
  const char* name;
  int ftype;
  QType base;
};
constexpr FileType kFileTypes[] = {
    {"F32", 0, QType::F32},        {"F16", 1, QType::F16},      {"BF16", 32, QType::BF16},
    {"Q8_0", 7, QType::Q8_0},      {"Q4_0", 2, QType::Q4_0},    {"Q4_1", 3, QType::Q4_1},
    {"Q5_0", 8, QType::Q5_0},      {"Q5_1", 9, QType::Q5_1},    {"Q2_K", 10, QType::Q2_K},
    {"Q3_K_S", 11, QType::Q3_K},   {"Q3_K_M", 12, QType::Q3_K}, {"Q3_K_L", 13, QType::Q3_K},
    {"Q4_K_S", 14, QType::Q4_K},   {"Q4_K_M", 15, QType::Q4_K}, {"Q5_K_S", 16, QType::Q5_K},
    {"Q5_K_M", 17, QType::Q5_K},   {"Q6_K", 18, QType::Q6_K},   {"IQ4_NL", 25, QType::IQ4_NL},
    {"IQ4_XS", 30, QType::IQ4_XS},
};

// When a rule applies, by the tensor's index i among the n tensors of its kind (= its layer).
enum class When {
  Always,
  UseMoreBits,         // llama.cpp use_more_bits: i < n/8, i ≥ 7n/8, or every third layer between
  FirstSixteenth,      // i < n/16
  FirstEighth,         // i < n/8
  FirstEighthImatrix,  // i < n/8 and an imatrix is given
  FirstEighthNoImatrix,
  IndexBelow2,
  IndexBelow4,
  GqaAtLeast4,  // n_head / n_head_kv ≥ 4
};

// llama.cpp's llama_tensor_get_type, for the file types above: the first rule matching the
// file type and tensor kind wins; without one the tensor keeps the file type's base type.
struct MixRule {
  const char* file_type;
  const char* kind;  // attn_v, ffn_down, attn_output
  When when;
  QType type;
};
constexpr MixRule kMixRules[] = {
    {"Q2_K", "attn_v", When::GqaAtLeast4, QType::Q4_K},
    {"Q2_K", "attn_v", When::Always, QType::Q3_K},
    {"Q3_K_M", "attn_v", When::IndexBelow2, QType::Q5_K},
    {"Q3_K_M", "attn_v", When::Always, QType::Q4_K},
    {"Q3_K_L", "attn_v", When::Always, QType::Q5_K},
    {"Q4_K_M", "attn_v", When::UseMoreBits, QType::Q6_K},
    {"Q5_K_M", "attn_v", When::UseMoreBits, QType::Q6_K},
    {"Q4_K_S", "attn_v", When::IndexBelow4, QType::Q5_K},
    {"Q2_K", "ffn_down", When::Always, QType::Q3_K},
    {"Q3_K_M", "ffn_down", When::FirstSixteenth, QType::Q5_K},
    {"Q3_K_M", "ffn_down", When::Always, QType::Q4_K},
    {"Q3_K_L", "ffn_down", When::Always, QType::Q5_K},
    {"Q4_K_M", "ffn_down", When::UseMoreBits, QType::Q6_K},
    {"Q5_K_M", "ffn_down", When::UseMoreBits, QType::Q6_K},
    {"Q4_K_S", "ffn_down", When::FirstEighth, QType::Q5_K},
    {"Q4_0", "ffn_down", When::FirstEighthImatrix, QType::Q4_1},
    {"Q5_0", "ffn_down", When::FirstEighthImatrix, QType::Q5_1},
    {"IQ4_NL", "attn_v", When::GqaAtLeast4, QType::Q5_K},
    {"IQ4_XS", "attn_v", When::GqaAtLeast4, QType::Q5_K},
    {"IQ4_NL", "ffn_down", When::FirstEighthNoImatrix, QType::Q5_K},
    {"IQ4_XS", "ffn_down", When::FirstEighthNoImatrix, QType::Q5_K},
    {"Q2_K", "attn_output", When::Always, QType::Q3_K},
    {"Q3_K_M", "attn_output", When::Always, QType::Q4_K},
    {"Q3_K_L", "attn_output", When::Always, QType::Q5_K},
};

// llama.cpp's fallback when a row does not split into the type's blocks.
QType fallback(QType t) {
  switch (t) {
    case QType::Q2_K:
    case QType::Q3_K:
    case QType::IQ4_XS:
      return QType::IQ4_NL;
    case QType::Q4_K:
      return QType::Q5_0;
    case QType::Q5_K:
      return QType::Q5_1;
    case QType::Q6_K:
      return QType::Q8_0;
    default:
      return QType::F16;
  }
}

bool applies(When w, int i, int n, int n_gqa, bool has_imatrix) {
  switch (w) {
    case When::Always:
      return true;
    case When::UseMoreBits:
      return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
    case When::FirstSixteenth:
      return i < n / 16;
    case When::FirstEighth:
      return i < n / 8;
    case When::FirstEighthImatrix:
      return has_imatrix && i < n / 8;
    case When::FirstEighthNoImatrix:
      return !has_imatrix && i < n / 8;
    case When::IndexBelow2:
      return i < 2;
    case When::IndexBelow4:
      return i < 4;
    case When::GqaAtLeast4:
      return n_gqa >= 4;
  }
  return false;
}

bool is_quantized(QType t) { return traits(t).block > 1; }

// The tensor type llama.cpp's rules give `name` (a GGUF tensor name of a matrix).
QType mix_type(const FileType& ft, const std::string& name, const ModelConfig& c, bool has_imatrix) {
  QType t = ft.base;
  if (!is_quantized(t)) return t;
  if (name == "output.weight" || (c.tied_embeddings && name == "token_embd.weight"))
    return t == QType::Q8_0 ? t : QType::Q6_K;
  int layer = -1;
  char kind[32] = {};
  if (std::sscanf(name.c_str(), "blk.%d.%31[a-z_]", &layer, kind) != 2) return t;
  for (const auto& r : kMixRules)
    if (ft.name == std::string(r.file_type) && kind == std::string(r.kind) &&
        applies(r.when, layer, c.n_layer, c.n_head / c.n_head_kv, has_imatrix))
      return r.type;
  return t;
}

// mix_type, then llama.cpp's fallbacks until a row splits into the type's blocks (each noted).
QType matrix_type(const FileType& ft, const std::string& name, const ModelConfig& c, bool has_imatrix,
                  int64_t cols, std::vector<std::string>* fallbacks) {
  QType type = mix_type(ft, name, c, has_imatrix);
  for (QType want = type; cols % traits(type).block != 0; want = type) {
    type = fallback(type);
    if (fallbacks)
      fallbacks->push_back(fmt::format("{}: {} → {} (row length {} is not a multiple of {})", name,
                                       traits(want).name, traits(type).name, cols, traits(want).block));
  }
  return type;
}

const FileType* find_file_type(const std::string& name) {
  for (const auto& f : kFileTypes)
    if (name == f.name) return &f;
  return nullptr;
}

// LLaMA GGUFs store q/k rows so that RoPE pairs are adjacent (convert_hf_to_gguf's permute):
// row h·d + s·d/2 + i moves to h·d + 2i + s.
template <typename T>
std::vector<T> permute_rows(const std::vector<T>& w, int64_t rows, int64_t row_len, int head_dim) {
  std::vector<T> out(w.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = r / head_dim, j = r % head_dim, s = j / (head_dim / 2), i = j % (head_dim / 2);
    const int64_t to = h * head_dim + 2 * i + s;
    std::copy(w.begin() + r * row_len, w.begin() + (r + 1) * row_len, out.begin() + to * row_len);
  }
  return out;
}

// Position of a decoder-block matrix in calibration order ((layer, q k v o gate up down)), or
// -1 for any other tensor.
int64_t calibration_rank(const std::string& gguf_name) {
  int layer = -1, end = 0;
  char kind[32] = {};
  if (std::sscanf(gguf_name.c_str(), "blk.%d.%31[a-z_].weight%n", &layer, kind, &end) != 2 ||
      size_t(end) != gguf_name.size())
    return -1;
  const auto id = linear_id(kind);
  return id ? int64_t(layer) * kNumLinears + *id : -1;
}

const char* gguf_arch(const ModelConfig& c) { return arch_info(c.arch).gguf; }

// Whether llama.cpp's converter permutes this tensor's rows (LLaMA q/k: layer_spec's rope_rows).
bool permuted_in_gguf(const ModelConfig& c, const std::string& gguf_name) {
  if (!arch_info(c.arch).gguf_permutes_qk) return false;
  for (const LinearSpec& l : kBlockLinears)
    if (l.rope_rows && gguf_name.find(std::string(".") + l.name + ".") != std::string::npos) return true;
  return false;
}

// Pre-tokenizer name llama.cpp knows for a regex.
std::string pre_name(const std::string& regex) {
  for (const char* name : {"llama-bpe", "qwen2", "gpt-2"})
    if (pretokenizer_regex(name) == regex) return name;
  return "";
}

Status write_tokenizer(const Tokenizer& tok, GGUFWriter& w, const std::string& path) {
  const BpeSpec* spec = tok.bpe_spec();
  if (!spec)
    return error("{}: the tokenizer is a SentencePiece model file; GGUF export needs tokenizer.json", path);
  const bool spm = spec->mode == BpeSpec::Mode::SentencePiece;
  std::vector<int32_t> types(spec->tokens.size(), 1);  // llama_token_type: 1 normal
  std::vector<bool> split(spec->tokens.size(), false);
  for (int32_t id : spec->split_tokens) split[size_t(id)] = true;
  for (size_t i = 0; i < types.size(); ++i) {
    const std::string& t = spec->tokens[i];
    if (int32_t(i) == spec->unk_id)
      types[i] = 2;
    else if (spec->is_special[i])
      types[i] = 3;  // control
    else if (split[i])
      types[i] = 4;  // user-defined
    else if (spm && t.size() == 6 && t.rfind("<0x", 0) == 0 && t.back() == '>')
      types[i] = 6;  // byte
  }
  if (spm) {
    w.set_str("tokenizer.ggml.model", "llama");
  } else {
    std::string pre = pre_name(spec->regex);
    if (pre.empty())
      return error("{}: the pre-tokenizer regex has no llama.cpp name (known: llama-bpe, qwen2, gpt-2)",
                   path);
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", pre);
  }
  w.set_str_array("tokenizer.ggml.tokens", spec->tokens);
  if (spm) {
    std::vector<float> scores = spec->scores;
    if (scores.empty()) {  // merge ranks as SentencePiece scores: the earlier merge scores higher
      scores.assign(spec->tokens.size(), 0.0f);
      std::map<std::string, size_t> id_of;
      for (size_t i = 0; i < spec->tokens.size(); ++i) id_of[spec->tokens[i]] = i;
      for (size_t r = 0; r < spec->merges.size(); ++r) {
        auto it = id_of.find(spec->merges[r].first + spec->merges[r].second);
        if (it != id_of.end() && scores[it->second] == 0.0f) scores[it->second] = -float(r + 1);
      }
    }
    w.set_f32_array("tokenizer.ggml.scores", scores);
  }
  w.set_i32_array("tokenizer.ggml.token_type", types);
  if (!spm) {
    std::vector<std::string> merges;
    for (const auto& [a, b] : spec->merges) merges.push_back(a + " " + b);
    w.set_str_array("tokenizer.ggml.merges", merges);
  }
  if (spec->bos_id >= 0) w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(spec->bos_id));
  if (spec->eos_id >= 0) w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(spec->eos_id));
  if (spec->unk_id >= 0) w.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(spec->unk_id));
  // As llama.cpp's converter: add_bos_token only from tokenizer_config.json. (transformers may
  // add BOS through tokenizer.json's post-processor; llama.cpp's conversion does not record
  // that, and GGUF users' numbers are measured without it.)
  const std::string tc_path = path + "/tokenizer_config.json";
  if (std::filesystem::exists(tc_path)) {
    QF_ASSIGN_OR_RETURN(auto text, read_text_file(tc_path));
    auto tc = nlohmann::json::parse(text, nullptr, false);
    if (tc.is_object() && tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean())
      w.set_bool("tokenizer.ggml.add_bos_token", tc["add_bos_token"].get<bool>());
  }
  return {};
}

void write_hparams(const Checkpoint& ck, const FileType& ft, GGUFWriter& w) {
  const ModelConfig& c = ck.config;
  const std::string a = gguf_arch(c);
  w.set_str("general.architecture", a);
  w.set_str("general.type", "model");
  w.set_str("general.name", std::filesystem::path(ck.path).filename().string());
  w.set_u32(a + ".block_count", uint32_t(c.n_layer));
  w.set_u32(a + ".context_length", uint32_t(c.max_ctx));
  w.set_u32(a + ".embedding_length", uint32_t(c.n_embd));
  w.set_u32(a + ".feed_forward_length", uint32_t(c.n_ff));
  w.set_u32(a + ".attention.head_count", uint32_t(c.n_head));
  w.set_u32(a + ".attention.head_count_kv", uint32_t(c.n_head_kv));
  w.set_f32(a + ".rope.freq_base", c.rope_theta);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
  w.set_u32(a + ".attention.key_length", uint32_t(c.head_dim));
  w.set_u32(a + ".attention.value_length", uint32_t(c.head_dim));
  w.set_u32("general.file_type", uint32_t(ft.ftype));
  w.set_u32(a + ".vocab_size", uint32_t(c.vocab_size));
  w.set_u32(a + ".rope.dimension_count", uint32_t(c.head_dim));
  // RoPE scaling as convert_hf_to_gguf.py writes it: linear and yarn as keys, llama3 as the
  // rope_freqs.weight tensor (write_gguf adds it).
  const RopeScaling& r = c.rope;
  if (r.kind == RopeKind::Linear || r.kind == RopeKind::Yarn) {
    w.set_str(a + ".rope.scaling.type", rope_kind_name(r.kind));
    w.set_f32(a + ".rope.scaling.factor", r.factor);
  }
  if (r.kind == RopeKind::Yarn) {
    w.set_u32(a + ".rope.scaling.original_context_length",
              uint32_t(r.original_ctx > 0 ? r.original_ctx : c.max_ctx));
    if (r.attention_factor > 0) w.set_f32(a + ".rope.scaling.yarn_attn_factor", r.attention_factor);
    w.set_f32(a + ".rope.scaling.yarn_beta_fast", r.beta_fast);
    w.set_f32(a + ".rope.scaling.yarn_beta_slow", r.beta_slow);
  }
}

}  // namespace

std::string gguf_file_types() {
  std::string s;
  for (const auto& f : kFileTypes) s += (s.empty() ? "" : ", ") + std::string(f.name);
  return s;
}

bool is_gguf_file_type(const std::string& name) { return find_file_type(name) != nullptr; }

Expected<QType> gguf_matrix_type(const ModelConfig& c, const std::string& file_type,
                                 const std::string& gguf_name, int64_t cols, bool has_imatrix) {
  const FileType* ft = find_file_type(file_type);
  if (!ft) return error("--type {}: not a GGUF file type qforge writes ({})", file_type, gguf_file_types());
  return matrix_type(*ft, gguf_name, c, has_imatrix, cols, nullptr);
}

Expected<GgufReport> write_gguf(const Checkpoint& ck, const GgufOptions& opt, const std::string& out_path,
                                const std::function<void(int64_t, int64_t)>& progress) {
  if (ck.format != "hf") return error("{}: GGUF output reads Hugging Face directories", ck.path);
  if (!ck.quant.method.empty())
    return error("{}: the checkpoint is already quantized ({})", ck.path, ck.quant.method);
  const FileType* ft = find_file_type(opt.type);
  if (!ft) return error("--type {}: not a GGUF file type qforge writes ({})", opt.type, gguf_file_types());
  if (!opt.replace && std::filesystem::exists(out_path))
    return error("{}: already exists; choose a new output file", out_path);
  const ModelConfig& c = ck.config;
  if (c.rope.kind == RopeKind::Dynamic)
    return error(
        "{}: rope_type 'dynamic' has no llama.cpp equivalent; a GGUF file would compute another function",
        ck.path);
  // Tensors llama.cpp's converter generates: llama3 RoPE scaling as per-frequency factors.
  std::vector<TensorView> tensors = ck.all_tensors;
  if (c.rope.kind == RopeKind::Llama3)
    tensors.push_back(
        TensorView::owning_f32("rope_freqs.weight", {c.head_dim / 2}, llama3_rope_freq_factors(c)));
  GGUFWriter w(out_path, opt.replace);
  write_hparams(ck, *ft, w);
  QF_RETURN_IF_ERROR(write_tokenizer(*ck.tokenizer, w, ck.path));
  w.set_u32("general.quantization_version", 2);

  struct Plan {
    const TensorView* src;
    std::string name;
    QType type;
    bool permute;
    const std::vector<float>* imatrix;
  };
  std::vector<Plan> plan;
  GgufReport rep;
  // A matrix (rows, cols) in the plan's type, each row by the type's own quantizer.
  const auto round_rows = [](const Plan& p, const std::vector<float>& f, int64_t rows, int64_t cols) {
    const int64_t row_bytes = qtype_row_bytes(p.type, cols);
    std::vector<uint8_t> out(static_cast<size_t>(rows * row_bytes));
    const auto& tr = traits(p.type);
    const float* im = p.imatrix ? p.imatrix->data() : nullptr;
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r)
      tr.quantize_ref(f.data() + r * cols, out.data() + r * row_bytes, cols, im);
    return out;
  };
  for (const auto& t : tensors) {
    auto name = t.name == "rope_freqs.weight" ? std::optional<std::string>(t.name) : gguf_tensor_name(t.name);
    if (!name) return error("{}: tensor '{}' has no llama.cpp name", ck.path, t.name);
    Plan p{&t, *name, QType::F32, false, nullptr};
    if (t.shape.size() == 2) {
      auto im = opt.imatrix.find(*name);
      if (im != opt.imatrix.end()) {
        if (int64_t(im->second.size()) != t.cols())
          return error("imatrix entry '{}' has {} values, the tensor has {} columns", *name,
                       im->second.size(), t.cols());
        p.imatrix = &im->second;
      }
      p.type = matrix_type(*ft, *name, c, !opt.imatrix.empty(), t.cols(), &rep.fallbacks);
    }
    p.permute = permuted_in_gguf(c, *name);
    plan.push_back(p);
  }
  const bool gptq = !opt.gptq_windows.empty();
  if (gptq) {  // the block matrices last, in the order calibration produces them
    if (opt.gptq.act_order)
      return error("--act-order does not apply to GGUF types: their blocks are runs of consecutive columns");
    std::stable_sort(plan.begin(), plan.end(), [](const Plan& a, const Plan& b) {
      return calibration_rank(a.name) < calibration_rank(b.name);
    });
  }
  for (const Plan& p : plan) w.add_tensor(p.name, p.type, p.src->shape);
  int64_t done = 0;
  const auto finish_tensor = [&](const Plan& p) {
    release_mapped_pages(p.src->data, size_t(p.src->nbytes));
    rep.params += p.src->numel();
    rep.type_counts[std::string(traits(p.type).name)]++;
    if (progress) progress(++done, int64_t(plan.size()));
  };
  for (size_t k = 0; k < plan.size(); ++k) {
    const Plan& p = plan[k];
    const TensorView& t = *p.src;
    if (gptq && calibration_rank(p.name) >= 0) continue;
    QF_ASSIGN_OR_RETURN(auto f, t.to_f32_finite());
    if (p.permute) f = permute_rows(f, t.rows(), t.cols(), c.head_dim);
    const std::vector<uint8_t> out = round_rows(p, f, t.rows(), t.cols());
    QF_RETURN_IF_ERROR(w.write_tensor(p.name, out.data(), out.size()));
    finish_tensor(p);
  }
  if (gptq) {
    std::map<std::string, const Plan*> by_name;
    for (const Plan& p : plan) by_name[p.name] = &p;
    QF_RETURN_IF_ERROR(calibrate_layerwise(
        ck, opt.gptq_windows, opt.true_sequential,
        [&](LinearJob& job) -> Expected<std::unique_ptr<Linear>> {
          const Plan& p = *by_name.at(fmt::format("blk.{}.{}.weight", job.layer, job.kind));
          const LinearTensors& t = *job.tensors;
          std::vector<float> importance;  // the imatrix, else the Hessian's diagonal (the same statistic)
          if (p.imatrix)
            importance = *p.imatrix;
          else
            for (double v : diagonal(job.hessian, t.n_in)) importance.push_back(float(v));
          QF_ASSIGN_OR_RETURN(auto weight, job.host_weight());
          std::vector<uint8_t> rows;
          if (traits(p.type).pack_codes) {
            BlockRowGrid grid(p.type, t.n_out, t.n_in, importance.data());
            QF_ASSIGN_OR_RETURN(
                GptqStats st, gptq_quantize(weight.data(), t.n_out, t.n_in, std::move(job.hessian), opt.gptq,
                                            grid, {}, p.name));
            rep.gptq_loss += st.loss;
            rows = std::move(grid).result();
          } else {  // a fallback type with no codes to round (F16): stored as it is
            rows = round_rows(p, weight, t.n_out, t.n_in);
          }
          const int64_t row_bytes = qtype_row_bytes(p.type, t.n_in);
          const std::vector<uint8_t> stored =
              p.permute ? permute_rows(rows, t.n_out, row_bytes, c.head_dim) : rows;
          QF_RETURN_IF_ERROR(w.write_tensor(p.name, stored.data(), stored.size()));
          finish_tensor(p);
          // The rest of the calibration computes with exactly these blocks (in HF row order).
          return std::unique_ptr<Linear>(new StoredLinear(
              TensorView::owning(p.name, p.type, {t.n_out, t.n_in}, std::move(rows)), t.bias));
        },
        nullptr, *opt.backend));
  }
  QF_RETURN_IF_ERROR(w.finish());
  rep.file_bytes = int64_t(std::filesystem::file_size(out_path));
  rep.bits_per_weight = 8.0 * double(rep.file_bytes) / double(rep.params);
  return rep;
}

}  // namespace qf
