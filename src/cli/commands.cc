#include "cli/commands.h"

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include "core/cleanup.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "core/text.h"
#include "core/threads.h"
#include "eval/perplexity.h"
#include "io/gguf.h"
#include "kernels/cpu/qmatvec.h"
#include "kernels/select_backend.h"
#include "model/checkpoint.h"
#include "model/hf_layouts.h"
#include "model/rope.h"
#include "model/transformer.h"
#include "quant/imatrix.h"
#include "quant/method_spec.h"
#include "quant/pipeline.h"

namespace qf::cli {
namespace {

void print_tensors(const std::vector<TensorView>& tensors, bool list) {
  std::map<std::string, std::pair<int64_t, int64_t>> by_type;  // type -> (count, params)
  int64_t params = 0, bytes = 0;
  for (const auto& t : tensors) {
    auto& e = by_type[std::string(traits(t.type).name)];
    e.first++;
    e.second += t.numel();
    params += t.numel();
    bytes += t.nbytes;
    if (list) fmt::print("  {:<48} {:<6} {}\n", printable(t.name), traits(t.type).name, t.shape_str());
  }
  fmt::print("parameters:   {} ({:.2f} M), {:.2f} MiB of weights\n", params, params / 1e6, bytes / 1048576.0);
  for (const auto& [type, e] : by_type)
    fmt::print("  {:<6} {} tensors, {} params\n", type, e.first, e.second);
}

// GGUF header, metadata and tensor table, readable even when qforge cannot run the file.
Status inspect_gguf(const InspectArgs& a) {
  QF_ASSIGN_OR_RETURN(auto g, GGUFFile::open(a.path));
  fmt::print("file:         {} (GGUF v{}, alignment {})\n", printable(a.path), g.version(), g.alignment());
  fmt::print("metadata:     {} keys\n", g.metadata().size());
  for (const auto& [k, v] : g.metadata())
    fmt::print("  {:<44} {}\n", printable(k), printable(v.to_display()));
  std::map<std::string, int> types;
  for (const auto& info : g.tensor_infos()) {
    types[std::string(ggml_type_name(info.ggml_type))]++;
    if (a.tensors) {
      std::string dims;
      for (auto d : info.ne) dims += (dims.empty() ? "" : "x") + std::to_string(d);
      fmt::print("  {:<40} {:<8} ne={}\n", printable(info.name), ggml_type_name(info.ggml_type), dims);
    }
  }
  fmt::print("tensors:      {}", g.tensor_infos().size());
  for (const auto& [t, n] : types) fmt::print("  {}×{}", n, t);
  fmt::print("\n");
  return {};
}

void print_config(const Checkpoint& ck) {
  const auto& c = ck.config;
  fmt::print("format:       {}\n", ck.format == "hf" ? "Hugging Face directory" : "GGUF");
  fmt::print("architecture: {} ({})\n", printable(c.arch_name), arch_label(c.arch));
  fmt::print("shape:        {} layers, hidden {}, MLP {}, heads {} / kv heads {}, head_dim {}, vocab {}\n",
             c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.vocab_size);
  fmt::print("norm/rope:    RMSNorm eps {:g}, RoPE theta {:g} ({} pairs), max ctx {}\n", c.rms_eps,
             c.rope_theta, c.rope_interleaved ? "interleaved" : "half-split", c.max_ctx);
  fmt::print("options:      tied embeddings {}, q/k/v bias {}, o bias {}, stored dtype {}\n",
             c.tied_embeddings ? "yes" : "no", c.qkv_bias ? "yes" : "no", c.o_bias ? "yes" : "no",
             printable(c.source_dtype));
  fmt::print("tokenizer:    {}\n", printable(ck.tokenizer->describe()));
}

// Positions beyond the trained context (max_position_embeddings, which already includes any RoPE
// scaling the config declares): refused, or allowed with a warning that says so.
Status check_context(const ModelConfig& c, int64_t positions, const char* what, bool allow) {
  if (positions <= c.max_ctx) return {};
  if (!allow)
    return error(
        "{} is {} positions, beyond the model's trained context of {} (RoPE {}); --allow-long-context to run "
        "anyway",
        what, positions, c.max_ctx, rope_kind_name(c.rope.kind));
  fmt::print(stderr,
             "warning: {} positions exceed the trained context of {}; RoPE '{}' does not cover them, expect "
             "worse output\n",
             positions, c.max_ctx, rope_kind_name(c.rope.kind));
  return {};
}

}  // namespace

int64_t model_file_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) return int64_t(fs::file_size(path));
  int64_t total = 0;
  for (const auto& e : fs::directory_iterator(path))
    if (e.path().extension() == ".safetensors") total += int64_t(e.file_size());
  return total;
}

