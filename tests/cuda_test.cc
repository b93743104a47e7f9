// Tests of the CUDA backend against the CPU backend (the reference) and against fp64 scalar
// references, on random inputs of awkward shapes, every output poisoned with NaN first. Each
// test skips (GTEST_SKIP) without a CUDA device or without a QFORGE_CUDA build.
//
// Tolerances, u = 2^-24 (fp32 unit roundoff): a length-K fp32 dot product differs between two
// summation orders by at most 2·K·u·Σ|aᵢ||bᵢ| (Higham, Accuracy and Stability, §3.1, both sides'
// worst cases); element-wise work that both sides round the same way (add, RoPE without FMA)
// must agree exactly; expf and Highway's exp are each within 2 ulp, so SiLU·up agrees to 8 u
// relative; reductions in double agree to far below fp32 resolution, so RMSNorm agrees to 4 u.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <tuple>

#include "core/half.h"
#include "eval/perplexity.h"
#include "kernels/cuda/cuda_backend.h"
#include "model/checkpoint.h"
#include "model/linear.h"
#include "model/transformer.h"
#include "quant/gptq.h"
#include "test_paths.h"
#include "tolerances.h"

namespace qf {
namespace {

const double kU = std::ldexp(1.0, -24);

const Backend* gpu() { return cuda_backend(nullptr); }
// The bounds below are fp32's: the forward pass's products in exact fp32, not the default TF32
// (LinearAndGemmSubWithinTheDotProductBound checks TF32 against its own bound).
#define REQUIRE_GPU()                           \
  if (!gpu()) {                                 \
    std::string why;                            \
    cuda_backend(&why);                         \
    GTEST_SKIP() << "no CUDA backend: " << why; \
  }                                             \
  setenv("QFORGE_CUDA_MATH", "fp32", /*overwrite=*/1)

std::vector<float> random_vec(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Runs op on the device with inputs uploaded and the output poisoned; returns the output.
std::vector<float> poisoned(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want,
                  const std::vector<double>& tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(double(got[i]) - want[i]) <= tol[i]) && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: " << got[i] << " vs " << want[i] << " (tol " << tol[i] << ")";
  EXPECT_EQ(bad, 0) << what;
}

TEST(Cuda, WithoutADeviceTheBackendSaysWhy) {
  std::string why;
  if (cuda_backend(&why)) GTEST_SKIP() << "a device is present";
  EXPECT_FALSE(why.empty());
}

TEST(Cuda, RmsNormSiluAddRopeMatchTheCpu) {
  REQUIRE_GPU();
  const Backend &g = *gpu(), &c = cpu_backend();
  std::mt19937 rng(1);
  for (int n : {1, 3, 17}) {
    for (int dim : {1, 7, 64, 257, 4096}) {
      auto x = random_vec(size_t(n) * dim, rng, 3.0f), w = random_vec(size_t(dim), rng);
      std::vector<float> want(x.size());
      c.rms_norm(x.data(), w.data(), want.data(), n, dim, 1e-5f);
      Buffer<float> xd(g, x), wd(g, w), yd(g, poisoned(x.size()));
      g.rms_norm(xd.data(), wd.data(), yd.data(), n, dim, 1e-5f);
      std::vector<double> tol(x.size());
      for (size_t i = 0; i < x.size(); ++i) tol[i] = 4 * kU * std::fabs(want[i]);
      expect_close(yd.to_host(), want, tol, "rms_norm");

      auto up = random_vec(x.size(), rng);
      std::vector<float> gate = x;
      c.silu_mul(gate.data(), up.data(), int64_t(gate.size()));
      Buffer<float> gd(g, x), ud(g, up);
      g.silu_mul(gd.data(), ud.data(), int64_t(x.size()));
      for (size_t i = 0; i < x.size(); ++i) tol[i] = 8 * kU * std::fabs(gate[i]) + 1e-30;
      expect_close(gd.to_host(), gate, tol, "silu_mul");

      std::vector<float> sum = x;
      c.add(sum.data(), up.data(), int64_t(sum.size()));
      Buffer<float> sd(g, x);
      g.add(sd.data(), ud.data(), int64_t(x.size()));
      EXPECT_EQ(sd.to_host(), sum);
    }
    for (int hd : {2, 64, 128})
      for (bool inter : {false, true}) {
        const int heads = 3;
        auto x = random_vec(size_t(n) * heads * hd, rng), cs = random_vec(size_t(n) * hd, rng);
        std::vector<float> want = x;
        c.rope(want.data(), n, heads, hd, inter, cs.data());
        Buffer<float> xd(g, x), csd(g, cs);
        g.rope(xd.data(), n, heads, hd, inter, csd.data());
        EXPECT_EQ(xd.to_host(), want) << "rope hd " << hd << " interleaved " << inter;
      }
  }
}

// Data movement that both sides do exactly: column gathers, half/bfloat16 widening (every bit
// pattern; NaNs only as NaNs), the first non-finite element, and a dense stored weight widened
// on the device against the host's widening.
TEST(Cuda, GatherWidenFiniteAndStoredWeightsMatchTheCpu) {
  REQUIRE_GPU();
  const Backend &g = *gpu(), &c = cpu_backend();
  std::mt19937 rng(4);
  const int64_t rows = 37, n = 53;
  const auto src = random_vec(size_t(rows * n), rng);
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (auto& i : idx) i = int64_t(rng() % uint32_t(n));  // repeats allowed
  std::vector<float> want(src.size());
  c.gather_columns(src.data(), idx.data(), want.data(), rows, n);
  Buffer<float> sd(g, src), dd(g, poisoned(src.size()));
  g.gather_columns(sd.data(), idx.data(), dd.data(), rows, n);
  EXPECT_EQ(dd.to_host(), want);

  std::vector<uint16_t> bits(65536);
  std::iota(bits.begin(), bits.end(), uint16_t(0));
  Buffer<uint16_t> bd(g, bits);
  for (bool bf16 : {false, true}) {
    std::vector<float> w(bits.size());
    c.widen_16(bits.data(), bf16, w.data(), int64_t(bits.size()));
    Buffer<float> wd(g, poisoned(bits.size()));
    g.widen_16(bd.data(), bf16, wd.data(), int64_t(bits.size()));
    const auto got = wd.to_host();
    int bad = 0;
    for (size_t i = 0; i < w.size(); ++i)
      if (std::isnan(w[i]) ? !std::isnan(got[i]) : std::memcmp(&w[i], &got[i], 4) != 0) ++bad;
    EXPECT_EQ(bad, 0) << (bf16 ? "bf16" : "f16");
  }

  for (int64_t len : {int64_t(1), int64_t(1000), int64_t(3) << 20}) {
    std::vector<float> x(size_t(len), 1.0f);
    EXPECT_EQ(g.first_nonfinite(Buffer<float>(g, x).data(), len), len);
    for (int64_t at : {len - 1, len / 2, int64_t(0)}) {
      x[size_t(at)] = at % 2 ? std::numeric_limits<float>::infinity() : std::nanf("");
      EXPECT_EQ(g.first_nonfinite(Buffer<float>(g, x).data(), len), c.first_nonfinite(x.data(), len));
      EXPECT_EQ(c.first_nonfinite(x.data(), len), at);
    }
  }

  for (QType t : {QType::F16, QType::BF16, QType::F32}) {
    const int64_t o = 29, i = 67;
    const auto v = random_vec(size_t(o * i), rng);
    std::vector<uint8_t> bytes;
    for (float f : v) {
      const uint16_t h = t == QType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
      const auto* p = reinterpret_cast<const uint8_t*>(&h);
      if (t == QType::F32)
        bytes.insert(bytes.end(), reinterpret_cast<const uint8_t*>(&f),
                     reinterpret_cast<const uint8_t*>(&f) + 4);
      else
        bytes.insert(bytes.end(), p, p + 2);
    }
    const TensorView w = TensorView::owning("w", t, {o, i}, bytes);
    const TensorView b = TensorView::owning_f32("b", {o}, random_vec(size_t(o), rng));
    auto l = BackendLinear::from_stored(g, w, b);
    ASSERT_TRUE(l) << traits(t).name;
    EXPECT_EQ(l->dense_weights(), w.to_f32()) << traits(t).name;
    EXPECT_EQ(l->bias_values(), b.to_f32());
    EXPECT_EQ(l->weight_bytes(), StoredLinear(w, b).weight_bytes());
  }
}

// AWQ's fake quantization: the kernel repeats the host's arithmetic op by op, so bit for bit.
TEST(Cuda, FakeQuantizeIntMatchesTheCpu) {
  REQUIRE_GPU();
  const Backend &g = *gpu(), &c = cpu_backend();
  std::mt19937 rng(12);
  for (const auto& [rows, n_in, group] :
       {std::tuple{7, 96, 32}, {33, 256, 128}, {5, 17, 17}, {300, 4096, 128}})
    for (const auto& [bits, sym] : {std::pair{4, false}, {3, true}, {8, false}, {2, false}})
      for (int mode = 0; mode < 3; ++mode) {  // plain, scaled columns, clamped groups
        const int64_t n = int64_t(rows) * n_in, ng = n_in / group;
        const auto w = random_vec(size_t(n), rng, 0.05f);
        std::vector<float> s(static_cast<size_t>(n_in)), gmax(static_cast<size_t>(rows * ng));
        for (float& v : s) v = std::exp(random_vec(1, rng, 0.5f)[0]);
        for (float& v : gmax) v = 0.1f * std::exp(random_vec(1, rng, 0.3f)[0]);
        FakeQuantArgs a{w.data(), nullptr, rows, n_in, group, bits, sym, nullptr, nullptr, 0.9f};
        std::vector<float> want(static_cast<size_t>(n));
        a.dst = want.data();
        a.col_scale = mode == 1 ? s.data() : nullptr;
        a.group_max = mode == 2 ? gmax.data() : nullptr;
        c.fake_quantize_int(a);
        Buffer<float> wd(g, w), sd(g, s), md(g, gmax), out(g, poisoned(size_t(n)));
        a.src = wd.data();
        a.dst = out.data();
        a.col_scale = mode == 1 ? sd.data() : nullptr;
        a.group_max = mode == 2 ? md.data() : nullptr;
        g.fake_quantize_int(a);
        const auto got = out.to_host();
        EXPECT_EQ(std::memcmp(got.data(), want.data(), size_t(n) * 4), 0)
            << rows << "x" << n_in << " g" << group << " " << bits << (sym ? " sym" : "") << " mode " << mode;
      }
}

TEST(Cuda, LinearAndGemmSubWithinTheDotProductBound) {
  REQUIRE_GPU();
  const Backend &g = *gpu(), &c = cpu_backend();
  std::mt19937 rng(2);
  for (int64_t tokens : {1, 5, 33})
    for (int64_t n_in : {1, 31, 257})
      for (int64_t n_out : {1, 16, 255}) {
        auto x = random_vec(size_t(tokens * n_in), rng), w = random_vec(size_t(n_out * n_in), rng),
             b = random_vec(size_t(n_out), rng);
        std::vector<float> want(size_t(tokens * n_out));
        c.linear(x.data(), w.data(), b.data(), want.data(), tokens, n_in, n_out);
        Buffer<float> xd(g, x), wd(g, w), bd(g, b), yd(g, poisoned(want.size()));
        g.linear(xd.data(), wd.data(), bd.data(), yd.data(), tokens, n_in, n_out);
        // Σ|xᵢwᵢ| + |b| per output, times `factor`.
        auto bound = [&](const std::vector<float>& xs, const std::vector<float>& ws, double factor) {
          std::vector<double> tol(want.size());
          for (int64_t t = 0; t < tokens; ++t)
            for (int64_t o = 0; o < n_out; ++o) {
              double s = std::fabs(b[size_t(o)]);
              for (int64_t i = 0; i < n_in; ++i)
                s += std::fabs(double(xs[size_t(t * n_in + i)]) * ws[size_t(o * n_in + i)]);
              tol[size_t(t * n_out + o)] = factor * s;
            }
          return tol;
        };
        const std::vector<double> tol = bound(x, w, 2 * double(n_in + 1) * kU);
        expect_close(yd.to_host(), want, tol, "linear");
        // TF32: each factor cut to 10 fraction bits (relative ≤ 2^-10 each even when truncated, so a
        // product moves by ≤ 2·2^-10 + 2^-20), the sum in fp32 as before.
        setenv("QFORGE_CUDA_MATH", "tf32", 1);
        g.linear(xd.data(), wd.data(), bd.data(), yd.data(), tokens, n_in, n_out);
        setenv("QFORGE_CUDA_MATH", "fp32", 1);
        std::vector<double> tol32(tol.size());
        for (size_t i = 0; i < tol.size(); ++i)
          tol32[i] =
              tol[i] + (std::ldexp(1.0, -9) + std::ldexp(1.0, -20)) * tol[i] / (2 * double(n_in + 1) * kU);
        expect_close(yd.to_host(), want, tol32, "linear tf32");
        // bf16: both sides round x to bf16 the same way (nearest even) and multiply exactly; the
        // device's tensor cores may truncate their fp32 sums (≤ 2u a step, not u), so the bound is
        // 3·(n_in + 1)·u·Σ|x̃ᵢw̃ᵢ| rather than 2·(n_in + 1)·u.
        std::vector<uint16_t> w16(w.size());
        std::vector<float> xr(x.size()), wr(w.size());  // what the products see
        for (size_t i = 0; i < w.size(); ++i) wr[i] = bf16_to_f32(w16[i] = f32_to_bf16(w[i]));
        for (size_t i = 0; i < x.size(); ++i) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
        std::vector<float> want16(want.size());
        c.linear_bf16(x.data(), w16.data(), b.data(), want16.data(), tokens, n_in, n_out);
        Buffer<uint16_t> w16d(g, w16);
        Buffer<float> y16(g, poisoned(want.size()));
        g.linear_bf16(xd.data(), w16d.data(), bd.data(), y16.data(), tokens, n_in, n_out);
        expect_close(y16.to_host(), want16, bound(xr, wr, 3 * double(n_in + 1) * kU), "linear bf16");

        // C (tokens, n_out) −= A (tokens, n_in) · B (n_in, n_out), C pitched wider than n_out.
        const int64_t ldc = n_out + 3;
        auto C = random_vec(size_t(tokens * ldc), rng);
        std::vector<float> Cw = C;
        c.gemm_sub(x.data(), n_in, w.data(), n_out, Cw.data(), ldc, tokens, n_out, n_in);
        Buffer<float> Cd(g, C), Bd(g, w);
        g.gemm_sub(xd.data(), n_in, Bd.data(), n_out, Cd.data(), ldc, tokens, n_out, n_in);
        std::vector<double> tc(C.size(), 0.0);
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t o = 0; o < ldc; ++o) {
            if (o >= n_out) continue;  // outside the product: untouched, tolerance 0
            double s = std::fabs(C[size_t(t * ldc + o)]);
            for (int64_t i = 0; i < n_in; ++i)
              s += std::fabs(double(x[size_t(t * n_in + i)]) * w[size_t(i * n_out + o)]);
            tc[size_t(t * ldc + o)] = 2 * double(n_in + 1) * kU * s;
          }
        expect_close(Cd.to_host(), Cw, tc, "gemm_sub");

        // AWQ's per-group products: C (tokens, 2·n_out), its group g = x[:, g·k, (g+1)·k) ·
        // w[:, g·k, (g+1)·k)ᵀ for two groups of k = ⌊n_in / 2⌋ columns (pitched views), within the
        // dot-product bound over k; then the per-column squared distances of the first group
        // against `want`, bit for bit (same terms, same order).
        const int64_t k = std::max<int64_t>(1, n_in / 2), groups = n_in >= 2 ? 2 : 1, ldn = groups * n_out;
        std::vector<float> Cn(size_t(tokens * ldn));
        c.gemm_nt(x.data(), n_in, w.data(), n_in, Cn.data(), ldn, tokens, n_out, k, groups);
        Buffer<float> Cnd(g, poisoned(Cn.size()));
        g.gemm_nt(xd.data(), n_in, wd.data(), n_in, Cnd.data(), ldn, tokens, n_out, k, groups);
        std::vector<double> tn(Cn.size());
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t gi = 0; gi < groups; ++gi)
            for (int64_t o = 0; o < n_out; ++o) {
              double sum = 0;
              for (int64_t i = gi * k; i < (gi + 1) * k; ++i)
                sum += std::fabs(double(x[size_t(t * n_in + i)]) * w[size_t(o * n_in + i)]);
              tn[size_t(t * ldn + gi * n_out + o)] = 2 * double(k + 1) * kU * sum;
            }
        expect_close(Cnd.to_host(), Cn, tn, "gemm_nt");
        if (groups > 1) {  // the distances below read the first group as a (tokens, n_out) matrix
          std::vector<float> first(size_t(tokens * n_out));
          for (int64_t t = 0; t < tokens; ++t)
            std::copy_n(Cn.begin() + t * ldn, n_out, first.begin() + t * n_out);
          Cn = first;
        }
        std::vector<double> dc(static_cast<size_t>(n_out)), dg(dc.size());
        c.column_squared_distances(Cn.data(), want.data(), tokens, n_out, dc.data());
        Buffer<float> Cnw(g, Cn), wantd(g, want);
        g.column_squared_distances(Cnw.data(), wantd.data(), tokens, n_out, dg.data());
        EXPECT_EQ(dg, dc) << "column_squared_distances";
      }
}

