// cli/commands.h — one function per `qforge` sub-command. Each returns a Status; main() turns
// a failure into one line on stderr and exit code 1.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace qf::cli {

struct InspectArgs {
  std::string path;
  bool tensors = false;
};
struct GenerateArgs {
  std::string model, prompt;
  int n_predict = 64;
  bool ignore_eos = false;
};
struct EvalArgs {
  std::string model, text, base, protocol = "canonical";
  int ctx = 512;
  long long max_windows = -1;
  bool json = false;
};

struct QuantizeArgs {
  std::string model, out, method = "rtn", clip = "none";
  std::string format = "hf", type;  // gguf: a llama.cpp file type (Q4_K_M, ...)
  std::string imatrix;              // gguf: importance matrix file
  int bits = 4, group = 128, blocksize = 64;
  bool sym = false, double_quant = false, quantize_head = false;
  float int8_threshold = 6.0f;
  // gptq: calibration and GPTQ's options
  std::string calib;
  int nsamples = 128, seqlen = 512;
  unsigned seed = 0;
  double damp = 0.01;
  bool act_order = false, static_groups = false, true_sequential = true;
  bool duo_scaling = false, awq_clip = true;  // awq
  std::vector<std::string> given;  // method options present on the command line
};

struct ConvertArgs {
  std::string model, out, type = "f16";
};

struct ImatrixArgs {
  std::string model, calib, out;
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

// Helpers the commands share.
std::string upper(std::string s);
int64_t model_file_bytes(const std::string& path);  // the .gguf file, or a directory's .safetensors

}  // namespace qf::cli