Status run_inspect(const InspectArgs& a) {
  bool gguf = !std::filesystem::is_directory(a.path);
  if (gguf) QF_RETURN_IF_ERROR(inspect_gguf(a));
  QF_ASSIGN_OR_RETURN(auto ck, load_checkpoint(a.path));
  print_config(ck);
  if (!gguf) {
    fmt::print("config.json:\n");
    for (const auto& [k, v] : ck.metadata) fmt::print("  {:<32} {}\n", printable(k), printable(v));
  }
  print_tensors(ck.all_tensors, a.tensors);
  return {};
}

Status run_generate(const GenerateArgs& a) {
  QF_RETURN_IF_ERROR(check_utf8(a.prompt, "--prompt"));
  QF_ASSIGN_OR_RETURN(auto ck, load_checkpoint_logged(a.model));
  QF_ASSIGN_OR_RETURN(auto tf, Transformer::create(ck));
  const auto& tok = *ck.tokenizer;
  std::vector<int32_t> ids = tok.encode(a.prompt, true);
  if (ids.empty()) {
    if (tok.bos_id() < 0) return error("--prompt is empty and the tokenizer has no BOS token to start from");
    ids.push_back(tok.bos_id());
  }
  const int n_ctx = int(ids.size()) + a.n_predict;
  QF_RETURN_IF_ERROR(check_context(tf->config(), n_ctx, "prompt + --n-predict", a.allow_long_context));
  KVCache cache = tf->new_cache(n_ctx);
  std::vector<float> logits(size_t(tf->config().vocab_size));
  auto argmax = [&] { return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin()); };
  fmt::print("{}", a.prompt);
  auto t0 = std::chrono::steady_clock::now();
  tf->forward(ids.data(), int(ids.size()), cache, logits.data(), true);
  double prompt_s = seconds_since(t0);
  // The text is the decoded prompt + continuation, printed past the decoded prompt: decoding the
  // continuation alone would drop a SentencePiece word's leading space ("Once upon a time" +
  // "▁was" is "... time was"). Only whole UTF-8 characters are printed; byte tokens may pair up.
  std::vector<int32_t> all = ids;
  std::string shown = tok.decode(all);
  int generated = 0;
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < a.n_predict; ++i) {
    if (!std::all_of(logits.begin(), logits.end(), [](float v) { return std::isfinite(v); }))
      return error(
          "{}: the model's logits are not finite after {} tokens: a weight, scale or norm is NaN/Inf or "
          "overflows{}",
          a.model, all.size(), non_finite_weight(ck));
    int32_t next = argmax();
    if (next == tok.eos_id() && !a.ignore_eos) break;
    all.push_back(next);
    ++generated;
    std::string text = tok.decode(all);
    if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
      const size_t whole = shown.size() + complete_utf8_prefix(std::string_view(text).substr(shown.size()));
      fmt::print("{}", text.substr(shown.size(), whole - shown.size()));
      std::fflush(stdout);
      shown = text.substr(0, whole);
    }
    if (i + 1 < a.n_predict) tf->forward(&next, 1, cache, logits.data(), true);
  }
  if (tok.decode(all).size() > shown.size())
    fmt::print("\uFFFD");  // an unfinished character, as HF decodes it
  double gen_s = seconds_since(t0);
  fmt::print("\n");
  std::fflush(stdout);  // the statistics below go to stderr, after the text
  std::fprintf(stderr, "prompt: %zu tokens, %.1f tokens/s; generated: %zu tokens, %.1f tokens/s\n",
               ids.size(), ids.size() / prompt_s, size_t(generated), generated / std::max(gen_s, 1e-9));
  return {};
}