// Attention against an fp64 scalar reference: scores within the dot-product bound, the softmax
// moving each probability by at most 2·Δs relative, the output within keys·u·max|v| on top.
TEST(Cuda, AttentionMatchesAScalarReference) {
  REQUIRE_GPU();
  const Backend& g = *gpu();
  std::mt19937 rng(3);
  struct Shape {
    int n, n_past, n_head, n_head_kv, hd, window;
  };
  for (Shape s : {Shape{1, 0, 1, 1, 2, 0}, Shape{5, 0, 4, 2, 16, 0}, Shape{17, 3, 8, 2, 64, 0},
                  Shape{33, 0, 6, 6, 32, 7}, Shape{1, 40, 4, 1, 64, 0}, Shape{65, 2, 2, 1, 128, 16}}) {
    const int qd = s.n_head * s.hd, kvd = s.n_head_kv * s.hd, keys = s.n_past + s.n;
    auto q = random_vec(size_t(s.n) * qd, rng), k = random_vec(size_t(keys) * kvd, rng),
         v = random_vec(size_t(keys) * kvd, rng);
    Buffer<float> qd_(g, q), kd(g, k), vd(g, v), od(g, poisoned(q.size()));
    g.attention(
        {qd_.data(), kd.data(), vd.data(), od.data(), s.n, s.n_past, s.n_head, s.n_head_kv, s.hd, s.window});
    const std::vector<float> got = od.to_host();
    const double scale = 1.0 / std::sqrt(double(s.hd));
    int bad = 0;
    for (int t = 0; t < s.n; ++t)
      for (int h = 0; h < s.n_head; ++h) {
        const int gk = h / (s.n_head / s.n_head_kv), visible = s.n_past + t + 1;
        const int first = s.window > 0 ? std::max(0, visible - s.window) : 0;
        std::vector<double> p(size_t(visible), 0.0);
        double mx = -1e300, sum = 0, ds = 0, vmax = 0;
        for (int j = first; j < visible; ++j) {
          double dot = 0, mag = 0;
          for (int i = 0; i < s.hd; ++i) {
            dot += double(q[size_t(t * qd + h * s.hd + i)]) * k[size_t(j * kvd + gk * s.hd + i)];
            mag += std::fabs(double(q[size_t(t * qd + h * s.hd + i)]) * k[size_t(j * kvd + gk * s.hd + i)]);
          }
          p[size_t(j)] = dot * scale;
          ds = std::max(ds, 2 * (s.hd + 1) * kU * mag * scale);
          mx = std::max(mx, p[size_t(j)]);
        }
        for (int j = first; j < visible; ++j) sum += (p[size_t(j)] = std::exp(p[size_t(j)] - mx));
        for (int j = 0; j < keys; ++j)
          for (int i = 0; i < s.hd; ++i)
            vmax = std::max(vmax, double(std::fabs(v[size_t(j * kvd + gk * s.hd + i)])));
        for (int i = 0; i < s.hd; ++i) {
          double want = 0;
          for (int j = first; j < visible; ++j)
            want += p[size_t(j)] / sum * v[size_t(j * kvd + gk * s.hd + i)];
          const double tol = (4 * ds + 4 * (keys + 2) * kU) * vmax;
          const float o = got[size_t(t * qd + h * s.hd + i)];
          if (!(std::fabs(o - want) <= tol) && bad++ < 5)
            ADD_FAILURE() << "attention n " << s.n << " past " << s.n_past << " t " << t << " h " << h
                          << " i " << i << ": " << o << " vs " << want << " tol " << tol;
        }
      }
    EXPECT_EQ(bad, 0);
  }
}

