#!/usr/bin/env bash
# qforge's main job on the bundled default model (qf-tiny-5m: Llama, hidden 256, 4 layers, every
# dimension a multiple of 256, so every method and GGUF type applies): quantize it with the
# default matrix of methods, measure each result under one protocol against the original, and
# write one report (out/qf-tiny-5m-compare/report.{md,html,json}).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/qf-tiny-5m
TEXT=../shared/data/heldout-w2.txt    # text the model never saw (../shared; see README)
CALIB=../shared/data/calib-wiki.txt
[ -f "$TEXT" ] || TEXT=models/stories260K/stories260K_greedy256.txt
[ -f "$CALIB" ] || CALIB=$TEXT
OUT=out/qf-tiny-5m-compare
rm -rf "$OUT"
./build/qforge compare "$MODEL" --calib "$CALIB" --text "$TEXT" --ctx 128 --max-windows 32 --nsamples 16 --seqlen 128 \
  --prompt 64 --gen 32 --reps 1 --methods default -o "$OUT"
cat "$OUT/report.md"
