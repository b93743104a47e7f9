// The qforge binary on bad input: exit code 1, exactly one line on stderr naming the problem,
// nothing on stdout. And the happy path of each command on the bundled model.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "file_builders.h"
#include "io/safetensors.h"
#include "quant/method_spec.h"
#include "test_paths.h"

namespace qf {
namespace {

struct Run {
  int code;
  std::string out, err;
};

Run run(const std::string& args) {
  std::string dir = test::temp_dir("cli_run");
  std::string cmd = test::qforge_bin() + " " + args + " >" + dir + "/out 2>" + dir + "/err";
  int status = std::system(cmd.c_str());
  return {WEXITSTATUS(status), test::slurp(dir + "/out"), test::slurp(dir + "/err")};
}

void expect_one_line_error(const Run& r, const std::string& needle) {
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("qforge: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

std::string stories() { return test::bundled_stories() + "/hf"; }

// llama-bench's spelling: the thread count after the command, as the report's "threads".
TEST(Cli, BenchTakesThreadsAfterTheCommand) {
  int status = -1;
  const std::string out =
      test::qforge_stdout("bench " + stories() + " --threads 1 --prompt 8 --gen 4 --reps 1 --json", &status);
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("\"threads\":1,"), std::string::npos) << out;
}

TEST(Cli, MissingModel) {
  expect_one_line_error(run("eval /nonexistent --text /etc/hostname"), "/nonexistent: no such file");
}

TEST(Cli, TextNotUtf8) {
  std::string path = test::temp_dir("cli_latin1") + "/latin1.txt";
  test::write_file(path, "caf\xe9\n");
  expect_one_line_error(run("eval " + stories() + " --text " + path),
                        "latin1.txt: not UTF-8: invalid byte 0xe9 at offset 3");
}

TEST(Cli, MissingTextFile) {
  expect_one_line_error(run("eval " + stories() + " --text /nonexistent.txt"), "/nonexistent.txt");
}

TEST(Cli, CorruptGguf) {
  std::string path = test::temp_dir("cli_gguf") + "/bad.gguf";
  test::write_file(path, "NOPE and then some bytes");
  expect_one_line_error(run("inspect " + path), "bad magic");
  expect_one_line_error(run("generate " + path + " -p hi"), "bad magic");
}

TEST(Cli, DirectoryWithoutConfig) {
  std::string dir = test::temp_dir("cli_empty");
  expect_one_line_error(run("eval " + dir + " --text /etc/hostname"), "missing config.json");
}

TEST(Cli, BadFlag) { expect_one_line_error(run("eval " + stories() + " --text x --ctx -5"), "--ctx"); }
TEST(Cli, UnknownFlag) { expect_one_line_error(run("eval " + stories() + " --text x --bogus"), "bogus"); }

TEST(Cli, TextShorterThanOneWindow) {
  std::string path = test::temp_dir("cli_short") + "/short.txt";
  test::write_file(path, "Once upon a time.");
  expect_one_line_error(run("eval " + stories() + " --text " + path + " --ctx 512"),
                        "short.txt: 6 tokens, fewer than one window");
  test::write_file(path, "");  // an empty text: BOS alone, still named
  expect_one_line_error(run("eval " + stories() + " --text " + path + " --ctx 512"),
                        "short.txt: 1 tokens, fewer than one window");
  expect_one_line_error(run("imatrix " + stories() + " --calib " + path + " -o " + path + ".dat"),
                        "short.txt: 1 tokens, fewer than one chunk");
}

TEST(Cli, EvalJsonAndInspectAndGenerate) {
  auto r = run("eval " + stories() + " --text " + test::text_path("tinystories-val-head") +
               " --ctx 128 --max-windows 4 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["windows"], 4);
  EXPECT_EQ(j["scored"], 4 * 127);
  EXPECT_GT(j["ppl"].get<double>(), 1.0);

  r = run("inspect " + stories());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("parameters:   260032"), std::string::npos) << r.out;  // the model card's count
  r = run("inspect " + test::bundled_stories() + "/stories260K.gguf");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("tensors:      48"), std::string::npos) << r.out;

  // transformers' greedy continuations; HF decodes them alone, which drops the leading space of a
  // SentencePiece word ("▁was"): the printed text is the prompt, that space, then the continuation.
  const auto vocab = nlohmann::json::parse(test::slurp(stories() + "/tokenizer.json"))["model"]["vocab"];
  const auto goldens = test::load_golden(test::bundled_stories());  // kept alive: the loop walks into it
  for (const auto& golden : goldens["logits"]) {
    const std::string prompt = golden["prompt"], text = golden["greedy_text"];
    const size_t n_prompt = golden["ids"].size();  // greedy_ids is the prompt's ids, then the continuation
    const int n = int(golden["greedy_ids"].size() - n_prompt);
    r = run(fmt::format("generate {} -p \"{}\" -n {} --ignore-eos", stories(), prompt, n));
    ASSERT_EQ(r.code, 0) << r.err;
    std::string first;  // the first generated token's piece
    for (const auto& [piece, id] : vocab.items())
      if (id == golden["greedy_ids"][n_prompt]) first = piece;
    const std::string space = first.rfind("\u2581", 0) == 0 ? " " : "";
    EXPECT_EQ(r.out, prompt + space + text + "\n");
  }
}

}  // namespace
}  // namespace qf

