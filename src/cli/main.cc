// qforge — quantize LLMs and measure what it costs. Command-line entry point.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/commands.h"
#include "core/cleanup.h"
#include "core/text.h"
#include "core/threads.h"
#include "kernels/cpu/qmatvec.h"
#include "quant/method_spec.h"

namespace {
constexpr const char* kDeviceHelp =
    "where it computes: cpu, cuda (an NVIDIA GPU; an error without one) or auto (cuda when present)";
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qforge: load, run, quantize and measure LLaMA-family models"};
  app.require_subcommand(1);
  app.set_version_flag(
      "--version",
      fmt::format("qforge {} — SIMD target {} (Highway runtime dispatch), CUDA {}", QFORGE_VERSION,
                  qf::qmatvec_target(), QFORGE_HAS_CUDA ? "yes" : "no (built without QFORGE_CUDA)"));

  int threads = 0;
  app.add_option("-t,--threads", threads, "threads for BLAS and element-wise work (0 = all cores)")
      ->check(CLI::Range(0, 4096));

  qf::cli::InspectArgs ia;
  auto* inspect =
      app.add_subcommand("inspect", "architecture, shapes, dtypes, tokenizer and metadata of a model");
  inspect->add_option("path", ia.path, "HF model directory or .gguf file")->required();
  inspect->add_flag("--tensors", ia.tensors, "list every tensor");

  qf::cli::GenerateArgs ga;
  auto* generate = app.add_subcommand("generate", "greedy text generation");
  generate->add_option("model", ga.model, "HF model directory or .gguf file")->required();
  generate->add_option("-p,--prompt", ga.prompt, "prompt text (BOS is added by the tokenizer's rule)");
  generate->add_option("-n,--n-predict", ga.n_predict, "tokens to generate")->check(CLI::Range(1, 1 << 20));
  generate->add_flag("--allow-long-context", ga.allow_long_context,
                     "allow prompt + tokens beyond the model's trained context");
  generate->add_flag("--ignore-eos", ga.ignore_eos, "keep generating after the end-of-text token");

  qf::cli::EvalArgs ea;
  auto* eval = app.add_subcommand("eval", "perplexity under the canonical protocol");
  eval->add_option("model", ea.model, "HF model directory or .gguf file")->required();
  eval->add_option("--text", ea.text, "UTF-8 text file to score")->required();
  eval->add_option("--ctx", ea.ctx, "window length in tokens")->check(CLI::Range(2, 1 << 20));
  eval->add_option("--max-windows", ea.max_windows, "score at most N windows")
      ->check(CLI::Range(1LL, 1LL << 40));
  eval->add_flag("--allow-long-context", ea.allow_long_context,
                 "allow --ctx beyond the model's trained context");
  eval->add_flag("--json", ea.json, "print one JSON object");
  eval->add_option("--protocol", ea.protocol,
                   "canonical (every position) or llama.cpp (llama-perplexity: second half of each chunk)")
      ->check(CLI::IsMember({"canonical", "llama.cpp"}));
  eval->add_option("--base", ea.base,
                   "unquantized model: also report KL divergence and top-1 agreement against it");
  eval->add_option("--device", ea.device, kDeviceHelp)->check(CLI::IsMember({"cpu", "cuda", "auto"}));

  qf::cli::QuantizeArgs qa;
  auto* quantize =
      app.add_subcommand("quantize",
                         "quantize an HF checkpoint (rtn/gptq → GPTQ layout; awq → AWQ layout; "
                         "nf4/fp4/llm-int8 → bitsandbytes layout; quip/quip# → QuIP# layout; or GGUF)");
  quantize->add_option("model", qa.model, "HF model directory")->required();
  quantize->add_option("-o,--out", qa.out, "output directory or .gguf file (must not exist unless --force)")
      ->required();
  quantize->add_flag("--force", qa.force, "replace an existing output, once the new one is complete");
  std::string method_help = "quantization method:";
  for (const auto& m : qf::method_specs()) method_help += fmt::format(" {} → {};", m.name, m.writes);
  quantize->add_option("--method", qa.method, method_help)->check(CLI::IsMember(qf::method_names()));
  quantize->add_option(
      "--bits", qa.bits,
      "rtn/gptq/quip: bits per weight, 2..8 (GPTQ runtimes load 2, 3, 4, 8); quip#: 2, 3, 4");
  quantize->add_option("--group", qa.group, "group size along the input dimension, -1 = per output channel");
  quantize->add_flag("--sym", qa.sym, "symmetric grid (zero fixed at (maxq+1)/2)");
  quantize->add_option("--clip", qa.clip, "range clipping search")->check(CLI::IsMember({"none", "mse"}));
  quantize->add_option("--blocksize", qa.blocksize,
                       "nf4/fp4: weights per absmax block (power of two, 32..4096)");
  quantize->add_flag("--double-quant", qa.double_quant, "nf4/fp4: quantize the absmax values too (QLoRA)");
  quantize
      ->add_option("--int8-threshold", qa.int8_threshold,
                   "llm-int8: activation outlier threshold, 0 = plain W8A8 (default 6.0)")
      ->check(CLI::NonNegativeNumber);
  quantize->add_flag("--quantize-head", qa.quantize_head, "quantize lm_head too (a tied head is untied)");
  quantize
      ->add_option("--format", qa.format, "output: hf (a checkpoint directory) or gguf (one llama.cpp file)")
      ->check(CLI::IsMember({"hf", "gguf"}));
  quantize->add_option("--type", qa.type,
                       "gguf: llama.cpp file type (Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K, ...)");

