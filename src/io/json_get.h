// io/json_get.h — typed reads of optional JSON keys (config.json, quantization_config): a value of
// the wrong JSON type is an error naming the key, what was expected and what was found, never
// an exception. Absent keys (and null, HF's "unset") leave `out` at its default.
#pragma once

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/status.h"

namespace qf {

template <class T>
Status json_get(const nlohmann::json& o, const char* key, T& out, std::string_view where) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return {};
  const nlohmann::json& v = *it;
  auto wrong = [&](const char* expected) {
    return error("{}.{}: expected {}, found {}", where, key, expected, v.dump().substr(0, 60));
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return wrong("true or false");
    out = v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number()) return wrong("an integer");
    const double d = v.get<double>();
    if (d != std::floor(d) || d < double(std::numeric_limits<T>::min()) ||
        d > double(std::numeric_limits<T>::max()))
      return wrong("an integer in range");
    out = v.is_number_float() ? T(d) : v.get<T>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) return wrong("a number");
    out = v.get<T>();
  } else {
    static_assert(std::is_same_v<T, std::string>, "json_get reads bool, integers, floats and strings");
    if (!v.is_string()) return wrong("a string");
    out = v.get<std::string>();
  }
  return {};
}

}  // namespace qf
