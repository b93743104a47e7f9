// cli/compare.cc — `qforge compare`: every method on one model under one protocol. Each job runs
// qforge itself in child processes (quantize, then eval against the unquantized model, then
// bench), so a failing or crashing method becomes a row with its error and wait4 gives each
// step's peak memory. The report is rewritten after every job, so an interrupted run leaves a
// valid partial one that --resume continues.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>

#include "cli/commands.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "core/subprocess.h"
#include "core/threads.h"
#include "model/checkpoint.h"
#include "quant/quantize_gguf.h"
#include "report/report.h"

namespace qf::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* const kDefaultJobs =
    "baseline,rtn-w8,rtn-w4g128,nf4,nf4-dq,llm-int8,gptq-w4g128,gptq-w3g128,gptq-w2g64,awq-w4g128,"
    "q8_0,q6_k,q5_k_m,q4_k_m,q4_0,iq4_xs,q3_k_m,q2_k,gptq-q4_k_m,gptq-q3_k_m";

struct Job {
  std::string name, family;
  std::vector<std::string> options;  // `qforge quantize` options; none for the baseline
  bool gguf = false, calibrated = false, imatrix = false;
  double cost = 1;  // relative run time (eval + bench = 1), for the ETA only
};

// Job names: baseline; rtn|gptq|awq-w<bits>[g<group>] (no group: per output channel; gptq with
// act-order); nf4|fp4[-dq]; llm-int8; a GGUF file type (with the importance matrix), optionally
// GPTQ-rounded or AWQ-scaled (gptq-q4_k_m, awq-q4_k_m).
Expected<Job> parse_job(const std::string& name) {
  static const std::regex grid(R"((rtn|gptq|awq)-w([2-8])(?:g(\d+))?)"), bnb(R"((nf4|fp4)(-dq)?)"),
      gguf(R"((?:(gptq|awq)-)?([a-z0-9_]+))");
  Job j{name, "", {}};
  std::smatch m;
  if (name == "baseline") {
    j.family = "baseline";
  } else if (name == "llm-int8") {
    j.family = "bitsandbytes";
    j.options = {"--method", "llm-int8"};
  } else if (std::regex_match(name, m, bnb)) {
    j.family = "bitsandbytes";
    j.options = {"--method", m[1]};
    if (m[2].matched) j.options.push_back("--double-quant");
  } else if (std::regex_match(name, m, grid)) {
    const std::string method = m[1];
    j.family = method == "rtn" ? "RTN" : upper(method);
    j.options = {"--method", method, "--bits", m[2], "--group", m[3].matched ? m[3].str() : "-1"};
    if (method == "gptq") j.options.push_back("--act-order");
    j.calibrated = method != "rtn";
    j.cost = method == "awq" ? 5 : method == "gptq" ? 2 : 1;
  } else if (std::regex_match(name, m, gguf) && is_gguf_file_type(upper(m[2]))) {
    j.gguf = j.imatrix = true;
    j.family = m[1].matched ? "GGUF+" + upper(m[1]) : "GGUF";
    j.options = {"--format", "gguf", "--type", upper(m[2])};
    if (m[1].matched) {
      j.options.insert(j.options.end(), {"--method", m[1]});
      j.calibrated = true;
      j.cost = m[1] == "awq" ? 5 : 2;
    }
  } else {
    return error(
        "--methods: unknown job '{}' (baseline, rtn|gptq|awq-w<bits>[g<group>], nf4[-dq], fp4[-dq], "
        "llm-int8, "
        "a GGUF type such as q4_k_m, or gptq-/awq- before a GGUF type)",
        name);
  }
  return j;
}

Expected<std::vector<Job>> parse_jobs(const std::string& list) {
  std::vector<Job> jobs;
  std::string rest = list == "default" ? kDefaultJobs : list;
  for (size_t at = 0; at <= rest.size();) {
    size_t comma = std::min(rest.find(',', at), rest.size());
    std::string name = rest.substr(at, comma - at);
    at = comma + 1;
    if (name.empty()) continue;
    if (name == "default") {  // the default matrix plus extra jobs
      rest += std::string(",") + kDefaultJobs;
      continue;
    }
    QF_ASSIGN_OR_RETURN(auto job, parse_job(name));
    if (std::none_of(jobs.begin(), jobs.end(), [&](const Job& o) { return o.name == name; }))
      jobs.push_back(job);
  }
  if (jobs.empty()) return error("--methods '{}' names no job", list);
  return jobs;
}