  quantize->add_option("--calib", qa.calib, "gptq/awq: calibration text (UTF-8)");
  quantize->add_option("--nsamples", qa.nsamples, "gptq/awq: calibration windows (default 128)")
      ->check(CLI::Range(1, 1 << 20));
  quantize->add_option("--seqlen", qa.seqlen, "gptq/awq: tokens per calibration window (default 512)")
      ->check(CLI::Range(2, 1 << 20));
  quantize->add_option("--seed", qa.seed,
                       "gptq/awq/quip: seed of the window draw (Python random.Random(seed), default 0); "
                       "quip: also of the sign vectors");
  quantize
      ->add_option("--damp", qa.damp,
                   "gptq/quip: Hessian damping as a fraction of its mean diagonal (default 0.01)")
      ->check(CLI::Range(1e-6, 1.0));
  quantize->add_flag("--act-order", qa.act_order,
                     "gptq: quantize columns by decreasing Hessian diagonal (desc_act)");
  quantize->add_flag("--static-groups", qa.static_groups,
                     "gptq: fit group grids up front from the unmodified weights");
  quantize->add_flag("--true-sequential,!--no-true-sequential", qa.true_sequential,
                     "gptq: re-run the block between q/k/v, o, gate/up and down (default on)");
  quantize->add_flag("--duo-scaling", qa.duo_scaling,
                     "awq: scales from activations and weights, x̄^α / w̄^(1−α)");
  quantize->add_flag("--awq-clip,!--no-awq-clip", qa.awq_clip,
                     "awq: search per-group clipping ranges (default on)");
  quantize->add_option(
      "--imatrix", qa.imatrix,
      "gguf: importance matrix (llama.cpp .dat format, from qforge imatrix or llama-imatrix)");
  quantize
      ->add_option("--device", qa.device, std::string("gptq/quip (and GPTQ-rounded GGUF): ") + kDeviceHelp)
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));

  qf::cli::ImatrixArgs ma;
  auto* imatrix = app.add_subcommand(
      "imatrix", "importance matrix (mean x² per Linear input column) in llama.cpp's format");
  imatrix->add_option("model", ma.model, "HF model directory or .gguf file")->required();
  imatrix->add_option("--calib", ma.calib, "calibration text (UTF-8)")->required();
  imatrix->add_option("-o,--out", ma.out, "output file (.dat; must not exist unless --force)")->required();
  imatrix->add_flag("--force", ma.force, "replace an existing output, once the new one is complete");
  imatrix->add_option("--ctx", ma.ctx, "chunk length in tokens")->check(CLI::Range(2, 1 << 20));
  imatrix->add_option("--chunks", ma.chunks, "use at most N chunks")->check(CLI::Range(1LL, 1LL << 40));
  imatrix->add_option("--device", ma.device, kDeviceHelp)->check(CLI::IsMember({"cpu", "cuda", "auto"}));

  qf::cli::ConvertArgs ca;
  auto* convert = app.add_subcommand("convert", "write an HF checkpoint as a GGUF file llama.cpp loads");
  convert->add_option("model", ca.model, "HF model directory")->required();
  convert->add_option("-o,--out", ca.out, "output .gguf file (must not exist unless --force)")->required();
  convert->add_flag("--force", ca.force, "replace an existing output, once the new one is complete");
  convert->add_option("--type", ca.type, "tensor type of the matrices")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}, CLI::ignore_case));

  qf::cli::BenchArgs ba;
  auto* bench = app.add_subcommand("bench", "prompt and generation tokens/s, measured like llama-bench");
  bench->add_option("model", ba.model, "HF model directory or .gguf file")->required();
  bench->add_option("--prompt", ba.n_prompt, "prompt tokens (one batch)")->check(CLI::Range(1, 1 << 16));
  bench->add_option("--gen", ba.n_gen, "generated tokens (one at a time)")->check(CLI::Range(1, 1 << 16));
  bench->add_option("--reps", ba.reps, "repetitions after one warm-up")->check(CLI::Range(1, 1000));
  bench->add_flag("--json", ba.json, "print one JSON object");
  bench->add_option("--threads", threads, "threads (the same as -t before the command)")
      ->check(CLI::Range(0, 4096));

  qf::cli::CompareArgs cm;
  auto* compare = app.add_subcommand(
      "compare", "quantize one model with every method, measure each under one protocol, write one report");
  compare->add_option("model", cm.model, "unquantized HF model directory")->required();
  compare->add_option("--calib", cm.calib, "calibration text (GPTQ, AWQ, importance matrix)");
  compare->add_option("--text", cm.text, "evaluation text (perplexity, KL divergence, top-1 agreement)")
      ->required();
  compare->add_option(
      "--methods", cm.methods,
      "comma-separated jobs, or 'default' (baseline, rtn-w8, rtn-w4g128, nf4, nf4-dq, llm-int8, gptq-w4g128, "
      "gptq-w3g128, gptq-w2g64, awq-w4g128, q8_0, q6_k, q5_k_m, q4_k_m, q4_0, iq4_xs, q3_k_m, q2_k, "
      "gptq-q4_k_m, gptq-q3_k_m)");
  compare->add_option("-o,--out", cm.out,
                      "report folder (default: MODEL-compare); quantized models go to its models/");
  compare->add_option("--ctx", cm.ctx, "evaluation window length in tokens")->check(CLI::Range(2, 1 << 20));
  compare->add_option("--max-windows", cm.max_windows, "score at most N evaluation windows")
      ->check(CLI::Range(1LL, 1LL << 40));
  compare->add_option("--nsamples", cm.nsamples, "calibration windows (GPTQ, AWQ; importance-matrix chunks)")
      ->check(CLI::Range(1, 1 << 20));
  compare->add_option("--seqlen", cm.seqlen, "tokens per calibration window")->check(CLI::Range(2, 1 << 20));
  compare->add_option("--prompt", cm.prompt, "bench: prompt tokens")->check(CLI::Range(1, 1 << 16));
  compare->add_option("--gen", cm.gen, "bench: generated tokens")->check(CLI::Range(1, 1 << 16));
  compare->add_option("--reps", cm.reps, "bench: repetitions")->check(CLI::Range(1, 1000));
  compare
      ->add_option("--max-memory", cm.max_memory_gib,
                   "GiB a job may use by qforge's estimate (default: MemAvailable)")
      ->check(CLI::PositiveNumber);
  compare->add_flag("--resume", cm.resume, "keep the jobs already in OUT/report.json, run the rest");

  auto* formats = app.add_subcommand(
      "formats", "every storage format qforge reads and writes: GGUF block types and HF layouts");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::string what = e.what();
    if (app.get_subcommands().empty()) {  // no command given, or one that does not exist
      std::string commands, word;
      for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
        commands += (commands.empty() ? "" : ", ") + sub->get_name();
      for (int i = 1; i < argc && word.empty(); ++i)
        if (argv[i][0] != '-' &&
            !(i > 1 && (std::string(argv[i - 1]) == "-t" || std::string(argv[i - 1]) == "--threads")))
          word = argv[i];
      what = word.empty() ? "a command is required: " + commands
                          : fmt::format("unknown command '{}' (commands: {})", word, commands);
    }
    std::fprintf(stderr, "qforge: error: %s (see qforge --help)\n", qf::printable(what).c_str());
    return 1;
  }
  qf::set_num_threads(threads);
  qf::install_signal_cleanup();
  qf::Status st;
  if (*inspect)
    st = qf::cli::run_inspect(ia);
  else if (*generate)
    st = qf::cli::run_generate(ga);
  else if (*eval)
    st = qf::cli::run_eval(ea);
  else if (*bench)
    st = qf::cli::run_bench(ba);
  else if (*convert)
    st = qf::cli::run_convert(ca);
  else if (*imatrix)
    st = qf::cli::run_imatrix(ma);
  else if (*compare)
    st = qf::cli::run_compare(cm);
  else if (*formats)
    st = qf::cli::run_formats();
  else if (*quantize) {
    std::vector<std::string> options = qf::method_option_names();
    for (const char* name : {"--bits", "--method", "--type", "--imatrix", "--quantize-head"})
      options.emplace_back(name);
    for (const auto& name : options)
      if (quantize->count(name) > 0) qa.given.push_back(name);
    st = qf::cli::run_quantize(qa);
  }
  if (!st.ok()) {
    std::fprintf(stderr, "qforge: error: %s\n", qf::printable(st.message()).c_str());
    return 1;
  }
  return 0;
}
