#include "report/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>

namespace qf {
namespace {

using nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool ok(const json& job) { return job.value("status", "") == "ok"; }
bool is_baseline(const json& job) { return job.value("family", "") == "baseline"; }

// Successful jobs sorted by bits per weight (the baseline, the widest, last).
std::vector<const json*> sorted_ok(const json& jobs) {
  std::vector<const json*> rows;
  for (const auto& j : jobs)
    if (ok(j)) rows.push_back(&j);
  std::stable_sort(rows.begin(), rows.end(), [](const json* a, const json* b) {
    return job_number(*a, "bits_per_weight") < job_number(*b, "bits_per_weight");
  });
  return rows;
}

std::string num(double v, const char* f) { return std::isfinite(v) ? fmt::format(fmt::runtime(f), v) : "—"; }
std::string mib(double bytes) {
  return std::isfinite(bytes) ? fmt::format("{:.1f} MiB", bytes / 1048576.0) : "—";
}
std::string secs(double s) {
  return std::isfinite(s) ? fmt::format(fmt::runtime(s < 10 ? "{:.2f} s" : "{:.0f} s"), s) : "—";
}
std::string percent(double v) { return std::isfinite(v) ? fmt::format("{:.2f} %", 100 * v) : "—"; }

// The table's cells for one job, in the order of kHeader.
constexpr const char* kHeader[] = {"",           "job",     "family", "bits/weight", "size",
                                   "PPL",        "KL div.", "top-1",  "quantize",    "quantize RSS",
                                   "prompt t/s", "gen t/s", "run RSS"};
std::vector<std::string> cells(const json& j, bool pareto) {
  auto n = [&](const char* k) { return job_number(j, k); };
  return {pareto ? "★" : (is_baseline(j) ? "ref" : ""),
          j.value("name", ""),
          j.value("family", ""),
          num(n("bits_per_weight"), "{:.3f}"),
          mib(n("file_bytes")),
          num(n("ppl"), "{:.4f}"),
          num(n("kld"), "{:.5f}"),
          percent(n("top1")),
          secs(n("quant_seconds")),
          mib(n("quant_peak_rss")),
          num(n("prompt_tps"), "{:.1f}"),
          num(n("gen_tps"), "{:.1f}"),
          mib(n("run_peak_rss"))};
}

std::string protocol_line(const json& report) {
  const json& p = report["protocol"];
  std::string s = fmt::format(
      "Text `{}`, windows of {} tokens{}; KL divergence and top-1 agreement against the unquantized model "
      "at every scored position.",
      p.value("text", ""), p.value("ctx", 0),
      p.value("max_windows", -1) > 0 ? fmt::format(" (first {})", p.value("max_windows", -1)) : "");
  s += fmt::format(" Calibration `{}`: {} windows of {} tokens (GPTQ, AWQ, importance matrix).",
                   p.value("calib", ""), p.value("nsamples", 0), p.value("seqlen", 0));
  s += fmt::format(" Speed: `qforge bench`, {} prompt tokens, {} generated, {} repetitions, {} threads.",
                   p.value("prompt", 0), p.value("gen", 0), p.value("reps", 0), p.value("threads", 0));
  if (report.contains("imatrix"))
    s += fmt::format(
        " The GGUF jobs share one importance matrix ({:.1f} s, peak RSS {}; not in their quantize times).",
        job_number(report["imatrix"], "seconds"), mib(job_number(report["imatrix"], "peak_rss")));
  if (p.contains("machine")) s += fmt::format(" Machine: {}.", p["machine"].get<std::string>());
  return s;
}

// One line per size budget: the job with the lowest KL divergence that fits it.
std::vector<std::string> recommendations(const json& jobs) {
  const json* base = nullptr;
  for (const auto& j : jobs)
    if (ok(j) && is_baseline(j)) base = &j;
  std::vector<std::string> lines;
  std::string last;
  for (double budget : {8.5, 6.5, 5.5, 4.5, 3.5, 2.5}) {
    const json* best = nullptr;
    for (const auto& j : jobs) {
      const double b = job_number(j, "bits_per_weight"), k = job_number(j, "kld");
      if (!ok(j) || is_baseline(j) || !(b <= budget) || !std::isfinite(k)) continue;
      if (!best || k < job_number(*best, "kld")) best = &j;
    }
    if (!best) continue;
    std::string line =
        fmt::format("≤ {} bits per weight: **{}** — KL {:.5f}, PPL {:.4f}", budget,
                    (*best)["name"].get<std::string>(), job_number(*best, "kld"), job_number(*best, "ppl"));
    if (base) {
      line += fmt::format(" ({:+.1f} % vs {:.4f})",
                          100 * (job_number(*best, "ppl") / job_number(*base, "ppl") - 1),
                          job_number(*base, "ppl"));
      const double ratio = job_number(*base, "file_bytes") / job_number(*best, "file_bytes");
      if (std::isfinite(ratio)) line += fmt::format(", {:.1f}× smaller", ratio);
    }
    if (std::isfinite(job_number(*best, "gen_tps")))
      line += fmt::format(", {:.1f} generated tokens/s", job_number(*best, "gen_tps"));
    if (line.substr(line.find("**")) == last) continue;  // the same pick as a larger budget
    last = line.substr(line.find("**"));
    lines.push_back(line);
  }
  return lines;
}

std::string escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    switch (c) {
      case '<':
        r += "&lt;";
        break;
      case '>':
        r += "&gt;";
        break;
      case '&':
        r += "&amp;";
        break;
      case '"':
        r += "&quot;";
        break;
      default:
        r += c;
    }
  }
  return r;
}

