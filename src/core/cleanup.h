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

// The output path of a run: refused when it is one of the run's inputs (`inputs`, compared as
// files: a link or another spelling is the same file), or when something is already there unless
// `replace` (--force; even then only what the run writes: a regular file, or a folder).
// Temporaries beside it that a process no longer running left (OUT.tmp-PID…, killed with SIGKILL
// or by a power cut) are removed, each with a note on stderr.
enum class OutputKind { File, Folder };
Status check_new_output(const std::string& out, std::initializer_list<std::string> inputs, OutputKind kind,
                        bool replace = false);

// The temporary an output is built in, beside it: OUT.tmp-PID, or OUT.tmp-PID-TAG.
std::string temporary_for(const std::string& out, const std::string& tag = "");

// Renames the finished temporary `tmp` onto `out`. Something at `out` is an error unless
// `replace`; then a file is replaced atomically, and a folder is moved aside, replaced, removed.
Status publish(const std::string& tmp, const std::string& out, bool replace);

}  // namespace qf
