// Builds tokenizers from HF tokenizer.json and GGUF metadata (via the BPE engine) and from
// SentencePiece .model files (via libsentencepiece).
#include "io/tokenizer.h"

#include <utf8proc.h>

#include <sentencepiece_processor.h>
#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "io/bpe_tokenizer.h"
#include "io/gguf.h"

namespace qf {
namespace {

using json = nlohmann::json;

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "null";
}

// Flattens a component that may be a {"type": "Sequence", <key>: [...]} into its parts.
std::vector<json> flatten(const json& j, const char* key) {
  if (j.is_null()) return {};
  if (type_of(j) == "Sequence" && j.contains(key)) return j[key].get<std::vector<json>>();
  return {j};
}

// normalizer + pre_tokenizer -> mode, regex, prepend flag.
Status read_pretokenization(const std::string& path, const json& root, BpeSpec& spec) {
  bool saw_byte_level = false, saw_spm = false;
  for (const auto& n : flatten(root.value("normalizer", json()), "normalizers")) {
    std::string t = type_of(n);
    if (t == "Prepend") {
      saw_spm = true;
      spec.prepend_space = n.value("prepend", "") == "\xE2\x96\x81";
    } else if (t == "Replace") {
      saw_spm = true;
    } else if (t == "NFC") {
      spec.nfc = true;
    } else {
      return error("{}: unsupported normalizer '{}' (supported: Prepend, Replace, NFC)", path, t);
    }
  }
  for (const auto& p : flatten(root.value("pre_tokenizer", json()), "pretokenizers")) {
    std::string t = type_of(p);
    if (t == "ByteLevel") {
      saw_byte_level = true;
      if (p.value("use_regex", true) && spec.regex.empty()) spec.regex = kGpt2Regex;
    } else if (t == "Split" && p.contains("pattern") && p["pattern"].contains("Regex")) {
      spec.regex = p["pattern"]["Regex"].get<std::string>();
    } else if (t == "Metaspace") {
      saw_spm = true;
      spec.prepend_space =
          p.value("prepend_scheme", "always") != "never" && p.value("add_prefix_space", true);
    } else {
      return error("{}: unsupported pre_tokenizer '{}' (supported: ByteLevel, Split regex, Metaspace)", path,
                   t);
    }
  }
  if (saw_byte_level == saw_spm)
    return error("{}: expected either a ByteLevel pre-tokenizer or SentencePiece-style normalizers", path);
  spec.mode = saw_byte_level ? BpeSpec::Mode::ByteLevel : BpeSpec::Mode::SentencePiece;
  if (spec.mode == BpeSpec::Mode::ByteLevel && spec.regex.empty()) spec.regex = kGpt2Regex;
  return {};
}

// TemplateProcessing "single": the special tokens around $A.
Status read_post_processor(const std::string& path, const json& root,
                           const std::unordered_map<std::string, int32_t>& ids, BpeSpec& spec) {
  for (const auto& p : flatten(root.value("post_processor", json()), "processors")) {
    std::string t = type_of(p);
    if (t == "ByteLevel") continue;  // only adjusts offsets
    if (t != "TemplateProcessing")
      return error("{}: unsupported post_processor '{}' (supported: TemplateProcessing)", path, t);
    bool after = false;
    for (const auto& item : p.at("single")) {
      if (item.contains("Sequence")) {
        after = true;
      } else if (item.contains("SpecialToken")) {
        std::string name = item["SpecialToken"].at("id");
        auto it = ids.find(name);
        if (it == ids.end()) return error("{}: post_processor names unknown token '{}'", path, name);
        (after ? spec.suffix_ids : spec.prefix_ids).push_back(it->second);
      }
    }
  }
  return {};
}

int32_t id_of(const std::unordered_map<std::string, int32_t>& ids, const json& config, const char* key) {
  if (!config.contains(key)) return -1;
  const json& v = config[key];
  std::string s = v.is_string() ? v.get<std::string>() : (v.is_object() ? v.value("content", "") : "");
  auto it = ids.find(s);
  return it == ids.end() ? -1 : it->second;
}

Expected<std::unique_ptr<Tokenizer>> parse_hf(const std::string& path, const json& root) {
  const json& model = root.at("model");
  if (type_of(model) != "BPE")
    return error("{}: unsupported tokenizer model '{}' (supported: BPE)", path, type_of(model));
  BpeSpec spec;
  spec.source = path;
  QF_RETURN_IF_ERROR(read_pretokenization(path, root, spec));
  // Ids are integers in 0..10^7 (a float or a huge number used to be converted unchecked: UB, found
  // by fuzz/tokenizer_fuzz.cc).
  auto token_id = [&](const std::string& tok, const json& v) -> Expected<int32_t> {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 10'000'000)
      return error("{}: token '{}' has id {}, expected an integer in 0..10000000", path, tok, v.dump());
    return int32_t(v.get<int64_t>());
  };
  std::unordered_map<std::string, int32_t> ids;
  for (auto it = model.at("vocab").begin(); it != model.at("vocab").end(); ++it) {
    QF_ASSIGN_OR_RETURN(ids[it.key()], token_id(it.key(), *it));
  }
  std::vector<json> added = root.value("added_tokens", json::array()).get<std::vector<json>>();
  for (const auto& a : added) {
    QF_ASSIGN_OR_RETURN(ids[a.at("content")], token_id(a.at("content"), a.at("id")));
  }
  int32_t max_id = -1;
  for (const auto& [tok, id] : ids) max_id = std::max(max_id, id);
  spec.tokens.resize(size_t(max_id + 1));
  for (const auto& [tok, id] : ids) spec.tokens[id] = tok;
  spec.is_special.assign(spec.tokens.size(), false);
  for (const auto& a : added) {
    int32_t id = a.at("id");
    spec.split_tokens.push_back(id);
    spec.is_special[id] = a.value("special", false);
  }
  for (const auto& m : model.value("merges", json::array())) {
    if (m.is_string()) {
      std::string s = m;
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) return error("{}: merge '{}' is not two tokens", path, s);
      spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else {
      spec.merges.emplace_back(m.at(0).get<std::string>(), m.at(1).get<std::string>());
    }
  }
  spec.byte_fallback = model.value("byte_fallback", false);
  spec.ignore_merges = model.value("ignore_merges", false);
  if (model.contains("unk_token") && model["unk_token"].is_string())
    spec.unk_id = ids.count(model["unk_token"]) ? ids[model["unk_token"]] : -1;
  QF_RETURN_IF_ERROR(read_post_processor(path, root, ids, spec));
  // bos/eos: tokenizer_config.json next to tokenizer.json, else the template's first token.
  std::string dir = path.substr(0, path.find_last_of('/') + 1);
  if (auto cfg_text = read_text_file(dir + "tokenizer_config.json")) {
    json cfg = json::parse(*cfg_text, nullptr, false);
    if (!cfg.is_discarded()) {
      spec.bos_id = id_of(ids, cfg, "bos_token");
      spec.eos_id = id_of(ids, cfg, "eos_token");
    }
  }
  if (spec.bos_id < 0 && !spec.prefix_ids.empty()) spec.bos_id = spec.prefix_ids.front();
  return make_bpe_tokenizer(std::move(spec));
}

