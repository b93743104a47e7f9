#include "quant/awq.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "core/mapped_file.h"
#include "core/profile.h"
#include "io/safetensors.h"
#include "model/transformer.h"
#include "quant/quantize_hf.h"

namespace qf {
namespace {

// A scaling point: the Linears that read one input, the operator before them that takes 1/s,
// and the sub-layer whose output scores a scaling ("" = the single Linear itself).
struct Point {
  const char* input;
  std::vector<const char*> kinds;
  const char* prev;
  const char* module;
};
const Point kPoints[] = {{"attn_q", {"attn_q", "attn_k", "attn_v"}, "attn_norm", "attn"},
                         {"attn_output", {"attn_output"}, "attn_v", ""},
                         {"ffn_gate", {"ffn_gate", "ffn_up"}, "ffn_norm", "mlp"},
                         {"ffn_down", {"ffn_down"}, "ffn_up", ""}};

// The calibration hidden states: every window's rows in one (N, n_embd) buffer.
struct Windows {
  std::vector<int64_t> offset, length;  // rows
  int64_t rows = 0, longest = 0;
};

// A block's tensors in fp32 as they will be written.
struct Block {
  std::map<std::string, std::vector<float>> w, b;  // by kind; b empty without bias
  std::vector<float> attn_norm, ffn_norm;
};

// The fake quantizer: the caller's host function, or RTN onto an integer grid computed where the
// weights are (Backend::fake_quantize_int).
struct Quantizer {
  const FakeQuantizer* host = nullptr;
  const IntGridSpec* grid = nullptr;
  FakeQuantArgs args(const float* src, float* dst, int64_t n_out, int64_t n_in) const {
    QF_CHECK(n_in % grid->group_len(n_in) == 0, "group {} does not divide {} columns", grid->group, n_in);
    return {src, dst, n_out, n_in, grid->group_len(n_in), grid->bits, grid->sym, nullptr, nullptr, 0};
  }
};

// A Linear over w (host) that computes on be.
std::unique_ptr<Linear> dense(const LinearTensors& t, const std::vector<float>& w, const Backend& be) {
  return on_backend(
      std::make_unique<StoredLinear>(TensorView::owning_f32(t.weight.name, {t.n_out, t.n_in}, w), t.bias),
      be);
}

// Input `key` of block `layer` for every window (N, d), as the unquantized model computes it, in
// the model's backend's memory.
Buffer<float> capture(const Transformer& tf, int layer, const Buffer<float>& hidden, const Windows& win,
                      const char* key, int64_t d) {
  const Backend& be = tf.backend();
  const int64_t E = tf.config().n_embd;
  Buffer<float> X(be, win.rows * d), x(be, win.longest * E);
  for (size_t k = 0; k < win.offset.size(); ++k) {
    be.copy(x.data(), hidden.data() + win.offset[k] * E, win.length[k] * E * 4);
    InputObserver copy = [&](int l, std::initializer_list<const char*> kinds, const float* in, int n, int) {
      if (l == layer && std::string(*kinds.begin()) == key)
        be.copy(X.data() + win.offset[k] * d, in, n * d * 4);
    };
    tf.run_block(layer, x.data(), int(win.length[k]), &copy, key);
  }
  return X;
}

// The point's output for every window into y (N, E); with ref (N, E), the mean squared difference
// from it, one distance over all windows (on the CPU the same sum in the same order as window by
// window, on a device one synchronization instead of one per window). All in the model's
// backend's memory.
double score(const Transformer& tf, int layer, const Point& p, const Linear* single, const Buffer<float>& X,
             int64_t d, const Windows& win, const Buffer<float>* ref, float* y) {
  const Backend& be = tf.backend();
  const int64_t E = tf.config().n_embd;
  for (size_t k = 0; k < win.offset.size(); ++k) {
    const int n = int(win.length[k]);
    const float* x = X.data() + win.offset[k] * d;
    if (single)
      single->forward(x, y + win.offset[k] * E, n);
    else
      tf.run_sublayer(layer, p.module, x, y + win.offset[k] * E, n);
  }
  return ref ? be.squared_distance(y, ref->data(), win.rows * E, 0.0) / double(win.rows * E) : 0.0;
}

// Weights per group of a row of n: `group`, or the whole row when group is -1 or does not divide n.
int64_t group_length(int group, int64_t n) { return group > 0 && n % group == 0 ? group : n; }

std::vector<double> mean_abs_columns(const Buffer<float>& X, int64_t d) {
  const int64_t n = X.size() / d;
  Buffer<double> sums(X.backend(), d);
  X.backend().column_sums(X.data(), n, d, 1, sums.data());
  std::vector<double> m = sums.to_host();
  for (double& v : m) v /= double(n);
  return m;
}

// w̄: per input column, the mean over the rows of every Linear of |w| / max |w| of its group.
std::vector<double> mean_group_normalized(const Block& b, const Point& p, int64_t d, int group) {
  std::vector<double> m(size_t(d), 0.0);
  const int64_t G = group_length(group, d);
  int64_t rows = 0;
  for (const char* kind : p.kinds) {
    const std::vector<float>& w = b.w.at(kind);
    const int64_t n_out = int64_t(w.size()) / d;
    rows += n_out;
#pragma omp parallel for schedule(static)  // threads own groups of columns: each sum in row order
    for (int64_t g0 = 0; g0 < d; g0 += G)
      for (int64_t r = 0; r < n_out; ++r) {
        const float* row = w.data() + r * d;
        float mx = 0;
        for (int64_t j = g0; j < g0 + G; ++j) mx = std::max(mx, std::fabs(row[j]));
        for (int64_t j = g0; j < g0 + G; ++j) m[size_t(j)] += mx > 0 ? std::fabs(row[j]) / mx : 0.0;
      }
  }
  for (double& v : m) v /= double(rows);
  return m;
}

std::vector<float> candidate_scales(const std::vector<double>& x_mean, const std::vector<double>& w_mean,
                                    double ratio, bool duo) {
  std::vector<float> s(x_mean.size());
  for (size_t j = 0; j < s.size(); ++j) {
    float v = float(std::pow(x_mean[j], ratio));
    if (duo) v = v / (float(std::pow(w_mean[j], 1.0 - ratio)) + 1e-4f);
    s[j] = std::max(v, 1e-4f);
  }
  const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
  const float norm = std::sqrt(*hi * *lo);
  for (float& v : s) {
    v /= norm;
    if (!std::isfinite(v)) v = 1.0f;
  }
  return s;
}

void scale_columns(std::vector<float>& w, const std::vector<float>& s, bool divide) {
  const auto d = int64_t(s.size()), rows = int64_t(w.size()) / d;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < d; ++j) {
      float& v = w[size_t(r * d + j)];
      v = divide ? v / s[size_t(j)] : v * s[size_t(j)];
    }
}

// Clip search for one scaled Linear w (n_out, n_in) on sampled inputs xs (T, n_in); clamps w
// to the best range per (row, group) and returns how many groups were shrunk.
int64_t clip(int layer, const std::string& kind, std::vector<float>& w, int64_t n_out, int64_t n_in,
             const std::vector<float>& xs, const std::vector<float>& s, const AwqSpec& spec,
             const Quantizer& quantizer, const Backend& be) {
  const int64_t G = group_length(spec.group, n_in), ng = n_in / G, T = int64_t(xs.size()) / n_in;
  std::vector<float> org_max(size_t(n_out * ng)), best_max,
      best_err(org_max.size(), std::numeric_limits<float>::max());
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n_out; ++r)
    for (int64_t g = 0; g < ng; ++g) {
      float mx = 0;
      for (int64_t j = g * G; j < (g + 1) * G; ++j) mx = std::max(mx, std::fabs(w[size_t(r * n_in + j)]));
      org_max[size_t(r * ng + g)] = mx;
    }
  best_max = org_max;
  // The products and errors on `be`: on a device xs and w cross once, q once per step (none on an
  // integer grid); on the CPU they are used where they are. Every group's partial products at
  // once, (T, ng·n_out): the reference ones computed once — T·n_in·n_out / G floats each, as much
  // as the weight matrix when T = G.
  const bool dev = be.on_device();
  std::vector<float> q(w.size());
  Buffer<float> xd = dev ? Buffer<float>(be, xs) : Buffer<float>(),
                wd = dev ? Buffer<float>(be, w) : Buffer<float>(),
                qd = dev ? Buffer<float>(be, int64_t(q.size())) : Buffer<float>(), ref(be, T * ng * n_out),
                out(be, T * ng * n_out);
  const float *xp = dev ? xd.data() : xs.data(), *wp = dev ? wd.data() : w.data(),
              *qp = dev ? qd.data() : q.data();
  be.gemm_nt(xp, n_in, wp, n_in, ref.data(), ng * n_out, T, n_out, G, ng);
  std::vector<double> e(static_cast<size_t>(ng * n_out));
  std::vector<int> best_step(org_max.size(), 0);
  // An integer grid: clamped and rounded by the backend, where w is.
  const bool on_be = quantizer.grid != nullptr;
  const Buffer<float> gmax = on_be ? Buffer<float>(be, org_max) : Buffer<float>();
  for (int step = 0; step < spec.n_grid / 2; ++step) {
    const float shrink = 1.0f - float(step) / float(spec.n_grid);
    if (on_be) {
      FakeQuantArgs a = quantizer.args(wp, dev ? qd.data() : q.data(), n_out, n_in);
      a.group_max = gmax.data();
      a.shrink = shrink;
      be.fake_quantize_int(a);
    } else {
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < n_out; ++r)
        for (int64_t j = 0; j < n_in; ++j) {
          const float m = org_max[size_t(r * ng + j / G)] * shrink;
          q[size_t(r * n_in + j)] = std::clamp(w[size_t(r * n_in + j)], -m, m);
        }
      (*quantizer.host)(layer, kind, q.data(), n_out, n_in, s);
      if (dev) be.to_device(qd.data(), q.data(), int64_t(q.size()) * 4);
    }
    be.gemm_nt(xp, n_in, qp, n_in, out.data(), ng * n_out, T, n_out, G, ng);
    be.column_squared_distances(out.data(), ref.data(), T, ng * n_out, e.data());
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n_out; ++r)
      for (int64_t g = 0; g < ng; ++g) {
        const float err = float(e[size_t(g * n_out + r)] / double(T));
        if (err < best_err[size_t(r * ng + g)]) {
          best_err[size_t(r * ng + g)] = err;
          best_max[size_t(r * ng + g)] = org_max[size_t(r * ng + g)] * shrink;
          best_step[size_t(r * ng + g)] = step;
        }
      }
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n_out; ++r)
    for (int64_t j = 0; j < n_in; ++j) {
      const float m = best_max[size_t(r * ng + j / G)];
      w[size_t(r * n_in + j)] = std::clamp(w[size_t(r * n_in + j)], -m, m);
    }
  return std::count_if(best_step.begin(), best_step.end(), [](int k) { return k > 0; });
}