// The format registry: formats/qtype.h's rows (GGUF block types and the kernel forms) and
// model/hf_layouts.h's checkpoint layouts.
Status run_formats() {
  fmt::print("{:<8} {:>8} {:>6} {:>6} {:>8}  {}\n", "type", "ggml id", "block", "bytes", "bits/w", "qforge");
  for (int i = 0; i <= int(QType::BNB4); ++i) {
    const auto& tr = traits(QType(i));
    if (tr.block == 1 && tr.type != QType::F32 && tr.type != QType::F16 && tr.type != QType::BF16)
      continue;  // raw integers
    const bool kernel_form = tr.ggml_id < 0;
    fmt::print("{:<8} {:>8} {:>6} {:>6} {:>8.4f}  {}\n", tr.name,
               kernel_form ? std::string("-") : std::to_string(tr.ggml_id), tr.block, tr.bytes_per_block,
               tr.bits_per_weight(),
               kernel_form       ? "kernel form of the HF layouts (+ scales beside)"
               : tr.quantize_ref ? "read, write"
                                 : "read");
  }
  fmt::print("\nHF layouts (config.json quantization_config):\n");
  for (const auto& l : hf_layouts())
    fmt::print("{:<6} {}\n       runs as {}; written by --method {}\n", l.method, l.geometry, l.kernel,
               l.written_by);
  return {};
}

Status run_convert(const ConvertArgs& a) { return write_gguf_file(a.model, a.out, a.type, a.force); }

Status run_imatrix(const ImatrixArgs& a) {
  QF_RETURN_IF_ERROR(check_new_output(a.out, {a.model, a.calib}, OutputKind::File, a.force));
  QF_ASSIGN_OR_RETURN(auto text, read_text_file(a.calib));
  QF_RETURN_IF_ERROR(check_utf8(text, a.calib));
  QF_ASSIGN_OR_RETURN(auto ck, load_checkpoint_logged(a.model));
  QF_ASSIGN_OR_RETURN(const Backend* be, select_backend(a.device));
  QF_ASSIGN_OR_RETURN(auto tf, Transformer::create(ck, *be));
  const std::vector<int32_t> tokens = ck.tokenizer->encode(text, true);
  if (int64_t(tokens.size()) < a.ctx)
    return error("{}: {} tokens, fewer than one chunk of --ctx {}", a.calib, tokens.size(), a.ctx);
  ProgressBar bar("imatrix");
  auto t0 = std::chrono::steady_clock::now();
  const int32_t bos = ck.tokenizer->adds_bos() ? ck.tokenizer->bos_id() : -1;
  QF_ASSIGN_OR_RETURN(auto im, compute_imatrix(*tf, tokens, a.ctx, a.chunks, bos,
                                               [&](int64_t d, int64_t t) { bar.update(d, t); }));
  im.dataset = a.calib;
  QF_RETURN_IF_ERROR(write_imatrix(im, a.out, a.force));
  fmt::print("wrote {}: {} entries from {} chunks of {} tokens ({} tokens), {:.1f}s\n", a.out,
             im.mean_sq.size(), im.chunks, a.ctx, int64_t(im.chunks) * a.ctx, seconds_since(t0));
  return {};
}

Status run_quantize(const QuantizeArgs& a) { return quantize_model(a); }

