// core/subprocess.h — runs a child program, collects its stdout, relays its stderr and measures
// what it cost (wall time, peak resident memory from wait4's rusage).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/status.h"

namespace qf {

struct ChildResult {
  int exit_code = -1;     // the child's exit status, or -1 when a signal ended it
  int signal = 0;         // the signal that ended it, else 0
  double seconds = 0;     // wall time
  int64_t peak_rss = 0;   // bytes, the child's maximum resident set size
  std::string out;        // everything it wrote to stdout
  std::string last_line;  // its last non-empty stderr line (the error of a failing qforge)
  bool ok() const { return exit_code == 0; }
};

// Runs argv[0] with argv (no shell). stderr is relayed to ours when `relay` is set; extra_env
// entries ("NAME=value") are added to the environment. `on_start` sees the child's pid (for
// forwarding signals) and is called again with 0 when it has exited.
Expected<ChildResult> run_child(const std::vector<std::string>& argv, bool relay,
                                const std::vector<std::string>& extra_env = {},
                                void (*on_start)(pid_t) = nullptr);

// The path of the running executable (/proc/self/exe).
std::string self_executable();

}  // namespace qf
