#include "io/bpe_tokenizer.h"

#include <utf8proc.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <queue>

namespace qf {

// GPT-2's pre-tokenizer (HF ByteLevel use_regex=true; llama.cpp "gpt-2").
const char* const kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::optional<std::string> pretokenizer_regex(const std::string& name) {
  if (name == "gpt-2" || name == "default") return std::string(kGpt2Regex);
  if (name == "llama-bpe" || name == "llama3")
    return std::string(
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  if (name == "qwen2")
    return std::string(
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  return std::nullopt;
}

namespace {

const std::string kSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space

int utf8_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;  // invalid lead byte: treat as one unit
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// GPT-2 bytes_to_unicode(): printable bytes map to themselves, the rest to U+0100 onwards.
std::array<std::string, 256> make_byte_alphabet() {
  std::array<std::string, 256> table;
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    append_utf8(table[b], printable ? uint32_t(b) : uint32_t(256 + extra++));
  }
  return table;
}

// Unicode normalization form C (HF normalizer "NFC") through utf8proc; invalid UTF-8 (which the
// callers reject earlier) is passed through unchanged.
std::string nfc(std::string_view s) {
  if (std::all_of(s.begin(), s.end(), [](char c) { return uint8_t(c) < 0x80; }))
    return std::string(s);  // ASCII is NFC
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), utf8proc_ssize_t(s.size()),
                              &out, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return std::string(s);
  std::string r(reinterpret_cast<char*>(out), size_t(n));
  std::free(out);
  return r;
}

struct PcreDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};

}  // namespace

class BpeTokenizer : public Tokenizer {
 public:
  static Expected<std::unique_ptr<Tokenizer>> create(BpeSpec spec) {
    std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
    QF_RETURN_IF_ERROR(t->init(std::move(spec)));
    return std::unique_ptr<Tokenizer>(std::move(t));
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special) const override {
    std::vector<int32_t> out;
    if (add_special) out = spec_.prefix_ids;
    size_t pos = 0;
    while (pos < text.size()) {
      auto [at, id] = next_split_token(text, pos);
      encode_segment(text.substr(pos, at - pos), out);
      if (at == text.size()) break;
      out.push_back(id);
      pos = at + spec_.tokens[id].size();
    }
    if (add_special) out.insert(out.end(), spec_.suffix_ids.begin(), spec_.suffix_ids.end());
    return out;
  }

  const BpeSpec* bpe_spec() const override { return &spec_; }