namespace qf {
namespace {

// The method table (quant/method_spec.h) and the CLI agree: every method and every method option
// of the table is one `qforge quantize` accepts, and each option is refused for a method without it.
TEST(Cli, MethodTableDrivesQuantizeOptions) {
  int status = 0;
  const std::string help = test::qforge_stdout("quantize --help", &status);
  for (const auto& m : method_names()) EXPECT_NE(help.find(m), std::string::npos) << m;
  for (const auto& o : method_option_names()) EXPECT_NE(help.find(o), std::string::npos) << o;
  const std::string dir = test::temp_dir("cli_methods");
  for (const auto& m : method_specs())
    for (const auto& o : method_option_names()) {
      if (std::find(m.options.begin(), m.options.end(), o) != m.options.end() || o.starts_with("--no-"))
        continue;
      const std::string value =
          o == "--calib"  ? " /etc/hostname"
          : o == "--clip" ? " mse"
          : (o == "--sym" || o == "--double-quant" || o == "--act-order" || o == "--static-groups" ||
             o == "--true-sequential" || o == "--duo-scaling" || o == "--awq-clip")
              ? ""
          : o == "--damp" ? " 0.01"
                          : " 64";
      std::string err;
      EXPECT_EQ(test::run_qforge(fmt::format("quantize {} -o {}/out --method '{}' {}{}",
                                             test::bundled_stories() + "/hf", dir, m.name, o, value),
                                 dir, &err),
                1)
          << m.name << " " << o;
      EXPECT_NE(err.find(o + " does not apply to --method " + m.name), std::string::npos) << err;
    }
}

// An existing output is never replaced, and an input is never the output (issue 19: imatrix -o
// replaced whatever was there, the model file included).
TEST(Cli, OutputsNeverReplaceAFileOrAnInput) {
  const std::string dir = test::temp_dir("cli_outputs"), gguf = test::bundled_stories() + "/stories260K.gguf";
  const std::string calib = test::text_path("tinystories-val-head");
  test::write_file(dir + "/existing", "keep me");
  expect_one_line_error(run("imatrix " + gguf + " --calib " + calib + " -o " + dir + "/existing"),
                        "already exists");
  EXPECT_EQ(test::slurp(dir + "/existing"), "keep me");
  expect_one_line_error(run("imatrix " + gguf + " --calib " + calib + " -o " + gguf),
                        "the output is an input of this run");
  expect_one_line_error(run("imatrix " + gguf + " --calib " + calib + " -o " + calib),
                        "the output is an input of this run");
  expect_one_line_error(run("convert " + stories() + " -o " + dir + "/existing"), "already exists");
  expect_one_line_error(run("quantize " + stories() + " -o " + stories() + "/../hf"),
                        "the output is an input of this run");
  EXPECT_EQ(test::slurp(dir + "/existing"), "keep me");
}

// SIGINT while an output is being built: the process dies of the signal and leaves nothing — no
// OUT, no OUT.tmp-PID, no AWQ scratch folder (core/cleanup.h). A run that finished before the
// signal must have written its complete output. At 1 s and 5 s here; the full tier adds 20 s.
TEST(Cli, InterruptedRunsLeaveNothingBehind) {
  const std::string tiny = test::source_dir() + "/models/qf-tiny-5m";
  const std::string calib = " --calib " + test::text_path("tinystories-val-head");
  const std::string windows = " --nsamples 64 --seqlen 256" + calib;
  const std::pair<std::string, std::string> jobs[] = {
      {"gptq", "quantize " + tiny + " --method gptq" + windows},
      {"awq", "quantize " + tiny + " --method awq" + windows},
      {"quip", "quantize " + tiny + " --method quip# --bits 2" + windows},
      {"gguf", "quantize " + tiny + " --format gguf --type Q4_K_M --method gptq" + windows},
      {"imatrix", "imatrix " + tiny + calib + " --ctx 64"},
      {"convert", "convert " + tiny + " --type q8_0"},
  };
  std::vector<int> delays_ms = {1000, 5000};
  if (test::full_tier()) delays_ms.push_back(20000);
  for (const auto& [name, command] : jobs)
    for (int delay_ms : delays_ms) {
      const std::string dir = test::temp_dir("cli_sigint_" + name + std::to_string(delay_ms)),
                        out = dir + "/out";
      const pid_t pid = fork();
      if (pid == 0) {
        const std::string cmd =
            "exec " + test::qforge_bin() + " -t 1 " + command + " -o " + out + " >/dev/null 2>&1";
        execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
        _exit(127);
      }
      int status = 0;
      for (int waited = 0; waited < delay_ms && waitpid(pid, &status, WNOHANG) == 0; waited += 50)
        usleep(50 * 1000);
      if (kill(pid, SIGINT) == 0) waitpid(pid, &status, 0);  // still running (or a zombie)
      const auto left = std::distance(std::filesystem::directory_iterator(dir), {});
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {  // finished first: the output is whole
        EXPECT_TRUE(std::filesystem::exists(out)) << name;
        EXPECT_EQ(left, 1) << name;
      } else {
        EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << name << " status " << status;
        EXPECT_EQ(left, 0) << name << " after " << delay_ms << " ms";
      }
    }
}

// --force replaces an output only once the new one is complete; temporaries that a killed process
// left (OUT.tmp-PID of a process no longer running) are removed by the next run, a live one's kept.
TEST(Cli, ForceReplacesAndStaleTemporariesAreRemoved) {
  const std::string dir = test::temp_dir("cli_force"), gguf = test::bundled_stories() + "/stories260K.gguf";
  const std::string calib = test::text_path("tinystories-val-head");
  test::write_file(dir + "/im.dat", "old");
  std::filesystem::create_directories(dir + "/q");
  test::write_file(dir + "/q/stale", "old");
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);  // a pid no process has now
  const std::string stale = dir + "/im.dat.tmp-" + std::to_string(dead),
                    live = dir + "/im.dat.tmp-" + std::to_string(getpid());
  std::filesystem::create_directories(stale + "-awq");
  test::write_file(stale, "partial");
  test::write_file(live, "someone's");
  auto r =
      run("imatrix " + gguf + " --calib " + calib + " --ctx 64 --chunks 2 -o " + dir + "/im.dat --force");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(test::slurp(dir + "/im.dat"), "old");
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_FALSE(std::filesystem::exists(stale + "-awq"));
  EXPECT_TRUE(std::filesystem::exists(live));
  EXPECT_NE(r.err.find("note: removed " + stale + ", a temporary left by process"), std::string::npos)
      << r.err;
  r = run("quantize " + stories() + " --method nf4 -o " + dir + "/q --force");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/q/stale"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/q/model.safetensors"));
  // A folder where a file goes, a device: refused up front, kept.
  expect_one_line_error(run("convert " + stories() + " -o " + dir + "/q --force"),
                        "exists and is not a regular file");
  EXPECT_TRUE(std::filesystem::exists(dir + "/q/model.safetensors"));
  expect_one_line_error(run("imatrix " + gguf + " --calib " + calib + " -o /dev/null --force"),
                        "exists and is not a regular file");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 3);  // im.dat, q, the live temporary
}