// ---- SVG charts -------------------------------------------------------------------------------

struct Point {
  double x, y;
  std::string label;
};
struct Series {
  std::string family, color;
  std::vector<Point> points;
};

std::string family_color(const std::string& family) {
  static const std::map<std::string, std::string> colors = {
      {"baseline", "#222222"}, {"RTN", "#1f77b4"},  {"bitsandbytes", "#9467bd"}, {"GPTQ", "#d62728"},
      {"AWQ", "#ff7f0e"},      {"GGUF", "#2ca02c"}, {"GGUF+GPTQ", "#17becf"},    {"GGUF+AWQ", "#8c564b"}};
  auto it = colors.find(family);
  return it == colors.end() ? "#7f7f7f" : it->second;
}

// Tick values: 1-2-5 steps on a linear axis, 1-2-5 per decade on a log axis.
std::vector<double> ticks(double lo, double hi, bool log) {
  std::vector<double> t;
  if (log) {
    for (double d = std::pow(10, std::floor(std::log10(lo))); d <= hi; d *= 10)
      for (double m : {1.0, 2.0, 5.0})
        if (m * d >= lo && m * d <= hi) t.push_back(m * d);
    return t;
  }
  const double raw = (hi - lo) / 6, mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) t.push_back(v);
  return t;
}

std::string tick_label(double v) { return fmt::format("{:g}", std::abs(v) < 1e-12 ? 0.0 : v); }

// Point labels, each moved up or down from its point until it overlaps no label already placed
// (clustered points stay readable). Text is 10 px high, about 5.6 px per character.
std::string place_labels(std::vector<Point> labels) {
  std::sort(labels.begin(), labels.end(), [](const Point& a, const Point& b) { return a.y < b.y; });
  struct Box {
    double x0, x1, y0, y1;
  };
  std::vector<Box> placed;
  std::string svg;
  for (const auto& l : labels) {
    const double w = 5.6 * double(l.label.size());
    Box b{};
    for (double dy : {-5.0, 13.0, -17.0, 25.0, -29.0, 37.0, -41.0, 49.0}) {
      b = {l.x, l.x + w, l.y + dy - 9, l.y + dy + 1};
      if (std::none_of(placed.begin(), placed.end(), [&](const Box& o) {
            return b.x0 < o.x1 && o.x0 < b.x1 && b.y0 < o.y1 && o.y0 < b.y1;
          }))
        break;
    }
    placed.push_back(b);
    svg += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" class="label">{}</text>)", b.x0, b.y1 - 1,
                       escape(l.label));
  }
  return svg;
}

