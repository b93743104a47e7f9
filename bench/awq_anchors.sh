#!/usr/bin/env bash
# AWQ on qf-27m next to the reference RTN and GPTQ numbers (../shared/docs/ANCHORS.md §1):
# `qforge quantize --method awq|awq+gptq` on windows of calib-wiki.txt drawn by random.Random(0)
# (NSAMPLES × 512 tokens, default 128 as GPTQ's reference), timed with peak RSS, then
# `qforge eval --base` on all of wiki.test.raw at ctx 512 (708 windows). One JSON line per
# config to bench/results/awq_anchors.jsonl and a table.
# Usage: [FILTER=regex] [NSAMPLES=128] bench/awq_anchors.sh [THREADS]   (FILTER picks configs and appends)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
NSAMPLES=${NSAMPLES:-128}
SHARED=${QFORGE_SHARED:-../shared}
BASE=$SHARED/models/qf-27m
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
CALIB=$SHARED/data/calib-wiki.txt
OUT=bench/results
mkdir -p "$OUT"
[ -n "${FILTER:-}" ] || : >"$OUT/awq_anchors.jsonl"
# name | flags | reference RTN KLD (same grid) | reference GPTQ act-order KLD (same grid)
CONFIGS=(
  "AWQ W4 g128|--method awq --bits 4 --group 128|0.04378|0.02891"
  "AWQ W4 g128 duo-scaling|--method awq --bits 4 --group 128 --duo-scaling|0.04378|0.02891"
  "AWQ W3 g128|--method awq --bits 3 --group 128|0.20821|0.13787"
  "AWQ+GPTQ W4 g128 act-order|--method awq+gptq --bits 4 --group 128 --act-order|0.04378|0.02891"
  "AWQ+GPTQ W3 g128 act-order|--method awq+gptq --bits 3 --group 128 --act-order|0.20821|0.13787"
)
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r name flags ref_rtn ref_gptq <<<"$c"
  [[ "$name" =~ ${FILTER:-.} ]] || continue
  tmp=$(mktemp -d)
  /usr/bin/time -v -o "$tmp/time" ./build/qforge -t "$THREADS" quantize "$BASE" -o "$tmp/q" --calib "$CALIB" \
    --nsamples "$NSAMPLES" $flags >/dev/null
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$tmp/time")
  rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$tmp/time")
  ./build/qforge -t "$THREADS" eval "$tmp/q" --base "$BASE" --text "$TEXT" --ctx 512 --json |
    python3 -c "import json,sys; r=json.load(sys.stdin); r.update(config='$name', flags='$flags', nsamples=$NSAMPLES, quantize_seconds=$secs, quantize_peak_rss_kb=$rss, ref_rtn_kld=$ref_rtn, ref_gptq_kld=$ref_gptq); print(json.dumps(r))" \
    >>"$OUT/awq_anchors.jsonl"
  rm -rf "$tmp"
  tail -n 1 "$OUT/awq_anchors.jsonl" | python3 -c "
import json,sys; r=json.load(sys.stdin)
print(f\"{r['config']:<28} {r['nsamples']:>3} windows  KLD {r['kld']:.5f} (RTN {r['ref_rtn_kld']}, GPTQ {r['ref_gptq_kld']})  PPL {r['ppl']:.4f}  top-1 {100*r['top1']:.2f} %  {r['body_bits_per_weight']:.3f} bpw  quantize {r['quantize_seconds']:.0f} s {r['quantize_peak_rss_kb']/1024:.0f} MiB\", flush=True)"
done
