// Importance matrices: layer 0's q/k/v input is RMSNorm(embedding)·attn_norm, so its mean x²
// can be computed straight from the weights and compared; the file is parsed by hand against
// llama.cpp's .dat layout; corrupt files are refused with the reason.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "file_builders.h"
#include "io/gguf_writer.h"
#include "model/checkpoint.h"
#include "quant/imatrix.h"
#include "test_paths.h"

namespace qf {
namespace {

TEST(Imatrix, LayerZeroInputIsTheNormedEmbedding) {
  auto ck = load_checkpoint(test::bundled_stories() + "/hf");
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto tf = Transformer::create(*ck);
  ASSERT_TRUE(tf.ok());
  const int ctx = 16;
  std::vector<int32_t> tokens;
  for (int i = 0; i < 2 * ctx + 3; ++i) tokens.push_back((i * 37 + 5) % ck->config.vocab_size);
  auto im = compute_imatrix(**tf, tokens, ctx, -1, -1, nullptr);
  ASSERT_TRUE(im.ok()) << im.status().message();
  EXPECT_EQ(im->chunks, 2);
  EXPECT_EQ(im->tokens.at("blk.0.attn_k.weight"), 2 * ctx);
  const int E = ck->config.n_embd;
  std::vector<float> emb = ck->weights.tok_embd.to_f32(),
                     norm = ck->weights.layers[0].norms[kAttnNorm].to_f32();
  std::vector<double> expect(size_t(E), 0.0);
  for (int t = 0; t < 2 * ctx; ++t) {
    const float* x = emb.data() + int64_t(tokens[size_t(t)]) * E;
    double ss = 0;
    for (int i = 0; i < E; ++i) ss += double(x[i]) * x[i];
    const double inv = 1.0 / std::sqrt(ss / E + ck->config.rms_eps);
    for (int i = 0; i < E; ++i) expect[size_t(i)] += std::pow(x[i] * inv * norm[size_t(i)], 2) / (2 * ctx);
  }
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"}) {
    const auto& got = im->mean_sq.at(name);
    ASSERT_EQ(got.size(), size_t(E));
    for (int i = 0; i < E; ++i)
      EXPECT_NEAR(got[size_t(i)], expect[size_t(i)], 1e-5 * expect[size_t(i)] + 1e-9) << name << " " << i;
  }
  EXPECT_EQ(im->mean_sq.size(), size_t(7 * ck->config.n_layer));  // every block Linear, no lm_head
  EXPECT_EQ(im->mean_sq.at("blk.1.ffn_down.weight").size(), size_t(ck->config.n_ff));
}

TEST(Imatrix, FileIsLlamaCppsDatLayout) {
  Imatrix im;
  im.ctx = 4;
  im.chunks = 3;
  im.dataset = "calib.txt";
  im.mean_sq["blk.0.ffn_up.weight"] = {0.5f, 2.0f};
  im.tokens["blk.0.ffn_up.weight"] = 10;  // ncall = ceil(10 / 4) = 3
  im.mean_sq["blk.0.attn_q.weight"] = {1.0f};
  im.tokens["blk.0.attn_q.weight"] = 12;
  const std::string path = test::temp_dir("imatrix") + "/im.dat";
  ASSERT_TRUE(write_imatrix(im, path).ok());
  const std::string b = test::slurp(path);
  size_t pos = 0;
  auto i32 = [&]() {
    int32_t v;
    std::memcpy(&v, b.data() + pos, 4);
    pos += 4;
    return v;
  };
  auto f32 = [&]() {
    float v;
    std::memcpy(&v, b.data() + pos, 4);
    pos += 4;
    return v;
  };
  auto str = [&](int32_t n) {
    std::string s = b.substr(pos, size_t(n));
    pos += size_t(n);
    return s;
  };
  EXPECT_EQ(i32(), 2);
  EXPECT_EQ(str(i32()), "blk.0.attn_q.weight");  // sorted by name
  EXPECT_EQ(i32(), 3);                           // ncall
  EXPECT_EQ(i32(), 1);                           // nval
  EXPECT_EQ(f32(), 3.0f);                        // mean x² · ncall
  EXPECT_EQ(str(i32()), "blk.0.ffn_up.weight");
  EXPECT_EQ(i32(), 3);
  EXPECT_EQ(i32(), 2);
  EXPECT_EQ(f32(), 1.5f);
  EXPECT_EQ(f32(), 6.0f);
  EXPECT_EQ(i32(), 3);  // chunks
  EXPECT_EQ(str(i32()), "calib.txt");
  EXPECT_EQ(pos, b.size());
  auto back = read_imatrix(path);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->mean_sq, im.mean_sq);
  EXPECT_EQ(back->dataset, "calib.txt");
}

TEST(Imatrix, ReadsLlamaCppsGgufImatrix) {
  // The layout llama-imatrix's save_imatrix writes: in_sum2 F32 [n_mat, n] and counts F32 [n_mat].
  const std::string path = test::temp_dir("imatrix_gguf") + "/im.gguf";
  GGUFWriter w(path);
  w.set_str("general.type", "imatrix");
  w.set_u32("imatrix.chunk_count", 7);
  w.set_u32("imatrix.chunk_size", 512);
  w.add_tensor("blk.0.attn_q.weight.in_sum2", QType::F32, {1, 3});
  w.add_tensor("blk.0.attn_q.weight.counts", QType::F32, {1, 1});
  const float sums[3] = {10, 20, 40}, counts[1] = {5};
  ASSERT_TRUE(w.write_tensor("blk.0.attn_q.weight.in_sum2", sums, sizeof(sums)).ok());
  ASSERT_TRUE(w.write_tensor("blk.0.attn_q.weight.counts", counts, sizeof(counts)).ok());
  ASSERT_TRUE(w.finish().ok());
  auto im = read_imatrix(path);
  ASSERT_TRUE(im.ok()) << im.status().message();
  EXPECT_EQ(im->mean_sq.at("blk.0.attn_q.weight"), (std::vector<float>{2, 4, 8}));
  EXPECT_EQ(im->chunks, 7);
}

TEST(Imatrix, CorruptFilesAreRefused) {
  const std::string dir = test::temp_dir("imatrix_bad");
  test::write_file(dir + "/empty.dat", std::string(4, '\0'));
  auto r = read_imatrix(dir + "/empty.dat");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("0 entries"), std::string::npos) << r.status().message();
  std::string t;
  int32_t one = 1, len = 3, ncall = 1, nval = 1000;
  t.append(reinterpret_cast<char*>(&one), 4).append(reinterpret_cast<char*>(&len), 4).append("abc");
  t.append(reinterpret_cast<char*>(&ncall), 4).append(reinterpret_cast<char*>(&nval), 4).append(8, '\0');
  test::write_file(dir + "/short.dat", t);
  r = read_imatrix(dir + "/short.dat");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("entry 'abc' claims 1000 values, 8 bytes remain"), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace qf