// QFORGE_CUDA_MATH=bf16: the Gram of x rounded to bf16 (nearest even), against Σ bf16(xᵢ)·bf16(xⱼ)
// in double (exact products, a 64-term sum off by ≤ 64·2^-53 relative: nothing here). The device
// sums exact products in fp32 over n terms: ≤ (n + 1)·2^-23·Σ|xᵢxⱼ| per call even if the tensor
// cores truncate rather than round (2^-23 instead of 2^-24 per addition), and the fp64 running
// sum adds nothing measurable.
TEST(Cuda, GramOfBf16ActivationsMatchesItsDefinition) {
  REQUIRE_GPU();
  const Backend& g = *gpu();
  std::mt19937 rng(9);
  setenv("QFORGE_CUDA_MATH", "bf16", 1);
  for (int d : {1, 17, 130}) {
    auto gg = g.gram(d);
    std::vector<double> want(size_t(d) * d, 0.0), bound(want.size(), 0.0);
    for (int n : {3, 31, 64}) {
      auto x = random_vec(size_t(n) * d, rng);
      Buffer<float> xd(g, x);
      gg->add(xd.data(), n);
      for (float& v : x) v = bf16_to_f32(f32_to_bf16(v));
      for (int i = 0; i < d; ++i)
        for (int j = 0; j < d; ++j) {
          double s = 0, a = 0;
          for (int t = 0; t < n; ++t) {
            const double p = double(x[size_t(t * d + i)]) * x[size_t(t * d + j)];
            s += p;
            a += std::fabs(p);
          }
          want[size_t(i * d + j)] += s;
          bound[size_t(i * d + j)] += (n + 1) * std::ldexp(1.0, -23) * a;
        }
    }
    const auto hg = gg->take(0.375).to_host();
    for (size_t i = 0; i < hg.size(); ++i)
      ASSERT_LE(std::fabs(hg[i] - 0.375 * want[i]), 0.375 * bound[i]) << "bf16 gram d " << d << " " << i;
  }
  setenv("QFORGE_CUDA_MATH", "fp32", 1);
}

