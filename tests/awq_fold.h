// tests/awq_fold.h — AWQ's folded checkpoint against the original model (unit and golden tests).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "file_builders.h"
#include "model/transformer.h"
#include "quant/awq.h"
#include "quant/calibration.h"
#include "test_paths.h"
#include "tolerances.h"

namespace qf::test {

inline std::vector<float> logits_of(const Checkpoint& ck, const std::vector<int32_t>& ids) {
  auto tf = Transformer::create(ck);
  EXPECT_TRUE(tf.ok());
  KVCache cache = (*tf)->new_cache(int(ids.size()));
  std::vector<float> out(ids.size() * size_t(ck.config.vocab_size));
  (*tf)->forward(ids.data(), int(ids.size()), cache, out.data());
  return out;
}

// Folds AWQ's scales (searched for a 3-bit per-channel grid, clipping off) into `model` and
// checks that the result's fp32 logits equal the original's within fp32 rounding, and that the
// scales really changed the weights.
// v_to_o: whether the model's v_proj and o_proj shapes let AWQ scale between them.
inline void expect_folding_preserves_the_function(const std::string& model, const std::string& calib,
                                                  int n_windows, int seqlen, bool v_to_o = false) {
  auto ck = load_checkpoint(model);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto windows = draw_windows(ck->tokenizer->encode(test::slurp(calib), true), n_windows, seqlen, 0);
  ASSERT_TRUE(windows.ok());
  const IntGridSpec grid{3, -1, false, false};
  AwqSpec spec;
  spec.clip = false;
  FakeQuantizer rtn = [&](int, const std::string&, float* w, int64_t n_out, int64_t n_in,
                          const std::vector<float>&) {
    quantize_rtn(w, n_out, n_in, grid).dequantize_rows(0, n_out, w);
  };
  const std::string out = test::temp_dir("awq_fold") + "/scaled";
  auto rep = awq_transform(*ck, *windows, spec, rtn, out, nullptr);
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  EXPECT_EQ(rep->clipped_groups, 0);
  EXPECT_EQ(rep->col_scales.count("blk.0.attn_output.weight"), v_to_o ? 1u : 0u);
  float max_dev = 0;  // how far the chosen scales are from 1
  for (const auto& [name, s] : rep->col_scales)
    for (float v : s) max_dev = std::max(max_dev, std::fabs(std::log(v)));
  EXPECT_GT(max_dev, 0.1f) << "the search chose α = 0 everywhere: the test would prove nothing";
  float v_to_o_dev = 0;
  for (const auto& [name, s] : rep->col_scales)
    if (name.find("attn_output") != std::string::npos)
      for (float v : s) v_to_o_dev = std::max(v_to_o_dev, std::fabs(std::log(v)));
  if (v_to_o) {
    EXPECT_GT(v_to_o_dev, 0.05f) << "v_proj → o_proj kept α = 0 in every block";
  }
  auto scaled = load_checkpoint(out);
  ASSERT_TRUE(scaled.ok()) << scaled.status().message();
  EXPECT_EQ(scaled->weights.layers[0].norms[kAttnNorm].type, QType::F32);
  EXPECT_NE(scaled->weights.layers[0].norms[kAttnNorm].to_f32(),
            ck->weights.layers[0].norms[kAttnNorm].to_f32());

  std::vector<int32_t> ids((*windows)[0].begin(), (*windows)[0].begin() + 48);
  std::vector<float> a = logits_of(*ck, ids), b = logits_of(*scaled, ids);
  float max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(a[i]));
    max_diff = std::max(max_diff, std::fabs(a[i] - b[i]));
  }
  // Folding rounds each scaled weight once (relative 2^-24), as a different order of operations
  // would: the bound of two fp32 evaluations of one function (tests/tolerances.h).
  EXPECT_LT(max_diff, logit_tolerance(ck->config, max_abs))
      << "max |Δlogit| " << max_diff << " of max |logit| " << max_abs;
  std::printf("folded %s: max |Δlogit| %.3g (max |logit| %.3g), max |log s| %.2f\n", model.c_str(), max_diff,
              max_abs, max_dev);
}

}  // namespace qf::test
