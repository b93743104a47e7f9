// cli/commands.h — one function per `qforge` sub-command. Each returns a Status; main() turns
// a failure into one line on stderr and exit code 1.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "quant/pipeline.h"

namespace qf::cli {

struct InspectArgs {
  std::string path;
  bool tensors = false;
};
struct GenerateArgs {
  std::string model, prompt;
  int n_predict = 64;
  bool ignore_eos = false;
  bool allow_long_context = false;
};
struct EvalArgs {
  std::string model, text, base, protocol = "canonical";
  std::string device = "auto";  // cpu | cuda | auto
  int ctx = 512;
  long long max_windows = -1;
  bool json = false;
  bool allow_long_context = false;
};

using QuantizeArgs = QuantizeRequest;  // quant/pipeline.h

struct ConvertArgs {
  std::string model, out, type = "f16";
  bool force = false;
};

struct ImatrixArgs {
  std::string model, calib, out;
  std::string device = "auto";
  bool force = false;
  int ctx = 512;
  long long chunks = -1;
};

struct BenchArgs {
  std::string model;
  int n_prompt = 512, n_gen = 128, reps = 5;
  bool json = false;
};

// qforge compare: a matrix of jobs (quantize → eval against MODEL → bench) and one report.
struct CompareArgs {
  std::string model, calib, text, out, methods = "default";
  int ctx = 512, nsamples = 128, seqlen = 512;
  long long max_windows = -1;
  int prompt = 512, gen = 128, reps = 3;  // bench
  double max_memory_gib = 0;              // 0: MemAvailable alone limits which jobs start
  bool resume = false;
};

Status run_inspect(const InspectArgs& a);
Status run_generate(const GenerateArgs& a);
Status run_eval(const EvalArgs& a);
Status run_bench(const BenchArgs& a);
Status run_quantize(const QuantizeArgs& a);
Status run_convert(const ConvertArgs& a);
Status run_imatrix(const ImatrixArgs& a);
Status run_compare(const CompareArgs& a);
Status run_formats();

// Helpers the commands share.
int64_t model_file_bytes(const std::string& path);  // the .gguf file, or a directory's .safetensors

}  // namespace qf::cli