// Every ⌈N / 512⌉-th row of X (AutoAWQ's token sample for the clip search), on the host.
std::vector<float> sample_rows(const Buffer<float>& X, int64_t d) {
  const int64_t n = X.size() / d, step = std::max<int64_t>(1, n / 512), rows = (n + step - 1) / step;
  std::vector<float> out(static_cast<size_t>(rows * d));
  X.backend().copy_2d(out.data(), d * 4, X.data(), step * d * 4, d * 4, rows, Backend::Copy::kToHost);
  return out;
}

Expected<AwqReport> transform(const Checkpoint& ck, const std::vector<std::vector<int32_t>>& windows,
                              const AwqSpec& spec, const Quantizer& quantizer, const std::string& out_dir,
                              const std::function<void(int64_t, int64_t)>& progress, const Backend& be) {
  if (ck.format != "hf") return error("{}: AWQ reads Hugging Face directories", ck.path);
  if (!ck.quant.method.empty())
    return error("{}: the checkpoint is already quantized ({})", ck.path, ck.quant.method);
  if (windows.empty()) return error("AWQ needs calibration windows (--calib)");
  const ModelConfig& c = ck.config;
  const int64_t E = c.n_embd;
  // Output: untouched tensors first (in file order), then each block's norms, weights, biases in F32.
  std::vector<SafetensorsWriter::Entry> entries;
  std::map<std::string, bool> in_block;
  std::vector<std::vector<const TensorView*>> block_tensors;
  for (const auto& lw : ck.weights.layers) {
    std::vector<const TensorView*> ts = {&lw.norms[kAttnNorm], &lw.norms[kFfnNorm]};
    for (const char* kind : kLinearNames) {
      ts.push_back(&lw.linear(kind).weight);
      if (lw.linear(kind).bias.valid()) ts.push_back(&lw.linear(kind).bias);
    }
    for (const TensorView* t : ts) in_block[t->name] = true;
    block_tensors.push_back(ts);
  }
  for (const auto& t : ck.all_tensors)
    if (!in_block.count(t.name)) entries.push_back({t.name, std::string(traits(t.type).name), t.shape});
  for (const auto& ts : block_tensors)
    for (const TensorView* t : ts) entries.push_back({t->name, "F32", t->shape});
  if (std::filesystem::exists(out_dir)) return error("{}: already exists", out_dir);
  std::error_code ec;
  if (!std::filesystem::create_directories(out_dir, ec))
    return error("{}: cannot create: {}", out_dir, ec.message());
  QF_RETURN_IF_ERROR(copy_side_files(ck.path, out_dir, true));
  QF_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::create(out_dir + "/model.safetensors", entries,
                                                             {{"format", "pt"}, {"awq", "qforge"}}));
  for (const auto& t : ck.all_tensors)
    if (!in_block.count(t.name)) {
      QF_RETURN_IF_ERROR(writer->write(t.name, t.data, size_t(t.nbytes)));
      release_mapped_pages(t.data, size_t(t.nbytes));
    }

  QF_ASSIGN_OR_RETURN(auto tf, Transformer::create(ck, be, /*streamed=*/true));
  Windows win;
  for (const auto& w : windows) {
    win.offset.push_back(win.rows);
    win.length.push_back(int64_t(w.size()));
    win.rows += int64_t(w.size());
    win.longest = std::max(win.longest, int64_t(w.size()));
  }
  Buffer<float> hidden(be, win.rows * E);
  for (size_t k = 0; k < windows.size(); ++k)
    tf->embed(windows[k].data(), int(windows[k].size()), hidden.data() + win.offset[k] * E);
  AwqReport rep;
  for (int layer = 0; layer < c.n_layer; ++layer) {
    const LayerWeights& lw = ck.weights.layers[size_t(layer)];
    {
      PhaseTimer t("awq: load block", &be);
      QF_RETURN_IF_ERROR(tf->load_block(ck, layer));  // this block's weights only: streamed
    }
    Block b;
    b.attn_norm = lw.norms[kAttnNorm].to_f32();
    b.ffn_norm = lw.norms[kFfnNorm].to_f32();
    {
      PhaseTimer t_widen("awq: the block's weights to fp32 on the host");
      for (const char* kind : kLinearNames) {
        const LinearTensors& t = lw.linear(kind);
        QF_ASSIGN_OR_RETURN(b.w[kind], t.weight.to_f32_finite());
        if (t.bias.valid()) b.b[kind] = t.bias.to_f32();
      }
    }
    std::map<std::string, std::vector<float>> scales,
        samples;  // by kind: s of its columns; its sampled inputs
    for (const Point& p : kPoints) {
      const LinearTensors& first = lw.linear(p.kinds[0]);
      const int64_t d = first.n_in;
      const bool scaled =
          p.prev != std::string("attn_v") ||
          (lw.linears[kAttnV].n_out == lw.linears[kAttnOut].n_out &&
           lw.linears[kAttnV].n_in == lw.linears[kAttnOut].n_in);  // AutoAWQ: shapes must match
      if (!scaled && !spec.clip) continue;
      Buffer<float> X;
      {
        PhaseTimer t("awq: capture inputs", &be);
        X = capture(*tf, layer, hidden, win, p.input, d);
      }
      if (scaled) {
        const std::vector<double> x_mean = mean_abs_columns(X, d);
        const std::vector<double> w_mean =
            spec.duo_scaling ? mean_group_normalized(b, p, d, spec.group) : std::vector<double>();
        std::unique_ptr<Linear> single;
        if (!*p.module) single = dense(first, b.w.at(p.kinds[0]), be);
        Buffer<float> ref(be, win.rows * E);
        score(*tf, layer, p, single.get(), X, d, win, nullptr, ref.data());
        Buffer<float> y(be, win.rows * E);  // each candidate's outputs
        double best = std::numeric_limits<double>::infinity(), at_zero = 0;
        int best_k = 0;
        std::vector<float> best_s;
        std::map<std::string, Buffer<float>> wd;  // an integer grid: the weights where they are rounded
        if (quantizer.grid)
          for (const char* kind : p.kinds) wd[kind] = Buffer<float>(be, b.w.at(kind));
        PhaseTimer t_grid("awq: scale search", &be);
        for (int k = 0; k < spec.n_grid; ++k) {
          const std::vector<float> s =
              candidate_scales(x_mean, w_mean, double(k) / spec.n_grid, spec.duo_scaling);
          const Buffer<float> sd = quantizer.grid ? Buffer<float>(be, s) : Buffer<float>();
          for (const char* kind : p.kinds) {
            const LinearTensors& t = lw.linear(kind);
            std::unique_ptr<Linear> l;
            if (quantizer.grid) {  // Q(W·diag(s))·diag(1/s) on the backend
              Buffer<float> wq(be, t.n_out * t.n_in);
              FakeQuantArgs a = quantizer.args(wd.at(kind).data(), wq.data(), t.n_out, t.n_in);
              a.col_scale = sd.data();
              be.fake_quantize_int(a);
              l = be.on_device() ? std::make_unique<BackendLinear>(
                                       be, t.n_out, t.n_in, std::move(wq),
                                       t.bias.valid() ? t.bias.to_f32() : std::vector<float>{}, 0)
                                 : dense(t, wq.to_host(), be);
            } else {
              std::vector<float> wq = b.w.at(kind);
              scale_columns(wq, s, false);
              (*quantizer.host)(layer, kind, wq.data(), t.n_out, t.n_in, s);
              scale_columns(wq, s, true);
              l = dense(t, wq, be);
            }
            if (single)
              single = std::move(l);
            else
              tf->set_linear(layer, kind, std::move(l));
          }
          PhaseTimer t_score("awq: scale search: score", &be);
          const double err = score(*tf, layer, p, single.get(), X, d, win, &ref, y.data());
          if (k == 0) at_zero = err;
          if (err < best) {
            best = err;
            best_k = k;
            best_s = s;
          }
        }
        for (const char* kind : p.kinds) {  // the search ran on the original weights: put them back
          const LinearTensors& t = lw.linear(kind);
          tf->set_linear(layer, kind, std::make_unique<StoredLinear>(t.weight, t.bias));
          scales[kind] = best_s;
        }
        rep.points.push_back(fmt::format("blk.{} {}→{} α={:.2f} (output mse {:.4g}; {:.4g} at α=0)", layer,
                                         p.prev, fmt::join(p.kinds, ","), double(best_k) / spec.n_grid, best,
                                         at_zero));
        for (const char* kind : p.kinds) scale_columns(b.w[kind], best_s, false);
        if (std::string(p.prev) == "attn_norm")
          scale_columns(b.attn_norm, best_s, true);
        else if (std::string(p.prev) == "ffn_norm")
          scale_columns(b.ffn_norm, best_s, true);
        else {  // the previous Linear's output rows (and bias) take 1/s
          std::vector<float>& w = b.w[p.prev];
          const int64_t n_in = lw.linear(p.prev).n_in;
#pragma omp parallel for schedule(static)
          for (int64_t r = 0; r < int64_t(best_s.size()); ++r)
            for (int64_t j = 0; j < n_in; ++j) w[size_t(r * n_in + j)] /= best_s[size_t(r)];
          if (b.b.count(p.prev)) scale_columns(b.b[p.prev], best_s, true);
        }
        for (const char* kind : p.kinds)
          rep.col_scales[fmt::format("blk.{}.{}.weight", layer, kind)] = best_s;
      }
      if (spec.clip) {
        std::vector<float> xs = sample_rows(X, d);
        if (scaled) scale_columns(xs, scales[p.kinds[0]], true);
        for (const char* kind : p.kinds) samples[kind] = xs;
      }
    }
    if (spec.clip)
      for (const char* kind : kLinearNames) {
        if (std::string(kind) == "attn_q" || std::string(kind) == "attn_k") continue;
        const LinearTensors& t = lw.linear(kind);
        std::vector<float> s = scales.count(kind) ? scales[kind] : std::vector<float>(size_t(t.n_in), 1.0f);
        PhaseTimer pt("awq: clip search", &be);
        rep.clipped_groups +=
            clip(layer, kind, b.w[kind], t.n_out, t.n_in, samples[kind], s, spec, quantizer, be);
        rep.groups += t.n_out * (t.n_in / group_length(spec.group, t.n_in));
      }
    {
      PhaseTimer t_write("awq: write the block");
      QF_RETURN_IF_ERROR(writer->write(lw.norms[kAttnNorm].name, b.attn_norm.data(), b.attn_norm.size() * 4));
      QF_RETURN_IF_ERROR(writer->write(lw.norms[kFfnNorm].name, b.ffn_norm.data(), b.ffn_norm.size() * 4));
      for (const char* kind : kLinearNames) {
        const LinearTensors& t = lw.linear(kind);
        QF_RETURN_IF_ERROR(writer->write(t.weight.name, b.w[kind].data(), b.w[kind].size() * 4));
        if (t.bias.valid())
          QF_RETURN_IF_ERROR(writer->write(t.bias.name, b.b[kind].data(), b.b[kind].size() * 4));
        release_mapped_pages(t.weight.data, size_t(t.weight.nbytes));
      }
    }
    PhaseTimer t_next("awq: forward of the block", &be);
    for (size_t k = 0; k < windows.size(); ++k)  // the unquantized block's outputs: the next block's inputs
      tf->run_block(layer, hidden.data() + win.offset[k] * E, int(win.length[k]));
    for (const char* kind : kLinearNames) tf->set_linear(layer, kind, nullptr);
    if (progress) progress(layer + 1, c.n_layer);
  }
  QF_RETURN_IF_ERROR(writer->finish());
  return rep;
}

}  // namespace

Expected<AwqReport> awq_transform(const Checkpoint& ck, const std::vector<std::vector<int32_t>>& windows,
                                  const AwqSpec& spec, const FakeQuantizer& quantize,
                                  const std::string& out_dir,
                                  const std::function<void(int64_t, int64_t)>& progress, const Backend& be) {
  return transform(ck, windows, spec, Quantizer{&quantize, nullptr}, out_dir, progress, be);
}

Expected<AwqReport> awq_transform(const Checkpoint& ck, const std::vector<std::vector<int32_t>>& windows,
                                  const AwqSpec& spec, const IntGridSpec& grid, const std::string& out_dir,
                                  const std::function<void(int64_t, int64_t)>& progress, const Backend& be) {
  QF_CHECK(!grid.clip_mse, "AWQ's fake quantization fits groups by min/max (no clip search)");
  QF_CHECK(grid.group == spec.group, "the grid's groups ({}) are the clip search's ({})", grid.group,
           spec.group);
  return transform(ck, windows, spec, Quantizer{nullptr, &grid}, out_dir, progress, be);
}

}  // namespace qf
