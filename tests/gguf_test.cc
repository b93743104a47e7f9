// GGUF reader: the real llama.cpp-made file, and handcrafted corrupt files (one per failure).
#include <gtest/gtest.h>

#include <filesystem>

#include "file_builders.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "test_paths.h"

namespace qf {
namespace {

using test::Bytes;

struct GgufSpec {
  std::string magic = "GGUF";
  uint32_t version = 3;
  int64_t alignment = -1;  // -1: no general.alignment key
  uint32_t n_dims = 2;
  uint64_t ne0 = 32, ne1 = 2;
  uint32_t type = 0;  // F32
  uint64_t offset = 0;
  uint64_t data_bytes = 32 * 2 * 4;
  uint64_t kv_count_override = 0;  // nonzero: lie about the metadata count
  uint32_t arch_value_type = 8;    // string
};

std::string build(const GgufSpec& s) {
  Bytes b;
  b.b += s.magic;
  b.put<uint32_t>(s.version).put<uint64_t>(1).put<uint64_t>(s.kv_count_override ? s.kv_count_override
                                                                                : (s.alignment >= 0 ? 2 : 1));
  b.str("general.architecture").put<uint32_t>(s.arch_value_type).str("llama");
  if (s.alignment >= 0) b.str("general.alignment").put<uint32_t>(4).put<uint32_t>(uint32_t(s.alignment));
  b.str("t").put<uint32_t>(s.n_dims);
  b.put<uint64_t>(s.ne0);
  if (s.n_dims > 1) b.put<uint64_t>(s.ne1);
  for (uint32_t d = 2; d < s.n_dims; ++d) b.put<uint64_t>(1);
  b.put<uint32_t>(s.type).put<uint64_t>(s.offset);
  b.pad_to(s.alignment > 0 && (s.alignment & (s.alignment - 1)) == 0 ? size_t(s.alignment) : 32);
  b.b.append(s.data_bytes, '\x01');
  return b.b;
}

std::string open_error(const GgufSpec& spec) {
  std::string path = test::temp_dir("gguf") + "/t.gguf";
  test::write_file(path, build(spec));
  auto g = GGUFFile::open(path);
  if (g.ok()) return "";
  EXPECT_NE(g.status().message().find(path), std::string::npos) << "error must name the file";
  return g.status().message();
}

TEST(Gguf, HandcraftedValidFileOpens) {
  std::string path = test::temp_dir("gguf_ok") + "/t.gguf";
  test::write_file(path, build({}));
  auto g = GGUFFile::open(path);
  ASSERT_TRUE(g.ok()) << g.status().message();
  auto t = g->tensor("t");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 32}));  // row-major: ne reversed
  EXPECT_EQ(*g->get_string("general.architecture"), "llama");
}

TEST(Gguf, BadMagic) {
  GgufSpec s;
  s.magic = "GGML";
  EXPECT_NE(open_error(s).find("bad magic"), std::string::npos);
}
TEST(Gguf, UnsupportedVersion) {
  GgufSpec s;
  s.version = 1;
  EXPECT_NE(open_error(s).find("unsupported GGUF version 1"), std::string::npos);
}
TEST(Gguf, AlignmentNotPowerOfTwo) {
  GgufSpec s;
  s.alignment = 3;
  EXPECT_NE(open_error(s).find("power of two"), std::string::npos);
}
TEST(Gguf, AlignmentZero) {
  GgufSpec s;
  s.alignment = 0;
  EXPECT_NE(open_error(s).find("power of two"), std::string::npos);
}
TEST(Gguf, OffsetOutsideData) {
  GgufSpec s;
  s.offset = 1 << 20;
  EXPECT_NE(open_error(s).find("outside the data section"), std::string::npos);
}
TEST(Gguf, OffsetNotAligned) {
  GgufSpec s;
  s.offset = 4;
  EXPECT_NE(open_error(s).find("not a multiple of the alignment"), std::string::npos);
}
TEST(Gguf, TruncatedData) {
  GgufSpec s;
  s.data_bytes = 100;
  EXPECT_NE(open_error(s).find("outside the data section"), std::string::npos);
}
TEST(Gguf, TooManyDims) {
  GgufSpec s;
  s.n_dims = 5;
  EXPECT_NE(open_error(s).find("5 dimensions"), std::string::npos);
}
TEST(Gguf, ZeroDim) {
  GgufSpec s;
  s.ne1 = 0;
  EXPECT_NE(open_error(s).find("zero or overflowing"), std::string::npos);
}
TEST(Gguf, OverflowingDims) {
  GgufSpec s;
  s.ne0 = uint64_t(1) << 40;
  s.ne1 = uint64_t(1) << 40;
  EXPECT_NE(open_error(s).find("zero or overflowing"), std::string::npos);
}
TEST(Gguf, RowNotMultipleOfBlock) {
  GgufSpec s;
  s.type = 8;  // Q8_0, block 32
  s.ne0 = 33;
  EXPECT_NE(open_error(s).find("not a multiple of the Q8_0 block size"), std::string::npos);
}
TEST(Gguf, CountsLargerThanFile) {
  GgufSpec s;
  s.kv_count_override = uint64_t(1) << 60;
  EXPECT_NE(open_error(s).find("cannot fit"), std::string::npos);
}
TEST(Gguf, UnknownValueType) {
  GgufSpec s;
  s.arch_value_type = 99;
  EXPECT_NE(open_error(s).find("unknown value type 99"), std::string::npos);
}
TEST(Gguf, TruncatedHeader) {
  std::string path = test::temp_dir("gguf_trunc") + "/t.gguf";
  std::string bytes = build({});
  test::write_file(path, bytes.substr(0, 40));
  auto g = GGUFFile::open(path);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("truncated"), std::string::npos) << g.status().message();
}
TEST(Gguf, TypeQforgeCannotDecodeIsNamed) {
  GgufSpec s;
  s.data_bytes = 50;  // one IQ1_S block
  s.type = 19;        // IQ1_S: a type qforge does not decode
  s.ne0 = 256;
  s.ne1 = 1;
  std::string path = test::temp_dir("gguf_q4k") + "/t.gguf";
  test::write_file(path, build(s));
  auto g = GGUFFile::open(path);
  ASSERT_TRUE(g.ok()) << g.status().message();
  auto t = g->tensor("t");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("tensor 't' has type IQ1_S"), std::string::npos)
      << t.status().message();
}

