// eval/perplexity.h — perplexity under the canonical protocol (../shared/README.md):
// tokens = tokenizer(text) with its own BOS rule; consecutive non-overlapping windows of ctx
// tokens; the remainder dropped; every position but the first of each window scored;
// PPL = exp(mean NLL). NLLs are accumulated in double.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/transformer.h"

namespace qf {

struct PerplexityOptions {
  int ctx = 512;
  int64_t max_windows = -1;  // -1: all
  std::function<void(int64_t done, int64_t total)> on_window;  // progress callback
};

struct PerplexityResult {
  double ppl = 0, mean_nll = 0;
  int ctx = 0;
  int64_t n_tokens = 0;  // tokens in the text, BOS included
  int64_t windows = 0;
  int64_t scored = 0;
  double seconds = 0;
  double tokens_per_second = 0;  // tokens processed (windows × ctx) per second
};

// -log softmax(logits)[target], in double.
double token_nll(const float* logits, int vocab, int32_t target);

Expected<PerplexityResult> perplexity(const Transformer& tf, const std::vector<int32_t>& tokens,
                                      const PerplexityOptions& opt);

}  // namespace qf
