// eval/perplexity.h — perplexity under the canonical protocol (../shared/README.md):
// tokens = tokenizer(text) with its own BOS rule; consecutive non-overlapping windows of ctx
// tokens; the remainder dropped; every position but the first of each window scored;
// PPL = exp(mean NLL). NLLs are accumulated in double. Given a base model, also the KL
// divergence KL(base ‖ model) of the next-token distributions and the share of positions
// where both argmaxes agree, over the same scored positions.
//
// The llama.cpp protocol (llama-perplexity) differs in two ways: only the second half of each
// window is scored (positions ctx/2 .. ctx−2 predicting the next token), and when the model
// adds BOS, the first token of every window is replaced by BOS.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/transformer.h"

namespace qf {

struct PerplexityOptions {
  int ctx = 512;
  int64_t max_windows = -1;  // -1: all
  bool second_half = false;  // llama.cpp: score only positions ctx/2 .. ctx−2
  int32_t first_token = -1;  // llama.cpp with add-BOS: every window starts with this token
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
  bool has_base = false;
  double base_ppl = 0, kld = 0, top1 = 0;  // against the base model, when given
};

Expected<PerplexityResult> perplexity(const Transformer& tf, const std::vector<int32_t>& tokens,
                                      const PerplexityOptions& opt, const Transformer* base = nullptr);

}  // namespace qf
