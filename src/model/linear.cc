#include "model/linear.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/half.h"
#include "core/status.h"
#include "kernels/cpu/widen.h"

namespace qf {

std::vector<float> Linear::dense_weights() const {
  const int64_t ni = n_in(), no = n_out(), chunk = 256;
  const std::vector<float> b = bias_values();
  std::vector<float> w(size_t(no * ni)), eye(size_t(chunk * ni)), y(size_t(chunk * no));
  for (int64_t c0 = 0; c0 < ni; c0 += chunk) {
    const int64_t k = std::min(chunk, ni - c0);
    std::fill(eye.begin(), eye.end(), 0.0f);
    for (int64_t i = 0; i < k; ++i) eye[size_t(i * ni + c0 + i)] = 1.0f;
    forward(eye.data(), y.data(), k);  // row i: column c0 + i of W, plus the bias
    for (int64_t i = 0; i < k; ++i)
      for (int64_t o = 0; o < no; ++o)
        w[size_t(o * ni + c0 + i)] = y[size_t(i * no + o)] - (b.empty() ? 0 : b[size_t(o)]);
  }
  return w;
}

BackendLinear::BackendLinear(const Linear& host, const Backend& be)
    : BackendLinear(be, host.n_out(), host.n_in(), host.dense_weights(), host.bias_values(),
                    host.weight_bytes()) {}

BackendLinear::BackendLinear(const Backend& be, int64_t n_out, int64_t n_in, const std::vector<float>& w,
                             const std::vector<float>& bias, int64_t stored_bytes)
    : be_(be), n_out_(n_out), n_in_(n_in), stored_bytes_(stored_bytes), b_(be, bias) {
  QF_CHECK(int64_t(w.size()) == n_out * n_in && (bias.empty() || int64_t(bias.size()) == n_out),
           "BackendLinear: {} weights and {} biases for ({}, {})", w.size(), bias.size(), n_out, n_in);
  if (!be.bf16_weights()) {
    w_ = Buffer<float>(be, w);
    return;
  }
  std::vector<uint16_t> h(w.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(h.size()); ++i) h[size_t(i)] = f32_to_bf16(w[size_t(i)]);
  w16_ = Buffer<uint16_t>(be, h);
}

BackendLinear::BackendLinear(const Backend& be, int64_t n_out, int64_t n_in, const std::vector<float>& bias,
                             int64_t stored_bytes)
    : be_(be), n_out_(n_out), n_in_(n_in), stored_bytes_(stored_bytes), b_(be, bias) {
  QF_CHECK(bias.empty() || int64_t(bias.size()) == n_out, "BackendLinear: {} biases for ({}, {})",
           bias.size(), n_out, n_in);
}

BackendLinear::BackendLinear(const Backend& be, int64_t n_out, int64_t n_in, Buffer<float> w,
                             const std::vector<float>& bias, int64_t stored_bytes)
    : BackendLinear(be, n_out, n_in, bias, stored_bytes) {
  QF_CHECK(w.size() == n_out * n_in, "BackendLinear: {} weights for ({}, {})", w.size(), n_out, n_in);
  if (!be.bf16_weights()) {
    w_ = std::move(w);
    return;
  }
  std::vector<uint16_t> h(static_cast<size_t>(w.size()));
  const std::vector<float> f = w.to_host();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(h.size()); ++i) h[size_t(i)] = f32_to_bf16(f[size_t(i)]);
  w16_ = Buffer<uint16_t>(be, h);
}

Buffer<float> widened_on(const Backend& be, const TensorView& weight) {
  const QType t = weight.type;
  QF_CHECK(t == QType::F32 || t == QType::F16 || t == QType::BF16, "{}: {} is not a dense type", weight.name,
           traits(t).name);
  const int64_t n = weight.numel();
  Buffer<float> w(be, n);
  if (t == QType::F32) {
    be.to_device(w.data(), weight.data, n * 4);
  } else {
    Buffer<uint16_t> stored(be, n);
    be.to_device(stored.data(), weight.data, n * 2);
    be.widen_16(stored.data(), t == QType::BF16, w.data(), n);
  }
  return w;
}