TEST(Cli, VersionNamesTheBuildsFeatures) {
  int status = -1;
  const std::string out = test::qforge_stdout("--version", &status);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(out.rfind("qforge ", 0), 0u) << out;
  EXPECT_NE(out.find("SIMD target"), std::string::npos) << out;
  EXPECT_NE(out.find("CUDA"), std::string::npos) << out;
}

// Texts that are not files, not UTF-8 by RFC 3629, or longer than the model's context.
TEST(Cli, TextsAndContextsOutsideTheModelAreRefused) {
  const std::string dir = test::temp_dir("cli_texts");
  expect_one_line_error(run("eval " + stories() + " --text /dev/zero"), "/dev/zero: not a regular file");
  expect_one_line_error(run("eval " + stories() + " --text " + dir), "not a regular file");
  for (const std::string& bad : {std::string("overlong \xC0\x80"), std::string("surrogate \xED\xA0\x80"),
                                 std::string("past \xF4\x90\x80\x80")}) {
    test::write_file(dir + "/bad.txt", bad);
    expect_one_line_error(run("eval " + stories() + " --text " + dir + "/bad.txt"), "not UTF-8");
    std::filesystem::remove(dir + "/bad.txt");
  }
  const std::string text = test::text_path("tinystories-val-head");
  expect_one_line_error(run("eval " + stories() + " --text " + text + " --ctx 1024"),
                        "beyond the model's trained context of 512");
  expect_one_line_error(run("eval " + stories() + " --text " + text + " --max-windows 0"), "--max-windows");
  expect_one_line_error(run("-t -3 eval " + stories() + " --text " + text), "--threads");
  EXPECT_EQ(
      run("eval " + stories() + " --text " + text + " --ctx 1024 --max-windows 1 --allow-long-context").code,
      0);
}

