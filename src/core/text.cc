#include "core/text.h"

#include <fmt/format.h>
#include <utf8proc.h>

namespace qf {

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const uint8_t b = uint8_t(s[i]);
    if (b >= 0x20 && b < 0x7f) {
      out += char(b);
      ++i;
      continue;
    }
    if (b < 0x80) {
      out += b == '\n' ? "\\n" : b == '\t' ? "\\t" : b == '\r' ? "\\r" : fmt::format("\\x{:02x}", b);
      ++i;
      continue;
    }
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t len = utf8proc_iterate(p + i, utf8proc_ssize_t(s.size() - i), &cp);
    if (len <= 0 || cp < 0) {
      out += fmt::format("\\x{:02x}", b);
      ++i;
    } else {
      if (cp < 0xa0)
        out += fmt::format("\\u{:04x}", cp);
      else
        out.append(s.substr(i, size_t(len)));
      i += size_t(len);
    }
  }
  return out;
}

size_t complete_utf8_prefix(std::string_view s) {
  size_t i = s.size(), back = 0;
  while (i > 0 && back < 4 && (uint8_t(s[i - 1]) & 0xC0) == 0x80) --i, ++back;  // continuation bytes
  if (i == 0) return back ? 0 : s.size();
  const uint8_t lead = uint8_t(s[i - 1]);
  const size_t need = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return need > back + 1 ? i - 1 : s.size();
}

}  // namespace qf
