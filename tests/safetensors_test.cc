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
TEST(Safetensors, HeaderNotJson) { EXPECT_NE(read_error(st_file("{nope", 0)).find("not valid JSON"), std::string::npos); }
TEST(Safetensors, OffsetsBeyondData) {
  EXPECT_NE(read_error(st_file(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", 8)).find("outside the data section"),
            std::string::npos);
}
TEST(Safetensors, OffsetsDisagreeWithShape) {
  EXPECT_NE(read_error(st_file(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 24)).find("needs 24 bytes"),
            std::string::npos);
}
TEST(Safetensors, UnknownDtype) {
  EXPECT_NE(read_error(st_file(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2)).find("unsupported dtype 'F8_E4M3'"),
            std::string::npos);
}
TEST(Safetensors, ReversedOffsets) {
  EXPECT_NE(read_error(st_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8)).find("outside"),
            std::string::npos);
}
TEST(Safetensors, ShardedIndexMissingTensor) {
  std::string dir = test::temp_dir("st_shards");
  test::write_file(dir + "/a.safetensors", st_file(kGood, 24));
  test::write_file(dir + "/model.safetensors.index.json",
                   R"({"weight_map":{"w":"a.safetensors","v":"a.safetensors"}})");
  auto r = read_safetensors_dir(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tensor 'v' listed in the index is missing from a.safetensors"), std::string::npos)
      << r.status().message();
}
TEST(Safetensors, TruncatedShard) {
  std::string dir = test::temp_dir("st_trunc");
  std::string full = st_file(kGood, 24);
  test::write_file(dir + "/a.safetensors", full.substr(0, full.size() - 10));
  test::write_file(dir + "/model.safetensors.index.json", R"({"weight_map":{"w":"a.safetensors"}})");
  auto r = read_safetensors_dir(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("a.safetensors: tensor 'w'"), std::string::npos) << r.status().message();
}
TEST(Safetensors, ShardOutsideFolderRefused) {
  std::string dir = test::temp_dir("st_escape");
  test::write_file(dir + "/model.safetensors.index.json", R"({"weight_map":{"w":"../x.safetensors"}})");
  auto r = read_safetensors_dir(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected a file in the same folder"), std::string::npos);
}

}  // namespace
}  // namespace qf
