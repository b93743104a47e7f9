#include "core/subprocess.h"

#include <poll.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

extern char** environ;

namespace qf {
namespace {

struct Pipe {
  int fd[2] = {-1, -1};
  ~Pipe() {
    for (int f : fd)
      if (f >= 0) close(f);
  }
};

// Keeps the last non-empty line of a stream written in chunks; progress bars redraw with '\r'.
void keep_last_line(std::string& tail, const char* data, size_t n) {
  tail.append(data, n);
  size_t end = tail.find_last_not_of("\r\n \t");
  if (end == std::string::npos) return;  // only blanks so far: keep them, a line may follow
  size_t start = tail.find_last_of("\r\n", end);
  if (start != std::string::npos) tail.erase(0, start + 1);
}

}  // namespace

std::string self_executable() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("qforge") : p.string();
}

Expected<ChildResult> run_child(const std::vector<std::string>& argv, bool relay,
                                const std::vector<std::string>& extra_env, void (*on_start)(pid_t)) {
  Pipe out, err;
  if (pipe(out.fd) != 0 || pipe(err.fd) != 0) return error("pipe: {}", std::strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out.fd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err.fd[1], 2);
  for (int f : {out.fd[0], out.fd[1], err.fd[0], err.fd[1]}) posix_spawn_file_actions_addclose(&fa, f);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  args.push_back(nullptr);
  envp.push_back(nullptr);
  pid_t pid = 0;
  const auto t0 = std::chrono::steady_clock::now();
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return error("{}: cannot start: {}", argv[0], std::strerror(rc));
  if (on_start) on_start(pid);
  close(out.fd[1]);
  close(err.fd[1]);
  out.fd[1] = err.fd[1] = -1;

  ChildResult r;
  std::string tail;
  pollfd fds[2] = {{out.fd[0], POLLIN, 0}, {err.fd[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;  // a signal for us; the child gets its own
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      if (i == 0) {
        r.out.append(buf, size_t(n));
      } else {
        if (relay && write(2, buf, size_t(n)) < 0) relay = false;
        keep_last_line(tail, buf, size_t(n));
      }
    }
  }
  int status = 0;
  rusage ru{};
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  if (on_start) on_start(0);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.peak_rss = int64_t(ru.ru_maxrss) * 1024;  // Linux reports KiB
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  size_t end = tail.find_last_not_of("\r\n \t");
  r.last_line = end == std::string::npos ? "" : tail.substr(0, end + 1);
  return r;
}

}  // namespace qf
