#include "io/gguf.h"

#include <cstring>
#include <limits>

namespace qf {
namespace {

constexpr uint64_t kMaxDims = 4;        // GGML_MAX_DIMS
constexpr uint64_t kMaxArrayDepth = 2;  // arrays of arrays are allowed, deeper nesting is not

// Bounds-checked little-endian cursor over the mapped file.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size, std::string path)
      : data_(data), size_(size), path_(std::move(path)) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  template <typename T>
  Status read(T* out, const char* what) {
    if (remaining() < sizeof(T)) return error("{}: truncated at byte {} while reading {}", path_, pos_, what);
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return {};
  }
  Status read_string(std::string* out, const char* what) {
    uint64_t len = 0;
    QF_RETURN_IF_ERROR(read(&len, what));
    if (len > remaining())
      return error("{}: truncated at byte {}: {} has length {} but only {} bytes remain", path_, pos_, what,
                   len, remaining());
    out->assign(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return {};
  }
  Status read_bytes(std::string* out, uint64_t n, const char* what) {
    if (n > remaining())
      return error("{}: truncated at byte {}: {} needs {} bytes, {} remain", path_, pos_, what, n,
                   remaining());
    out->assign(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return {};
  }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  std::string path_;
};

size_t scalar_size(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8:
    case GGUFType::INT8:
    case GGUFType::BOOL:
      return 1;
    case GGUFType::UINT16:
    case GGUFType::INT16:
      return 2;
    case GGUFType::UINT32:
    case GGUFType::INT32:
    case GGUFType::FLOAT32:
      return 4;
    case GGUFType::UINT64:
    case GGUFType::INT64:
    case GGUFType::FLOAT64:
      return 8;
    default:
      return 0;
  }
}

template <typename T>
T load(Cursor& c, Status* st, const char* what) {
  T v{};
  *st = c.read(&v, what);
  return v;
}

Status read_value(Cursor& c, GGUFType type, GGUFValue* out, const std::string& key, uint64_t depth) {
  out->type = type;
  Status st;
  switch (type) {
    case GGUFType::UINT8:
      out->v = uint64_t(load<uint8_t>(c, &st, key.c_str()));
      break;
    case GGUFType::UINT16:
      out->v = uint64_t(load<uint16_t>(c, &st, key.c_str()));
      break;
    case GGUFType::UINT32:
      out->v = uint64_t(load<uint32_t>(c, &st, key.c_str()));
      break;
    case GGUFType::UINT64:
      out->v = load<uint64_t>(c, &st, key.c_str());
      break;
    case GGUFType::INT8:
      out->v = int64_t(load<int8_t>(c, &st, key.c_str()));
      break;
    case GGUFType::INT16:
      out->v = int64_t(load<int16_t>(c, &st, key.c_str()));
      break;
    case GGUFType::INT32:
      out->v = int64_t(load<int32_t>(c, &st, key.c_str()));
      break;
    case GGUFType::INT64:
      out->v = load<int64_t>(c, &st, key.c_str());
      break;
    case GGUFType::FLOAT32:
      out->v = double(load<float>(c, &st, key.c_str()));
      break;
    case GGUFType::FLOAT64:
      out->v = load<double>(c, &st, key.c_str());
      break;
    case GGUFType::BOOL: {
      uint8_t b = load<uint8_t>(c, &st, key.c_str());
      if (st.ok() && b > 1) return error("{}: key '{}': bool value {} is not 0 or 1", c.path(), key, b);
      out->v = b != 0;
      break;
    }
    case GGUFType::STRING: {
      std::string s;
      st = c.read_string(&s, key.c_str());
      out->v = std::move(s);
      break;
    }
    case GGUFType::ARRAY: {
      if (depth >= kMaxArrayDepth) return error("{}: key '{}': arrays nested too deeply", c.path(), key);
      uint32_t et = load<uint32_t>(c, &st, key.c_str());
      QF_RETURN_IF_ERROR(st);
      if (et > uint32_t(GGUFType::FLOAT64))
        return error("{}: key '{}': unknown array element type {}", c.path(), key, et);
      uint64_t n = load<uint64_t>(c, &st, key.c_str());
      QF_RETURN_IF_ERROR(st);
      out->elem_type = GGUFType(et);
      // Each element takes at least one byte (strings: 8): reject counts the file cannot hold.
      uint64_t min_elem =
          out->elem_type == GGUFType::STRING ? 8 : std::max<size_t>(1, scalar_size(out->elem_type));
      if (n > c.remaining() / min_elem)
        return error("{}: key '{}': array of {} elements does not fit in the {} bytes left", c.path(), key, n,
                     c.remaining());
      if (const size_t size = scalar_size(out->elem_type)) {
        PackedArray a;
        QF_RETURN_IF_ERROR(c.read_bytes(&a.bytes, n * size, key.c_str()));
        if (out->elem_type == GGUFType::BOOL)
          for (size_t i = 0; i < a.bytes.size(); ++i)
            if (uint8_t(a.bytes[i]) > 1)
              return error("{}: key '{}': bool element {} is {}, not 0 or 1", c.path(), key, i,
                           uint8_t(a.bytes[i]));
        out->v = std::move(a);
        break;
      }
      std::vector<GGUFValue> items(n);
      for (auto& item : items) QF_RETURN_IF_ERROR(read_value(c, out->elem_type, &item, key, depth + 1));
      out->v = std::move(items);
      break;
    }
    default:
      return error("{}: key '{}': unknown value type {}", c.path(), key, uint32_t(type));
  }
  return st;
}

}  // namespace

std::string_view gguf_type_name(GGUFType t) {
  static constexpr std::string_view kNames[] = {"u8",   "i8",  "u16", "i16", "u32", "i32", "f32",
                                                "bool", "str", "arr", "u64", "i64", "f64"};
  auto i = uint32_t(t);
  return i < std::size(kNames) ? kNames[i] : "?";
}

std::optional<int64_t> GGUFValue::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&v)) return int64_t(*u);
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  return std::nullopt;
}
std::optional<double> GGUFValue::as_float() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto i = as_int()) return double(*i);
  return std::nullopt;
}
const std::string* GGUFValue::as_string() const { return std::get_if<std::string>(&v); }
const std::vector<GGUFValue>* GGUFValue::as_array() const { return std::get_if<std::vector<GGUFValue>>(&v); }

