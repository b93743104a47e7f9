// The integer grid against hand-computed values and the reference Quantizer's rules; GPTQ
// packing against AutoGPTQ's bit layout; `qforge quantize` end to end on the bundled model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <tuple>

#include "core/half.h"
#include "file_builders.h"
#include "formats/int8_rowwise.h"
#include "formats/int_grid.h"
#include "io/bnb_layout.h"
#include "io/gptq_layout.h"
#include "kernels/backend.h"
#include "model/checkpoint.h"
#include "test_paths.h"

namespace qf {
namespace {

TEST(IntGrid, HandComputedAsymmetricGroup) {
  // xmin = -1, xmax = 2, maxq = 15: scale = 3/15 = 0.2, zero = round(1 / 0.2) = 5.
  const float x[] = {-1.0f, 0.5f, 2.0f, 0.25f};
  IntGridSpec s{4, 4, false, false};
  GroupParams p = find_group_params(x, s);
  EXPECT_FLOAT_EQ(p.scale, 0.2f);
  EXPECT_EQ(p.zero, 5.0f);
  EXPECT_EQ(quantize_value(-1.0f, p, 15), 0);
  EXPECT_EQ(quantize_value(0.5f, p, 15), 7);  // 0.5 / 0.2 = 2.5 rounds half to even: 2
  EXPECT_EQ(quantize_value(2.0f, p, 15), 15);
  EXPECT_EQ(quantize_value(0.25f, p, 15), 6);  // 1.25 -> 1
  EXPECT_EQ(quantize_value(9.0f, p, 15), 15);  // clamped
  EXPECT_FLOAT_EQ(dequantize_value(7, p), 0.4f);
}

TEST(IntGrid, HandComputedSymmetricAndZeroGroups) {
  const float x[] = {-1.0f, 0.5f, 2.0f, 0.25f};
  GroupParams p = find_group_params(x, IntGridSpec{4, 4, true, false});
  EXPECT_FLOAT_EQ(p.scale, 4.0f / 15);  // range [-2, 2]
  EXPECT_EQ(p.zero, 8.0f);              // (maxq + 1) / 2
  const float zeros[] = {0, 0, 0, 0};
  GroupParams z = find_group_params(zeros, IntGridSpec{4, 4, false, false});
  EXPECT_FLOAT_EQ(z.scale, 2.0f / 15);  // [-1, 1] by the reference's rule
  // fp32: scale = 2/15 rounds up to 0.13333334, so 1/scale = 7.4999996 and the zero is 7.
  EXPECT_EQ(z.zero, 7.0f);
}

// Within the group's range the error is at most half a step; every bit width 2..8.
TEST(IntGrid, RoundTripWithinHalfStep) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 0.02f);
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {false, true}) {
      std::vector<float> w(8 * 256);
      for (auto& v : w) v = nd(rng);
      IntGridSpec s{bits, 64, sym, false};
      IntQuantized q = quantize_rtn(w.data(), 8, 256, s);
      std::vector<float> back(w.size());
      q.dequantize_rows(0, 8, back.data());
      for (size_t i = 0; i < w.size(); ++i) {
        float scale = q.scales[(i / 256) * 4 + (i % 256) / 64];
        // sym grids put (maxq+1)/2 at zero, leaving one step fewer above it: the largest
        // positive value may be clipped by up to one step.
        EXPECT_LE(std::fabs(back[i] - w[i]), (sym ? 1.0f : 0.5f) * scale * (1 + 1e-5f)) << bits << " " << i;
      }
    }
}