// Signals: Ctrl-C reaches the child too (same process group); `kill` of this process alone is
// forwarded to the running child.
volatile std::sig_atomic_t g_interrupted = 0;
volatile pid_t g_child = 0;
void on_signal(int sig) {
  g_interrupted = sig;
  if (g_child > 0) kill(g_child, SIGINT);
}
void track_child(pid_t pid) { g_child = pid; }

// A /proc/meminfo field ("MemAvailable", "MemTotal") in bytes, or -1.
int64_t meminfo_bytes(const std::string& field) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line))  // "MemAvailable:   12345678 kB"
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  return -1;
}

std::string machine() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, cpu = "unknown CPU";
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  return fmt::format("{}, {} cores, {:.0f} GiB", cpu, sysconf(_SC_NPROCESSORS_ONLN),
                     meminfo_bytes("MemTotal") / 1073741824.0);
}

std::string hms(double s) {
  const int t = int(s + 0.5);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, t / 60 % 60)
                   : fmt::format("{}m{:02}s", t / 60, t % 60);
}

std::string shell_line(const std::vector<std::string>& argv) {
  std::string s;
  for (size_t i = 0; i < argv.size(); ++i) s += (i ? " " : "") + (i == 0 ? std::string("qforge") : argv[i]);
  return s;
}

class Comparison {
 public:
  Comparison(const CompareArgs& a, const Checkpoint& ck)
      : a_(a), ck_(ck), self_(self_executable()), model_bytes_(double(model_file_bytes(a.model))) {}

  json protocol() const {
    return {{"model", a_.model},
            {"text", a_.text},
            {"ctx", a_.ctx},
            {"max_windows", a_.max_windows},
            {"calib", a_.calib},
            {"nsamples", a_.nsamples},
            {"seqlen", a_.seqlen},
            {"prompt", a_.prompt},
            {"gen", a_.gen},
            {"reps", a_.reps},
            {"threads", num_threads()},
            {"machine", machine()}};
  }

  // Runs one job; the returned row has status "ok" or "error"; null when interrupted.
  std::optional<json> run(const Job& job, const std::string& imatrix) {
    json row = {{"name", job.name}, {"family", job.family}, {"status", "error"}};
    auto fail = [&row](const std::string& why) {
      row["error"] = why;
      return std::optional<json>(row);
    };
    const std::string file = job.family == "baseline" ? a_.model : out_path(job);
    row["file"] = file;
    if (auto why = cannot_start(job); !why.empty()) return fail(why);
    if (job.family != "baseline") {
      remove_outputs(job);
      std::vector<std::string> q = {self_, "-t", std::to_string(num_threads()), "quantize", a_.model,
                                    "-o",  file};
      q.insert(q.end(), job.options.begin(), job.options.end());
      if (job.calibrated)
        q.insert(q.end(), {"--calib", a_.calib, "--nsamples", std::to_string(a_.nsamples), "--seqlen",
                           std::to_string(a_.seqlen)});
      if (job.imatrix) {
        if (imatrix.empty()) return fail("no importance matrix (its step failed)");
        q.insert(q.end(), {"--imatrix", imatrix});
      }
      row["command"] = shell_line(q);
      auto r = step(job, "quantize", q, row);
      if (!r) return finish_interrupted(job);
      if (!r->ok()) return row;
      row["quant_seconds"] = r->seconds;
      row["quant_peak_rss"] = r->peak_rss;
    }
    std::vector<std::string> e = {self_,   "-t",    std::to_string(num_threads()), "eval",  file, "--text",
                                  a_.text, "--ctx", std::to_string(a_.ctx),        "--json"};
    if (a_.max_windows > 0) e.insert(e.end(), {"--max-windows", std::to_string(a_.max_windows)});
    if (job.family != "baseline") e.insert(e.end(), {"--base", a_.model});
    auto r = step(job, "eval", e, row);
    if (!r) return finish_interrupted(job);
    if (!r->ok()) return row;
    json ev = json::parse(r->out, nullptr, false);
    if (ev.is_discarded()) return fail("eval: its output is not JSON");
    for (const char* k : {"ppl", "kld", "top1", "file_bytes", "windows", "scored"})
      if (ev.contains(k)) row[k] = ev[k];
    row["bits_per_weight"] = ev["body_bits_per_weight"];
    row["eval_seconds"] = ev["seconds"];
    std::vector<std::string> b = {self_,
                                  "-t",
                                  std::to_string(num_threads()),
                                  "bench",
                                  file,
                                  "--prompt",
                                  std::to_string(a_.prompt),
                                  "--gen",
                                  std::to_string(a_.gen),
                                  "--reps",
                                  std::to_string(a_.reps),
                                  "--json"};
    r = step(job, "bench", b, row);
    if (!r) return finish_interrupted(job);
    if (!r->ok()) return row;
    json be = json::parse(r->out, nullptr, false);
    if (be.is_discarded()) return fail("bench: its output is not JSON");
    for (const char* k :
         {"prompt_tps", "prompt_tps_stdev", "gen_tps", "gen_tps_stdev", "weight_bytes_per_token"})
      row[k] = be[k];
    row["run_peak_rss"] = r->peak_rss;
    row["status"] = "ok";
    row.erase("error");
    return row;
  }