size_t GGUFValue::array_size() const {
  if (auto* p = std::get_if<PackedArray>(&v)) return p->bytes.size() / scalar_size(elem_type);
  if (auto* a = as_array()) return a->size();
  return 0;
}

GGUFValue GGUFValue::item(size_t i) const {
  if (auto* a = as_array()) return a->at(i);
  const auto& bytes = std::get<PackedArray>(v).bytes;
  const size_t size = scalar_size(elem_type);
  QF_CHECK(i < bytes.size() / size, "array element {} of {}", i, bytes.size() / size);
  Cursor c(reinterpret_cast<const uint8_t*>(bytes.data()) + i * size, size, "");
  GGUFValue out;
  (void)read_value(c, elem_type, &out, "", 1);  // validated when the array was read
  return out;
}

std::string GGUFValue::to_display(size_t max_items) const {
  if (auto* s = as_string())
    return s->size() > 60 ? fmt::format("\"{}…\"", s->substr(0, 60)) : fmt::format("\"{}\"", *s);
  if (auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (auto* d = std::get_if<double>(&v)) return fmt::format("{:g}", *d);
  if (auto i = as_int()) return std::to_string(*i);
  const size_t n = array_size();
  std::string s = fmt::format("[{} × {}:", n, gguf_type_name(elem_type));
  for (size_t i = 0; i < n && i < max_items; ++i) s += " " + item(i).to_display(0);
  return s + (n > max_items ? " …]" : "]");
}

Expected<GGUFFile> GGUFFile::open(const std::string& path) {
  GGUFFile g;
  QF_ASSIGN_OR_RETURN(g.file_, MappedFile::open(path));
  Cursor c(g.file_->data(), g.file_->size(), path);
  char magic[4] = {};
  if (g.file_->size() < 4 || std::memcmp(g.file_->data(), "GGUF", 4) != 0) {
    if (g.file_->size() >= 4) std::memcpy(magic, g.file_->data(), 4);
    return error("{}: bad magic: expected \"GGUF\", found {:02x} {:02x} {:02x} {:02x}", path,
                 uint8_t(magic[0]), uint8_t(magic[1]), uint8_t(magic[2]), uint8_t(magic[3]));
  }
  uint32_t skip;
  QF_RETURN_IF_ERROR(c.read(&skip, "magic"));
  QF_RETURN_IF_ERROR(c.read(&g.version_, "version"));
  if (g.version_ != 2 && g.version_ != 3)
    return error("{}: unsupported GGUF version {} (supported: 2, 3)", path, g.version_);
  uint64_t n_tensors, n_kv;
  QF_RETURN_IF_ERROR(c.read(&n_tensors, "tensor count"));
  QF_RETURN_IF_ERROR(c.read(&n_kv, "metadata count"));
  // A key/value pair needs at least 12 bytes and a tensor info at least 24.
  if (n_kv > c.remaining() / 12 || n_tensors > c.remaining() / 24)
    return error(
        "{}: truncated or corrupt header: {} metadata pairs and {} tensors cannot fit in a file of {} bytes",
        path, n_kv, n_tensors, g.file_->size());
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key;
    QF_RETURN_IF_ERROR(c.read_string(&key, "metadata key"));
    uint32_t type;
    QF_RETURN_IF_ERROR(c.read(&type, "metadata type"));
    GGUFValue value;
    QF_RETURN_IF_ERROR(read_value(c, GGUFType(type), &value, key, 0));
    if (g.kv_index_.count(key)) return error("{}: duplicate metadata key '{}'", path, key);
    g.kv_index_[key] = g.kv_.size();
    g.kv_.emplace_back(std::move(key), std::move(value));
  }
  if (const auto* a = g.find("general.alignment")) {
    auto v = a->as_int();
    if (!v || *v <= 0 || (*v & (*v - 1)) != 0)
      return error("{}: general.alignment must be a power of two, found {}", path, a->to_display());
    g.alignment_ = uint64_t(*v);
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GGUFTensorInfo info;
    QF_RETURN_IF_ERROR(c.read_string(&info.name, "tensor name"));
    uint32_t n_dims;
    QF_RETURN_IF_ERROR(c.read(&n_dims, "tensor n_dims"));
    if (n_dims == 0 || n_dims > kMaxDims)
      return error("{}: tensor '{}' has {} dimensions (expected 1..{})", path, info.name, n_dims, kMaxDims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne;
      QF_RETURN_IF_ERROR(c.read(&ne, "tensor dimension"));
      if (ne == 0 || ne > uint64_t(std::numeric_limits<int64_t>::max()) / numel)
        return error("{}: tensor '{}' dimension {} is {} (zero or overflowing)", path, info.name, d, ne);
      numel *= ne;
      info.ne.push_back(int64_t(ne));
    }
    QF_RETURN_IF_ERROR(c.read(&info.ggml_type, "tensor type"));
    QF_RETURN_IF_ERROR(c.read(&info.offset, "tensor offset"));
    if (info.offset % g.alignment_ != 0)
      return error("{}: tensor '{}' offset {} is not a multiple of the alignment {}", path, info.name,
                   info.offset, g.alignment_);
    if (auto qt = qtype_from_ggml_id(info.ggml_type)) {
      const auto& tr = traits(*qt);
      if (info.ne[0] % tr.block != 0)
        return error("{}: tensor '{}' row of {} is not a multiple of the {} block size {}", path, info.name,
                     info.ne[0], tr.name, tr.block);
      info.nbytes = numel / uint64_t(tr.block) * uint64_t(tr.bytes_per_block);
    }
    if (g.info_index_.count(info.name)) return error("{}: duplicate tensor '{}'", path, info.name);
    g.info_index_[info.name] = g.infos_.size();
    g.infos_.push_back(std::move(info));
  }
  g.data_offset_ = (c.pos() + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  uint64_t data_size = g.file_->size() >= g.data_offset_ ? g.file_->size() - g.data_offset_ : 0;
  for (const auto& info : g.infos_) {
    if (info.offset > data_size || info.nbytes > data_size - info.offset)
      return error("{}: tensor '{}' bytes [{}, {}) lie outside the data section of {} bytes", path, info.name,
                   info.offset, info.offset + info.nbytes, data_size);
  }
  return g;
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}
std::optional<int64_t> GGUFFile::get_int(const std::string& key) const {
  const auto* v = find(key);
  return v ? v->as_int() : std::nullopt;
}
std::optional<double> GGUFFile::get_float(const std::string& key) const {
  const auto* v = find(key);
  return v ? v->as_float() : std::nullopt;
}
std::optional<std::string> GGUFFile::get_string(const std::string& key) const {
  const auto* v = find(key);
  if (!v || !v->as_string()) return std::nullopt;
  return *v->as_string();
}

Expected<std::vector<std::string>> GGUFFile::get_string_array(const std::string& key) const {
  const auto* v = find(key);
  if (!v) return error("{}: missing key '{}'", path(), key);
  if (!v->as_array() || v->elem_type != GGUFType::STRING)
    return error("{}: key '{}' should be an array of strings, found {}", path(), key, v->to_display());
  std::vector<std::string> out;
  for (const auto& e : *v->as_array()) out.push_back(*e.as_string());
  return out;
}

Expected<std::vector<double>> GGUFFile::get_float_array(const std::string& key) const {
  const auto* v = find(key);
  if (!v) return error("{}: missing key '{}'", path(), key);
  if (v->type != GGUFType::ARRAY)
    return error("{}: key '{}' should be a numeric array, found {}", path(), key, v->to_display());
  std::vector<double> out;
  for (size_t i = 0; i < v->array_size(); ++i) {
    auto f = v->item(i).as_float();
    if (!f) return error("{}: key '{}' should be a numeric array, found {}", path(), key, v->to_display());
    out.push_back(*f);
  }
  return out;
}

const GGUFTensorInfo* GGUFFile::tensor_info(const std::string& name) const {
  auto it = info_index_.find(name);
  return it == info_index_.end() ? nullptr : &infos_[it->second];
}

Expected<TensorView> GGUFFile::tensor(const std::string& name) const {
  auto it = info_index_.find(name);
  if (it == info_index_.end()) return error("{}: missing tensor '{}'", path(), name);
  const auto& info = infos_[it->second];
  auto qt = qtype_from_ggml_id(info.ggml_type);
  if (!qt)
    return error("{}: tensor '{}' has type {} ({}), which qforge cannot decode yet", path(), name,
                 ggml_type_name(info.ggml_type), info.ggml_type);
  TensorView t;
  t.name = name;
  t.type = *qt;
  t.shape.assign(info.ne.rbegin(), info.ne.rend());
  t.data = file_->data() + data_offset_ + info.offset;
  t.nbytes = int64_t(info.nbytes);
  t.keepalive = file_;
  return t.aligned();
}

}  // namespace qf