TEST(Cuda, GramAndScoreAndInverseCholeskyMatchTheCpu) {
  REQUIRE_GPU();
  const Backend &g = *gpu(), &c = cpu_backend();
  std::mt19937 rng(4);
  // Gram: fp32 syrk (QFORGE_CUDA_MATH=fp32) within the two sides' dot-product bounds; the TF32
  // split (the default) adds ≤ 1.3·2^-20·|xᵢxⱼ| per product (cuda_backend.cu: lo = x − hi with
  // |lo| ≤ 2^-11|x|, rounded again by ≤ 2^-10 in two products; loᵢloⱼ ≤ 2^-22 dropped) over a
  // sum of 2n terms.
  for (const char* math : {"fp32", "tf32"})
    for (int d : {1, 17, 130}) {
      setenv("QFORGE_CUDA_MATH", math, 1);
      const bool tf32 = math[0] == 't';
      auto gc = c.gram(d), gg = g.gram(d);
      std::vector<double> bound(size_t(d) * d, 0.0);
      for (int n : {3, 31, 64}) {
        auto x = random_vec(size_t(n) * d, rng);
        gc->add(x.data(), n);
        Buffer<float> xd(g, x);
        gg->add(xd.data(), n);
        for (int i = 0; i < d; ++i)
          for (int j = 0; j < d; ++j) {
            double s = 0;
            for (int t = 0; t < n; ++t) s += std::fabs(double(x[size_t(t * d + i)]) * x[size_t(t * d + j)]);
            bound[size_t(i * d + j)] +=
                (tf32 ? std::ldexp(1.3, -20) + (2 * n + 1 + n + 1) * kU * 1.01 : 2 * (n + 1) * kU) * s;
          }
      }
      const auto hc = gc->take(0.375).to_host(), hg = gg->take(0.375).to_host();  // 3/8: the scale is exact
      for (size_t i = 0; i < hc.size(); ++i)
        ASSERT_LE(std::fabs(hc[i] - hg[i]), 0.375 * bound[i]) << math << " gram d " << d << " " << i;
      if (tf32) {
        setenv("QFORGE_CUDA_MATH", "fp32", 1);
        continue;
      }

      // SPD H = A·Aᵀ/n + I: well conditioned, so both fp64 factorizations agree to ~n·1e-16.
      std::vector<double> H(size_t(d) * d);
      for (int i = 0; i < d; ++i)
        for (int j = 0; j < d; ++j) H[size_t(i * d + j)] = hc[size_t(i * d + j)] / 75 + (i == j);
      std::vector<double> Uc = H;
      ASSERT_TRUE(c.inverse_cholesky(Uc.data(), d));
      Buffer<double> Ud(g, H);
      ASSERT_TRUE(g.inverse_cholesky(Ud.data(), d));
      const auto Ug = Ud.to_host();
      for (size_t i = 0; i < Uc.size(); ++i)
        ASSERT_NEAR(Ug[i], Uc[i], 1e-12 * d) << "inverse_cholesky d " << d;
      // Exact operations: H[perm, perm] + 0.25·I, against the definition on both backends.
      std::vector<int64_t> perm(static_cast<size_t>(d));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      std::vector<double> want(H.size()), Pc(H.size());
      for (int i = 0; i < d; ++i)
        for (int j = 0; j < d; ++j)
          want[size_t(i * d + j)] = H[size_t(perm[size_t(i)] * d + perm[size_t(j)])] + (i == j ? 0.25 : 0.0);
      c.permute_symmetric(H.data(), perm.data(), Pc.data(), d);
      c.add_diagonal(Pc.data(), d, 0.25);
      Buffer<double> Hd(g, H), Pd(g, int64_t(H.size()));
      g.permute_symmetric(Hd.data(), perm.data(), Pd.data(), d);
      g.add_diagonal(Pd.data(), d, 0.25);
      EXPECT_EQ(Pc, want);
      EXPECT_EQ(Pd.to_host(), want);
      std::vector<double> bad(size_t(d) * d, 0.0);  // not positive definite
      bad[0] = -1;
      Buffer<double> badd(g, bad);
      EXPECT_FALSE(g.inverse_cholesky(badd.data(), d));
    }
  // imatrix's and AWQ's column sums (|x| or x²): the terms exact in fp64, the sums in the same
  // order on both sides, so bit for bit. AWQ's squared distance: the same terms, the fp64 sums in
  // another order: within 2·n·2^-53 of the total (Higham's γ_n for each side).
  for (int64_t n : {1, 7, 300})
    for (int64_t d : {1, 33, 4100}) {
      const auto x = random_vec(size_t(n * d), rng, 3.0f), y = random_vec(size_t(n * d), rng, 3.0f);
      Buffer<float> xd(g, x), yd(g, y);
      for (int power : {1, 2}) {
        std::vector<double> want(static_cast<size_t>(d));
        c.column_sums(x.data(), n, d, power, want.data());
        Buffer<double> out(g, std::vector<double>(size_t(d), std::nan("")));
        g.column_sums(xd.data(), n, d, power, out.data());
        EXPECT_EQ(out.to_host(), want) << "column_sums power " << power << " n " << n << " d " << d;
      }
      const double dc = c.squared_distance(x.data(), y.data(), n * d, 1.5),
                   dg = g.squared_distance(xd.data(), yd.data(), n * d, 1.5);
      EXPECT_NEAR(dg, dc, 2 * double(n * d) * std::ldexp(1.0, -53) * dc) << "squared_distance n " << n;
    }
  for (int vocab : {2, 33, 8192, 50257})
    for (int rows : {1, 7}) {
      auto q = random_vec(size_t(rows) * vocab, rng, 4.0f), b = random_vec(size_t(rows) * vocab, rng, 4.0f);
      if (vocab > 2) q[1] = q[2] = 100;  // a tie: the lowest index is the argmax
      std::vector<int32_t> targets(static_cast<size_t>(rows));
      for (auto& t : targets) t = int32_t(rng() % uint32_t(vocab));
      std::vector<PositionStats> sc(static_cast<size_t>(rows)), sg(sc.size());
      c.score(q.data(), b.data(), targets.data(), rows, vocab, sc.data());
      Buffer<float> qd(g, q), bd(g, b);
      g.score(qd.data(), bd.data(), targets.data(), rows, vocab, sg.data());
      for (int r = 0; r < rows; ++r) {  // both in double: 1e-12 relative is ~10^4 double ulps
        EXPECT_NEAR(sg[size_t(r)].nll, sc[size_t(r)].nll, 1e-12 * (1 + std::fabs(sc[size_t(r)].nll)));
        EXPECT_NEAR(sg[size_t(r)].base_nll, sc[size_t(r)].base_nll,
                    1e-12 * (1 + std::fabs(sc[size_t(r)].base_nll)));
        EXPECT_NEAR(sg[size_t(r)].kld, sc[size_t(r)].kld, 1e-12 * (1 + sc[size_t(r)].kld));
        EXPECT_EQ(sg[size_t(r)].agree, sc[size_t(r)].agree);
      }
    }
}