  // The importance matrix the GGUF jobs share, computed once from the calibration text; its
  // cost goes to report["imatrix"] (the GGUF rows' quantize times do not include it).
  Expected<std::string> imatrix(bool interactive, json& report) {
    const std::string path = a_.out + "/imatrix.dat";
    if (fs::exists(path)) return path;
    std::vector<std::string> argv = {self_,
                                     "-t",
                                     std::to_string(num_threads()),
                                     "imatrix",
                                     a_.model,
                                     "--calib",
                                     a_.calib,
                                     "-o",
                                     path,
                                     "--ctx",
                                     std::to_string(a_.seqlen),
                                     "--chunks",
                                     std::to_string(a_.nsamples)};
    if (interactive)
      fmt::print(stderr, "importance matrix: {} chunks of {} tokens from {}\n", a_.nsamples, a_.seqlen,
                 a_.calib);
    QF_ASSIGN_OR_RETURN(auto r, run_child(argv, interactive, env(interactive), track_child));
    if (!r.ok()) return error("imatrix: {}", describe_failure(r));
    report["imatrix"] = {{"file", path}, {"seconds", r.seconds}, {"peak_rss", r.peak_rss}};
    return path;
  }

  std::string out_path(const Job& job) const {
    return a_.out + "/models/" + job.name + (job.gguf ? ".gguf" : "");
  }