// The backend's fake quantization (AWQ's searches) is round-to-nearest on the grid: plain, with
// the columns scaled first and divided back after, and with each group clamped first — each equal,
// bit for bit, to the same steps done by hand with quantize_rtn.
TEST(IntGrid, BackendFakeQuantizationIsRoundToNearest) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::uniform_real_distribution<float> ud(0.5f, 2.0f);
  for (const auto& [rows, n_in, group] : {std::tuple{7, 96, 32}, {3, 256, 128}, {5, 33, -1}, {1, 64, 64}})
    for (const auto& [bits, sym] : {std::pair{4, false}, {3, true}, {8, false}}) {
      const IntGridSpec spec{bits, group, sym, false};
      const int64_t g = spec.group_len(n_in), ng = n_in / g;
      std::vector<float> w(static_cast<size_t>(rows * n_in)), s(static_cast<size_t>(n_in)),
          gmax(static_cast<size_t>(rows * ng));
      for (auto& v : w) v = nd(rng);
      for (auto& v : s) v = ud(rng);
      for (auto& v : gmax) v = 0.1f * ud(rng);
      const float shrink = 0.85f;
      auto rtn = [&](std::vector<float> x) {
        quantize_rtn(x.data(), rows, n_in, spec).dequantize_rows(0, rows, x.data());
        return x;
      };
      std::vector<float> scaled = w, clamped = w;
      for (size_t i = 0; i < w.size(); ++i) {
        scaled[i] = w[i] * s[i % size_t(n_in)];
        const float m = gmax[(i / size_t(n_in)) * size_t(ng) + (i % size_t(n_in)) / size_t(g)] * shrink;
        clamped[i] = std::clamp(w[i], -m, m);
      }
      std::vector<float> want_scaled = rtn(scaled);
      for (size_t i = 0; i < w.size(); ++i) want_scaled[i] /= s[i % size_t(n_in)];
      const FakeQuantArgs plain{w.data(), nullptr, rows, n_in, g, bits, sym, nullptr, nullptr, 0};
      std::vector<float> got(w.size());
      FakeQuantArgs a = plain;
      a.dst = got.data();
      cpu_backend().fake_quantize_int(a);
      EXPECT_EQ(got, rtn(w)) << bits << " " << group;
      a.col_scale = s.data();
      cpu_backend().fake_quantize_int(a);
      EXPECT_EQ(got, want_scaled) << bits << " " << group;
      a = plain;
      a.dst = got.data();
      a.group_max = gmax.data();
      a.shrink = shrink;
      cpu_backend().fake_quantize_int(a);
      EXPECT_EQ(got, rtn(clamped)) << bits << " " << group;
    }
}

TEST(IntGrid, MseClipNeverIncreasesTheError) {
  std::mt19937 rng(9);
  std::student_t_distribution<float> heavy(3.f);  // outliers make clipping worthwhile
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> x(128);
    for (auto& v : x) v = heavy(rng);
    for (bool sym : {false, true}) {
      auto err = [&](bool clip) {
        IntGridSpec s{3, 128, sym, clip};
        GroupParams p = find_group_params(x, s);
        double e = 0;
        for (float v : x)
          e += std::pow(std::fabs(double(dequantize_value(quantize_value(v, p, 7), p) - v)), 2.4);
        return e;
      };
      EXPECT_LE(err(true), err(false));
    }
  }
}

TEST(IntGrid, RefusesImpossibleSpecs) {
  EXPECT_NE(validate({7, 100, false, false}, 256, "t")
                .message()
                .find("group size 100 does not divide the row length 256"),
            std::string::npos);
  EXPECT_NE(validate({9, 128, false, false}, 256, "t").message().find("2..8 bits"), std::string::npos);
  EXPECT_TRUE(validate({4, -1, false, false}, 172, "t").ok());
}

TEST(GptqLayout, ThreeBitValuesStraddleWordsAsAutoGptqPacksThem) {
  std::vector<uint8_t> v(32, 0);
  v[10] = 0b111;  // bits 30..32: two low bits end word 0, the high bit starts word 1
  v[21] = 0b101;  // bits 63..65: bit 31 of word 1, bits 0..1 of word 2
  std::vector<int32_t> words(3, 0);
  pack_bits(v.data(), 32, 1, 3, words.data(), 1);
  EXPECT_EQ(uint32_t(words[0]), 0xC0000000u);
  EXPECT_EQ(uint32_t(words[1]), 0x80000001u);
  EXPECT_EQ(uint32_t(words[2]), 0x00000002u);
  for (int k = 0; k < 32; ++k) EXPECT_EQ(unpack_bits(words.data(), 1, k, 3), v[size_t(k)]);
}

