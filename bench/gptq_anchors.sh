#!/usr/bin/env bash
# GPTQ on qf-27m against the reference implementation's numbers (../shared/docs/ANCHORS.md §1):
# `qforge quantize --method gptq` with the reference's calibration (128 windows of 512 tokens
# of calib-wiki.txt drawn by random.Random(0), true-sequential, damp 0.01; GPTQ layout, fp16
# scales), timed with peak RSS, then `qforge eval --base` on all of wiki.test.raw at ctx 512
# (708 windows). One JSON line per config to bench/results/gptq_anchors.jsonl and a table.
# Usage: [FILTER=regex] bench/gptq_anchors.sh [THREADS]   (FILTER picks configs by name and appends)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
SHARED=${QFORGE_SHARED:-../shared}
BASE=$SHARED/models/qf-27m
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
CALIB=$SHARED/data/calib-wiki.txt
OUT=bench/results
mkdir -p "$OUT"
[ -n "${FILTER:-}" ] || : >"$OUT/gptq_anchors.jsonl"
# name | flags | reference wiki PPL | reference KLD | reference top-1 %
CONFIGS=(
  "W4 g128 asym act-order|--bits 4 --group 128 --act-order|84.0559|0.02891|88.70"
  "W4 g128 asym|--bits 4 --group 128|84.2375|0.03079|88.44"
  "W4 g128 sym act-order static-groups|--bits 4 --group 128 --sym --act-order --static-groups|86.0873|0.03541|87.71"
  "W4 per-channel asym act-order|--bits 4 --group -1 --act-order|84.5803|0.04277|86.62"
  "W3 g128 asym act-order|--bits 3 --group 128 --act-order|89.7392|0.13787|77.05"
  "W2 g64 asym act-order|--bits 2 --group 64 --act-order|144.8662|0.77784|50.89"
)
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r name flags ref_ppl ref_kld ref_top1 <<<"$c"
  [[ "$name" =~ ${FILTER:-.} ]] || continue
  tmp=$(mktemp -d)
  /usr/bin/time -v -o "$tmp/time" ./build/qforge -t "$THREADS" quantize "$BASE" -o "$tmp/q" --method gptq --calib "$CALIB" $flags >/dev/null
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$tmp/time")
  rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$tmp/time")
  ./build/qforge -t "$THREADS" eval "$tmp/q" --base "$BASE" --text "$TEXT" --ctx 512 --json |
    python3 -c "import json,sys; r=json.load(sys.stdin); r.update(config='$name', flags='$flags', quantize_seconds=$secs, quantize_peak_rss_kb=$rss, ref_ppl=$ref_ppl, ref_kld=$ref_kld, ref_top1=$ref_top1); print(json.dumps(r))" \
    >>"$OUT/gptq_anchors.jsonl"
  rm -rf "$tmp"
  tail -n 1 "$OUT/gptq_anchors.jsonl" | python3 -c "
import json,sys; r=json.load(sys.stdin)
print(f\"{r['config']:<36} PPL {r['ppl']:.4f} (ref {r['ref_ppl']}, {100*(r['ppl']/r['ref_ppl']-1):+.2f} %)  KLD {r['kld']:.5f} (ref {r['ref_kld']}, {100*(r['kld']/r['ref_kld']-1):+.2f} %)  top-1 {100*r['top1']:.2f} % (ref {r['ref_top1']})  {r['body_bits_per_weight']:.3f} bpw  quantize {r['quantize_seconds']:.0f} s {r['quantize_peak_rss_kb']/1024:.0f} MiB\", flush=True)"
done
