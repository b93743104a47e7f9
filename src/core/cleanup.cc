#include "core/cleanup.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>

namespace qf {
namespace {

// Fixed slots, so that the signal handler reads them without locks or allocation.
constexpr int kSlots = 32;
constexpr size_t kPathMax = 4096;
char g_paths[kSlots][kPathMax];
std::atomic<bool> g_used[kSlots];

// Async-signal-safe removal: unlink a file; a folder through rm -rf in a child (fork, execv and
// waitpid are on POSIX's async-signal-safe list; opendir and malloc are not).
void remove_path(const char* path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    unlink(path);
    return;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    char rm[] = "/bin/rm", flags[] = "-rf", end[] = "--";
    char* argv[] = {rm, flags, end, const_cast<char*>(path), nullptr};
    execv(rm, argv);
    _exit(127);
  }
  if (pid > 0) waitpid(pid, nullptr, 0);
}

void on_signal(int sig) {
  for (int i = 0; i < kSlots; ++i)
    if (g_used[i].load()) remove_path(g_paths[i]);
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

CleanupOnSignal::CleanupOnSignal(const std::string& path) {
  if (path.size() >= kPathMax) return;
  for (int i = 0; i < kSlots; ++i)
    if (!g_used[i].load()) {
      std::memcpy(g_paths[i], path.c_str(), path.size() + 1);
      g_used[i].store(true);
      slot_ = i;
      return;
    }
}

CleanupOnSignal::~CleanupOnSignal() {
  if (slot_ < 0) return;
  g_used[slot_].store(false);
}

void install_signal_cleanup() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

Status check_new_output(const std::string& out, std::initializer_list<std::string> inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& in : inputs)
    if (!in.empty() && (fs::equivalent(out, in, ec) || fs::weakly_canonical(out, ec) == fs::weakly_canonical(in, ec)))
      return error("{}: the output is an input of this run ({}); choose a new output", out, in);
  if (fs::symlink_status(out, ec).type() != fs::file_type::not_found && !ec)
    return error("{}: already exists; choose a new output", out);
  return {};
}

}  // namespace qf