TEST(GptqLayout, FourBitNibblesLowFirst) {
  std::vector<uint8_t> v = {1, 2, 3, 4, 5, 6, 7, 8};
  int32_t word = 0;
  pack_bits(v.data(), 8, 1, 4, &word, 1);
  EXPECT_EQ(uint32_t(word), 0x87654321u);
}

TEST(GptqLayout, PackUnpackRoundTripEveryWidth) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    const int64_t n_out = 64, n_in = 256;
    std::vector<float> w(size_t(n_out * n_in));
    for (auto& v : w) v = nd(rng);
    IntQuantized q = quantize_rtn(w.data(), n_out, n_in, IntGridSpec{bits, 64, false, false});
    GptqTensors g = pack_gptq(q);
    ASSERT_EQ(g.qweight.size(), size_t(n_in * bits / 32 * n_out));
    auto view = [](auto& vec, QType t, std::vector<int64_t> shape) {
      return TensorView{"",
                        t,
                        shape,
                        reinterpret_cast<const uint8_t*>(vec.data()),
                        int64_t(vec.size() * sizeof(vec[0])),
                        nullptr};
    };
    auto back =
        unpack_gptq(view(g.qweight, QType::I32, {n_in * bits / 32, n_out}),
                    view(g.qzeros, QType::I32, {4, n_out * bits / 32}),
                    view(g.scales, QType::F16, {4, n_out}), view(g.g_idx, QType::I32, {n_in}), bits, "t");
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->codes, q.codes);
    for (size_t i = 0; i < q.scales.size(); ++i) {
      EXPECT_EQ(back->scales[i], f16_to_f32(f32_to_f16(q.scales[i])));  // stored as fp16
      if (q.zeros[i] >= 1)
        EXPECT_EQ(back->zeros[i], q.zeros[i]);
      else
        EXPECT_EQ(back->zeros[i], float(1 << bits));  // v1's zero − 1 wraps
    }
  }
}

TEST(GptqLayout, ActOrderGroupIndexRoundTrips) {
  // desc_act checkpoints keep the codes in column order; g_idx sends columns to groups out of
  // order. Decoding must use each column's own group's scale and zero.
  const int64_t n_out = 32, n_in = 64;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> w(size_t(n_out * n_in));
  for (auto& v : w) v = nd(rng);
  IntQuantized q = quantize_rtn(w.data(), n_out, n_in, IntGridSpec{4, 16, false, false});
  for (int64_t i = 0; i < n_in; ++i) q.g_idx.push_back(int32_t((i * 7) % 4));  // a permuted assignment
  GptqTensors g = pack_gptq(q);
  EXPECT_EQ(g.g_idx, q.g_idx);
  auto view = [](auto& vec, QType t, std::vector<int64_t> shape) {
    return TensorView{
        "",     t, shape, reinterpret_cast<const uint8_t*>(vec.data()), int64_t(vec.size() * sizeof(vec[0])),
        nullptr};
  };
  auto back =
      unpack_gptq(view(g.qweight, QType::I32, {n_in / 8, n_out}), view(g.qzeros, QType::I32, {4, n_out / 8}),
                  view(g.scales, QType::F16, {4, n_out}), view(g.g_idx, QType::I32, {n_in}), 4, "t");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->g_idx, q.g_idx);
  std::vector<float> d(size_t(n_out * n_in));
  back->dequantize_rows(0, n_out, d.data());
  for (int64_t r = 0; r < n_out; ++r)
    for (int64_t i = 0; i < n_in; ++i) {
      const size_t k = size_t(r * 4 + q.g_idx[size_t(i)]);
      const float scale = f16_to_f32(f32_to_f16(q.scales[k]));
      ASSERT_EQ(d[size_t(r * n_in + i)], scale * (float(q.codes[size_t(r * n_in + i)]) - back->zeros[k]));
    }
  std::vector<int32_t> bad = g.g_idx;
  bad[3] = 4;
  auto refused =
      unpack_gptq(view(g.qweight, QType::I32, {n_in / 8, n_out}), view(g.qzeros, QType::I32, {4, n_out / 8}),
                  view(g.scales, QType::F16, {4, n_out}), view(bad, QType::I32, {n_in}), 4, "t");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("g_idx[3] = 4, expected a group in [0, 4)"), std::string::npos);
}

