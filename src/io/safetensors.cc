#include "io/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <tuple>

namespace qf {
namespace {

using json = nlohmann::json;

// safetensors dtypes are the element types of the QType table (block size 1), by name.
std::optional<QType> dtype_from_name(const std::string& s) {
  auto t = qtype_from_name(s);
  if (t && traits(*t).block == 1) return t;
  return std::nullopt;
}

Expected<TensorView> parse_entry(const std::string& path, const std::string& name, const json& e,
                                 const uint8_t* data, uint64_t data_size) {
  auto where = [&] { return fmt::format("{}: tensor '{}'", path, name); };
  if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    return error("{}: expected keys dtype, shape, data_offsets", where());
  if (!e["dtype"].is_string()) return error("{}: dtype is not a string", where());
  std::string dtype = e["dtype"];
  auto type = dtype_from_name(dtype);
  if (!type)
    return error("{}: unsupported dtype '{}' (supported: F32, F16, BF16, I8, U8, I16, I32)", where(), dtype);
  TensorView t;
  t.name = name;
  t.type = *type;
  uint64_t numel = 1;
  if (!e["shape"].is_array()) return error("{}: shape is not an array", where());
  for (const auto& d : e["shape"]) {
    if (!d.is_number_unsigned()) return error("{}: shape has a non-integer entry", where());
    uint64_t v = d;
    if (v != 0 && numel > std::numeric_limits<uint64_t>::max() / 8 / v)
      return error("{}: shape {} overflows", where(), e["shape"].dump());
    numel *= v;
    t.shape.push_back(int64_t(v));
  }
  const auto& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    return error("{}: data_offsets must be two unsigned integers", where());
  uint64_t begin = off[0], end = off[1];
  if (begin > end || end > data_size)
    return error("{}: data_offsets [{}, {}] outside the data section of {} bytes", where(), begin, end,
                 data_size);
  uint64_t expected = numel * uint64_t(traits(*type).bytes_per_block);
  if (end - begin != expected)
    return error("{}: {} {} needs {} bytes, data_offsets give {}", where(), dtype, e["shape"].dump(),
                 expected, end - begin);
  t.data = data + begin;
  t.nbytes = int64_t(expected);
  return t;
}

}  // namespace

Expected<SafetensorsFile> read_safetensors(const std::string& path) {
  QF_ASSIGN_OR_RETURN(auto file, MappedFile::open(path));
  if (file->size() < 8)
    return error("{}: file of {} bytes is too short for a safetensors header", path, file->size());
  uint64_t header_len;
  std::memcpy(&header_len, file->data(), 8);
  if (header_len > file->size() - 8)
    return error("{}: header length {} exceeds the file size {} (truncated file?)", path, header_len,
                 file->size());
  json header;
  try {
    header = json::parse(file->data() + 8, file->data() + 8 + header_len);
  } catch (const json::exception& e) {
    return error("{}: header is not valid JSON: {}", path, e.what());
  }
  if (!header.is_object()) return error("{}: header is not a JSON object", path);
  SafetensorsFile out;
  const uint8_t* data = file->data() + 8 + header_len;
  uint64_t data_size = file->size() - 8 - header_len;
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> spans;  // [begin, end) of each tensor
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          if (m->is_string()) out.metadata[m.key()] = m->get<std::string>();
      continue;
    }
    QF_ASSIGN_OR_RETURN(auto t, parse_entry(path, it.key(), *it, data, data_size));
    spans.emplace_back(uint64_t(t.data - data), uint64_t(t.data - data) + uint64_t(t.nbytes), t.name);
    t.keepalive = file;
    out.tensors.push_back(t.aligned());
  }
  // As the reference reader requires: the tensors tile the data section, no overlap, no gap.
  std::sort(spans.begin(), spans.end());
  uint64_t at = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    const auto& [begin, end, name] = spans[i];
    if (begin < at)
      return error("{}: tensor '{}' (bytes {}..{}) overlaps tensor '{}'", path, name, begin, end,
                   std::get<2>(spans[i - 1]));
    if (begin > at)
      return error("{}: bytes {}..{} of the data section belong to no tensor (before '{}')", path, at, begin,
                   name);
    at = end;
  }
  if (at != data_size)
    return error("{}: {} bytes after the last tensor's data (the data section is {} bytes)", path,
                 data_size - at, data_size);
  out.file = std::move(file);
  return out;
}

