#include "eval/perplexity.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace qf {

Expected<PerplexityResult> perplexity(const Transformer& tf, const std::vector<int32_t>& tokens,
                                      const PerplexityOptions& opt, const Transformer* base) {
  if (base && (base->config().vocab_size != tf.config().vocab_size))
    return error("--base has a vocabulary of {}, the model {}", base->config().vocab_size,
                 tf.config().vocab_size);
  if (opt.ctx < 2) return error("--ctx must be at least 2, got {}", opt.ctx);
  PerplexityResult r;
  r.ctx = opt.ctx;
  r.n_tokens = int64_t(tokens.size());
  int64_t windows = r.n_tokens / opt.ctx;
  if (opt.max_windows >= 0) windows = std::min(windows, opt.max_windows);
  if (windows == 0)
    return error("text has {} tokens, fewer than one window of --ctx {}", r.n_tokens, opt.ctx);
  if (base && &base->backend() != &tf.backend())
    return error("--base runs on {}, the model on {}: both must use one device", base->backend().name(),
                 tf.backend().name());
  const Backend& be = tf.backend();
  const int vocab = tf.config().vocab_size;
  KVCache cache = tf.new_cache(opt.ctx);
  Buffer<float> logits(be, int64_t(opt.ctx) * vocab), base_logits(be, base ? logits.size() : 0);
  std::vector<PositionStats> stats(size_t(opt.ctx));
  std::vector<int32_t> targets(size_t(opt.ctx));
  double total_nll = 0, total_base_nll = 0, total_kld = 0;
  int64_t total_agree = 0;
  auto t0 = std::chrono::steady_clock::now();
  const int first = opt.second_half ? opt.ctx / 2 : 0;
  std::vector<int32_t> window(size_t(opt.ctx));
  for (int64_t w = 0; w < windows; ++w) {
    std::copy(tokens.begin() + w * opt.ctx, tokens.begin() + (w + 1) * opt.ctx, window.begin());
    if (opt.first_token >= 0) window[0] = opt.first_token;
    const int32_t* win = window.data();
    cache.clear();
    tf.forward(win, opt.ctx, cache, logits.data());
    if (base) {
      cache.clear();
      base->forward(win, opt.ctx, cache, base_logits.data());
    }
    const int rows = opt.ctx - 1 - first;
    for (int i = 0; i < rows; ++i) targets[size_t(i)] = win[first + i + 1];
    const int64_t off = int64_t(first) * vocab;
    be.score(logits.data() + off, base ? base_logits.data() + off : nullptr, targets.data(), rows, vocab,
             stats.data());
    double nll = 0, base_nll = 0, kld = 0;
    int64_t agree = 0;
    for (int i = 0; i < rows; ++i) {  // in position order: the same sum on every backend
      const PositionStats& s = stats[size_t(i)];
      nll += s.nll;
      base_nll += s.base_nll;
      kld += s.kld;
      agree += s.agree;
    }
    total_nll += nll;
    total_base_nll += base_nll;
    total_kld += kld;
    total_agree += agree;
    if (opt.on_window) opt.on_window(w + 1, windows);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.windows = windows;
  r.scored = windows * (opt.ctx - 1 - first);
  r.mean_nll = total_nll / double(r.scored);
  r.ppl = std::exp(r.mean_nll);
  if (base) {
    r.has_base = true;
    r.base_ppl = std::exp(total_base_nll / double(r.scored));
    r.kld = total_kld / double(r.scored);
    r.top1 = double(total_agree) / double(r.scored);
  }
  r.tokens_per_second = double(windows * opt.ctx) / r.seconds;
  // A NaN/Inf weight or activation makes every statistic meaningless: an error, never a number.
  if (!std::isfinite(r.mean_nll) || (base && !(std::isfinite(r.base_ppl) && std::isfinite(r.kld))))
    return error(
        "the model's outputs are not finite (mean NLL {}{}): a weight, scale or norm is NaN/Inf or overflows",
        r.mean_nll, base ? fmt::format(", KL {}", r.kld) : "");
  return r;
}

}  // namespace qf
