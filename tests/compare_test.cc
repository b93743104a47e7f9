// qforge compare on the bundled stories260K: the report's structure, every number in it against
// `qforge eval` on the same file, resume, Ctrl-C, and refusals.
#include <gtest/gtest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fcntl.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include "file_builders.h"
#include "test_paths.h"

namespace qf {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kModel = test::bundled_stories() + "/hf";
// rtn-w4g128 cannot be written for stories260K (rows of 64): it must become an error row.
const std::string kJobs = "baseline,rtn-w8,nf4-dq,llm-int8,q8_0,q4_k_m,gptq-q4_k_m,rtn-w4g128";

std::string protocol_args() {
  const std::string text = test::text_path("tinystories-val-head");
  return "--text " + text + " --calib " + text +
         " --ctx 128 --max-windows 4 --nsamples 4 --seqlen 128 --prompt 16 --gen 8 --reps 1";
}

std::string compare_cmd(const std::string& out, const std::string& jobs) {
  return "-t 2 compare " + kModel + " " + protocol_args() + " --methods " + jobs + " -o " + out;
}

const json* find_job(const json& report, const std::string& name) {
  for (const auto& j : report["jobs"])
    if (j["name"] == name) return &j;
  return nullptr;
}

TEST(Compare, ReportHoldsWhatEvalMeasuresForEveryFile) {
  const std::string dir = test::temp_dir("compare"), out = dir + "/r";
  std::string err;
  ASSERT_EQ(test::run_qforge(compare_cmd(out, kJobs), dir, &err), 0) << err;
  const json report = json::parse(test::slurp(out + "/report.json"));
  EXPECT_EQ(report["protocol"]["ctx"], 128);
  EXPECT_EQ(report["protocol"]["max_windows"], 4);
  ASSERT_EQ(report["jobs"].size(), 8u);

  const json* bad = find_job(report, "rtn-w4g128");
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ((*bad)["status"], "error");
  EXPECT_NE((*bad)["error"].get<std::string>().find("group size 128 does not divide the row length 64"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(out + "/models/rtn-w4g128"));

  for (const auto& j : report["jobs"]) {
    if (j["name"] == "rtn-w4g128") continue;
    SCOPED_TRACE(j["name"].get<std::string>());
    ASSERT_EQ(j["status"], "ok") << j.dump();
    const bool base = j["name"] == "baseline";
    int status = 0;
    const std::string file = j["file"];
    const json ev = json::parse(test::qforge_stdout("-t 2 eval " + file + (base ? "" : " --base " + kModel) +
                                                        " --text " + test::text_path("tinystories-val-head") +
                                                        " --ctx 128 --max-windows 4 --json",
                                                    &status));
    ASSERT_EQ(status, 0);
    EXPECT_EQ(j["ppl"], ev["ppl"]);
    EXPECT_EQ(j["bits_per_weight"], ev["body_bits_per_weight"]);
    EXPECT_EQ(j["file_bytes"], ev["file_bytes"]);
    EXPECT_EQ(j.contains("kld"), !base);
    if (!base) {
      EXPECT_EQ(j["kld"], ev["kld"]);
      EXPECT_EQ(j["top1"], ev["top1"]);
      EXPECT_GT(j["quant_seconds"].get<double>(), 0);
      EXPECT_GT(j["quant_peak_rss"].get<double>(), 1e6);
    }
    EXPECT_GT(j["prompt_tps"].get<double>(), 0);
    EXPECT_GT(j["gen_tps"].get<double>(), 0);
    EXPECT_GT(j["run_peak_rss"].get<double>(), 1e6);
  }

  // report.md: one table row per successful job, ★ exactly on the Pareto-optimal quantized rows
  // (recomputed here from the definition), the failure listed with its error.
  const std::string md = test::slurp(out + "/report.md");
  for (const auto& j : report["jobs"]) {
    if (j["status"] != "ok") continue;
    const double b = j["bits_per_weight"], k = j.value("kld", 0.0);
    bool dominated = j["name"] == "baseline";
    for (const auto& o : report["jobs"])
      if (o["status"] == "ok" && o["name"] != "baseline" && o["name"] != j["name"]) {
        const double ob = o["bits_per_weight"], ok = o["kld"];
        dominated = dominated || (ob <= b && ok <= k && (ob < b || ok < k));
      }
    const std::string mark = j["name"] == "baseline" ? "ref" : dominated ? "" : "★";
    const std::string row = "| " + mark + " | " + j["name"].get<std::string>() + " |";
    EXPECT_NE(md.find(row), std::string::npos) << row << "\n" << md;
  }
  EXPECT_NE(md.find("| rtn-w4g128 | quantize: model.layers.0.self_attn.q_proj.weight: group size 128"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("bits per weight: **"), std::string::npos) << md;

  // report.html: self-contained (no external references), three charts, a point per measured job.
  const std::string html = test::slurp(out + "/report.html");
  for (const char* external : {"<script", "<link", "src=", "href=", "@import"})
    EXPECT_EQ(html.find(external), std::string::npos) << external;
  size_t svgs = 0;
  for (size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at + 1)) ++svgs;
  EXPECT_EQ(svgs, 3u);
  for (const auto& j : report["jobs"])
    if (j["status"] == "ok") {
      EXPECT_NE(html.find("<title>" + j["name"].get<std::string>() + ":"), std::string::npos) << j["name"];
    }
}

TEST(Compare, ResumeKeepsFinishedJobsAndRunsTheRest) {
  const std::string dir = test::temp_dir("compare_resume"), out = dir + "/r";
  std::string err;
  ASSERT_EQ(test::run_qforge(compare_cmd(out, "baseline,nf4"), dir, &err), 0) << err;
  const json first = json::parse(test::slurp(out + "/report.json"));
  // Without --resume an existing report is never overwritten.
  EXPECT_EQ(test::run_qforge(compare_cmd(out, "baseline,nf4,q8_0"), dir, &err), 1);
  EXPECT_NE(err.find("report.json: exists; pass --resume"), std::string::npos) << err;
  ASSERT_EQ(test::run_qforge(compare_cmd(out, "baseline,nf4,q8_0") + " --resume", dir, &err), 0) << err;
  EXPECT_NE(err.find("resuming: 2 of 3 jobs"), std::string::npos) << err;
  const json second = json::parse(test::slurp(out + "/report.json"));
  ASSERT_EQ(second["jobs"].size(), 3u);
  EXPECT_EQ(*find_job(second, "nf4"), *find_job(first, "nf4"));  // not re-measured
  EXPECT_EQ((*find_job(second, "q8_0"))["status"], "ok");
  // A resumed run must measure under the same protocol.
  EXPECT_EQ(test::run_qforge("-t 2 compare " + kModel + " --text " + test::text_path("tinystories-val-head") +
                                 " --ctx 64 --methods baseline -o " + out + " --resume",
                             dir, &err),
            1);
  EXPECT_NE(err.find("was made with ctx = 128"), std::string::npos) << err;
}

TEST(Compare, InterruptLeavesAValidPartialReport) {
  const std::string dir = test::temp_dir("compare_int"), out = dir + "/r";
  const std::string jobs =
      "baseline,rtn-w8,nf4,nf4-dq,fp4,fp4-dq,llm-int8,q8_0,q6_k,q5_k_m,q4_k_m,q4_0,iq4_xs,q3_k_m,q2_k";
  std::vector<std::string> args = {test::qforge_bin(), "-t", "2",  "compare", kModel,
                                   "--methods",        jobs, "-o", out};
  std::istringstream extra(protocol_args());
  for (std::string w; extra >> w;) args.push_back(w);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(out + "/report.json") &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const json report = json::parse(test::slurp(out + "/report.json"));  // complete JSON, not a torn file
  ASSERT_TRUE(report.contains("interrupted")) << report.dump();
  const size_t kept = report["jobs"].size();
  EXPECT_GE(kept, 1u);
  EXPECT_LT(kept, 15u);
  for (const auto& e : fs::directory_iterator(out + "/models")) {  // only finished jobs' outputs
    std::string name = e.path().filename().string();
    if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
    EXPECT_NE(find_job(report, name), nullptr) << name;
  }
  std::string err;
  ASSERT_EQ(test::run_qforge(compare_cmd(out, jobs) + " --resume", dir, &err), 0) << err;
  const json done = json::parse(test::slurp(out + "/report.json"));
  EXPECT_EQ(done["jobs"].size(), 15u);
  EXPECT_FALSE(done.contains("interrupted"));
}

// Jobs whose estimated memory exceeds the limit become error rows without running: stories260K's
// estimate is a few MiB (its 1 MiB file mapped twice plus one window's logits), above 1 MiB.
TEST(Compare, JobsAboveTheMemoryLimitAreNotStarted) {
  const std::string dir = test::temp_dir("compare_mem"), out = dir + "/r";
  std::string err;
  ASSERT_EQ(test::run_qforge(compare_cmd(out, "baseline,nf4") + " --max-memory 0.0009765625", dir, &err), 0)
      << err;
  const json report = json::parse(test::slurp(out + "/report.json"));
  ASSERT_EQ(report["jobs"].size(), 2u);
  for (const auto& j : report["jobs"]) {
    EXPECT_EQ(j["status"], "error");
    EXPECT_NE(j["error"].get<std::string>().find("not started: needs about"), std::string::npos) << j.dump();
    EXPECT_NE(j["error"].get<std::string>().find("GiB available (--max-memory)"), std::string::npos)
        << j.dump();
    EXPECT_FALSE(j.contains("ppl"));
  }
  EXPECT_TRUE(fs::is_empty(out + "/models"));
}

TEST(Compare, RefusesBadRequestsBeforeRunningAnything) {
  const std::string dir = test::temp_dir("compare_bad");
  std::string err;
  auto refuse = [&](const std::string& args, const std::string& message) {
    EXPECT_EQ(test::run_qforge("compare " + kModel + " --text " + test::text_path("tinystories-val-head") +
                                   " -o " + dir + "/r " + args,
                               dir, &err),
              1);
    EXPECT_NE(err.find(message), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_FALSE(fs::exists(dir + "/r"));
  };
  refuse("--methods baseline,q5_z", "unknown job 'q5_z'");
  refuse("--methods gptq-w4g32", "--calib FILE is needed");
  refuse("--methods baseline --calib " + dir + "/missing.txt", "missing.txt: not a readable file");
  EXPECT_EQ(
      test::run_qforge("compare " + test::bundled_stories() + "/stories260K.gguf --text " +
                           test::text_path("tinystories-val-head") + " -o " + dir + "/r --methods baseline",
                       dir, &err),
      1);
  EXPECT_NE(err.find("compare quantizes an unquantized Hugging Face directory"), std::string::npos) << err;
}

}  // namespace
}  // namespace qf