Status run_eval(const EvalArgs& a) {
  QF_ASSIGN_OR_RETURN(auto text, read_text_file(a.text));
  QF_RETURN_IF_ERROR(check_utf8(text, a.text));
  QF_ASSIGN_OR_RETURN(auto ck, load_checkpoint_logged(a.model));
  QF_RETURN_IF_ERROR(check_context(ck.config, a.ctx, "--ctx", a.allow_long_context));
  QF_ASSIGN_OR_RETURN(const Backend* be, select_backend(a.device));
  QF_ASSIGN_OR_RETURN(auto tf, Transformer::create(ck, *be));
  std::optional<Checkpoint> base_ck;
  std::unique_ptr<Transformer> base_tf;
  if (!a.base.empty()) {
    QF_ASSIGN_OR_RETURN(base_ck, load_checkpoint_logged(a.base));
    QF_ASSIGN_OR_RETURN(base_tf, Transformer::create(*base_ck, *be));
  }
  // With --base the base model's tokenizer is the protocol's: both models score the same ids.
  // The quantized file's own tokenizer must agree with it on a prefix of the text, up to whether
  // it adds BOS (GGUF files converted without tokenizer.ggml.add_bos_token, llama.cpp's too,
  // drop the HF post-processor's BOS).
  auto t0 = std::chrono::steady_clock::now();
  const Tokenizer& tok = base_ck ? *base_ck->tokenizer : *ck.tokenizer;
  std::vector<int32_t> tokens = tok.encode(text, true);
  if (base_ck) {
    size_t cut = std::min<size_t>(text.size(), 4096);
    while (cut > 0 && cut < text.size() && (uint8_t(text[cut]) & 0xC0) == 0x80) --cut;
    const std::string head = text.substr(0, cut);
    if (base_ck->tokenizer->encode(head, false) != ck.tokenizer->encode(head, false))
      return error("--base {} tokenizes the text differently from {}", a.base, a.model);
  }
  info("tokenized {}: {} tokens in {:.2f}s", a.text, tokens.size(), seconds_since(t0));
  if (int64_t(tokens.size()) < a.ctx)
    return error("{}: {} tokens, fewer than one window of --ctx {}", a.text, tokens.size(), a.ctx);
  ProgressBar bar("perplexity");
  PerplexityOptions opt;
  opt.ctx = a.ctx;
  opt.max_windows = a.max_windows;
  if (a.protocol == "llama.cpp") {
    opt.second_half = true;
    if (tok.adds_bos()) opt.first_token = tok.bos_id();
  }
  opt.on_window = [&](int64_t d, int64_t t) { bar.update(d, t); };
  auto scored = perplexity(*tf, tokens, opt, base_tf.get());
  if (!scored.ok() && scored.status().message().find("not finite") != std::string::npos)  // name the culprit
    return error("{}{}{}", scored.status().message(), non_finite_weight(ck),
                 base_ck ? non_finite_weight(*base_ck) : "");
  if (!scored.ok()) return scored.status();
  const PerplexityResult& r = *scored;
  const double bpw = tf->body_bits_per_weight();
  const int64_t file_bytes = model_file_bytes(a.model);
  if (a.json) {
    nlohmann::json j = {{"model", a.model},
                        {"text", a.text},
                        {"protocol", a.protocol},
                        {"ctx", r.ctx},
                        {"n_tokens", r.n_tokens},
                        {"windows", r.windows},
                        {"scored", r.scored},
                        {"ppl", r.ppl},
                        {"mean_nll", r.mean_nll},
                        {"seconds", r.seconds},
                        {"tokens_per_second", r.tokens_per_second},
                        {"threads", num_threads()},
                        {"device", be->name()},
                        {"peak_device_bytes", device_memory().peak_used},
                        {"file_bytes", file_bytes},
                        {"body_bits_per_weight", bpw}};
    if (r.has_base) {
      j["base"] = a.base;
      j["base_ppl"] = r.base_ppl;
      j["kld"] = r.kld;
      j["top1"] = r.top1;
    }
    fmt::print("{}\n",
               j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));  // paths need not be UTF-8
  } else {
    fmt::print(
        "perplexity {:.6f} (mean NLL {:.6f}) — {} protocol, ctx {}, {} windows, {} scored of {} tokens, "
        "{:.1f}s, {:.0f} tokens/s\n",
        r.ppl, r.mean_nll, a.protocol, r.ctx, r.windows, r.scored, r.n_tokens, r.seconds,
        r.tokens_per_second);
    if (r.has_base)
      fmt::print("against {}: base perplexity {:.6f}, KL divergence {:.6f}, top-1 agreement {:.2f} %\n",
                 a.base, r.base_ppl, r.kld, 100 * r.top1);
    fmt::print("size: {} bytes of weight files, {:.3f} bits per weight in the decoder blocks\n", file_bytes,
               bpw);
    if (be->on_device())
      fmt::print("device: {}, peak device memory in use {:.2f} GiB\n", be->name(),
                 double(device_memory().peak_used) / (1 << 30));
  }
  return {};
}

}  // namespace qf::cli