std::unique_ptr<BackendLinear> BackendLinear::from_stored(const Backend& be, const TensorView& weight,
                                                          const TensorView& bias) {
  const QType t = weight.type;
  if (t != QType::F32 && t != QType::F16 && t != QType::BF16) return nullptr;
  if (be.bf16_weights() && t != QType::BF16) return nullptr;
  const int64_t n = weight.numel();
  std::unique_ptr<BackendLinear> l(new BackendLinear(be, weight.rows(), weight.cols(),
                                                     bias.valid() ? bias.to_f32() : std::vector<float>{},
                                                     weight.nbytes + (bias.valid() ? bias.numel() * 4 : 0)));
  if (be.bf16_weights()) {
    l->w16_ = Buffer<uint16_t>(be, n);
    be.to_device(l->w16_.data(), weight.data, n * 2);
  } else {
    l->w_ = widened_on(be, weight);
  }
  return l;
}

void BackendLinear::forward(const float* x, float* y, int64_t tokens) const {
  const float* bias = b_.size() ? b_.data() : nullptr;
  if (w16_.size())
    be_.linear_bf16(x, w16_.data(), bias, y, tokens, n_in_, n_out_);
  else
    be_.linear(x, w_.data(), bias, y, tokens, n_in_, n_out_);
}

std::vector<float> BackendLinear::dense_weights() const {
  if (!w16_.size()) return w_.to_host();
  const std::vector<uint16_t> h = w16_.to_host();
  std::vector<float> w(h.size());
  for (size_t i = 0; i < h.size(); ++i) w[i] = bf16_to_f32(h[i]);
  return w;
}

std::unique_ptr<Linear> on_backend(std::unique_ptr<Linear> l, const Backend& be) {
  if (!be.on_device() || dynamic_cast<const BackendLinear*>(l.get())) return l;
  return std::make_unique<BackendLinear>(*l, be);
}

TiledLinear::TiledLinear(int64_t n_out, int64_t n_in, const TensorView& bias) : n_out_(n_out), n_in_(n_in) {
  if (bias.valid()) {
    QF_CHECK(bias.numel() == n_out_, "bias '{}' has {} values for {} outputs", bias.name, bias.numel(),
             n_out_);
    b_ = bias.to_f32();
  }
}

bool TiledLinear::set_kernel(const QMatrix& m) {
  if (!qmatvec_supported(m)) return false;
  kernel_ = m;
  return true;
}

void TiledLinear::decode_rows(int64_t, int64_t, float*) const {
  QF_CHECK(false, "a Linear without a kernel layout must decode its own rows");
}

void TiledLinear::decode(int64_t r0, int64_t rows, float* dst) const {
  if (has_kernel())
    qdecode_rows(kernel_, r0, rows, dst);
  else
    decode_rows(r0, rows, dst);
}

std::vector<float> TiledLinear::dense_weights() const {
  std::vector<float> w(size_t(n_out_ * n_in_));
  const int64_t tile = 64;
#pragma omp parallel for schedule(dynamic)
  for (int64_t r0 = 0; r0 < n_out_; r0 += tile) {
    const int64_t rows = std::min(tile, n_out_ - r0);
    float* dst = w.data() + r0 * n_in_;
    decode(r0, rows, dst);
    if (perm_.empty()) continue;
    std::vector<float> stored(dst, dst + rows * n_in_);  // columns in perm order
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < n_in_; ++i) dst[r * n_in_ + perm_[size_t(i)]] = stored[size_t(r * n_in_ + i)];
  }
  return w;
}

void TiledLinear::forward(const float* x, float* y, int64_t tokens) const {
  std::vector<float> permuted;
  if (!perm_.empty()) {
    permuted.resize(size_t(tokens * n_in_));
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t i = 0; i < n_in_; ++i) permuted[size_t(t * n_in_ + i)] = x[t * n_in_ + perm_[size_t(i)]];
    x = permuted.data();
  }
  auto add_bias = [&](float* row, int64_t o0, int64_t o1) {
    if (!b_.empty())
      for (int64_t o = o0; o < o1; ++o) row[o] += b_[size_t(o)];
  };
  if (has_kernel() && tokens <= kMatvecTokens) {
    for (int64_t t = 0; t < tokens; ++t) {
      qmatvec(kernel_, x + t * n_in_, y + t * n_out_);
      add_bias(y + t * n_out_, 0, n_out_);
    }
    return;
  }
  const int64_t threads = omp_get_max_threads();
  const float* f32 = f32_weights();
  // fp32 in place: one slice per thread, so BLAS packs x once per thread. Otherwise tiles of
  // decoded rows small enough to stay in cache (≤ 1 Mi floats), a multiple of 16 rows.
  int64_t tile = (n_out_ / threads + 15) / 16 * 16;
  if (!f32) tile = std::min(tile, std::max<int64_t>(16, (int64_t(1) << 20) / n_in_ / 16 * 16));
  tile = std::max<int64_t>(16, tile);
  const int64_t n_tiles = (n_out_ + tile - 1) / tile;
