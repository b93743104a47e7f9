// core/cleanup.h — the one mechanism that keeps interrupted runs from leaving temporaries: every
// output under construction (a file or folder beside its final path, renamed when complete) is
// registered while it exists, and SIGINT/SIGTERM remove every registered path before the process
// dies of the signal (exit status 128 + signal). qforge's main installs the handlers; TempDir,
// the GGUF writer and write_file_atomic register their temporaries.
#pragma once

#include <string>

#include "core/status.h"

namespace qf {

// Registers `path` for removal on SIGINT/SIGTERM for the object's lifetime (the path itself is
// left alone by the destructor: its owner removes or renames it).
class CleanupOnSignal {
 public:
  explicit CleanupOnSignal(const std::string& path);
  ~CleanupOnSignal();
  CleanupOnSignal(const CleanupOnSignal&) = delete;
  CleanupOnSignal& operator=(const CleanupOnSignal&) = delete;

 private:
  int slot_ = -1;
};

void install_signal_cleanup();

// The output path of a run: refused when something is already there, or when it is one of the
// run's inputs (`inputs`, compared as files: a link or another spelling is the same file).
Status check_new_output(const std::string& out, std::initializer_list<std::string> inputs);

}  // namespace qf