// SentencePiece .model through libsentencepiece.
class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp)
      : sp_(std::move(sp)) {}
  std::vector<int32_t> encode(std::string_view text, bool add_special) const override {
    std::vector<int> ids;
    sp_->Encode(text, &ids).IgnoreError();
    if (add_special && bos_id() >= 0) ids.insert(ids.begin(), bos_id());
    return {ids.begin(), ids.end()};
  }
  std::string decode(std::span<const int32_t> ids,
                     bool /*skip_special: the library decides*/) const override {
    std::string out;
    sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &out).IgnoreError();
    return out;
  }
  int32_t vocab_size() const override { return sp_->GetPieceSize(); }
  std::string token_text(int32_t id) const override { return sp_->IdToPiece(id); }
  int32_t bos_id() const override { return sp_->bos_id(); }
  int32_t eos_id() const override { return sp_->eos_id(); }
  bool adds_bos() const override { return bos_id() >= 0; }
  std::string describe() const override {
    return fmt::format("SentencePiece model (libsentencepiece), vocab {}, bos {}, eos {}", vocab_size(),
                       bos_id(), eos_id());
  }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace

Expected<std::unique_ptr<Tokenizer>> load_hf_tokenizer(const std::string& path) {
  QF_ASSIGN_OR_RETURN(auto text, read_text_file(path));
  try {
    return parse_hf(path, json::parse(text));
  } catch (const json::exception& e) {
    return error("{}: not a valid tokenizer.json: {}", path, e.what());
  }
}