TEST(PackedInt, DecodesExactlyAsTheUnpackedCodesEveryWidth) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int bits = 2; bits <= 8; ++bits)
    for (auto [n_out, n_in, group, act_order] :
         {std::tuple{5, 37, -1, false}, {3, 96, 32, false}, {3, 96, 32, true}}) {
      std::vector<float> w(size_t(n_out * n_in));
      for (auto& v : w) v = nd(rng);
      IntQuantized q = quantize_rtn(w.data(), n_out, n_in, IntGridSpec{bits, group, false, false});
      if (act_order)
        for (int64_t i = 0; i < n_in; ++i) q.g_idx.push_back(int32_t((i * 5) % q.n_groups()));
      PackedInt p(q);
      std::vector<float> a(size_t(n_out * n_in)), b(a.size());
      q.dequantize_rows(1, n_out - 1, a.data());
      p.dequantize_rows(1, n_out - 1, b.data());
      ASSERT_EQ(a, b) << bits << " bits, " << n_in << " columns";
    }
}

// ---- qforge quantize, end to end on the bundled model ------------------------------------

int run(const std::string& args, std::string* err = nullptr) {
  return test::run_qforge(args, test::temp_dir("quant_cli"), err);
}

TEST(QuantizeCli, WritesAGptqCheckpointThatLoadsBack) {
  std::string out = test::temp_dir("quant_out") + "/q8";
  ASSERT_EQ(run("quantize " + test::bundled_stories() + "/hf -o " + out + " --bits 8 --group -1"), 0);
  auto cfg = nlohmann::json::parse(test::slurp(out + "/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["quant_method"], "gptq");
  EXPECT_EQ(cfg["quantization_config"]["bits"], 8);
  EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer.json"));
  std::string err;
  EXPECT_EQ(run("eval " + out + " --base " + test::bundled_stories() + "/hf --text " +
                    test::text_path("tinystories-val-head") + " --ctx 64 --max-windows 4",
                &err),
            0)
      << err;
}

TEST(QuantizeCli, Nf4DoubleQuantCheckpointLoadsBack) {
  std::string out = test::temp_dir("quant_nf4") + "/nf4";
  ASSERT_EQ(run("quantize " + test::bundled_stories() + "/hf -o " + out + " --method nf4 --double-quant"), 0);
  auto cfg = nlohmann::json::parse(test::slurp(out + "/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["quant_method"], "bitsandbytes");
  EXPECT_EQ(cfg["quantization_config"]["bnb_4bit_quant_type"], "nf4");
  EXPECT_EQ(cfg["quantization_config"]["bnb_4bit_use_double_quant"], true);
  std::string err;
  EXPECT_EQ(run("eval " + out + " --base " + test::bundled_stories() + "/hf --text " +
                    test::text_path("tinystories-val-head") + " --ctx 64 --max-windows 4",
                &err),
            0)
      << err;
  EXPECT_EQ(
      run("quantize " + test::bundled_stories() + "/hf -o " + out + "2 --method fp4 --blocksize 48", &err),
      1);
  EXPECT_NE(err.find("blocksize must be a power of two from 32 to 4096, got 48"), std::string::npos) << err;
}

TEST(QuantizeCli, LlmInt8CheckpointHoldsBitsandbytesRowwiseCodes) {
  std::string out = test::temp_dir("quant_int8") + "/int8";
  ASSERT_EQ(run("quantize " + test::bundled_stories() + "/hf -o " + out +
                " --method llm-int8 --int8-threshold 4.5"),
            0);
  auto cfg = nlohmann::json::parse(test::slurp(out + "/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["load_in_8bit"], true);
  EXPECT_EQ(cfg["quantization_config"]["llm_int8_threshold"], 4.5);
  auto q = load_checkpoint(out);
  auto base = load_checkpoint(test::bundled_stories() + "/hf");
  ASSERT_TRUE(q.ok() && base.ok()) << q.status().message();
  EXPECT_EQ(q->quant.method, "bnb8");
  EXPECT_EQ(q->quant.int8_threshold, 4.5f);
  // The stored codes and SCB are bitsandbytes' rule applied to the original fp32 weight.
  const auto& lin = q->weights.layers[1].linears[kFfnDown];
  std::vector<float> w = base->weights.layers[1].linears[kFfnDown].weight.to_f32();
  Int8Rowwise expect = quantize_int8_rowwise(w.data(), lin.n_out, lin.n_in);
  auto got = deserialize_int8(lin.parts, lin.n_out, lin.n_in, lin.prefix);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(got->codes, expect.codes);
  EXPECT_EQ(got->scb, expect.scb);
  std::string err;
  EXPECT_EQ(run("eval " + out + " --base " + test::bundled_stories() + "/hf --text " +
                    test::text_path("tinystories-val-head") + " --ctx 64 --max-windows 4",
                &err),
            0)
      << err;
}

TEST(QuantizeCli, QuantizeHeadUntiesATiedEmbedding) {
  std::string out = test::temp_dir("quant_head") + "/nf4";
  ASSERT_EQ(run("quantize " + test::bundled_stories() + "/hf -o " + out + " --method nf4 --quantize-head"),
            0);
  auto cfg = nlohmann::json::parse(test::slurp(out + "/config.json"));
  EXPECT_EQ(cfg["tie_word_embeddings"], false);
  EXPECT_EQ(cfg["quantization_config"]["llm_int8_skip_modules"], nlohmann::json::array());
  auto q = load_checkpoint(out);
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_TRUE(q->weights.output.packed());
  EXPECT_EQ(q->weights.output.prefix, "lm_head");
  EXPECT_EQ(q->weights.tok_embd.type, QType::F32);  // the embedding itself stays as it was
  std::string err;
  EXPECT_EQ(run("eval " + out + " --base " + test::bundled_stories() + "/hf --text " +
                    test::text_path("tinystories-val-head") + " --ctx 64 --max-windows 4",
                &err),
            0)
      << err;
}

TEST(QuantizeCli, RefusesOptionsOfAnotherMethod) {
  std::string dir = test::temp_dir("quant_opts"), err;
  const std::string m = "quantize " + test::bundled_stories() + "/hf -o " + dir + "/q ";
  EXPECT_EQ(run(m + "--method nf4 --bits 7", &err), 1);
  EXPECT_NE(err.find("--bits 7 with --method nf4: nf4 codes are 4 bits"), std::string::npos) << err;
  EXPECT_EQ(run(m + "--method llm-int8 --bits 4", &err), 1);
  EXPECT_NE(err.find("its weights are 8 bits"), std::string::npos) << err;
  EXPECT_EQ(run(m + "--method rtn --double-quant", &err), 1);
  EXPECT_NE(err.find("--double-quant does not apply to --method rtn"), std::string::npos) << err;
  EXPECT_EQ(run(m + "--method fp4 --group 64", &err), 1);
  EXPECT_NE(err.find("--group does not apply to --method fp4"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/q"));
}

TEST(QuantizeCli, RefusesWhatTheLayoutCannotHoldAndLeavesNothing) {
  std::string dir = test::temp_dir("quant_bad");
  std::string err;
  // stories260K's MLP has 172 outputs: 4-bit qzeros need n_out·4 to be a multiple of 32.
  EXPECT_EQ(run("quantize " + test::bundled_stories() + "/hf -o " + dir + "/q4 --bits 4 --group -1", &err),
            1);
  EXPECT_NE(err.find("model.layers.0.mlp.gate_proj.weight: GPTQ packing needs"), std::string::npos) << err;
  EXPECT_EQ(run("quantize " + test::bundled_stories() + "/hf -o " + dir + "/g --bits 8 --group 48", &err), 1);
  EXPECT_NE(err.find("group size 48 does not divide the row length 64"), std::string::npos) << err;
  EXPECT_EQ(run("quantize " + test::bundled_stories() + "/hf -o " + dir + " --bits 8", &err), 1);
  EXPECT_NE(err.find("already exists"), std::string::npos) << err;
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 0);  // no partial output
}

TEST(QuantizeCli, QuipRefusesDimensionsWithoutAHadamardMatrixAndBadOptions) {
  std::string dir = test::temp_dir("quant_quip"), err;
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "Once upon a time there was a little girl who liked to play in the park. ";
  test::write_file(dir + "/calib.txt", text);
  const std::string m = "quantize " + test::bundled_stories() + "/hf -o " + dir + "/q --calib " + dir +
                        "/calib.txt --nsamples 2 --seqlen 64 ";
  // stories260K's MLP has 172 = 4 · 43 outputs: a Williamson order, no Paley factor.
  EXPECT_EQ(run(m + "--method quip# --bits 2", &err), 1);
  EXPECT_NE(
      err.find(
          "model.layers.0.mlp.gate_proj.weight (output dimension): dimension 172 = 2^2 · 43 has no supported "
          "Hadamard factorization"),
      std::string::npos)
      << err;
  EXPECT_EQ(run(m + "--method quip# --bits 5", &err), 1);
  EXPECT_NE(err.find("--bits 5 with --method quip#"), std::string::npos) << err;
  EXPECT_EQ(run(m + "--method quip --bits 3 --act-order", &err), 1);
  EXPECT_NE(err.find("--act-order does not apply to --method quip"), std::string::npos) << err;
  EXPECT_EQ(run("quantize " + test::bundled_stories() + "/hf -o " + dir + "/q --method quip# --bits 2", &err),
            1);
  EXPECT_NE(err.find("--method quip# needs --calib FILE"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/q"));
}

TEST(QuantizeCli, NanWeightIsNamedAndNoOutputIsLeft) {
  namespace fs = std::filesystem;
  std::string src = test::temp_dir("quant_nan_src");
  for (const auto& e : fs::directory_iterator(test::bundled_stories() + "/hf"))
    fs::copy(e.path(), src + "/" + e.path().filename().string());
  // Overwrite one weight of the F32 checkpoint with a NaN, in place.
  std::string st = test::slurp(src + "/model.safetensors");
  uint64_t hlen;
  std::memcpy(&hlen, st.data(), 8);
  auto header = nlohmann::json::parse(st.substr(8, hlen));
  size_t off =
      8 + hlen + header["model.layers.2.self_attn.v_proj.weight"]["data_offsets"][0].get<size_t>() + 4 * 5;
  float nan = std::nanf("");
  std::memcpy(st.data() + off, &nan, 4);
  fs::remove(src + "/model.safetensors");
  test::write_file(src + "/model.safetensors", st);
  std::string out = test::temp_dir("quant_nan_out") + "/q";
  std::string err;
  EXPECT_EQ(run("quantize " + src + " -o " + out + " --bits 8 --group -1", &err), 1);
  EXPECT_NE(err.find("tensor 'model.layers.2.self_attn.v_proj.weight': element 5 is nan"), std::string::npos)
      << err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(std::distance(fs::directory_iterator(fs::path(out).parent_path()), {}), 0);
}

}  // namespace
}  // namespace qf

namespace qf {
namespace {

TEST(QuantizeGgufCli, FallbackTypesAreAnnouncedAndBadTypesRefused) {
  std::string dir = test::temp_dir("quant_gguf"), err;
  // stories260K's MLP rows are 172 long: not a multiple of 256 (Q4_K) nor of 32 (Q5_0).
  ASSERT_EQ(
      run("quantize " + test::bundled_stories() + "/hf -o " + dir + "/q.gguf --format gguf --type Q4_K_M",
          &err),
      0);
  EXPECT_NE(err.find("warning: fallback type for blk.0.ffn_down.weight: Q4_K → Q5_0 (row length 172 is not a "
                     "multiple of 256)"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("blk.0.ffn_down.weight: Q5_0 → F16 (row length 172 is not a multiple of 32)"),
            std::string::npos)
      << err;
  auto back = load_checkpoint(dir + "/q.gguf");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->weights.layers[0].linears[kAttnQ].weight.type, QType::Q5_0);  // rows of 64: Q4_K → Q5_0
  EXPECT_EQ(run("quantize " + test::bundled_stories() + "/hf -o " + dir + "/x.gguf --format gguf --type Q7_K",
                &err),
            1);
  EXPECT_NE(err.find("--type Q7_K: not a GGUF file type qforge writes"), std::string::npos) << err;
  EXPECT_EQ(run("quantize " + test::bundled_stories() + "/hf -o " + dir +
                    "/x.gguf --format gguf --type Q4_0 --bits 4",
                &err),
            1);
  EXPECT_NE(err.find("--bits does not apply to --format gguf"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf"));
}

}  // namespace
}  // namespace qf

#include "io/awq_layout.h"

namespace qf {
namespace {

TEST(AwqLayout, EightColumnsInAwqsInterleavedOrder) {
  // One input column, output columns 0..7 holding codes 0..7: AutoAWQ's order_map
  // [0, 2, 4, 6, 1, 3, 5, 7] puts columns 0, 2, 4, 6, 1, 3, 5, 7 in nibbles 0..7.
  IntQuantized q;
  q.spec = IntGridSpec{4, -1, false, false};
  q.n_out = 8;
  q.n_in = 1;
  q.codes = {0, 1, 2, 3, 4, 5, 6, 7};
  q.scales.assign(8, 1.0f);
  q.zeros = {8, 9, 10, 11, 12, 13, 14, 15};
  AwqTensors t = pack_awq(q);
  ASSERT_EQ(t.qweight.size(), 1u);
  EXPECT_EQ(uint32_t(t.qweight[0]), 0x75316420u);
  EXPECT_EQ(uint32_t(t.qzeros[0]), 0xFDB9ECA8u);  // zeros stored as they are (no "− 1")
}

TEST(AwqLayout, RoundTripsAndRefusesWhatItCannotStore) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t n_out = 48, n_in = 256;
  std::vector<float> w(size_t(n_out * n_in));
  for (auto& v : w) v = nd(rng);
  IntQuantized q = quantize_rtn(w.data(), n_out, n_in, IntGridSpec{4, 64, false, false});
  AwqTensors t = pack_awq(q);
  auto view = [](auto& vec, QType ty, std::vector<int64_t> shape) {
    return TensorView{
        "",     ty, shape, reinterpret_cast<const uint8_t*>(vec.data()), int64_t(vec.size() * sizeof(vec[0])),
        nullptr};
  };
  auto back =
      unpack_awq(view(t.qweight, QType::I32, {n_in, n_out / 8}), view(t.qzeros, QType::I32, {4, n_out / 8}),
                 view(t.scales, QType::F16, {4, n_out}), 4, 64, "t");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->codes, q.codes);
  EXPECT_EQ(back->zeros, q.zeros);
  for (size_t i = 0; i < q.scales.size(); ++i)
    EXPECT_EQ(back->scales[i], f16_to_f32(f32_to_f16(q.scales[i])));
  auto bad =
      unpack_awq(view(t.qweight, QType::I32, {n_in, n_out / 8}), view(t.qzeros, QType::I32, {4, n_out / 8}),
                 view(t.scales, QType::F16, {4, n_out}), 4, 128, "model.layers.0.mlp.up_proj");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("model.layers.0.mlp.up_proj"), std::string::npos);
  EXPECT_FALSE(check_awq_packable(IntGridSpec{3, 128, false, false}, 64, 256, "x").ok());
  EXPECT_FALSE(check_awq_packable(IntGridSpec{4, 128, false, false}, 60, 256, "x").ok());
}

}  // namespace
}  // namespace qf