// A scatter plot of y against bits per weight, one colour per family; `frontier` joins each
// family's Pareto-optimal points (lower is better); `ref` draws a dashed reference level.
std::string svg_chart(const std::string& title, const std::string& y_title, bool log_y, bool from_zero,
                      bool frontier, const std::vector<Series>& series, double ref,
                      const std::string& ref_label) {
  constexpr double W = 1040, H = 480, L = 70, R = 150, T = 36, B = 48;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series)
    for (const auto& p : s.points) {
      x0 = std::min(x0, p.x), x1 = std::max(x1, p.x), y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
    }
  if (std::isfinite(ref)) y0 = std::min(y0, ref), y1 = std::max(y1, ref);
  std::string svg =
      fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}">)"
                  R"(<text x="{}" y="22" class="title">{}</text>)",
                  W, H, W, H, L, escape(title));
  if (x0 > x1) return svg + R"(<text x="70" y="80">no measurements</text></svg>)";
  x0 = std::floor(x0 - 0.5), x1 = std::ceil(x1 + 0.5);
  if (log_y) {
    y0 = std::pow(10, std::floor(std::log10(y0))), y1 = std::pow(10, std::ceil(std::log10(y1)));
  } else {
    const double pad = std::max(0.08 * (y1 - y0), 1e-3 * std::abs(y1));
    y0 = from_zero ? 0 : y0 - pad, y1 = y1 + pad;
  }
  auto X = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto Y = [&](double y) {
    const double f =
        log_y ? (std::log10(y) - std::log10(y0)) / (std::log10(y1) - std::log10(y0)) : (y - y0) / (y1 - y0);
    return H - B - f * (H - T - B);
  };
  for (double t : ticks(y0, y1, log_y))
    svg += fmt::format(
        R"(<line x1="{:.1f}" x2="{:.1f}" y1="{:.1f}" y2="{:.1f}" class="grid"/><text x="{:.1f}" y="{:.1f}" class="ytick">{}</text>)",
        L, W - R, Y(t), Y(t), L - 6, Y(t) + 4, tick_label(t));
  for (double t : ticks(x0, x1, false))
    svg += fmt::format(
        R"(<line x1="{:.1f}" x2="{:.1f}" y1="{:.1f}" y2="{:.1f}" class="grid"/><text x="{:.1f}" y="{:.1f}" class="xtick">{}</text>)",
        X(t), X(t), T, H - B, X(t), H - B + 16, tick_label(t));
  svg += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" class="frame"/>)", L, T, W - L - R,
                     H - T - B);
  svg += fmt::format(R"(<text x="{:.1f}" y="{:.1f}" class="axis">bits per weight (decoder blocks)</text>)",
                     (L + W - R) / 2, H - 10);
  svg += fmt::format(R"~(<text transform="translate(16 {:.1f}) rotate(-90)" class="axis">{}</text>)~",
                     (T + H - B) / 2, escape(y_title));
  if (std::isfinite(ref))
    svg += fmt::format(
        R"(<line x1="{:.1f}" x2="{:.1f}" y1="{:.1f}" y2="{:.1f}" class="ref"/><text x="{:.1f}" y="{:.1f}" class="label">{}</text>)",
        L, W - R, Y(ref), Y(ref), L + 4, Y(ref) - 4, escape(ref_label));
  double legend_y = T + 8;
  std::vector<Point> labels;  // (left, baseline) in pixels
  for (const auto& s : series) {
    if (frontier) {
      std::vector<Point> pts = s.points;
      std::sort(pts.begin(), pts.end(), [](const Point& a, const Point& b) { return a.x < b.x; });
      std::string path;
      double best = 1e300;
      for (const auto& p : pts)
        if (p.y < best) {
          best = p.y;
          path += fmt::format("{:.1f},{:.1f} ", X(p.x), Y(p.y));
        }
      svg +=
          fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" class="frontier"/>)", path, s.color);
    }
    for (const auto& p : s.points) {
      svg += fmt::format(
          R"(<circle cx="{:.1f}" cy="{:.1f}" r="4.5" fill="{}"><title>{}: {:g} bits, {:g}</title></circle>)",
          X(p.x), Y(p.y), s.color, escape(p.label), p.x, p.y);
      labels.push_back({X(p.x) + 6, Y(p.y), p.label});
    }
    svg += fmt::format(
        R"(<circle cx="{:.1f}" cy="{:.1f}" r="5" fill="{}"/><text x="{:.1f}" y="{:.1f}" class="legend">{}</text>)",
        W - R + 16, legend_y, s.color, W - R + 26, legend_y + 4, escape(s.family));
    legend_y += 18;
  }
  return svg + place_labels(labels) + "</svg>";
}

