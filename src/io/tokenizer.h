// io/tokenizer.h — text <-> token ids, natively for the tokenizers LLaMA-family checkpoints ship.
//
// Sources: HF `tokenizer.json` (BPE, byte-level or SentencePiece-style with byte fallback),
// the vocabulary stored in a GGUF file (llama.cpp's "llama" SentencePiece and "gpt2" BPE), and
// SentencePiece `.model` files through libsentencepiece. Tokenizers are immutable after
// construction and safe to use from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace qf {

class GGUFFile;
struct BpeSpec;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`; with add_special, the BOS/EOS the tokenizer's own rule adds.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true) const = 0;
  // Text of `ids`; special tokens (BOS, EOS, control) are skipped unless skip_special is false,
  // as in HF `decode(ids, skip_special_tokens=...)`.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = true) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual std::string token_text(int32_t id) const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none
  virtual int32_t eos_id() const = 0;  // -1 if none
  virtual bool adds_bos() const = 0;
  // One line for `qforge inspect`: kind, vocabulary size, special tokens.
  virtual std::string describe() const = 0;
  // The vocabulary and merge rules, for writing them elsewhere (GGUF); null when the
  // tokenizer is an opaque library model.
  virtual const BpeSpec* bpe_spec() const { return nullptr; }
};

// HF tokenizer.json. Errors name the file and the key that is missing or unsupported.
Expected<std::unique_ptr<Tokenizer>> load_hf_tokenizer(const std::string& path);
// The tokenizer.ggml.* keys of a GGUF file.
Expected<std::unique_ptr<Tokenizer>> load_gguf_tokenizer(const GGUFFile& gguf);
// A SentencePiece model file (tokenizer.model) through libsentencepiece.
Expected<std::unique_ptr<Tokenizer>> load_sentencepiece_tokenizer(const std::string& path);

// Checks that `text` is valid UTF-8; the error names `what` and the byte offset.
Status check_utf8(std::string_view text, const std::string& what);

}  // namespace qf