  // Removes the job's output and anything a killed child left beside it (NAME.tmp-PID, ...).
  void remove_outputs(const Job& job) const {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(a_.out + "/models", ec)) {
      const std::string f = e.path().filename().string();
      if (f == job.name || f.rfind(job.name + ".", 0) == 0) fs::remove_all(e.path(), ec);
    }
  }

 private:
  static std::vector<std::string> env(bool interactive) {
    return interactive ? std::vector<std::string>{"QFORGE_PROGRESS=1"} : std::vector<std::string>{};
  }
  static std::string describe_failure(const ChildResult& r) {
    if (r.signal) return fmt::format("killed by signal {} ({})", r.signal, strsignal(r.signal));
    std::string line = r.last_line;
    if (line.rfind("qforge: error: ", 0) == 0) line.erase(0, 15);
    return line.empty() ? fmt::format("exit code {}", r.exit_code) : line;
  }

  // Runs one step; on failure records "<step>: <error>" in the row. nullopt when interrupted.
  std::optional<ChildResult> step(const Job& job, const char* name, const std::vector<std::string>& argv,
                                  json& row) {
    const bool interactive = stderr_is_interactive();
    if (interactive) fmt::print(stderr, "  {} {}\n", job.name, name);
    auto r = run_child(argv, interactive, env(interactive), track_child);
    if (g_interrupted) return std::nullopt;
    if (!r.ok()) {
      row["error"] = fmt::format("{}: {}", name, r.status().message());
      return ChildResult{};
    }
    if (!r->ok()) row["error"] = fmt::format("{}: {}", name, describe_failure(*r));
    return *r;
  }

  std::optional<json> finish_interrupted(const Job& job) const {
    remove_outputs(job);
    return std::nullopt;
  }

  // Why the job cannot start (memory — MemAvailable, or --max-memory when lower — or disk, by
  // the estimate below), or empty. The estimate:
  // quantizing maps the model and holds calibration activations (windows × tokens × width, three
  // copies) and one MLP Hessian; eval maps the model and its quantized copy (no larger) and
  // keeps both models' logits of one window.
  std::string cannot_start(const Job& job) const {
    const auto& c = ck_.config;
    const double model = model_bytes_;
    double calib = job.calibrated ? 3.0 * a_.nsamples * a_.seqlen * c.n_embd * 4 + 8.0 * c.n_ff * c.n_ff : 0;
    const double need = std::max(model + calib, 2 * model + 4.0 * a_.ctx * c.vocab_size * 4);
    double avail = double(meminfo_bytes("MemAvailable"));
    const bool capped = a_.max_memory_gib > 0 && (avail <= 0 || a_.max_memory_gib * 1073741824.0 < avail);
    if (capped) avail = a_.max_memory_gib * 1073741824.0;
    if (avail > 0 && need > avail)
      return fmt::format(
          "not started: needs about {:.3g} GiB of memory by qforge's estimate, {:.3g} GiB available{}",
          need / 1073741824.0, avail / 1073741824.0, capped ? " (--max-memory)" : "");
    std::error_code ec;
    const auto space = fs::space(a_.out, ec);
    if (!ec && job.family != "baseline" && double(space.available) < model)
      return fmt::format("not started: {} has {:.1f} GiB free, a quantized copy may need up to {:.1f} GiB",
                         a_.out, space.available / 1073741824.0, model / 1073741824.0);
    return "";
  }

  const CompareArgs& a_;
  const Checkpoint& ck_;
  std::string self_;
  double model_bytes_;  // the unquantized model's weight files
};

