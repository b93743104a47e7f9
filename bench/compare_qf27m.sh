#!/usr/bin/env bash
# The default `qforge compare` matrix on qf-27m (BENCHMARKS.md § qforge compare): 20 jobs,
# KL/PPL on the first WINDOWS windows of wiki.test.raw at ctx 512, NSAMPLES calibration windows,
# speed with qforge bench (pp512, tg128, 3 reps), 2 threads. Then the HTML page rendered to
# docs/compare-qf27m.png (needs chromium). Run it alone on the machine: the speeds and quantize
# times are wall-clock. About 45 minutes on the 2-core reference machine.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/compare-qf27m}
WINDOWS=${WINDOWS:-100}
NSAMPLES=${NSAMPLES:-32}
./build/qforge -t "${THREADS:-2}" compare ../shared/models/qf-27m --calib ../shared/data/calib-wiki.txt \
  --text ../shared/data/wikitext-2-raw/wiki.test.raw --ctx 512 --max-windows "$WINDOWS" --nsamples "$NSAMPLES" \
  -o "$OUT" ${RESUME:+--resume}
HEIGHT=2300 scripts/render_report.sh "$OUT/report.html" docs/compare-qf27m.png
