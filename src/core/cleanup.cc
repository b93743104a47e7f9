#include "core/cleanup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
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

Status check_new_output(const std::string& out, std::initializer_list<std::string> inputs, OutputKind kind,
                        bool replace) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& in : inputs)
    if (!in.empty() &&
        (fs::equivalent(out, in, ec) || fs::weakly_canonical(out, ec) == fs::weakly_canonical(in, ec)))
      return error("{}: the output is an input of this run ({}); choose a new output", out, in);
  const fs::file_type type = fs::symlink_status(out, ec).type();
  if (type != fs::file_type::not_found && !ec) {
    if (!replace) return error("{}: already exists; choose a new output or pass --force to replace it", out);
    const bool folder = kind == OutputKind::Folder;
    if (type != (folder ? fs::file_type::directory : fs::file_type::regular))
      return error("{}: exists and is not a {}; --force replaces only what this run writes", out,
                   folder ? "folder" : "regular file");
  }
  // Stale temporaries: NAME.tmp-PID[-TAG] whose process is gone (kill(pid, 0) fails with ESRCH).
  const fs::path target = fs::path(out).lexically_normal();
  const std::string prefix = target.filename().string() + ".tmp-";
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    if (pid <= 0 || end == name.c_str() + prefix.size() || (*end != '\0' && *end != '-')) continue;
    if (kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
    if (!rm)
      std::fprintf(stderr, "note: removed %s, a temporary left by process %ld (no longer running)\n",
                   e.path().c_str(), pid);
  }
  return {};
}

std::string temporary_for(const std::string& out, const std::string& tag) {
  return out + ".tmp-" + std::to_string(getpid()) + (tag.empty() ? "" : "-" + tag);
}

Status publish(const std::string& tmp, const std::string& out, bool replace) {
  namespace fs = std::filesystem;
  if (!replace) {
    if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_NOREPLACE) == 0) return {};
    if (errno == EINVAL || errno == ENOSYS) {  // a filesystem without RENAME_NOREPLACE: check, then rename
      std::error_code ec;
      if (fs::symlink_status(out, ec).type() == fs::file_type::not_found &&
          std::rename(tmp.c_str(), out.c_str()) == 0)
        return {};
      if (fs::exists(fs::symlink_status(out, ec))) errno = EEXIST;
    }
    return error("{}: {}", out,
                 errno == EEXIST ? std::string("appeared while this run wrote it; nothing was replaced")
                                 : fmt::format("cannot rename from {}: {}", tmp, std::strerror(errno)));
  }
  std::error_code ec;
  if (fs::is_directory(fs::symlink_status(out, ec))) {
    // The swap runs with SIGINT/SIGTERM held back: a signal in between would leave no output at all
    // (the handler removes registered temporaries). The old folder is disposable only once the new
    // one is in place.
    const std::string old = temporary_for(out, "old");
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &saved);
    fs::rename(out, old, ec);
    std::error_code moved;
    if (!ec) fs::rename(tmp, out, moved);
    if (!ec && moved) fs::rename(old, out, ec);  // put the old one back
    CleanupOnSignal on_signal(old);
    sigprocmask(SIG_SETMASK, &saved, nullptr);
    if (ec) return error("{}: cannot move the old output aside: {}", out, ec.message());
    if (moved) return error("{}: cannot rename from {}: {}", out, tmp, moved.message());
    fs::remove_all(old, ec);
    return {};
  }
  if (std::rename(tmp.c_str(), out.c_str()) != 0)
    return error("{}: cannot rename from {}: {}", out, tmp, std::strerror(errno));
  return {};
}

}  // namespace qf