TEST(Gguf, EveryMetadataValueType) {
  Bytes b;
  b.b += "GGUF";
  b.put<uint32_t>(2).put<uint64_t>(0).put<uint64_t>(14);  // version 2: same layout as 3
  b.str("u8").put<uint32_t>(0).put<uint8_t>(200);
  b.str("i8").put<uint32_t>(1).put<int8_t>(-100);
  b.str("u16").put<uint32_t>(2).put<uint16_t>(60000);
  b.str("i16").put<uint32_t>(3).put<int16_t>(-30000);
  b.str("u32").put<uint32_t>(4).put<uint32_t>(4000000000u);
  b.str("i32").put<uint32_t>(5).put<int32_t>(-2000000000);
  b.str("f32").put<uint32_t>(6).put<float>(0.25f);
  b.str("bool").put<uint32_t>(7).put<uint8_t>(1);
  b.str("str").put<uint32_t>(8).str("héllo");
  b.str("u64").put<uint32_t>(10).put<uint64_t>(uint64_t(1) << 40);
  b.str("i64").put<uint32_t>(11).put<int64_t>(-(int64_t(1) << 40));
  b.str("f64").put<uint32_t>(12).put<double>(-1.5);
  b.str("arr")
      .put<uint32_t>(9)
      .put<uint32_t>(5)
      .put<uint64_t>(3)
      .put<int32_t>(1)
      .put<int32_t>(-2)
      .put<int32_t>(3);
  b.str("nested").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(1);  // array of one array of strings
  b.put<uint32_t>(8).put<uint64_t>(2).str("a").str("b");
  std::string path = test::temp_dir("gguf_types") + "/t.gguf";
  test::write_file(path, b.b);
  auto g = GGUFFile::open(path);
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(*g->get_int("u8"), 200);
  EXPECT_EQ(*g->get_int("i8"), -100);
  EXPECT_EQ(*g->get_int("u16"), 60000);
  EXPECT_EQ(*g->get_int("i16"), -30000);
  EXPECT_EQ(*g->get_int("u32"), 4000000000LL);
  EXPECT_EQ(*g->get_int("i32"), -2000000000);
  EXPECT_EQ(*g->get_float("f32"), 0.25);
  EXPECT_TRUE(std::get<bool>(g->find("bool")->v));
  EXPECT_EQ(*g->get_string("str"), "héllo");
  EXPECT_EQ(*g->get_int("u64"), int64_t(1) << 40);
  EXPECT_EQ(*g->get_int("i64"), -(int64_t(1) << 40));
  EXPECT_EQ(*g->get_float("f64"), -1.5);
  EXPECT_EQ(*g->get_float_array("arr"), (std::vector<double>{1, -2, 3}));
  const auto& nested = *g->find("nested")->as_array();
  ASSERT_EQ(nested.size(), 1u);
  EXPECT_EQ(*(*nested[0].as_array())[1].as_string(), "b");
}

