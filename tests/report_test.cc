// The comparison report rendered from hand-made measurements.
#include <gtest/gtest.h>

#include "report/report.h"

namespace qf {
namespace {

using nlohmann::json;

json job(const std::string& name, const std::string& family, double bpw, double kld) {
  return {{"name", name}, {"family", family}, {"status", "ok"},          {"bits_per_weight", bpw},
          {"kld", kld},   {"ppl", 10 + kld},  {"file_bytes", bpw * 1e6}, {"gen_tps", 100 / bpw}};
}

json sample() {
  json jobs = json::array();
  jobs.push_back({{"name", "baseline"},
                  {"family", "baseline"},
                  {"status", "ok"},
                  {"bits_per_weight", 16.0},
                  {"ppl", 10.0},
                  {"file_bytes", 16e6}});
  jobs.push_back(job("a4", "GPTQ", 4.25, 0.03));  // frontier
  jobs.push_back(job("b4", "GGUF", 4.5, 0.02));   // frontier
  jobs.push_back(job("c5", "GGUF", 5.5, 0.025));  // dominated by b4
  jobs.push_back(job("d8", "RTN", 8.25, 0.001));  // frontier
  jobs.push_back(job("e4", "RTN", 4.25, 0.03));   // ties a4: neither dominates
  jobs.push_back({{"name", "bad"}, {"family", "AWQ"}, {"status", "error"}, {"error", "quantize: no | good"}});
  return {{"protocol", {{"model", "m"}, {"text", "t"}, {"ctx", 512}}}, {"jobs", jobs}};
}

TEST(Report, ParetoRowsAreThoseNoOtherRowDominates) {
  EXPECT_EQ(pareto_jobs(sample()["jobs"]), (std::vector<size_t>{1, 2, 4, 5}));
}

TEST(Report, MarkdownSortsByBitsMarksTheFrontierAndListsFailures) {
  const std::string md = render_markdown(sample());
  const size_t a4 = md.find("| ★ | a4 |"), b4 = md.find("| ★ | b4 |"), c5 = md.find("|  | c5 |"),
               d8 = md.find("| ★ | d8 |"), base = md.find("| ref | baseline |");
  ASSERT_NE(a4, std::string::npos) << md;
  ASSERT_NE(c5, std::string::npos) << md;
  EXPECT_LT(a4, b4);
  EXPECT_LT(b4, c5);
  EXPECT_LT(c5, d8);
  EXPECT_LT(d8, base);
  EXPECT_NE(md.find("| bad | quantize: no / good |"), std::string::npos) << md;  // the table stays a table
  // Budgets: ≤ 8.5 picks d8; ≤ 6.5 / 5.5 / 4.5 pick b4 (said once); nothing fits 3.5.
  EXPECT_NE(md.find("≤ 8.5 bits per weight: **d8**"), std::string::npos) << md;
  EXPECT_NE(
      md.find("≤ 6.5 bits per weight: **b4** — KL 0.02000, PPL 10.0200 (+0.2 % vs 10.0000), 3.6× smaller"),
      std::string::npos)
      << md;
  EXPECT_EQ(md.find("≤ 5.5 bits"), std::string::npos) << md;
  EXPECT_EQ(md.find("≤ 3.5 bits"), std::string::npos) << md;
}

TEST(Report, HtmlIsOnePageWithThreeCharts) {
  const std::string html = render_html(sample());
  size_t svgs = 0;
  for (size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at + 1)) ++svgs;
  EXPECT_EQ(svgs, 3u);
  EXPECT_NE(html.find("<title>b4: 4.5 bits, 0.02</title>"), std::string::npos);
  EXPECT_NE(html.find("quantize: no | good"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
}

}  // namespace
}  // namespace qf