  std::string decode(std::span<const int32_t> ids, bool skip_special) const override {
    std::string raw;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size() || (skip_special && spec_.is_special[id])) continue;
      if (spec_.mode == BpeSpec::Mode::SentencePiece && byte_of_token_[id] >= 0) {
        raw += char(byte_of_token_[id]);
        continue;
      }
      raw += spec_.tokens[id];
    }
    return spec_.mode == BpeSpec::Mode::ByteLevel ? unmap_bytes(raw) : unmap_spaces(raw);
  }

  int32_t vocab_size() const override { return int32_t(spec_.tokens.size()); }
  std::string token_text(int32_t id) const override {
    return id >= 0 && id < vocab_size() ? spec_.tokens[id] : "";
  }
  int32_t bos_id() const override { return spec_.bos_id; }
  int32_t eos_id() const override { return spec_.eos_id; }
  bool adds_bos() const override {
    return !spec_.prefix_ids.empty() && spec_.prefix_ids.front() == spec_.bos_id;
  }
  std::string describe() const override {
    return fmt::format("BPE {} ({}), vocab {}, {} merges, bos {} '{}', eos {} '{}', adds BOS: {}",
                       spec_.mode == BpeSpec::Mode::ByteLevel ? "byte-level" : "SentencePiece-style",
                       spec_.merges.empty() ? "ranked by scores" : "ranked by merge list", vocab_size(),
                       spec_.merges.size(), spec_.bos_id, token_text(spec_.bos_id), spec_.eos_id,
                       token_text(spec_.eos_id), adds_bos() ? "yes" : "no");
  }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };

  Status init(BpeSpec spec) {
    spec_ = std::move(spec);
    const auto& src = spec_.source;
    size_t n = spec_.tokens.size();
    spec_.is_special.resize(n, false);
    for (size_t i = 0; i < n; ++i) ids_.emplace(spec_.tokens[i], int32_t(i));
    for (int32_t id : {spec_.unk_id, spec_.bos_id, spec_.eos_id})
      if (id >= int32_t(n))
        return error("{}: special token id {} is outside the vocabulary of {}", src, id, n);
    for (size_t r = 0; r < spec_.merges.size(); ++r) {
      const auto& [a, b] = spec_.merges[r];
      auto ia = ids_.find(a), ib = ids_.find(b), im = ids_.find(a + b);
      if (ia == ids_.end() || ib == ids_.end() || im == ids_.end())
        return error("{}: merge {} '{} {}' uses a token missing from the vocabulary", src, r, a, b);
      merges_.emplace(pair_key(ia->second, ib->second), Merge{int32_t(r), im->second});
    }
    if (spec_.merges.empty() && spec_.scores.size() != n)
      return error("{}: expected merges or one score per token ({}), found {} scores", src, n,
                   spec_.scores.size());
    byte_of_token_.assign(n, -1);
    byte_token_.fill(-1);
    for (int b = 0; b < 256; ++b) {
      auto it = ids_.find(fmt::format("<0x{:02X}>", b));
      if (it != ids_.end()) {
        byte_token_[b] = it->second;
        byte_of_token_[it->second] = int16_t(b);
      }
    }
    if (spec_.mode == BpeSpec::Mode::ByteLevel) {
      alphabet_ = make_byte_alphabet();
      for (int b = 0; b < 256; ++b) unicode_to_byte_[alphabet_[b]] = uint8_t(b);
      int err;
      PCRE2_SIZE off;
      regex_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(spec_.regex.c_str()), spec_.regex.size(),
                                 PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr));
      if (!regex_) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return error("{}: pre-tokenizer regex does not compile at offset {}: {}", src, off,
                     reinterpret_cast<char*>(msg));
      }
      pcre2_jit_compile(regex_.get(), PCRE2_JIT_COMPLETE);  // falls back to the interpreter
    }
    return {};
  }

  static uint64_t pair_key(int32_t a, int32_t b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }

  // Earliest occurrence at or after `pos` of a token matched verbatim (added/special tokens).
  std::pair<size_t, int32_t> next_split_token(std::string_view text, size_t pos) const {
    size_t best = text.size();
    int32_t best_id = -1;
    for (int32_t id : spec_.split_tokens) {
      const auto& s = spec_.tokens[id];
      size_t at = text.find(s, pos);
      if (at < best || (at == best && at != text.size() && s.size() > spec_.tokens[best_id].size())) {
        best = at;
        best_id = id;
      }
    }
    return {best, best_id};
  }

  void encode_segment(std::string_view raw, std::vector<int32_t>& out) const {
    if (raw.empty()) return;
    const std::string normalized = spec_.nfc ? nfc(raw) : std::string();
    const std::string_view text = spec_.nfc ? std::string_view(normalized) : raw;
    if (spec_.mode == BpeSpec::Mode::SentencePiece) {
      std::string norm = spec_.prepend_space ? kSpace : "";
      for (char c : text) norm += c == ' ' ? kSpace : std::string(1, c);
      encode_piece_spm(norm, out);
      return;
    }
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(regex_.get(), nullptr);
    size_t pos = 0;
    while (pos < text.size()) {
      int rc = pcre2_match(regex_.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos,
                           PCRE2_NO_UTF_CHECK, md, nullptr);
      size_t begin = text.size(), end = text.size();
      if (rc > 0) {
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        begin = ov[0];
        end = ov[1];
      }
      if (begin > pos) encode_piece_bytelevel(text.substr(pos, begin - pos), out);  // unmatched gap
      if (end <= begin) {  // no (or an empty) match: advance by one character
        if (begin >= text.size()) break;
        end = begin + size_t(utf8_len(uint8_t(text[begin])));
      }
      encode_piece_bytelevel(text.substr(begin, end - begin), out);
      pos = end;
    }
    pcre2_match_data_free(md);
  }

  void encode_piece_bytelevel(std::string_view piece, std::vector<int32_t>& out) const {
    if (spec_.ignore_merges) {  // HF BPE ignore_merges (Llama 3): a piece that is a token stays whole
      std::string mapped;
      for (char c : piece) mapped += alphabet_[uint8_t(c)];
      if (auto it = ids_.find(mapped); it != ids_.end()) return out.push_back(it->second);
    }
    std::vector<int32_t> syms;
    for (char c : piece) {
      auto it = ids_.find(alphabet_[uint8_t(c)]);
      if (it != ids_.end())
        syms.push_back(it->second);
      else if (spec_.unk_id >= 0)
        syms.push_back(spec_.unk_id);
    }
    merge(syms);
    out.insert(out.end(), syms.begin(), syms.end());
  }

  void encode_piece_spm(const std::string& text, std::vector<int32_t>& out) const {
    std::vector<int32_t> syms;
    for (size_t i = 0; i < text.size();) {
      size_t len = std::min(text.size() - i, size_t(utf8_len(uint8_t(text[i]))));
      auto it = ids_.find(text.substr(i, len));
      if (it != ids_.end()) {
        syms.push_back(it->second);
      } else if (spec_.byte_fallback && byte_token_[uint8_t(text[i])] >= 0) {
        for (size_t k = 0; k < len; ++k) syms.push_back(byte_token_[uint8_t(text[i + k])]);
      } else if (spec_.unk_id >= 0 && (syms.empty() || syms.back() != spec_.unk_id)) {
        syms.push_back(spec_.unk_id);  // fuse_unk: consecutive unknowns become one <unk>
      }
      i += len;
    }
    merge(syms);
    out.insert(out.end(), syms.begin(), syms.end());
  }

  // Rank of merging (a, b): lower merges first. Explicit merge list, or -score of the result.
  std::optional<std::pair<double, int32_t>> find_merge(int32_t a, int32_t b) const {
    if (!spec_.merges.empty()) {
      auto it = merges_.find(pair_key(a, b));
      if (it == merges_.end()) return std::nullopt;
      return std::make_pair(double(it->second.rank), it->second.merged);
    }
    if (byte_of_token_[a] >= 0 || byte_of_token_[b] >= 0) return std::nullopt;
    auto it = ids_.find(spec_.tokens[a] + spec_.tokens[b]);
    if (it == ids_.end()) return std::nullopt;
    return std::make_pair(-double(spec_.scores[it->second]), it->second);
  }

  // Repeatedly merges the best-ranked adjacent pair (leftmost on ties) until none applies.
  void merge(std::vector<int32_t>& syms) const {
    const int n = int(syms.size());
    if (n < 2) return;
    struct Cand {
      double rank;
      int left, right;
      int32_t lid, rid, merged;
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
    };
    std::vector<int> next(n), prev(n);
    for (int i = 0; i < n; ++i) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
    auto push = [&](int l, int r) {
      if (auto m = find_merge(syms[l], syms[r])) heap.push({m->first, l, r, syms[l], syms[r], m->second});
    };
    for (int i = 0; i + 1 < n; ++i) push(i, i + 1);
    while (!heap.empty()) {
      Cand c = heap.top();
      heap.pop();
      if (next[c.left] != c.right || syms[c.left] != c.lid || syms[c.right] != c.rid)
        continue;  // stale: one side was merged since
      syms[c.left] = c.merged;
      syms[c.right] = -1;
      int nr = next[c.right];
      next[c.left] = nr;
      next[c.right] = -2;  // dead
      if (nr >= 0) prev[nr] = c.left;
      if (prev[c.left] >= 0) push(prev[c.left], c.left);
      if (nr >= 0) push(c.left, nr);
    }
    syms.erase(std::remove(syms.begin(), syms.end(), -1), syms.end());
  }

  std::string unmap_bytes(const std::string& raw) const {
    std::string out;
    for (size_t i = 0; i < raw.size();) {
      size_t len = std::min(raw.size() - i, size_t(utf8_len(uint8_t(raw[i]))));
      auto it = unicode_to_byte_.find(raw.substr(i, len));
      if (it != unicode_to_byte_.end())
        out += char(it->second);
      else
        out += raw.substr(i, len);  // added tokens are stored verbatim
      i += len;
    }
    return out;
  }

  std::string unmap_spaces(const std::string& raw) const {
    std::string out;
    for (size_t i = 0; i < raw.size();) {
      if (raw.compare(i, kSpace.size(), kSpace) == 0) {
        out += ' ';
        i += kSpace.size();
      } else {
        out += raw[i++];
      }
    }
    if (spec_.prepend_space && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }

  BpeSpec spec_;
  std::unordered_map<std::string, int32_t> ids_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_token_{};  // byte -> <0xXX> token id
  std::vector<int16_t> byte_of_token_;     // token id -> byte, or -1
  std::array<std::string, 256> alphabet_;  // ByteLevel: byte -> printable character
  std::unordered_map<std::string, uint8_t> unicode_to_byte_;
  std::unique_ptr<pcre2_code, PcreDeleter> regex_;
};

Expected<std::unique_ptr<Tokenizer>> make_bpe_tokenizer(BpeSpec spec) {
  return BpeTokenizer::create(std::move(spec));
}

}  // namespace qf
