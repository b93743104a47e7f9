#include "io/gguf_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qf {
namespace {

constexpr uint64_t kAlignment = 32;  // GGUF_DEFAULT_ALIGNMENT

uint64_t pad(uint64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

class Buffer {
 public:
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void put_value(const GGUFValue& v) {
    switch (v.type) {
      case GGUFType::UINT8:
        put(uint8_t(std::get<uint64_t>(v.v)));
        break;
      case GGUFType::UINT16:
        put(uint16_t(std::get<uint64_t>(v.v)));
        break;
      case GGUFType::UINT32:
        put(uint32_t(std::get<uint64_t>(v.v)));
        break;
      case GGUFType::UINT64:
        put(uint64_t(std::get<uint64_t>(v.v)));
        break;
      case GGUFType::INT8:
        put(int8_t(std::get<int64_t>(v.v)));
        break;
      case GGUFType::INT16:
        put(int16_t(std::get<int64_t>(v.v)));
        break;
      case GGUFType::INT32:
        put(int32_t(std::get<int64_t>(v.v)));
        break;
      case GGUFType::INT64:
        put(int64_t(std::get<int64_t>(v.v)));
        break;
      case GGUFType::FLOAT32:
        put(float(std::get<double>(v.v)));
        break;
      case GGUFType::FLOAT64:
        put(std::get<double>(v.v));
        break;
      case GGUFType::BOOL:
        put(uint8_t(std::get<bool>(v.v)));
        break;
      case GGUFType::STRING:
        put_string(std::get<std::string>(v.v));
        break;
      case GGUFType::ARRAY: {
        put(uint32_t(v.elem_type));
        put<uint64_t>(v.array_size());
        if (const auto* packed = std::get_if<PackedArray>(&v.v))
          bytes.insert(bytes.end(), packed->bytes.begin(), packed->bytes.end());
        else
          for (const auto& item : std::get<std::vector<GGUFValue>>(v.v)) put_value(item);
        break;
      }
    }
  }
  std::vector<uint8_t> bytes;
};

template <typename T>
GGUFValue packed_array(GGUFType elem, const std::vector<T>& v) {
  PackedArray a;
  a.bytes.assign(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  return {GGUFType::ARRAY, elem, std::move(a)};
}

}  // namespace

GGUFWriter::~GGUFWriter() {
  if (file_) std::fclose(file_);
  if (!tmp_.empty() && !finished_) std::remove(tmp_.c_str());
}

void GGUFWriter::set(const std::string& key, GGUFValue v) {
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void GGUFWriter::set_str_array(const std::string& key, const std::vector<std::string>& v) {
  std::vector<GGUFValue> items;
  items.reserve(v.size());
  for (const auto& s : v) items.push_back({GGUFType::STRING, GGUFType::UINT8, s});
  set(key, {GGUFType::ARRAY, GGUFType::STRING, std::move(items)});
}
void GGUFWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  set(key, packed_array(GGUFType::INT32, v));
}
void GGUFWriter::set_f32_array(const std::string& key, const std::vector<float>& v) {
  set(key, packed_array(GGUFType::FLOAT32, v));
}

void GGUFWriter::add_tensor(const std::string& name, QType type, const std::vector<int64_t>& shape) {
  GGUFTensorInfo info;
  info.name = name;
  info.ne.assign(shape.rbegin(), shape.rend());
  info.ggml_type = uint32_t(traits(type).ggml_id);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  info.nbytes = uint64_t(qtype_row_bytes(type, numel));
  info.offset = infos_.empty() ? 0 : pad(infos_.back().offset + infos_.back().nbytes);
  infos_.push_back(std::move(info));
}

Status GGUFWriter::begin() {
  tmp_ = temporary_for(path_);
  on_signal_ = std::make_unique<CleanupOnSignal>(tmp_);
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (!file_) return error("{}: cannot create: {}", tmp_, std::strerror(errno));
  Buffer b;
  b.put(uint32_t(0x46554747));  // "GGUF"
  b.put(uint32_t(3));
  b.put(uint64_t(infos_.size()));
  b.put(uint64_t(kv_.size()));
  for (const auto& [k, v] : kv_) {
    b.put_string(k);
    b.put(uint32_t(v.type));
    b.put_value(v);
  }
  for (const auto& t : infos_) {
    b.put_string(t.name);
    b.put(uint32_t(t.ne.size()));
    for (int64_t d : t.ne) b.put(uint64_t(d));
    b.put(t.ggml_type);
    b.put(t.offset);
  }
  b.bytes.resize(pad(b.bytes.size()), 0);
  if (std::fwrite(b.bytes.data(), 1, b.bytes.size(), file_) != b.bytes.size())
    return error("{}: write failed: {}", tmp_, std::strerror(errno));
  return {};
}

Status GGUFWriter::write_tensor(const std::string& name, const void* data, size_t nbytes) {
  if (next_ >= infos_.size() || infos_[next_].name != name || infos_[next_].nbytes != nbytes)
    return error("{}: tensor '{}' ({} bytes) written out of the declared order", path_, name, nbytes);
  if (!file_) QF_RETURN_IF_ERROR(begin());
  static const uint8_t zeros[kAlignment] = {};
  const size_t padding = size_t(pad(nbytes) - nbytes);
  if (std::fwrite(data, 1, nbytes, file_) != nbytes || std::fwrite(zeros, 1, padding, file_) != padding)
    return error("{}: write failed: {}", tmp_, std::strerror(errno));
  ++next_;
  return {};
}

Status GGUFWriter::finish() {
  if (next_ != infos_.size()) return error("{}: {} of {} tensors written", path_, next_, infos_.size());
  if (!file_) QF_RETURN_IF_ERROR(begin());  // a file without tensors
  const bool ok = std::fflush(file_) == 0;
  std::fclose(file_);
  file_ = nullptr;
  if (!ok) return error("{}: write failed: {}", tmp_, std::strerror(errno));
  QF_RETURN_IF_ERROR(publish(tmp_, path_, replace_));
  finished_ = true;
  return {};
}

}  // namespace qf
