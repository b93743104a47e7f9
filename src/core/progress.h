// core/progress.h — a one-line progress bar on stderr with rate and ETA. Redraws at most ten
// times a second on a terminal; when stderr is not a terminal it prints nothing.
#pragma once

#include <unistd.h>

#include <cstdlib>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <fmt/format.h>

namespace qf {

// Whether progress and informational lines are wanted on stderr: on a terminal, or when a parent
// that relays our stderr to one (qforge compare) sets QFORGE_PROGRESS=1.
inline bool stderr_is_interactive() { return isatty(2) || std::getenv("QFORGE_PROGRESS") != nullptr; }

// Informational lines go to stderr on a terminal only, so that a failing run prints exactly
// one line (the error) when its output is captured.
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (stderr_is_interactive()) fmt::print(stderr, "{}\n", fmt::format(f, std::forward<Args>(args)...));
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class ProgressBar {
 public:
  explicit ProgressBar(std::string label, bool enabled = stderr_is_interactive())
      : label_(std::move(label)), enabled_(enabled), start_(Clock::now()), last_(start_) {}

  void update(int64_t done, int64_t total) {
    if (!enabled_) return;
    auto now = Clock::now();
    if (done < total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    double elapsed = std::chrono::duration<double>(now - start_).count();
    double frac = total > 0 ? double(done) / double(total) : 1.0;
    double eta = frac > 0 ? elapsed / frac - elapsed : 0;
    int filled = int(frac * 30);
    std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld  %.0fs elapsed, ETA %.0fs ", label_.c_str(), filled,
                 "##############################", 30 - filled, "", (long long)done, (long long)total,
                 elapsed, eta);
    if (done >= total) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_;
  bool enabled_;
  Clock::time_point start_, last_;
};

}  // namespace qf
