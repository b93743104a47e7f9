#include "quant/imatrix.h"

#include <cstring>

#include "core/mapped_file.h"
#include "io/gguf.h"

namespace qf {

Expected<Imatrix> compute_imatrix(const Transformer& tf, const std::vector<int32_t>& tokens, int ctx,
                                  int64_t max_chunks, int32_t bos_first,
                                  const std::function<void(int64_t, int64_t)>& progress) {
  Imatrix im;
  im.ctx = ctx;
  int64_t chunks = int64_t(tokens.size()) / ctx;
  if (max_chunks >= 0) chunks = std::min(chunks, max_chunks);
  if (chunks == 0)
    return error("calibration text has {} tokens, fewer than one chunk of {}", tokens.size(), ctx);
  std::map<std::string, std::vector<double>> sums;
  const Backend& be = tf.backend();
  std::map<int, Buffer<double>> column_sums;  // by input width, in the backend's memory
  InputObserver observe = [&](int layer, std::initializer_list<const char*> kinds, const float* x, int n,
                              int n_in) {
    auto it = column_sums.try_emplace(n_in, be, n_in).first;
    be.column_sums(x, n, n_in, 2, it->second.data());
    const std::vector<double> sq = it->second.to_host();
    for (const char* kind : kinds) {
      const std::string name = fmt::format("blk.{}.{}.weight", layer, kind);
      auto& s = sums[name];
      s.resize(size_t(n_in), 0.0);
      for (int i = 0; i < n_in; ++i) s[size_t(i)] += sq[size_t(i)];
      im.tokens[name] += n;
    }
  };
  KVCache cache = tf.new_cache(ctx);
  std::vector<int32_t> chunk(static_cast<size_t>(ctx));
  for (int64_t c = 0; c < chunks; ++c) {
    std::copy(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx, chunk.begin());
    if (bos_first >= 0) chunk[0] = bos_first;
    cache.clear();
    tf.forward(chunk.data(), ctx, cache, nullptr, false, &observe);
    if (progress) progress(c + 1, chunks);
  }
  im.chunks = int(chunks);
  for (const auto& [name, s] : sums) {
    auto& m = im.mean_sq[name];
    for (double v : s) m.push_back(float(v / double(im.tokens[name])));
  }
  return im;
}

namespace {

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

}  // namespace

Status write_imatrix(const Imatrix& im, const std::string& path, bool replace) {
  std::string out;
  put<int32_t>(out, int32_t(im.mean_sq.size()));
  for (const auto& [name, values] : im.mean_sq) {  // std::map: sorted by name, as llama.cpp sorts
    put<int32_t>(out, int32_t(name.size()));
    out += name;
    const int32_t ncall = int32_t((im.tokens.at(name) + im.ctx - 1) / im.ctx);
    put<int32_t>(out, ncall);
    put<int32_t>(out, int32_t(values.size()));
    for (float v : values) put<float>(out, v * float(ncall));
  }
  put<int32_t>(out, int32_t(im.chunks));
  put<int32_t>(out, int32_t(im.dataset.size()));
  out += im.dataset;
  return write_file_atomic(path, out, replace);
}

namespace {

// llama.cpp's newer imatrix files are GGUF: per weight `<name>.in_sum2` (Σx² per column, F32
// [n_mat, n_in]) and `<name>.counts` (tokens per matrix, F32 [n_mat]); mean = in_sum2 / counts.
Expected<Imatrix> read_imatrix_gguf(const std::string& path) {
  QF_ASSIGN_OR_RETURN(auto g, GGUFFile::open(path));
  Imatrix im;
  const std::string kSum = ".in_sum2", kCounts = ".counts";
  for (const auto& info : g.tensor_infos()) {
    if (info.name.size() <= kSum.size() ||
        info.name.compare(info.name.size() - kSum.size(), kSum.size(), kSum) != 0)
      continue;
    const std::string name = info.name.substr(0, info.name.size() - kSum.size());
    QF_ASSIGN_OR_RETURN(auto sums, g.tensor(info.name));
    auto counts = g.tensor(name + kCounts);
    if (!counts.ok()) return error("{}: '{}' has no '{}{}' tensor", path, info.name, name, kCounts);
    if (sums.type != QType::F32 || counts->type != QType::F32 || counts->numel() != sums.rows())
      return error("{}: '{}' is {} {}, '{}' {} values; expected F32 [n_mat, n] and F32 [n_mat]", path,
                   info.name, traits(sums.type).name, sums.shape_str(), counts->name, counts->numel());
    if (sums.rows() != 1)
      return error("{}: '{}' covers {} expert matrices; qforge reads dense models", path, info.name,
                   sums.rows());
    const std::vector<float> s = sums.to_f32();
    const float n = counts->to_f32()[0];
    if (!(n > 0)) return error("{}: '{}' has a count of {}, expected > 0", path, counts->name, n);
    auto& m = im.mean_sq[name];
    for (float v : s) m.push_back(v / n);
    im.tokens[name] = int64_t(n);
  }
  if (im.mean_sq.empty()) return error("{}: a GGUF file without '*.in_sum2' tensors is not an imatrix", path);
  if (auto chunks = g.get_int("imatrix.chunk_count")) im.chunks = int(*chunks);
  if (auto size = g.get_int("imatrix.chunk_size")) im.ctx = int(*size);
  return im;
}

}  // namespace

Expected<Imatrix> read_imatrix(const std::string& path) {
  QF_ASSIGN_OR_RETURN(auto bytes, read_text_file(path));
  if (bytes.rfind("GGUF", 0) == 0) return read_imatrix_gguf(path);
  size_t pos = 0;
  auto get = [&](auto* v, const char* what) -> Status {
    if (bytes.size() - pos < sizeof(*v)) return error("{}: truncated at byte {} reading {}", path, pos, what);
    std::memcpy(v, bytes.data() + pos, sizeof(*v));
    pos += sizeof(*v);
    return {};
  };
  Imatrix im;
  int32_t n = 0;
  QF_RETURN_IF_ERROR(get(&n, "the entry count"));
  if (n < 1) return error("{}: {} entries, expected at least one (is this an imatrix .dat file?)", path, n);
  for (int32_t e = 0; e < n; ++e) {
    int32_t len = 0, ncall = 0, nval = 0;
    QF_RETURN_IF_ERROR(get(&len, "a name length"));
    if (len <= 0 || size_t(len) > bytes.size() - pos)
      return error("{}: entry {} has a name length of {}", path, e, len);
    std::string name = bytes.substr(pos, size_t(len));
    pos += size_t(len);
    QF_RETURN_IF_ERROR(get(&ncall, "ncall"));
    QF_RETURN_IF_ERROR(get(&nval, "nval"));
    if (nval < 1 || size_t(nval) > (bytes.size() - pos) / 4)
      return error("{}: entry '{}' claims {} values, {} bytes remain", path, name, nval, bytes.size() - pos);
    if (ncall < 1) return error("{}: entry '{}' has ncall {}, expected ≥ 1", path, name, ncall);
    std::vector<float> values(static_cast<size_t>(nval));
    std::memcpy(values.data(), bytes.data() + pos, size_t(nval) * 4);
    pos += size_t(nval) * 4;
    for (float& v : values) {
      v /= float(ncall);
      if (!std::isfinite(v) || v < 0)
        return error("{}: entry '{}' has a value {}, expected finite and ≥ 0", path, name, v);
    }
    im.mean_sq[name] = std::move(values);
    im.tokens[name] = int64_t(ncall) * im.ctx;
  }
  int32_t chunks = 0, dlen = 0;
  if (get(&chunks, "the chunk count").ok()) im.chunks = chunks;
  if (get(&dlen, "the dataset name").ok() && dlen > 0 && size_t(dlen) <= bytes.size() - pos)
    im.dataset = bytes.substr(pos, size_t(dlen));
  return im;
}

}  // namespace qf