namespace qf::cli {
namespace {

struct MeanStd {
  double mean = 0, stdev = 0, median = 0;
};
MeanStd mean_std(std::vector<double> xs) {
  MeanStd r;
  for (double x : xs) r.mean += x / double(xs.size());
  for (double x : xs) r.stdev += (x - r.mean) * (x - r.mean);
  r.stdev = xs.size() > 1 ? std::sqrt(r.stdev / double(xs.size() - 1)) : 0.0;
  std::sort(xs.begin(), xs.end());
  const size_t n = xs.size();
  r.median = n == 0 ? 0 : n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
  return r;
}

}  // namespace

// Like llama-bench: pp = one batch of n_prompt tokens from an empty cache (logits of the last
// position only); tg = n_gen tokens decoded one at a time from an empty cache. Token ids are
// a fixed pseudo-random sequence. One warm-up run of each, then `reps` timed runs.
Status run_bench(const BenchArgs& a) {
  QF_ASSIGN_OR_RETURN(auto ck, load_checkpoint_logged(a.model));
  QF_ASSIGN_OR_RETURN(auto tf, Transformer::create(ck));
  const int vocab = tf->config().vocab_size;
  std::vector<int32_t> tokens(size_t(std::max(a.n_prompt, a.n_gen)));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7919 + 3) % size_t(vocab));
  KVCache cache = tf->new_cache(std::max(a.n_prompt, a.n_gen));
  std::vector<float> logits(static_cast<size_t>(vocab));
  auto time_prompt = [&] {
    cache.clear();
    auto t0 = std::chrono::steady_clock::now();
    tf->forward(tokens.data(), a.n_prompt, cache, logits.data(), true);
    return a.n_prompt / seconds_since(t0);
  };
  auto time_gen = [&] {
    cache.clear();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < a.n_gen; ++i) tf->forward(&tokens[size_t(i)], 1, cache, logits.data(), true);
    return a.n_gen / seconds_since(t0);
  };
  time_prompt();
  time_gen();
  std::vector<double> pp, tg;
  for (int r = 0; r < a.reps; ++r) pp.push_back(time_prompt());
  for (int r = 0; r < a.reps; ++r) tg.push_back(time_gen());
  auto p = mean_std(pp), g = mean_std(tg);
  if (a.json) {
    nlohmann::json j = {{"engine", "qforge"},
                        {"model", a.model},
                        {"threads", num_threads()},
                        {"prompt", a.n_prompt},
                        {"gen", a.n_gen},
                        {"reps", a.reps},
                        {"prompt_tps", p.mean},
                        {"prompt_tps_stdev", p.stdev},
                        {"prompt_tps_median", p.median},
                        {"prompt_tps_samples", pp},
                        {"gen_tps", g.mean},
                        {"gen_tps_stdev", g.stdev},
                        {"gen_tps_median", g.median},
                        {"gen_tps_samples", tg},
                        {"isa", qmatvec_target()},
                        {"weight_bytes_per_token", tf->weight_bytes_per_token()}};
    fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } else {
    fmt::print(
        "{}: {} threads, SIMD target {}\n  pp{}: {:.1f} ± {:.1f} tokens/s (median {:.1f})\n"
        "  tg{}: {:.1f} ± {:.1f} tokens/s (median {:.1f})\n  weight bytes read per generated token: {:.1f} "
        "MB\n",
        a.model, num_threads(), qmatvec_target(), a.n_prompt, p.mean, p.stdev, p.median, a.n_gen, g.mean,
        g.stdev, g.median, tf->weight_bytes_per_token() / 1e6);
  }
  return {};
}

}  // namespace qf::cli