#pragma omp parallel
  {
    static thread_local std::vector<float> buffer;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tiles; ++t) {
      const int64_t o0 = t * tile, rows = std::min(tile, n_out_ - o0);
      const float* w = f32 ? f32 + o0 * n_in_ : nullptr;
      if (!w) {
        buffer.resize(size_t(tile * n_in_));
        decode(o0, rows, buffer.data());
        w = buffer.data();
      }
      // y[:, o0 : o0 + rows] = x (tokens, n_in) · w (rows, n_in)ᵀ
      if (tokens == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, int(rows), int(n_in_), 1.0f, w, int(n_in_), x, 1, 0.0f,
                    y + o0, 1);
      else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(rows), int(n_in_), 1.0f, x,
                    int(n_in_), w, int(n_in_), 0.0f, y + o0, int(n_out_));
      for (int64_t i = 0; i < tokens; ++i) add_bias(y + i * n_out_, o0, o0 + rows);
    }
  }
}

StoredLinear::StoredLinear(const TensorView& weight, const TensorView& bias)
    : TiledLinear(weight.rows(), weight.cols(), bias),
      w_(weight),
      row_bytes_(qtype_row_bytes(weight.type, weight.cols())) {
  if (w_.type == QType::F32) {
    if (reinterpret_cast<uintptr_t>(w_.data) % alignof(float) == 0) {
      f32_ = reinterpret_cast<const float*>(w_.data);
    } else {
      owned_ = w_.to_f32();
      f32_ = owned_.data();
    }
  }
  QMatrix m;
  m.type = w_.type;
  m.data = f32_ ? reinterpret_cast<const uint8_t*>(f32_) : w_.data;
  m.n_out = n_out();
  m.n_in = n_in();
  m.row_bytes = row_bytes_;
  set_kernel(m);
}

void StoredLinear::decode_rows(int64_t r0, int64_t rows, float* dst) const {
  widen_to_f32(w_.type, w_.data + r0 * row_bytes_, dst, rows * n_in());
}

IntLinear::IntLinear(const IntQuantized& q, const TensorView& bias)
    : TiledLinear(q.n_out, q.n_in, bias), bits_(q.spec.bits), n_groups_(q.n_groups()) {
  const int64_t n_in = q.n_in, group = q.spec.group_len(n_in);
  // Act-order: columns sorted by group (stable), which must leave groups of `group` columns.
  std::vector<int32_t> perm(static_cast<size_t>(n_in));
  std::iota(perm.begin(), perm.end(), 0);
  if (!q.g_idx.empty())
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int32_t a, int32_t b) { return q.g_idx[size_t(a)] < q.g_idx[size_t(b)]; });
  bool contiguous = true;
  for (int64_t i = 0; i < n_in; ++i) contiguous &= q.group_of(perm[size_t(i)]) == i / group;
  const bool nibbles = q.spec.bits <= 4;
  QMatrix m;
  m.type = nibbles ? QType::GRID4 : QType::GRID8;
  m.n_out = q.n_out;
  m.n_in = n_in;
  m.row_bytes = nibbles ? n_in / 2 : n_in;
  m.group = group;
  if (contiguous && qmatvec_supported(m)) {
    codes_.assign(size_t(q.n_out * m.row_bytes), 0);
    for (int64_t r = 0; r < q.n_out; ++r) {
      const uint8_t* src = q.codes.data() + r * n_in;
      uint8_t* dst = codes_.data() + r * m.row_bytes;
      for (int64_t i = 0; i < n_in; ++i) {
        const uint8_t c = src[perm[size_t(i)]];
        if (!nibbles)
          dst[i] = c;
        else
          dst[i / 32 * 16 + i % 16] |= uint8_t(i % 32 < 16 ? c : c << 4);
      }
    }
    scales_ = q.scales;
    zeros_ = q.zeros;
    m.data = codes_.data();
    m.scales = scales_.data();
    m.zeros = zeros_.data();
    set_kernel(m);
    if (!q.g_idx.empty()) perm_ = std::move(perm);
  } else {
    fallback_.emplace(q);
  }
}

int64_t IntLinear::weight_bytes() const {
  // As stored in a packed checkpoint: bits per code, fp16 scale and packed zero per group (the
  // format's size, which eval's bits per weight reports; the kernels' layout reads fp32 scales).
  const int64_t groups = n_out() * n_groups_;
  return (n_out() * n_in() * bits_ + groups * (16 + bits_)) / 8 + bias_bytes();
}