// The successful jobs' (bits per weight, key) points grouped by family, in order of appearance.
std::vector<Series> series_of(const json& jobs, const char* key, bool with_baseline) {
  std::vector<Series> out;
  for (const auto& j : jobs) {
    const double x = job_number(j, "bits_per_weight"), y = job_number(j, key);
    if (!ok(j) || !std::isfinite(x) || !std::isfinite(y) || (is_baseline(j) && !with_baseline)) continue;
    const std::string family = j.value("family", "");
    auto it = std::find_if(out.begin(), out.end(), [&](const Series& s) { return s.family == family; });
    if (it == out.end()) it = out.insert(out.end(), Series{family, family_color(family), {}});
    it->points.push_back({x, y, j.value("name", "")});
  }
  return out;
}

double baseline_number(const json& jobs, const char* key) {
  for (const auto& j : jobs)
    if (ok(j) && is_baseline(j)) return job_number(j, key);
  return kNaN;
}

// Whether a job (by address in `jobs`) is Pareto-optimal.
std::function<bool(const json*)> pareto_marker(const json& jobs) {
  return [&jobs, pareto = pareto_jobs(jobs)](const json* j) {
    return std::any_of(pareto.begin(), pareto.end(), [&](size_t i) { return &jobs[i] == j; });
  };
}

constexpr const char* kStyle =
    R"(body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}td:nth-child(2),td:nth-child(3),th{text-align:left}