// The bundled stories260K and qf-tiny-5m through both backends: the logits of every position
// within tests/tolerances.h's bound for two fp32 evaluations.
TEST(Cuda, ForwardPassMatchesTheCpuOnTheBundledModels) {
  REQUIRE_GPU();
  for (const std::string& dir :
       {test::bundled_stories() + "/hf", test::source_dir() + "/models/qf-tiny-5m"}) {
    auto ck = load_checkpoint(dir);
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    auto tc = Transformer::create(*ck), tg = Transformer::create(*ck, *gpu());
    ASSERT_TRUE(tc.ok() && tg.ok());
    const int vocab = ck->config.vocab_size, n = 100;
    std::vector<int32_t> ids(n);
    std::mt19937 rng(5);
    for (auto& t : ids) t = int32_t(rng() % uint32_t(vocab));
    KVCache cc = (*tc)->new_cache(n), cg = (*tg)->new_cache(n);
    std::vector<float> want(size_t(n) * vocab);
    (*tc)->forward(ids.data(), 60, cc, want.data());
    (*tc)->forward(ids.data() + 60, n - 60, cc, want.data() + size_t(60) * vocab);  // through the cache
    Buffer<float> ld(*gpu(), poisoned(want.size()));
    (*tg)->forward(ids.data(), 60, cg, ld.data());
    (*tg)->forward(ids.data() + 60, n - 60, cg, ld.data() + int64_t(60) * vocab);
    const auto got = ld.to_host();
    double mx = 0;
    for (float v : want) mx = std::max(mx, double(std::fabs(v)));
    const double tol = test::logit_tolerance(ck->config, mx);
    expect_close(got, want, std::vector<double>(want.size(), tol), dir.c_str());
  }
}

