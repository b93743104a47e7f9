// Matrix-vector throughput of every weight format on one Llama-2-7B-shaped matrix (the MLP
// down projection: 4096 outputs × 11008 inputs), against this machine's copy bandwidth
// measured right before each format (shared machines drift). Each format's Linear is what the
// runtime uses (formats quantized from the same Gaussian weights); GB/s = the weight bytes one
// call reads / its median time. Copy bandwidth follows STREAM: (bytes read + bytes written) /
// time of a threaded memcpy of 256 MiB, the fastest of 10.
//
// Usage: qforge_matvec_bench [--threads N] [--rows 4096] [--cols 11008] [--only NAME] [--json]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "core/half.h"
#include "core/threads.h"
#include "formats/bnb4.h"
#include "formats/int8_rowwise.h"
#include "formats/int_grid.h"
#include "kernels/cpu/qmatvec.h"
#include "model/linear.h"

using namespace qf;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Median seconds of f() over ≥ 5 runs and ≥ 1 s, after 2 warm-up runs.
double median_seconds(const std::function<void()>& f) {
  f();
  f();
  std::vector<double> t;
  const auto start = Clock::now();
  while (t.size() < 5 || seconds_since(start) < 1.0) {
    const auto t0 = Clock::now();
    f();
    t.push_back(seconds_since(t0));
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

double min_seconds(const std::function<void()>& f) {
  f();
  double best = 1e30;
  for (int i = 0; i < 10; ++i) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

// The fastest of the timed copies: the most this machine's memory gives now.
double copy_gbps() {
  const size_t n = size_t(1) << 28;  // 256 MiB each way
  static std::vector<uint8_t> a(n, 1), b(n, 0);
  const double s = min_seconds([&] {
#pragma omp parallel
    {
      const size_t nt = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num()), chunk = n / nt;
      std::memcpy(b.data() + t * chunk, a.data() + t * chunk, chunk);
    }
  });
  return 2.0 * double(n) / s / 1e9;
}

std::unique_ptr<Linear> stored(QType type, const std::vector<float>& w, int64_t rows, int64_t cols) {
  const int64_t row_bytes = qtype_row_bytes(type, cols);
  std::vector<uint8_t> bytes(size_t(rows * row_bytes));
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = bytes.data() + r * row_bytes;
    const float* src = w.data() + r * cols;
    if (type == QType::F16 || type == QType::BF16) {
      for (int64_t i = 0; i < cols; ++i) {
        const uint16_t h = type == QType::F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
    } else {
      traits(type).quantize_ref(src, dst, cols, nullptr);
    }
  }
  return std::make_unique<StoredLinear>(TensorView::owning("w", type, {rows, cols}, std::move(bytes)),
                                        TensorView{});
}

std::unique_ptr<Linear> int_grid(const std::vector<float>& w, int64_t rows, int64_t cols, int bits, int group,
                                 bool act_order) {
  IntGridSpec spec;
  spec.bits = bits;
  spec.group = group;
  IntQuantized q = quantize_rtn(w.data(), rows, cols, spec);
  if (act_order) {  // a random column order, groups of `group` columns in it (as GPTQ's desc_act)
    std::vector<int32_t> perm(static_cast<size_t>(cols));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(7));
    q.g_idx.resize(size_t(cols));
    for (int64_t i = 0; i < cols; ++i) q.g_idx[size_t(perm[size_t(i)])] = int32_t(i / group);
  }
  return std::make_unique<IntLinear>(q, TensorView{});
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  int64_t rows = 4096, cols = 11008;
  bool json = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::stoi(argv[++i]);
    else if (a == "--rows" && i + 1 < argc)
      rows = std::stoll(argv[++i]);
    else if (a == "--cols" && i + 1 < argc)
      cols = std::stoll(argv[++i]);
    else if (a == "--only" && i + 1 < argc)
      only = argv[++i];
    else if (a == "--json")
      json = true;
    else {
      fmt::print(stderr,
                 "usage: qforge_matvec_bench [--threads N] [--rows R] [--cols C] [--only NAME] [--json]\n");
      return 2;
    }
  }
  set_num_threads(threads);
  std::vector<float> w(size_t(rows * cols)), x(static_cast<size_t>(cols)), y(static_cast<size_t>(rows));
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (float& v : w) v = normal(rng);
  for (float& v : x) v = normal(rng) * 50.0f;

  if (!json)
    fmt::print(
        "{} × {} matrix, {} threads, SIMD target {}; copy = STREAM copy bandwidth (read + write) just "
        "before\n\n"
        "{:<22} {:>12} {:>10} {:>9} {:>10} {:>8}\n",
        rows, cols, threads, qmatvec_target(), "format", "bits/weight", "µs/call", "GB/s", "copy GB/s",
        "of copy");

  const std::vector<std::pair<std::string, std::function<std::unique_ptr<Linear>()>>> formats = {
      {"F16", [&] { return stored(QType::F16, w, rows, cols); }},
      {"BF16", [&] { return stored(QType::BF16, w, rows, cols); }},
      {"Q8_0", [&] { return stored(QType::Q8_0, w, rows, cols); }},
      {"Q6_K", [&] { return stored(QType::Q6_K, w, rows, cols); }},
      {"Q5_K", [&] { return stored(QType::Q5_K, w, rows, cols); }},
      {"Q5_0", [&] { return stored(QType::Q5_0, w, rows, cols); }},
      {"Q4_K", [&] { return stored(QType::Q4_K, w, rows, cols); }},
      {"Q4_1", [&] { return stored(QType::Q4_1, w, rows, cols); }},
      {"Q4_0", [&] { return stored(QType::Q4_0, w, rows, cols); }},
      {"IQ4_NL", [&] { return stored(QType::IQ4_NL, w, rows, cols); }},
      {"IQ4_XS", [&] { return stored(QType::IQ4_XS, w, rows, cols); }},
      {"Q3_K", [&] { return stored(QType::Q3_K, w, rows, cols); }},
      {"Q2_K", [&] { return stored(QType::Q2_K, w, rows, cols); }},
      {"INT8 per-channel", [&] { return int_grid(w, rows, cols, 8, -1, false); }},
      {"INT4 g128 (GPTQ/AWQ)", [&] { return int_grid(w, rows, cols, 4, 128, false); }},
      {"INT4 g128 act-order", [&] { return int_grid(w, rows, cols, 4, 128, true); }},
      {"NF4 (block 64)",
       [&] {
         return std::make_unique<Bnb4Linear>(quantize_bnb4(w.data(), rows * cols, Bnb4Type::NF4, 64, false),
                                             rows, cols, TensorView{});
       }},
      {"LLM.int8()",
       [&] {
         return std::make_unique<Int8Linear>(quantize_int8_rowwise(w.data(), rows, cols), 6.0f, TensorView{});
       }},
  };
  for (const auto& [name, make] : formats) {
    if (!only.empty() && name != only) continue;
    const std::unique_ptr<Linear> lin = make();
    const double copy = copy_gbps();
    const double s = median_seconds([&] { lin->forward(x.data(), y.data(), 1); });
    // Bytes one call reads: the checkpoint's size, except for the integer grids, whose kernels
    // read fp32 scale and zero per group (weight_bytes() reports the GPTQ layout's fp16 sizes).
    double bytes = double(lin->weight_bytes());
    if (name.rfind("INT", 0) == 0) {
      const int bits = name[3] == '8' ? 8 : 4;
      const int64_t groups = name.find("g128") != std::string::npos ? cols / 128 : 1;
      bytes = double(rows) * (double(cols) * bits / 8 + double(groups) * 8);
    }
    const double gbps = bytes / s / 1e9;
    const double bpw = bytes * 8 / double(rows * cols);
    if (json)
      fmt::print(
          "{{\"format\": \"{}\", \"threads\": {}, \"target\": \"{}\", \"bits_per_weight\": {:.4f}, \"us\": "
          "{:.1f}, "
          "\"gbps\": {:.3f}, \"copy_gbps\": {:.3f}, \"of_copy\": {:.4f}}}\n",
          name, threads, qmatvec_target(), bpw, s * 1e6, gbps, copy, gbps / copy);
    else
      fmt::print("{:<22} {:>12.3f} {:>10.1f} {:>9.1f} {:>10.1f} {:>7.0f} %\n", name, bpw, s * 1e6, gbps, copy,
                 100 * gbps / copy);
    std::fflush(stdout);
  }
}
