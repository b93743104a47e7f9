// safetensors reader: handcrafted files whose header lies, and sharded directories.
#include <gtest/gtest.h>

#include "file_builders.h"
#include "io/safetensors.h"

namespace qf {
namespace {

std::string st_file(const std::string& header, size_t data_bytes, int64_t len_override = -1) {
  test::Bytes b;
  b.put<uint64_t>(len_override >= 0 ? uint64_t(len_override) : header.size());
  b.b += header;
  b.b.append(data_bytes, '\0');
  return b.b;
}

std::string read_error(const std::string& bytes) {
  std::string path = test::temp_dir("st") + "/model.safetensors";
  test::write_file(path, bytes);
  auto st = read_safetensors(path);
  if (st.ok()) return "";
  EXPECT_NE(st.status().message().find(path), std::string::npos);
  return st.status().message();
}

const std::string kGood = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";

TEST(Safetensors, ValidFile) {
  std::string path = test::temp_dir("st_ok") + "/model.safetensors";
  test::write_file(path, st_file(kGood, 24));
  auto st = read_safetensors(path);
  ASSERT_TRUE(st.ok()) << st.status().message();
  ASSERT_EQ(st->tensors.size(), 1u);
  EXPECT_EQ(st->tensors[0].shape, (std::vector<int64_t>{2, 3}));
}
TEST(Safetensors, HeaderLengthBeyondFile) {
  EXPECT_NE(read_error(st_file(kGood, 24, 1 << 30)).find("exceeds the file size"), std::string::npos);
}
TEST(Safetensors, TooShort) { EXPECT_NE(read_error("abc").find("too short"), std::string::npos); }
TEST(Safetensors, HeaderNotJson) {
  EXPECT_NE(read_error(st_file("{nope", 0)).find("not valid JSON"), std::string::npos);
}
TEST(Safetensors, OffsetsBeyondData) {
  EXPECT_NE(read_error(st_file(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", 8))
                .find("outside the data section"),
            std::string::npos);
}
TEST(Safetensors, OffsetsDisagreeWithShape) {
  EXPECT_NE(read_error(st_file(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 24))
                .find("needs 24 bytes"),
            std::string::npos);
}
TEST(Safetensors, UnknownDtype) {
  EXPECT_NE(read_error(st_file(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2))
                .find("unsupported dtype 'F8_E4M3'"),
            std::string::npos);
}
TEST(Safetensors, ReversedOffsets) {
  EXPECT_NE(
      read_error(st_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8)).find("outside"),
      std::string::npos);
}
TEST(Safetensors, ShardedIndexMissingTensor) {
  std::string dir = test::temp_dir("st_shards");
  test::write_file(dir + "/a.safetensors", st_file(kGood, 24));
  test::write_file(dir + "/model.safetensors.index.json",
                   R"({"weight_map":{"w":"a.safetensors","v":"a.safetensors"}})");
  auto r = read_safetensors_dir(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tensor 'v' listed in the index is missing from a.safetensors"),
            std::string::npos)
      << r.status().message();
}
TEST(Safetensors, TruncatedShard) {
  std::string dir = test::temp_dir("st_trunc");
  std::string full = st_file(kGood, 24);
  test::write_file(dir + "/a.safetensors", full.substr(0, full.size() - 10));
  test::write_file(dir + "/model.safetensors.index.json", R"({"weight_map":{"w":"a.safetensors"}})");
  auto r = read_safetensors_dir(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("a.safetensors: tensor 'w'"), std::string::npos)
      << r.status().message();
}
TEST(Safetensors, ShardOutsideFolderRefused) {
  std::string dir = test::temp_dir("st_escape");
  test::write_file(dir + "/model.safetensors.index.json", R"({"weight_map":{"w":"../x.safetensors"}})");
  auto r = read_safetensors_dir(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected a file in the same folder"), std::string::npos);
}

// Fuzzing found it (fuzz/hf_layout_fuzz.cc): a float32 tensor after an odd number of uint8 bytes
// was read through a misaligned pointer. Such views are now copied to aligned memory.
TEST(Safetensors, MisalignedTensorsAreReadAligned) {
  test::Bytes b;
  const std::string h =
      R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}})";
  b.put<uint64_t>(h.size());
  b.b += h;
  b.b += "xyz";
  b.put<float>(1.5f).put<float>(-2.0f);
  std::string path = test::temp_dir("st_align") + "/model.safetensors";
  test::write_file(path, b.b);
  auto st = read_safetensors(path);
  ASSERT_TRUE(st.ok()) << st.status().message();
  const TensorView& t = st->tensors[1];
  ASSERT_EQ(t.name, "b");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % alignof(float), 0u);
  EXPECT_EQ(t.to_f32(), (std::vector<float>{1.5f, -2.0f}));
}

// The reference writer (safetensors' `prepare`) lays out wider dtypes first, then by name, so that
// every tensor is aligned; SafetensorsWriter does the same whatever order tensors come in.
TEST(Safetensors, WriterLaysOutTensorsAsTheReferenceDoes) {
  std::string path = test::temp_dir("st_write") + "/model.safetensors";
  auto w = SafetensorsWriter::create(
      path, {{"z", "U8", {3}}, {"y", "F16", {1}}, {"x", "F32", {1}}, {"a", "F32", {1}}}, {});
  ASSERT_TRUE(w.ok());
  const uint8_t u8[3] = {1, 2, 3};
  const uint16_t f16 = 0x3c00;
  const float one = 1, two = 2;
  ASSERT_TRUE((*w)->write("z", u8, 3).ok());
  ASSERT_TRUE((*w)->write("y", &f16, 2).ok());
  ASSERT_TRUE((*w)->write("x", &one, 4).ok());
  ASSERT_TRUE((*w)->write("a", &two, 4).ok());
  ASSERT_TRUE((*w)->finish().ok());
  auto st = read_safetensors(path);
  ASSERT_TRUE(st.ok()) << st.status().message();
  std::map<std::string, std::pair<ptrdiff_t, std::vector<float>>> got;
  for (const auto& t : st->tensors) got[t.name] = {t.data - st->tensors[0].data, t.to_f32()};
  const ptrdiff_t base = std::min({got["a"].first, got["x"].first, got["y"].first, got["z"].first});
  EXPECT_EQ(got["a"].first - base, 0);
  EXPECT_EQ(got["x"].first - base, 4);
  EXPECT_EQ(got["y"].first - base, 8);
  EXPECT_EQ(got["z"].first - base, 10);
  EXPECT_EQ(got["a"].second, std::vector<float>{2});
  EXPECT_EQ(got["x"].second, std::vector<float>{1});
  EXPECT_EQ(got["y"].second, std::vector<float>{1});
  EXPECT_EQ(got["z"].second, (std::vector<float>{1, 2, 3}));
}

// The reference reader refuses tensors that overlap, gaps between them and bytes after the last.
TEST(Safetensors, TensorsMustTileTheDataSection) {
  EXPECT_NE(
      read_error(
          st_file(
              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
              12))
          .find("tensor 'b' (bytes 4..12) overlaps tensor 'a'"),
      std::string::npos);
  EXPECT_NE(
      read_error(
          st_file(
              R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
              12))
          .find("bytes 4..8 of the data section belong to no tensor (before 'b')"),
      std::string::npos);
  EXPECT_NE(read_error(st_file(kGood, 28)).find("4 bytes after the last tensor's data"), std::string::npos);
}

}  // namespace
}  // namespace qf
