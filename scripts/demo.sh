#!/usr/bin/env bash
# qforge's main job on the bundled default model (stories260K): quantize it with every method
# that fits its shapes, measure each result under one protocol and write one report
# (out/stories260K-compare/report.{md,html,json}).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/stories260K/hf
TEXT=../shared/data/tinystories/tinystories_val_head.txt
[ -f "$TEXT" ] || TEXT=models/stories260K/stories260K_greedy256.txt
OUT=out/stories260K-compare
# stories260K's rows are 64 wide and its MLP has 172 outputs: the GPTQ/AWQ layouts' group-128
# grids and 32-bit packing do not fit it, so the demo runs the methods that do (on a real
# model, leave --methods out for the full default matrix).
METHODS=baseline,rtn-w8,nf4,nf4-dq,fp4,llm-int8,q8_0,q6_k,q5_k_m,q4_k_m,q4_0,iq4_xs,q3_k_m,q2_k,gptq-q4_k_m,gptq-q3_k_m,awq-q4_k_m
rm -rf "$OUT"
./build/qforge compare "$MODEL" --calib "$TEXT" --text "$TEXT" --ctx 128 --max-windows 40 --nsamples 16 --seqlen 128 \
  --prompt 128 --gen 64 --methods "$METHODS" -o "$OUT"
cat "$OUT/report.md"
