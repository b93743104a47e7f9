#!/usr/bin/env bash
# End-to-end speed and memory: qforge next to llama.cpp (node-llama-cpp's prebuilt build) on
# the same files, same machine, same run, 2 threads. Writes JSON lines to bench/results/ and a
# summary table with the qforge / llama.cpp ratios on stdout.
# Usage: bench/run_e2e.sh [THREADS]   (needs scripts/build.sh; installs node-llama-cpp via npm)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
SHARED=${QFORGE_SHARED:-../shared}
OUT=bench/results
mkdir -p "$OUT"
[ -d bench/node_modules/node-llama-cpp ] || npm --prefix bench install --no-audit --no-fund --loglevel=error
HF=$SHARED/models/qf-27m
GGUF=$SHARED/models/qf-27m/qf-27m-f16.gguf
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw

peak_rss_kb() { grep "Maximum resident set size" "$1" | awk '{print $NF}'; }

run_qforge() {  # name, model
  /usr/bin/time -v ./build/qforge -t "$THREADS" bench "$2" --json >"$OUT/$1.json" 2>"$OUT/$1.time"
  echo "{\"peak_rss_kb\": $(peak_rss_kb "$OUT/$1.time")}" >"$OUT/$1.rss.json"
}
run_qforge qforge-hf-bf16 "$HF"
run_qforge qforge-gguf-f16 "$GGUF"
/usr/bin/time -v node bench/llamacpp_bench.mjs "$GGUF" --threads "$THREADS" >"$OUT/llamacpp-f16.json" 2>"$OUT/llamacpp-f16.time"
echo "{\"peak_rss_kb\": $(peak_rss_kb "$OUT/llamacpp-f16.time")}" >"$OUT/llamacpp-f16.rss.json"
/usr/bin/time -v ./build/qforge -t "$THREADS" eval "$HF" --text "$TEXT" --ctx 512 --max-windows 40 --json \
  >"$OUT/qforge-eval.json" 2>"$OUT/qforge-eval.time"
echo "{\"peak_rss_kb\": $(peak_rss_kb "$OUT/qforge-eval.time")}" >"$OUT/qforge-eval.rss.json"

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
ld = lambda n: {**json.load(open(f"{out}/{n}.json")), **json.load(open(f"{out}/{n}.rss.json"))}
ref = ld("llamacpp-f16")
print(f"{'engine / file':<34} {'pp512 t/s':>16} {'tg128 t/s':>16} {'pp ratio':>9} {'tg ratio':>9} {'peak RSS MB':>12}")
for name in ["llamacpp-f16", "qforge-hf-bf16", "qforge-gguf-f16"]:
    r = ld(name)
    print(f"{name:<34} {r['prompt_tps']:>9.0f} ± {r['prompt_tps_stdev']:<4.0f} {r['gen_tps']:>9.1f} ± {r['gen_tps_stdev']:<4.1f}"
          f" {r['prompt_tps']/ref['prompt_tps']:>9.2f} {r['gen_tps']/ref['gen_tps']:>9.2f} {r['peak_rss_kb']/1024:>12.0f}")
e = ld("qforge-eval")
print(f"qforge eval ctx 512, {e['windows']} windows: {e['tokens_per_second']:.0f} tokens/s (logits of every position), peak RSS {e['peak_rss_kb']/1024:.0f} MB")
PY