Bnb4Linear::Bnb4Linear(Bnb4Quantized q, int64_t n_out, int64_t n_in, const TensorView& bias)
    : TiledLinear(n_out, n_in, bias), q_(std::move(q)) {
  QMatrix m;
  m.type = QType::BNB4;
  m.data = q_.packed.data();
  m.n_out = n_out;
  m.n_in = n_in;
  m.row_bytes = n_in / 2;
  m.scales = q_.absmax.data();
  m.group = q_.blocksize;
  m.lut = bnb4_code(q_.type).data();
  set_kernel(m);
}

Int8Linear::Int8Linear(Int8Rowwise q, float threshold, const TensorView& bias)
    : q_(std::move(q)), threshold_(threshold) {
  if (bias.valid()) {
    QF_CHECK(bias.numel() == q_.n_out, "bias '{}' has {} values for {} outputs", bias.name, bias.numel(),
             q_.n_out);
    b_ = bias.to_f32();
  }
}

void Int8Linear::forward(const float* x, float* y, int64_t tokens) const {
  const int64_t n_in = q_.n_in, n_out = q_.n_out;
  std::vector<int64_t> outliers;  // columns with some |x| ≥ threshold in this call's activations
  if (threshold_ > 0) {
    std::vector<uint8_t> is_outlier(size_t(n_in), 0);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t i = 0; i < n_in; ++i)
        is_outlier[size_t(i)] |= uint8_t(std::fabs(x[t * n_in + i]) >= threshold_);
    for (int64_t i = 0; i < n_in; ++i)
      if (is_outlier[size_t(i)]) outliers.push_back(i);
  }
  // Per-token int8 activations of the other columns.
  std::vector<int8_t> xq(size_t(tokens * n_in));
  std::vector<float> sx(static_cast<size_t>(tokens));
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(n_in));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tokens; ++t) {
      std::copy(x + t * n_in, x + (t + 1) * n_in, row.begin());
      for (int64_t c : outliers) row[size_t(c)] = 0;
      sx[size_t(t)] = quantize_row_absmax_int8(row.data(), n_in, xq.data() + t * n_in);
    }
  }
  // y[t, o] from the exact integer product acc = Σ CB[o, i] · xq[t, i] (an int32 or a double
  // holding one: the same float either way) and the outlier columns in floating point.
  auto finish = [&](int64_t t, int64_t o, double acc) {
    const float scb = q_.scb[size_t(o)];
    float v = float(acc) * (sx[size_t(t)] * scb / (127.0f * 127.0f));
    for (int64_t c : outliers) v += x[t * n_in + c] * (float(q_.codes[size_t(o * n_in + c)]) * scb / 127.0f);
    y[t * n_out + o] = v + (b_.empty() ? 0.0f : b_[size_t(o)]);
  };
  if (tokens <= TiledLinear::kMatvecTokens) {  // SIMD integer dot products, threads split the rows
#pragma omp parallel
    {
      const int64_t nt = omp_get_num_threads(), chunk = (n_out + nt - 1) / nt;
      const int64_t o0 = std::min(n_out, omp_get_thread_num() * chunk), o1 = std::min(n_out, o0 + chunk);
      std::vector<int32_t> acc(size_t(std::max<int64_t>(0, o1 - o0)));
      for (int64_t t = 0; t < tokens && o0 < o1; ++t) {
        qdot_i8_rows(q_.codes.data() + o0 * n_in, o1 - o0, n_in, xq.data() + t * n_in, acc.data());
        for (int64_t o = o0; o < o1; ++o) finish(t, o, acc[size_t(o - o0)]);
      }
    }
    return;
  }
  // A prompt: sgemm on tiles of rows and chunks of ≤ 1024 columns. Every partial sum of a
  // chunk is an integer below 1024 · 127² < 2^24, so fp32 holds it exactly whatever order BLAS
  // adds in; the chunks add up exactly in double: the int32 accumulation, bit for bit.
  constexpr int64_t kChunk = 1024;
  const std::vector<float> xf(xq.begin(), xq.end());
  // Tiles of ≤ 1 Mi weights, at least one per thread.
  const int64_t per_thread = (n_out / omp_get_max_threads() + 15) / 16 * 16;
  const int64_t tile = std::max<int64_t>(16, std::min(per_thread, (int64_t(1) << 20) / n_in / 16 * 16));
  const int64_t n_tiles = (n_out + tile - 1) / tile;
