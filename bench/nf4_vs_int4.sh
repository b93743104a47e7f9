#!/usr/bin/env bash
# QLoRA's claim, checked on qf-27m: NF4 vs FP4 vs symmetric INT4 at the same block size (64),
# with and without double quantization; `qforge eval --base` on all of wiki.test.raw, ctx 512.
# Writes bench/results/nf4_vs_int4.jsonl and prints a table. Usage: [MAXW=N] bench/nf4_vs_int4.sh [THREADS]
# (MAXW limits the evaluation to the first N windows.)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
SHARED=${QFORGE_SHARED:-../shared}
BASE=$SHARED/models/qf-27m
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
OUT=bench/results
mkdir -p "$OUT"
: >"$OUT/nf4_vs_int4.jsonl"
CONFIGS=(
  "NF4 bs64|--method nf4 --blocksize 64"
  "NF4 bs64 double-quant|--method nf4 --blocksize 64 --double-quant"
  "FP4 bs64|--method fp4 --blocksize 64"
  "INT4 g64 sym (RTN)|--method rtn --bits 4 --group 64 --sym"
)
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r name flags <<<"$c"
  dir=$(mktemp -d)/q
  ./build/qforge quantize "$BASE" -o "$dir" $flags >/dev/null
  ./build/qforge -t "$THREADS" eval "$dir" --base "$BASE" --text "$TEXT" --ctx 512 ${MAXW:+--max-windows $MAXW} --json |
    python3 -c "import json,sys; r=json.load(sys.stdin); r['config']='$name'; print(json.dumps(r))" >>"$OUT/nf4_vs_int4.jsonl"
  rm -rf "$(dirname "$dir")"
  tail -n 1 "$OUT/nf4_vs_int4.jsonl" | python3 -c "
import json,sys; r=json.load(sys.stdin)
print(f\"{r['config']:<24} {r['body_bits_per_weight']:.3f} bpw  PPL {r['ppl']:.4f}  KLD {r['kld']:.5f}  top-1 {100*r['top1']:.2f} %  file {r['file_bytes']} bytes\", flush=True)"
done
