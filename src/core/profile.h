// core/profile.h — where a long run's time goes, with QFORGE_PROFILE=1: named phases timed by
// scopes (PhaseTimer), their totals printed on stderr at exit. Without the variable a scope
// costs one branch. With it, a phase waits for its backend's queued work at both ends
// (Backend::synchronize), so device time lands in the phase that queued it.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "kernels/backend.h"

namespace qf {

class Profile {
 public:
  static Profile& get() {
    static Profile p;
    return p;
  }
  bool enabled() const { return enabled_; }
  void add(const char* phase, double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& t = totals_[phase];
    t.first += seconds;
    t.second++;
  }
  ~Profile() {
    if (!enabled_) return;
    std::fprintf(stderr, "profile (QFORGE_PROFILE=1; nested phases are part of their parent's time):\n");
    for (const auto& [phase, t] : totals_)
      std::fprintf(stderr, "  %-36s %9.2f s  %8lld calls\n", phase.c_str(), t.first, (long long)t.second);
  }

 private:
  Profile() : enabled_(std::getenv("QFORGE_PROFILE") != nullptr) {}
  bool enabled_;
  std::mutex mu_;
  std::map<std::string, std::pair<double, long long>> totals_;
};

// Times its scope as `phase` (a string literal) when profiling; be: the backend whose queued
// work belongs to the phase, or null.
class PhaseTimer {
 public:
  explicit PhaseTimer(const char* phase, const Backend* be = nullptr) {
    if (!Profile::get().enabled()) return;
    phase_ = phase;
    be_ = be;
    if (be_) be_->synchronize();
    t0_ = std::chrono::steady_clock::now();
  }
  ~PhaseTimer() {
    if (!phase_) return;
    if (be_) be_->synchronize();
    Profile::get().add(phase_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
  }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

 private:
  const char* phase_ = nullptr;
  const Backend* be_ = nullptr;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace qf
