// core/text.h — text from files on its way to a terminal.
#pragma once

#include <string>
#include <string_view>

namespace qf {

// `s` safe to print: control characters (C0, DEL, C1 — what terminals act on: escape sequences,
// cursor moves, bells), NUL and bytes that are not UTF-8 become visible escapes (\n, \t, \r,
// \xNN, \u0085); everything else, non-ASCII text included, is kept.
std::string printable(std::string_view s);

// The length of `s` without a trailing UTF-8 character whose bytes have not all arrived.
size_t complete_utf8_prefix(std::string_view s);

}  // namespace qf