// GPTQ on the device against GPTQ on the CPU for one random layer with a Hessian of real shape:
// the same algorithm, differing by the trailing products' summation order (≤ the dot-product
// bound per update) and the factorization's; a weight whose value sits within that of a rounding
// boundary may round the other way. So: ≥ 99 % of the codes equal, and the losses within 1 %.
// Grids: rounded by the device's kernel (asym g128, sym 3-bit g32, 8-bit per channel) and on
// the host between device updates (the clip search).
TEST(Cuda, GptqOnTheDeviceMatchesTheCpu) {
  REQUIRE_GPU();
  std::mt19937 rng(6);
  const int64_t n_out = 96, n_in = 512, n = 2048;
  const auto x = random_vec(size_t(n * n_in), rng);
  auto gram = cpu_backend().gram(int(n_in));
  gram->add(x.data(), int(n));
  const std::vector<double> H = gram->take(2.0 / n).to_host();
  const auto W = random_vec(size_t(n_out * n_in), rng, 0.02f);
  for (const IntGridSpec& spec : {IntGridSpec{4, 128, false, false}, IntGridSpec{3, 32, true, false},
                                  IntGridSpec{8, -1, false, false}, IntGridSpec{4, 128, false, true}})
    for (bool act_order : {false, true}) {
      SCOPED_TRACE(spec.describe());
      const std::vector<int64_t> perm =
          act_order ? act_order_permutation(diagonal(Buffer<double>(cpu_backend(), H), n_in))
                    : std::vector<int64_t>{};
      IntRowGrid gc(spec, n_out, n_in, perm, nullptr), gg(spec, n_out, n_in, perm, nullptr);
      std::vector<float> wc = W, wg = W;
      auto sc = gptq_quantize(wc.data(), n_out, n_in, H, GptqSpec{0.01, act_order, 128}, gc, perm, "cpu");
      auto sg =
          gptq_quantize(wg.data(), n_out, n_in, H, GptqSpec{0.01, act_order, 128}, gg, perm, "gpu", *gpu());
      ASSERT_TRUE(sc.ok() && sg.ok());
      const IntQuantized qc = std::move(gc).result(), qg = std::move(gg).result();
      int64_t same = 0;
      for (size_t i = 0; i < qc.codes.size(); ++i) same += qc.codes[i] == qg.codes[i];
      EXPECT_GE(double(same) / double(qc.codes.size()), 0.99) << "act_order " << act_order;
      EXPECT_NEAR(sg->loss / sc->loss, 1.0, 0.01);
      std::printf("GPTQ %s act_order=%d: %.4f %% codes equal, loss cpu %.6g gpu %.6g\n",
                  spec.describe().c_str(), act_order, 100.0 * double(same) / double(qc.codes.size()),
                  sc->loss, sg->loss);
    }
}

}  // namespace
}  // namespace qf
