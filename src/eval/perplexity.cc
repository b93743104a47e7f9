#include "eval/perplexity.h"

#include <chrono>
#include <cmath>

namespace qf {

double token_nll(const float* logits, int vocab, int32_t target) {
  float mx = logits[0];
  for (int i = 1; i < vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - mx);
  return std::log(sum) + mx - double(logits[target]);
}

Expected<PerplexityResult> perplexity(const Transformer& tf, const std::vector<int32_t>& tokens,
                                      const PerplexityOptions& opt) {
  if (opt.ctx < 2) return error("--ctx must be at least 2, got {}", opt.ctx);
  PerplexityResult r;
  r.ctx = opt.ctx;
  r.n_tokens = int64_t(tokens.size());
  int64_t windows = r.n_tokens / opt.ctx;
  if (opt.max_windows >= 0) windows = std::min(windows, opt.max_windows);
  if (windows == 0)
    return error("text has {} tokens, fewer than one window of --ctx {}", r.n_tokens, opt.ctx);
  const int vocab = tf.config().vocab_size;
  KVCache cache = tf.new_cache(opt.ctx);
  std::vector<float> logits(size_t(opt.ctx) * size_t(vocab));
  double total_nll = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t w = 0; w < windows; ++w) {
    const int32_t* win = tokens.data() + w * opt.ctx;
    cache.clear();
    tf.forward(win, opt.ctx, cache, logits.data());
    double nll = 0;
#pragma omp parallel for reduction(+ : nll) schedule(static)
    for (int i = 0; i < opt.ctx - 1; ++i) nll += token_nll(logits.data() + int64_t(i) * vocab, vocab, win[i + 1]);
    total_nll += nll;
    if (opt.on_window) opt.on_window(w + 1, windows);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.windows = windows;
  r.scored = windows * (opt.ctx - 1);
  r.mean_nll = total_nll / double(r.scored);
  r.ppl = std::exp(r.mean_nll);
  r.tokens_per_second = double(windows * opt.ctx) / r.seconds;
  return r;
}

}  // namespace qf
