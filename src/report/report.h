// report/report.h — the comparison report of `qforge compare`: one JSON document (protocol +
// one object per job, every number as measured) rendered as a Markdown table and a
// self-contained HTML page with SVG charts.
//
// A job object holds: name, family, status ("ok" or "error"), error, file, command, and the
// numbers that were measured: bits_per_weight, file_bytes, ppl, kld, top1, quant_seconds,
// quant_peak_rss, eval_seconds, prompt_tps, gen_tps, run_peak_rss (absent when not measured).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qf {

// The job's number under `key`, or NaN when it was not measured.
double job_number(const nlohmann::json& job, const char* key);

// Indices of the successful quantized jobs (not the baseline) that are Pareto-optimal in bits
// per weight against KL divergence: no other job has both no more bits and lower KL.
std::vector<size_t> pareto_jobs(const nlohmann::json& jobs);

std::string render_markdown(const nlohmann::json& report);
std::string render_html(const nlohmann::json& report);

}  // namespace qf