#pragma omp parallel
  {
    std::vector<float> w(size_t(tile * n_in)), part(size_t(tokens * tile));
    std::vector<double> acc(size_t(tokens * tile));
#pragma omp for schedule(static)
    for (int64_t k = 0; k < n_tiles; ++k) {
      const int64_t o0 = k * tile, rows = std::min(tile, n_out - o0);
      for (int64_t i = 0; i < rows * n_in; ++i) w[size_t(i)] = q_.codes[size_t(o0 * n_in + i)];
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t c0 = 0; c0 < n_in; c0 += kChunk) {
        const int64_t cols = std::min(kChunk, n_in - c0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(rows), int(cols), 1.0f,
                    xf.data() + c0, int(n_in), w.data() + c0, int(n_in), 0.0f, part.data(), int(rows));
        for (int64_t i = 0; i < tokens * rows; ++i) acc[size_t(i)] += part[size_t(i)];
      }
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t r = 0; r < rows; ++r) finish(t, o0 + r, acc[size_t(t * rows + r)]);
    }
  }
}

E8Linear::E8Linear(e8p::E8Codes q) : TiledLinear(q.n_out, q.n_in, TensorView{}), q_(std::move(q)) {}

void E8Linear::forward(const float* x, float* y, int64_t tokens) const {
  if (tokens > kMatvecTokens) return TiledLinear::forward(x, y, tokens);
  const int64_t rows = 16, m = n_out();
#pragma omp parallel for schedule(static)
  for (int64_t r0 = 0; r0 < m; r0 += rows) e8p::dot_rows(q_, r0, std::min(m, r0 + rows), x, tokens, y);
}

int64_t E8Linear::weight_bytes() const {
  const int64_t resid_bytes = q_.bits == 3 ? 1 : q_.bits == 4 ? 2 : 0;
  return int64_t(q_.codes.size()) * (2 + resid_bytes) + 4;
}

QuipLinear::QuipLinear(Hadamard h_in, Hadamard h_out, std::vector<float> s_in, std::vector<float> s_out,
                       std::unique_ptr<Linear> inner, const TensorView& bias)
    : h_in_(std::move(h_in)),
      h_out_(std::move(h_out)),
      s_in_(std::move(s_in)),
      s_out_(std::move(s_out)),
      inner_(std::move(inner)) {
  QF_CHECK(h_in_.n() == inner_->n_in() && h_out_.n() == inner_->n_out() &&
               int64_t(s_in_.size()) == h_in_.n() && int64_t(s_out_.size()) == h_out_.n(),
           "QuIP transforms ({} in, {} out) do not fit a {}x{} weight", h_in_.n(), h_out_.n(),
           inner_->n_out(), inner_->n_in());
  if (bias.valid()) {
    QF_CHECK(bias.numel() == n_out(), "bias '{}' has {} values for {} outputs", bias.name, bias.numel(),
             n_out());
    b_ = bias.to_f32();
  }
}

void QuipLinear::forward(const float* x, float* y, int64_t tokens) const {
  std::vector<float> xt(x, x + tokens * n_in());
  hadamard_in(h_in_, s_in_, xt.data(), tokens);
  inner_->forward(xt.data(), y, tokens);
  hadamard_out(h_out_, s_out_, y, tokens);
  if (!b_.empty())
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t o = 0; o < n_out(); ++o) y[t * n_out() + o] += b_[size_t(o)];
}

std::vector<float> QuipLinear::dense_weights() const {
  const int64_t no = n_out(), ni = n_in();
  std::vector<float> w = inner_->dense_weights(), t(w.size());
  h_in_.apply(w.data(), no, false);  // row r of W̃·Hᵢᵀ is Hᵢ·w̃_r
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < ni; ++c)
    for (int64_t r = 0; r < no; ++r) t[size_t(c * no + r)] = w[size_t(r * ni + c)];
  h_out_.apply(t.data(), ni, false);  // Hₒ·M column by column
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < no; ++r)
    for (int64_t c = 0; c < ni; ++c)
      w[size_t(r * ni + c)] = t[size_t(c * no + r)] * s_out_[size_t(r)] * s_in_[size_t(c)];
  return w;
}

int64_t QuipLinear::weight_bytes() const {  // the signs as the checkpoint stores them (fp16)
  return inner_->weight_bytes() + 2 * int64_t(s_in_.size() + s_out_.size()) + 4 * int64_t(b_.size());
}

}  // namespace qf