Expected<std::map<std::string, TensorView>> read_safetensors_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::map<std::string, TensorView> tensors;
  fs::path single = fs::path(dir) / "model.safetensors";
  fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(single)) {
    QF_ASSIGN_OR_RETURN(auto st, read_safetensors(single.string()));
    for (auto& t : st.tensors) tensors[t.name] = std::move(t);
    return tensors;
  }
  if (!fs::exists(index))
    return error("{}: expected model.safetensors or model.safetensors.index.json, found neither", dir);
  QF_ASSIGN_OR_RETURN(auto text, read_text_file(index.string()));
  json idx;
  try {
    idx = json::parse(text);
  } catch (const json::exception& e) {
    return error("{}: not valid JSON: {}", index.string(), e.what());
  }
  if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
    return error("{}: expected an object 'weight_map'", index.string());
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  std::set<std::string> shards;
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
    if (!it->is_string()) return error("{}: weight_map['{}'] is not a file name", index.string(), it.key());
    std::string shard = *it;
    if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
      return error("{}: weight_map['{}'] names '{}', expected a file in the same folder", index.string(),
                   it.key(), shard);
    weight_map[it.key()] = shard;
    shards.insert(shard);
  }
  for (const auto& shard : shards) {
    QF_ASSIGN_OR_RETURN(auto st, read_safetensors((fs::path(dir) / shard).string()));
    for (auto& t : st.tensors) {
      auto listed = weight_map.find(t.name);
      if (listed == weight_map.end())
        return error("{}: holds tensor '{}', which {} does not list", shard, t.name, index.string());
      if (listed->second != shard)
        return error("{}: holds tensor '{}', which {} places in {}", shard, t.name, index.string(),
                     listed->second);
      tensors[t.name] = std::move(t);
    }
  }
  for (const auto& [name, shard] : weight_map)
    if (!tensors.count(name))
      return error("{}: tensor '{}' listed in the index is missing from {}", index.string(), name, shard);
  return tensors;
}

}  // namespace qf

namespace qf {

Expected<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::create(
    const std::string& path, std::vector<Entry> entries, const std::map<std::string, std::string>& metadata) {
  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  // The data section in the reference writer's order (safetensors' `prepare`: wider dtypes first,
  // then by name), which keeps every tensor aligned to its element size; tensors are still written
  // in the declared order, each at its own offset.
  std::vector<size_t> elem(entries.size()), order(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    auto type = dtype_from_name(entries[i].dtype);
    QF_CHECK(type.has_value(), "unknown safetensors dtype {}", entries[i].dtype);
    elem[i] = size_t(traits(*type).bytes_per_block);
    size_t n = elem[i];
    for (int64_t d : entries[i].shape) n *= size_t(d);
    w->sizes_.push_back(n);
    order[i] = i;
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return elem[a] != elem[b] ? elem[a] > elem[b] : entries[a].name < entries[b].name;
  });
  w->offsets_.resize(entries.size());
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& e = entries[i];
    header[e.name] = {
        {"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + w->sizes_[i]}}};
    w->offsets_[i] = offset;
    offset += w->sizes_[i];
  }
  w->entries_ = std::move(entries);
  std::string h = header.dump();
  while ((h.size() + 8) % 8) h += ' ';  // data section 8-byte aligned, as the reference writer does
  w->file_ = std::fopen(path.c_str(), "wb");
  if (!w->file_) return error("{}: cannot create: {}", path, std::strerror(errno));
  uint64_t len = h.size();
  if (std::fwrite(&len, 8, 1, w->file_) != 1 || std::fwrite(h.data(), 1, h.size(), w->file_) != h.size())
    return error("{}: write failed", path);
  w->data_start_ = 8 + h.size();
  return w;
}

Status SafetensorsWriter::write(const std::string& name, const void* data, size_t nbytes) {
  QF_CHECK(next_ < entries_.size() && entries_[next_].name == name && sizes_[next_] == nbytes,
           "tensor '{}' ({} bytes) written out of the declared order", name, nbytes);
  if (fseeko(file_, off_t(data_start_ + offsets_[next_++]), SEEK_SET) != 0 ||
      std::fwrite(data, 1, nbytes, file_) != nbytes)
    return error("{}: write failed: {}", path_, std::strerror(errno));
  return {};
}

Status SafetensorsWriter::finish() {
  QF_CHECK(next_ == entries_.size(), "{} of {} tensors written", next_, entries_.size());
  int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) return error("{}: close failed: {}", path_, std::strerror(errno));
  return {};
}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_) std::fclose(file_);
}

}  // namespace qf
