#!/usr/bin/env bash
# QuIP# and QuIP on qf-27m next to the 2- and 3-bit references of ../shared/docs/ANCHORS.md:
# `qforge quantize --method quip#|quip --bits B` on GPTQ's calibration (128 windows of 512 tokens of
# calib-wiki.txt, random.Random(0), true-sequential, damp 0.01), timed with peak RSS, then
# `qforge eval --base` on all of wiki.test.raw at ctx 512 (708 windows). One JSON line per config to
# bench/results/quip_anchors.jsonl and a table.
# Usage: [FILTER=regex] bench/quip_anchors.sh [THREADS]   (FILTER picks configs by name and appends)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
SHARED=${QFORGE_SHARED:-../shared}
BASE=$SHARED/models/qf-27m
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
CALIB=$SHARED/data/calib-wiki.txt
OUT=bench/results
mkdir -p "$OUT"
[ -n "${FILTER:-}" ] || : >"$OUT/quip_anchors.jsonl"
# name | flags | reference to beat (ANCHORS.md) | its KLD
CONFIGS=(
  "quip# 2-bit (E8P12)|--method quip# --bits 2|IQ2_XS imatrix 2.33 bpw (GPTQ W2 g64: 0.77784)|0.42290"
  "quip# 3-bit (E8P12RVQ3B)|--method quip# --bits 3|Q3_K_M imatrix 3.85 bpw (GPTQ W3 g128: 0.13787)|0.06035"
  "quip# 4-bit (E8P12RVQ4B)|--method quip# --bits 4|GPTQ W4 g128 act-order 4.156 bpw|0.02891"
  "quip 2-bit (scalar)|--method quip --bits 2|GPTQ W2 g64 act-order 2.281 bpw|0.77784"
  "quip 3-bit (scalar)|--method quip --bits 3|GPTQ W3 g128 act-order 3.148 bpw|0.13787"
)
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r name flags ref ref_kld <<<"$c"
  [[ "$name" =~ ${FILTER:-.} ]] || continue
  tmp=$(mktemp -d)
  /usr/bin/time -v -o "$tmp/time" ./build/qforge -t "$THREADS" quantize "$BASE" -o "$tmp/q" --calib "$CALIB" $flags >/dev/null
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$tmp/time")
  rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$tmp/time")
  ./build/qforge -t "$THREADS" eval "$tmp/q" --base "$BASE" --text "$TEXT" --ctx 512 --json |
    python3 -c "import json,sys; r=json.load(sys.stdin); r.update(config='$name', flags='$flags', quantize_seconds=$secs, quantize_peak_rss_kb=$rss, ref='$ref', ref_kld=$ref_kld); print(json.dumps(r))" \
    >>"$OUT/quip_anchors.jsonl"
  rm -rf "$tmp"
  tail -n 1 "$OUT/quip_anchors.jsonl" | python3 -c "
import json,sys; r=json.load(sys.stdin)
print(f\"{r['config']:<26} {r['body_bits_per_weight']:.3f} bpw  PPL {r['ppl']:.4f}  KLD {r['kld']:.5f} (to beat: {r['ref']} {r['ref_kld']})  top-1 {100*r['top1']:.2f} %  quantize {r['quantize_seconds']:.0f} s {r['quantize_peak_rss_kb']/1024:.0f} MiB  eval {r['tokens_per_second']:.0f} t/s\", flush=True)"
done
