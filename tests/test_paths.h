// tests/test_paths.h — where the tests find the bundled model, the shared real models and texts,
// and the qforge binary. QFORGE_SHARED overrides the shared folder (default: ../shared).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace qf::test {

inline std::string source_dir() { return QFORGE_SOURCE_DIR; }
inline std::string shared_dir() {
  const char* env = std::getenv("QFORGE_SHARED");
  return env ? env : source_dir() + "/../shared";
}
inline std::string bundled_stories() { return source_dir() + "/models/stories260K"; }
inline std::string qf27m() { return shared_dir() + "/models/qf-27m"; }
// A golden model by name: the bundled ones (models/), else ../shared/models/NAME.
inline std::string model_dir(const std::string& name) {
  if (std::filesystem::exists(source_dir() + "/models/" + name + "/golden.json"))
    return source_dir() + "/models/" + name;
  return shared_dir() + "/models/" + name;
}
// The HF directory of a golden model (stories260K keeps it in hf/).
inline std::string hf_dir(const std::string& name) {
  return model_dir(name) + (name == "stories260K" ? "/hf" : "");
}
inline std::string qforge_bin() { return QFORGE_BIN; }

// The full tier (`scripts/test.sh --full`, QFORGE_FULL_TESTS=1): golden values over whole eval
// texts that take minutes each on 2 cores. The CI tier skips them; README lists both tiers.
inline bool full_tier() {
  const char* v = std::getenv("QFORGE_FULL_TESTS");
  return v && std::string(v) == "1";
}
#define QF_FULL_TIER_ONLY() \
  if (!::qf::test::full_tier()) GTEST_SKIP() << "full tier only: scripts/test.sh --full"

// Eval texts by the names golden.json uses.
inline std::string text_path(const std::string& name) {
  if (name == "wikitext2-test") return shared_dir() + "/data/wikitext-2-raw/wiki.test.raw";
  if (name == "tinystories-val-head") return shared_dir() + "/data/tinystories/tinystories_val_head.txt";
  if (name == "heldout") return shared_dir() + "/data/qf-heldout.txt";
  if (name == "heldout-w2") return shared_dir() + "/data/heldout-w2.txt";
  return "";
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `qforge ARGS` with stdout discarded; returns its exit status and, when err is given, its
// stderr (kept in a file under `log_dir`).
inline int run_qforge(const std::string& args, const std::string& log_dir, std::string* err = nullptr) {
  const std::string log = log_dir + "/err";
  const int status = std::system((qforge_bin() + " " + args + " >/dev/null 2>" + log).c_str());
  if (err) *err = slurp(log);
  return WEXITSTATUS(status);
}

// Runs `qforge ARGS` and returns its stdout (stderr discarded); *status gets its exit status.
inline std::string qforge_stdout(const std::string& args, int* status) {
  std::string out;
  FILE* p = popen((qforge_bin() + " " + args + " 2>/dev/null").c_str(), "r");
  if (!p) return *status = -1, out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  *status = WEXITSTATUS(pclose(p));
  return out;
}

inline nlohmann::json load_golden(const std::string& model_dir) {
  return nlohmann::json::parse(slurp(model_dir + "/golden.json"));
}
// The per-prompt entries of a golden.json (wave 1 files call them "logits", wave 2 "prompts").
inline nlohmann::json golden_prompts(const nlohmann::json& golden) {
  return golden.contains("prompts") ? golden["prompts"] : golden["logits"];
}

}  // namespace qf::test