TEST(Gguf, BoolOutOfRange) {
  Bytes b;
  b.b += "GGUF";
  b.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  b.str("flag").put<uint32_t>(7).put<uint8_t>(2);
  std::string path = test::temp_dir("gguf_bool") + "/t.gguf";
  test::write_file(path, b.b);
  auto g = GGUFFile::open(path);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("key 'flag': bool value 2 is not 0 or 1"), std::string::npos);
}

TEST(Gguf, RealLlamaCppFile) {
  auto g = GGUFFile::open(test::bundled_stories() + "/stories260K.gguf");
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(g->version(), 3u);
  EXPECT_EQ(g->tensor_infos().size(), 48u);
  EXPECT_EQ(*g->get_string("general.architecture"), "llama");
  EXPECT_EQ(*g->get_int("llama.block_count"), 5);
  EXPECT_EQ(g->get_string_array("tokenizer.ggml.tokens")->size(), 512u);
  auto t = g->tensor("token_embd.weight");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(t->type, QType::F32);
}

}  // namespace
}  // namespace qf

namespace qf {
namespace {

TEST(GgufWriter, RoundTripsThroughTheReader) {
  const std::string path = test::temp_dir("gguf_writer") + "/w.gguf";
  {
    GGUFWriter w(path);
    w.set_str("general.architecture", "llama");
    w.set_u32("llama.block_count", 3);
    w.set_f32("llama.rope.freq_base", 500000.0f);
    w.set_bool("tokenizer.ggml.add_bos_token", false);
    w.set_str_array("tokenizer.ggml.tokens", {"a", "b"});
    w.set_i32_array("tokenizer.ggml.token_type", {1, 3});
    w.set_u32("llama.block_count", 4);  // replaced in place
    w.add_tensor("norm", QType::F32, {5});
    w.add_tensor("m", QType::F16, {2, 3});
    const float norm[5] = {1, 2, 3, 4, 5};
    const uint16_t m[6] = {0x3C00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600};  // 1..6 in fp16
    ASSERT_TRUE(w.write_tensor("norm", norm, sizeof(norm)).ok());
    EXPECT_FALSE(std::filesystem::exists(path));  // only the temporary file exists until finish()
    ASSERT_TRUE(w.write_tensor("m", m, sizeof(m)).ok());
    ASSERT_TRUE(w.finish().ok());
  }
  auto g = GGUFFile::open(path);
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(g->version(), 3u);
  EXPECT_EQ(g->metadata().size(), 6u);
  EXPECT_EQ(*g->get_int("llama.block_count"), 4);
  EXPECT_EQ(*g->get_float("llama.rope.freq_base"), 500000.0);
  EXPECT_EQ(*g->get_string_array("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "b"}));
  auto m = g->tensor("m");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(m->to_f32(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(g->tensor_info("m")->offset % 32, 0u);  // data aligned as llama.cpp requires
  EXPECT_EQ(g->tensor("norm")->to_f32(), (std::vector<float>{1, 2, 3, 4, 5}));
}

TEST(GgufWriter, UnfinishedWriteLeavesNothing) {
  const std::string dir = test::temp_dir("gguf_writer_abort");
  {
    GGUFWriter w(dir + "/w.gguf");
    w.add_tensor("a", QType::F32, {4});
    w.add_tensor("b", QType::F32, {4});
    const float a[4] = {};
    ASSERT_TRUE(w.write_tensor("a", a, sizeof(a)).ok());
    auto wrong = w.write_tensor("c", a, sizeof(a));
    ASSERT_FALSE(wrong.ok());
    EXPECT_NE(wrong.message().find("tensor 'c' (16 bytes) written out of the declared order"),
              std::string::npos);
  }  // destroyed without finish()
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 0);
}

}  // namespace
}  // namespace qf

namespace qf {
namespace {

TEST(Gguf, DuplicateTensorNameIsRefused) {
  const std::string path = test::temp_dir("gguf_dup") + "/d.gguf";
  GGUFWriter w(path);  // the writer does not police names; the reader must
  w.add_tensor("x", QType::F32, {2});
  w.add_tensor("x", QType::F32, {2});
  const float v[2] = {1, 2};
  ASSERT_TRUE(w.write_tensor("x", v, sizeof(v)).ok());
  ASSERT_TRUE(w.write_tensor("x", v, sizeof(v)).ok());
  ASSERT_TRUE(w.finish().ok());
  auto g = GGUFFile::open(path);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("duplicate tensor 'x'"), std::string::npos) << g.status().message();
}

}  // namespace
}  // namespace qf
