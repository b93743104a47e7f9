// tokenizer.json: the loader (model, normalizer, pre-tokenizer, decoder, added tokens), then
// encoding texts of several scripts and decoding the ids back and ids taken from the input.
#include <span>

#include "fuzz/fuzz_input.h"
#include "io/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qf::fuzz::write("tokenizer.json", {reinterpret_cast<const char*>(data), size});
  auto tok = qf::load_hf_tokenizer(path);
  if (!tok.ok()) return 0;
  const qf::Tokenizer& t = **tok;
  (void)t.describe();
  for (const char* text :
       {"Once upon a time, there was a cat.", "  x\n\n\ty  ", "naïve café — 東京 😀", "<s></s><unk>"}) {
    auto ids = t.encode(text);
    (void)t.decode(ids);
    (void)t.decode(ids, false);
  }
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 4 <= std::min<size_t>(size, 64); i += 4)
    ids.push_back(int32_t((data[i] | data[i + 1] << 8 | data[i + 2] << 16) % std::max(t.vocab_size(), 1)));
  (void)t.decode(ids, false);
  for (int32_t id : ids) (void)t.token_text(id);
  return 0;
}
