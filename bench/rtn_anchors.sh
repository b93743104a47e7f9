#!/usr/bin/env bash
# RTN on qf-27m against the reference GPTQ Quantizer's numbers (../shared/docs/ANCHORS.md §1):
# quantize each config with `qforge quantize --method rtn` (GPTQ layout, fp16 scales), then
# `qforge eval --base` on all of wiki.test.raw at ctx 512 (708 windows). Prints one JSON line
# per config to bench/results/rtn_anchors.jsonl and a table.
# Usage: [FILTER=regex] bench/rtn_anchors.sh [THREADS]   (FILTER picks configs by name and appends)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
SHARED=${QFORGE_SHARED:-../shared}
BASE=$SHARED/models/qf-27m
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
OUT=bench/results
mkdir -p "$OUT"
[ -n "${FILTER:-}" ] || : >"$OUT/rtn_anchors.jsonl"
# name | flags | reference wiki PPL | reference KLD | reference top-1 %
CONFIGS=(
  "W8 per-channel asym|--bits 8 --group -1|82.7068|0.00022|98.96"
  "W4 g128 asym|--bits 4 --group 128|84.8977|0.04378|86.16"
  "W4 g128 sym|--bits 4 --group 128 --sym|85.5801|0.05328|84.89"
  "W4 per-channel asym|--bits 4 --group -1|86.5458|0.06314|83.70"
  "W3 g128 asym|--bits 3 --group 128|96.6362|0.20821|71.88"
  "W2 g64 asym|--bits 2 --group 64|198.1705|1.09694|41.69"
)
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r name flags ref_ppl ref_kld ref_top1 <<<"$c"
  [[ "$name" =~ ${FILTER:-.} ]] || continue
  dir=$(mktemp -d)/q
  ./build/qforge quantize "$BASE" -o "$dir" --method rtn $flags >/dev/null
  ./build/qforge -t "$THREADS" eval "$dir" --base "$BASE" --text "$TEXT" --ctx 512 --json |
    python3 -c "import json,sys; r=json.load(sys.stdin); r.update(config='$name', ref_ppl=$ref_ppl, ref_kld=$ref_kld, ref_top1=$ref_top1); print(json.dumps(r))" \
    >>"$OUT/rtn_anchors.jsonl"
  rm -rf "$(dirname "$dir")"
  tail -n 1 "$OUT/rtn_anchors.jsonl" | python3 -c "
import json,sys; r=json.load(sys.stdin)
print(f\"{r['config']:<22} PPL {r['ppl']:.4f} (ref {r['ref_ppl']}, {100*(r['ppl']/r['ref_ppl']-1):+.2f} %)  KLD {r['kld']:.5f} (ref {r['ref_kld']}, {100*(r['kld']/r['ref_kld']-1):+.2f} %)  top-1 {100*r['top1']:.2f} % (ref {r['ref_top1']})  {r['body_bits_per_weight']:.3f} bpw\", flush=True)"
done
