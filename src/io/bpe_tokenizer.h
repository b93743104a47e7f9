// io/bpe_tokenizer.h — the BPE engine behind HF tokenizer.json files and GGUF vocabularies.
//
// Two pre-tokenization modes cover the LLaMA family:
//  - ByteLevel (GPT-2, Llama-3, Qwen2): split with a Unicode regex (PCRE2), map each byte to
//    GPT-2's printable byte alphabet, merge within each piece;
//  - SentencePiece-style (Llama-1/2, Mistral, TinyStories): spaces become U+2581 "▁", one "▁"
//    is prepended, the whole text is one piece, characters missing from the vocabulary fall
//    back to <0xXX> byte tokens.
// Merges are ranked either by an explicit merge list (rank = position) or by SentencePiece
// scores (the highest-scoring merged token first, as llama.cpp's SPM tokenizer does). Ties go
// to the leftmost pair, as in HF tokenizers and llama.cpp.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/tokenizer.h"

namespace qf {

struct BpeSpec {
  enum class Mode { ByteLevel, SentencePiece } mode = Mode::ByteLevel;
  std::vector<std::string> tokens;                          // id -> token text
  std::vector<std::pair<std::string, std::string>> merges;  // rank order; empty => use scores
  std::vector<float> scores;                                // SentencePiece scores (merges empty)
  std::vector<bool> is_special;                             // skipped when decoding
  std::vector<int32_t> split_tokens;                        // matched verbatim in text before BPE
  std::string regex;                                        // ByteLevel pre-tokenizer pattern
  bool prepend_space = true;                                // SentencePiece: prepend "▁"
  bool byte_fallback = true;                                // SentencePiece: <0xXX> tokens
  bool ignore_merges = false;  // ByteLevel: a piece in the vocabulary is one token
  bool nfc = false;            // normalize text to Unicode NFC first
  int32_t unk_id = -1, bos_id = -1, eos_id = -1;
  std::vector<int32_t> prefix_ids, suffix_ids;  // added around the text by encode()
  std::string source;                           // for messages: the file it came from
};

class BpeTokenizer;
Expected<std::unique_ptr<Tokenizer>> make_bpe_tokenizer(BpeSpec spec);

// Pre-tokenizer regexes by llama.cpp's `tokenizer.ggml.pre` name; nullopt if unknown.
std::optional<std::string> pretokenizer_regex(const std::string& name);
extern const char* const kGpt2Regex;

}  // namespace qf