Status write_report(const std::string& dir, const json& report) {
  // The report's own files, rewritten as jobs finish (and on --resume).
  QF_RETURN_IF_ERROR(
      write_file_atomic(dir + "/report.json",
                        report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", true));
  QF_RETURN_IF_ERROR(write_file_atomic(dir + "/report.md", render_markdown(report), true));
  return write_file_atomic(dir + "/report.html", render_html(report), true);
}

// The protocol keys a resumed run must share with the report it continues.
Status check_same_protocol(const json& old, const json& now, const std::string& path) {
  for (const char* k : {"model", "text", "ctx", "max_windows", "calib", "nsamples", "seqlen", "prompt", "gen",
                        "reps", "threads"})
    if (old.value(k, json()) != now[k])
      return error(
          "{}: was made with {} = {}, this run has {}; use the same options to resume, or a new --out", path,
          k, old.value(k, json()).dump(), now[k].dump());
  return {};
}

}  // namespace

Status run_compare(const CompareArgs& in) {
  CompareArgs a = in;
  if (a.out.empty()) a.out = fs::path(a.model).lexically_normal().filename().string() + "-compare";
  if (a.out.empty() || a.out == "-compare") a.out = "compare";
  QF_ASSIGN_OR_RETURN(auto jobs, parse_jobs(a.methods));
  const bool calibrated =
      std::any_of(jobs.begin(), jobs.end(), [](const Job& j) { return j.calibrated || j.imatrix; });
  if (calibrated && a.calib.empty())
    return error("--calib FILE is needed by the GPTQ, AWQ and GGUF (importance matrix) jobs");
  for (const auto& f : {a.text, a.calib})
    if (!f.empty() && !fs::is_regular_file(f)) return error("{}: not a readable file", f);
  QF_ASSIGN_OR_RETURN(auto ck, load_checkpoint(a.model));
  if (!fs::is_directory(a.model) || !ck.quant.method.empty())
    return error("{}: compare quantizes an unquantized Hugging Face directory", a.model);

  Comparison cmp(a, ck);
  json report = {{"protocol", cmp.protocol()}, {"jobs", json::array()}};
  const std::string report_path = a.out + "/report.json";
  if (fs::exists(report_path)) {
    if (!a.resume)
      return error("{}: exists; pass --resume to continue it, or choose a new --out", report_path);
    QF_ASSIGN_OR_RETURN(auto text, read_text_file(report_path));
    json old = json::parse(text, nullptr, false);
    if (old.is_discarded() || !old.contains("jobs") || !old.contains("protocol"))
      return error("{}: not a qforge compare report (expected JSON with 'protocol' and 'jobs')", report_path);
    QF_RETURN_IF_ERROR(check_same_protocol(old["protocol"], report["protocol"], report_path));
    for (auto& j : old["jobs"])
      if (j.value("status", "") == "ok") report["jobs"].push_back(j);
    if (old.contains("imatrix")) report["imatrix"] = old["imatrix"];
  } else if (fs::exists(a.out) && !fs::is_empty(a.out)) {
    return error("{}: exists and holds no report.json; choose a new --out", a.out);
  }
  std::error_code ec;
  fs::create_directories(a.out + "/models", ec);
  if (ec) return error("{}: cannot create: {}", a.out, ec.message());

  auto done = [&](const Job& j) {
    return std::any_of(report["jobs"].begin(), report["jobs"].end(),
                       [&](const json& r) { return r["name"] == j.name; });
  };
  std::vector<const Job*> todo;
  double total_cost = 0;
  for (const auto& j : jobs)
    if (!done(j)) todo.push_back(&j), total_cost += j.cost;
  if (todo.size() < jobs.size())
    fmt::print(stderr, "resuming: {} of {} jobs already in {}\n", jobs.size() - todo.size(), jobs.size(),
               report_path);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const bool interactive = stderr_is_interactive();
  std::string imatrix;
  if (std::any_of(todo.begin(), todo.end(), [](const Job* j) { return j->imatrix; })) {
    auto im = cmp.imatrix(interactive, report);
    if (im)
      imatrix = *im;
    else if (!g_interrupted)
      fmt::print(stderr, "warning: {}\n", im.status().message());
  }
  const auto t0 = std::chrono::steady_clock::now();
  double cost_done = 0;
  for (size_t i = 0; i < todo.size() && !g_interrupted; ++i) {
    const Job& job = *todo[i];
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string eta = cost_done > 0 ? hms(elapsed / cost_done * (total_cost - cost_done)) : "unknown";
    fmt::print(stderr, "[{}/{}] {} — elapsed {}, ETA {}\n", i + 1, todo.size(), job.name, hms(elapsed), eta);
    auto row = cmp.run(job, imatrix);
    if (!row) break;
    if ((*row)["status"] != "ok")
      fmt::print(stderr, "  {} failed: {}\n", job.name, (*row)["error"].get<std::string>());
    auto& rows = report["jobs"];
    rows.erase(std::remove_if(rows.begin(), rows.end(), [&](const json& r) { return r["name"] == job.name; }),
               rows.end());
    rows.push_back(*row);
    cost_done += job.cost;
    QF_RETURN_IF_ERROR(write_report(a.out, report));
  }
  if (g_interrupted) {
    const size_t finished = report["jobs"].size();
    report["interrupted"] = fmt::format(
        "stopped by signal {} with {} of {} jobs in the report; run again with --resume to finish",
        int(g_interrupted), finished, jobs.size());
    QF_RETURN_IF_ERROR(write_report(a.out, report));
    return error("interrupted: the partial report of {} jobs is in {}/report.md (continue with --resume)",
                 finished, a.out);
  }
  report.erase("interrupted");
  QF_RETURN_IF_ERROR(write_report(a.out, report));
  const auto failed = std::count_if(report["jobs"].begin(), report["jobs"].end(),
                                    [](const json& r) { return r["status"] != "ok"; });
  fmt::print("report: {0}/report.md, {0}/report.html, {0}/report.json ({1} jobs, {2} failed)\n", a.out,
             report["jobs"].size(), failed);
  return {};
}

}  // namespace qf::cli