Expected<std::unique_ptr<Tokenizer>> load_gguf_tokenizer(const GGUFFile& g) {
  auto model = g.get_string("tokenizer.ggml.model");
  if (!model) return error("{}: missing key 'tokenizer.ggml.model' (no vocabulary in the file)", g.path());
  BpeSpec spec;
  spec.source = g.path();
  QF_ASSIGN_OR_RETURN(spec.tokens, g.get_string_array("tokenizer.ggml.tokens"));
  std::vector<double> types;
  if (g.find("tokenizer.ggml.token_type")) {
    QF_ASSIGN_OR_RETURN(types, g.get_float_array("tokenizer.ggml.token_type"));
  }
  spec.is_special.assign(spec.tokens.size(), false);
  for (size_t i = 0; i < types.size() && i < spec.tokens.size(); ++i) {
    int t = int(types[i]);  // llama.cpp: 2 unknown, 3 control, 4 user-defined, 6 byte
    if (t == 2 || t == 3) spec.is_special[i] = true;
    if (t == 3 || t == 4) spec.split_tokens.push_back(int32_t(i));
  }
  auto flag = [&](const char* key, bool dflt) {
    const auto* v = g.find(key);
    return v && std::holds_alternative<bool>(v->v) ? std::get<bool>(v->v) : dflt;
  };
  bool default_add_bos;
  if (*model == "llama") {
    spec.mode = BpeSpec::Mode::SentencePiece;
    QF_ASSIGN_OR_RETURN(auto scores, g.get_float_array("tokenizer.ggml.scores"));
    spec.scores.assign(scores.begin(), scores.end());
    spec.prepend_space = flag("tokenizer.ggml.add_space_prefix", true);
    default_add_bos = true;
  } else if (*model == "gpt2") {
    spec.mode = BpeSpec::Mode::ByteLevel;
    QF_ASSIGN_OR_RETURN(auto merges, g.get_string_array("tokenizer.ggml.merges"));
    for (const auto& m : merges) {
      size_t sp = m.find(' ', 1);
      if (sp == std::string::npos)
        return error("{}: tokenizer.ggml.merges entry '{}' is not two tokens", g.path(), m);
      spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    std::string pre = g.get_string("tokenizer.ggml.pre").value_or("default");
    auto regex = pretokenizer_regex(pre);
    if (!regex)
      return error("{}: unsupported tokenizer.ggml.pre '{}' (supported: gpt-2, llama-bpe, qwen2, default)",
                   g.path(), pre);
    spec.regex = *regex;
    default_add_bos = false;
  } else {
    return error("{}: unsupported tokenizer.ggml.model '{}' (supported: llama, gpt2)", g.path(), *model);
  }
  spec.bos_id = int32_t(g.get_int("tokenizer.ggml.bos_token_id").value_or(-1));
  spec.eos_id = int32_t(g.get_int("tokenizer.ggml.eos_token_id").value_or(-1));
  spec.unk_id = int32_t(g.get_int("tokenizer.ggml.unknown_token_id").value_or(-1));
  if (flag("tokenizer.ggml.add_bos_token", default_add_bos) && spec.bos_id >= 0)
    spec.prefix_ids = {spec.bos_id};
  if (flag("tokenizer.ggml.add_eos_token", false) && spec.eos_id >= 0) spec.suffix_ids = {spec.eos_id};
  return make_bpe_tokenizer(std::move(spec));
}

Expected<std::unique_ptr<Tokenizer>> load_sentencepiece_tokenizer(const std::string& path) {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto st = sp->Load(path);
  if (!st.ok()) return error("{}: not a SentencePiece model: {}", path, st.ToString());
  return std::unique_ptr<Tokenizer>(new SentencePieceTokenizer(std::move(sp)));
}

// utf8proc's decoder refuses what RFC 3629 refuses: overlong forms, surrogates, code points past
// U+10FFFF, stray and missing continuation bytes.
Status check_utf8(std::string_view s, const std::string& what) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  for (size_t i = 0; i < s.size();) {
    if (uint8_t(s[i]) < 0x80) {
      ++i;
      continue;
    }
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t len = utf8proc_iterate(p + i, utf8proc_ssize_t(s.size() - i), &cp);
    if (len <= 0 || cp < 0)
      return error("{}: not UTF-8: invalid byte 0x{:02x} at offset {}", what, uint8_t(s[i]), i);
    i += size_t(len);
  }
  return {};
}

}  // namespace qf