// A NaN weight: eval and generate stop with an error that names the tensor, never a number.
TEST(Cli, NonFiniteWeightsAreNamedNotPrinted) {
  const std::string dir = test::temp_dir("cli_nan");
  for (const char* f : {"config.json", "tokenizer.json"})
    std::filesystem::copy(stories() + "/" + f, dir + "/" + f);
  std::map<std::string, test::F32Tensor> tensors;
  {
    auto st = read_safetensors(stories() + "/model.safetensors");
    ASSERT_TRUE(st.ok());
    for (const auto& t : st->tensors) tensors[t.name] = {t.shape, t.to_f32()};
  }
  tensors["model.layers.2.post_attention_layernorm.weight"].data[5] = std::nanf("");
  test::write_file(dir + "/model.safetensors", test::safetensors_bytes(tensors));
  const std::string tensor = "tensor 'model.layers.2.post_attention_layernorm.weight': element 5 is nan";
  expect_one_line_error(
      run("eval " + dir + " --text " + test::text_path("tinystories-val-head") + " --ctx 64 --max-windows 2"),
      "not finite");
  expect_one_line_error(
      run("eval " + dir + " --text " + test::text_path("tinystories-val-head") + " --ctx 64 --max-windows 2"),
      tensor);
  expect_one_line_error(run("generate " + dir + " -p hello -n 4"), tensor);
}

// Peak resident memory (KiB) of `qforge args...`, from wait4's rusage of the child alone.
long peak_rss_kib(const std::vector<std::string>& args) {
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv{const_cast<char*>(test::qforge_bin().c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    freopen("/dev/null", "w", stderr);
    freopen("/dev/null", "w", stdout);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  return ru.ru_maxrss;
}

// A GGUF metadata array cost ~48 bytes of memory per u8 element (1.6 GB for a 32 MiB array).
// Now a numeric array is kept as stored: the file mapped and read once (1×) plus the packed copy
// (1×), so the peak stays under the process's baseline + 3× the array (1× of headroom).
TEST(Cli, MetadataCostsAboutItsSizeInTheFile) {
  const size_t n = size_t(32) << 20;
  test::Bytes b;
  b.b = "GGUF";
  b.put<uint32_t>(3)
      .put<uint64_t>(0)
      .put<uint64_t>(1)
      .str("junk")
      .put<uint32_t>(9)
      .put<uint32_t>(0)
      .put<uint64_t>(n);
  b.b.append(n, '\x01');
  const std::string path = test::temp_dir("cli_meta") + "/big.gguf";
  test::write_file(path, b.b);
  const long baseline = peak_rss_kib({"inspect", test::bundled_stories() + "/stories260K.gguf"});
  const long peak = peak_rss_kib({"inspect", path});
  EXPECT_LT(peak, baseline + 3 * long(n >> 10)) << "baseline " << baseline << " KiB";
}

// Keys, values and names from a file reach the terminal escaped: no escape sequence, bell or NUL
// from a hostile GGUF is ever printed raw, by inspect or in an error.
TEST(Cli, StringsFromFilesAreEscapedForTheTerminal) {
  const std::string key = "\x1b]0;owned\x07", value = std::string("a\nb\0c", 5);
  auto gguf = [&](int copies) {
    test::Bytes b;
    b.b = "GGUF";
    b.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(uint64_t(copies));
    for (int i = 0; i < copies; ++i) b.str(key).put<uint32_t>(8).str(value);
    const std::string path = test::temp_dir("cli_escape") + "/hostile.gguf";
    test::write_file(path, b.b);
    return path;
  };
  auto r = run("inspect " + gguf(1));
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find('\x07'), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\\x1b]0;owned\\x07"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"a\\nb\\x00c\""), std::string::npos) << r.out;
  r = run("inspect " + gguf(2));
  expect_one_line_error(r, "duplicate metadata key '\\x1b]0;owned\\x07'");
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
}

TEST(Cli, UnknownCommandsAreNamed) {
  expect_one_line_error(run("evl x"), "unknown command 'evl' (commands: inspect, generate, eval,");
  expect_one_line_error(run("-t 2"), "a command is required: inspect, generate, eval,");
}

// A model path that is not UTF-8 (Linux allows any bytes): --json used to die at the end of the run.
TEST(Cli, JsonOutputSurvivesPathsThatAreNotUtf8) {
  const std::string dir = test::temp_dir("cli_json_path") + "/m\xff";
  std::filesystem::copy(stories(), dir);
  const auto r = run("eval '" + dir + "' --text " + test::text_path("tinystories-val-head") +
                     " --ctx 64 --max-windows 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["model"],
            dir.substr(0, dir.size() - 1) + "\uFFFD");  // the byte replaced, as the JSON library does
}

}  // namespace
}  // namespace qf
