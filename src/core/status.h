// core/status.h — errors for bad input (files, flags, numerics) and checks for bugs.
//
// Bad input travels up as Status / Expected<T> carrying one human-readable line that names
// the file, tensor or key, what was expected and what was found. Bugs abort via QF_CHECK
// with file, line and message. Library code never calls exit().
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace qf {

class Status {
 public:
  Status() = default;
  static Status error(std::string message) { return Status(std::move(message)); }
  bool ok() const { return !message_.has_value(); }
  const std::string& message() const { return *message_; }
  // Prefixes context ("file.gguf: ") to an error; a no-op on success.
  Status with_context(const std::string& context) const {
    return ok() ? *this : Status(context + ": " + *message_);
  }

 private:
  explicit Status(std::string m) : message_(std::move(m)) {}
  std::optional<std::string> message_;
};

template <typename... Args>
Status error(fmt::format_string<Args...> f, Args&&... args) {
  return Status::error(fmt::format(f, std::forward<Args>(args)...));
}

// A value or the Status explaining why there is none.
template <typename T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Expected(Status status) : v_(std::move(status)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const T& operator*() const& { return value(); }
  Status status() const { return ok() ? Status{} : std::get<1>(v_); }  // OK when there is a value

 private:
  std::variant<T, Status> v_;
};

[[noreturn]] inline void check_failed(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "qforge: internal error at %s:%d: check '%s' failed: %s\n", file, line, cond,
               msg.c_str());
  std::abort();
}

}  // namespace qf

// Aborts on a broken invariant (a bug, never bad input).
#define QF_CHECK(cond, ...)                                                               \
  do {                                                                                    \
    if (!(cond)) ::qf::check_failed(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)

// Propagates a failed Status / Expected to the caller.
#define QF_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::qf::Status qf_status_ = (expr);        \
    if (!qf_status_.ok()) return qf_status_; \
  } while (0)

#define QF_CONCAT_INNER(a, b) a##b
#define QF_CONCAT(a, b) QF_CONCAT_INNER(a, b)
// QF_ASSIGN_OR_RETURN(auto x, expected_expr);
#define QF_ASSIGN_OR_RETURN(lhs, expr) QF_ASSIGN_OR_RETURN_IMPL(QF_CONCAT(qf_e_, __LINE__), lhs, expr)
#define QF_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