tr.pareto{background:#f2f8ee}.charts svg{display:block;margin:10px 0;border:1px solid #eee}
.title{font-weight:600;font-size:15px}.axis{font-size:12px;text-anchor:middle}.xtick{font-size:11px;text-anchor:middle}
.ytick{font-size:11px;text-anchor:end}.label{font-size:10px;fill:#444}.legend{font-size:12px}
.grid{stroke:#eee}.frame{fill:none;stroke:#999}.frontier{stroke-width:1.5;opacity:.7}.ref{stroke:#222;stroke-dasharray:5 4}
.error{color:#b00}code{background:#f4f4f4;padding:0 3px})";

}  // namespace

double job_number(const json& job, const char* key) {
  auto it = job.find(key);
  return it != job.end() && it->is_number() ? it->get<double>() : kNaN;
}

std::vector<size_t> pareto_jobs(const json& jobs) {
  std::vector<size_t> out;
  auto usable = [](const json& j) {
    return ok(j) && !is_baseline(j) && std::isfinite(job_number(j, "bits_per_weight")) &&
           std::isfinite(job_number(j, "kld"));
  };
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (!usable(jobs[i])) continue;
    const double b = job_number(jobs[i], "bits_per_weight"), k = job_number(jobs[i], "kld");
    bool dominated = false;
    for (size_t j = 0; j < jobs.size() && !dominated; ++j) {
      if (j == i || !usable(jobs[j])) continue;
      const double bj = job_number(jobs[j], "bits_per_weight"), kj = job_number(jobs[j], "kld");
      dominated = bj <= b && kj <= k && (bj < b || kj < k);
    }
    if (!dominated) out.push_back(i);
  }
  return out;
}

std::string render_markdown(const json& report) {
  const json& jobs = report["jobs"];
  const auto is_pareto = pareto_marker(jobs);
  const json& p = report["protocol"];
  std::string md = fmt::format(
      "# qforge compare: {}\n\n{}\n\nRows sorted by bits per weight; ★ = Pareto-optimal "
      "(no other row has as few bits and a lower KL divergence); ref = the unquantized model.\n\n",
      p.value("model", ""), protocol_line(report));
  md += "|";
  for (const char* h : kHeader) md += fmt::format(" {} |", h);
  md += "\n|";
  for (size_t i = 0; i < std::size(kHeader); ++i) md += i < 3 ? "---|" : "---:|";
  md += "\n";
  for (const json* j : sorted_ok(jobs)) {
    md += "|";
    for (const auto& c : cells(*j, is_pareto(j))) md += fmt::format(" {} |", c);
    md += "\n";
  }
  const auto recs = recommendations(jobs);
  if (!recs.empty()) {
    md += "\n## Recommendations (lowest KL divergence within each size budget)\n\n";
    for (const auto& r : recs) md += "- " + r + "\n";
  }
  bool header = false;
  for (const auto& j : jobs) {
    if (ok(j)) continue;
    if (!header) md += "\n## Failed jobs\n\n| job | error |\n|---|---|\n";
    header = true;
    std::string e = j.value("error", "");
    std::replace(e.begin(), e.end(), '|', '/');
    md += fmt::format("| {} | {} |\n", j.value("name", ""), e);
  }
  if (report.contains("interrupted"))
    md += fmt::format("\n**Interrupted:** {}\n", report["interrupted"].get<std::string>());
  return md;
}

std::string render_html(const json& report) {
  const json& jobs = report["jobs"];
  const json& p = report["protocol"];
  const auto is_pareto = pareto_marker(jobs);
  std::string h = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>qforge compare: {}</title>"
      "<style>{}</style></head><body>\n<h1>qforge compare: {}</h1>\n<p>{}</p>\n",
      escape(p.value("model", "")), kStyle, escape(p.value("model", "")), escape(protocol_line(report)));
  const auto recs = recommendations(jobs);
  if (!recs.empty()) {
    h += "<h2>Recommendations</h2><ul>";
    for (auto r : recs) {  // **name** → <b>name</b>
      r = escape(r);
      for (const char* tag : {"<b>", "</b>"})
        if (auto at = r.find("**"); at != std::string::npos) r.replace(at, 2, tag);
      h += "<li>" + r + "</li>";
    }
    h += "</ul>\n";
  }
  h += "<div class=\"charts\">";
  h += svg_chart("KL divergence vs bits per weight (lower is better; lines: each family's frontier)",
                 "KL divergence (log scale)", true, false, true, series_of(jobs, "kld", false), kNaN, "");
  h += svg_chart("Perplexity vs bits per weight", "perplexity", false, false, false,
                 series_of(jobs, "ppl", false), baseline_number(jobs, "ppl"), "unquantized");
  h += svg_chart("Generation speed vs bits per weight", "generated tokens/s", false, true, false,
                 series_of(jobs, "gen_tps", true), kNaN, "");
  h += "</div>\n<h2>All measurements</h2>\n<table><tr>";
  for (const char* c : kHeader) h += fmt::format("<th>{}</th>", c);
  h += "</tr>\n";
  for (const json* j : sorted_ok(jobs)) {
    const bool star = is_pareto(j);
    h += star ? "<tr class=\"pareto\">" : "<tr>";
    for (const auto& c : cells(*j, star)) h += "<td>" + escape(c) + "</td>";
    h += "</tr>\n";
  }
  h += "</table>\n";
  for (const auto& j : jobs)
    if (!ok(j))
      h += fmt::format("<p class=\"error\">{} failed: {}</p>\n", escape(j.value("name", "")),
                       escape(j.value("error", "")));
  if (report.contains("interrupted"))
    h += fmt::format("<p class=\"error\">Interrupted: {}</p>\n",
                     escape(report["interrupted"].get<std::string>()));
  return h + "</body></html>\n";
}

}  // namespace qf
