#!/usr/bin/env bash
# qforge's GGUF types on qf-27m against llama.cpp's own files (../shared/docs/ANCHORS.md §2):
# `qforge quantize --format gguf --type T` (no imatrix), then `qforge eval --protocol llama.cpp`
# on wiki.test.raw, ctx 512, 120 chunks (30,600 scored tokens), KL divergence against the
# F16 GGUF llama.cpp's converter made. One JSON line per type to bench/results/gguf_anchors.jsonl.
# With IMATRIX=FILE, every type is quantized with that importance matrix (compare with ANCHORS'
# imatrix rows: their matrix came from all of calib-wiki.txt at ctx 512).
# Usage: [TYPES="Q4_K_M Q6_K"] [IMATRIX=qf-27m.dat] bench/gguf_anchors.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
SHARED=${QFORGE_SHARED:-../shared}
MODEL=$SHARED/models/qf-27m
BASE=$MODEL/qf-27m-f16.gguf
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
OUT=bench/results
mkdir -p "$OUT"
RESULTS=$OUT/gguf_anchors${IMATRIX:+_imatrix}.jsonl
: >"$RESULTS"
# type | llama.cpp file size without imatrix (ANCHORS §2; ±224 B) | llama.cpp KLD without imatrix
REFS=(
  "Q8_0|29,268,480|0.00044" "Q6_K|22,665,952|0.00272" "Q5_K_M|19,845,856|0.00658" "Q5_0|19,602,144|0.00859"
  "Q4_K_M|17,191,424|0.02215" "Q4_K_S|16,784,096|0.02172" "Q4_1|18,160,352|0.02815" "Q4_0|16,718,560|0.03422"
  "Q3_K_M|14,627,552|0.06245" "Q3_K_S|13,654,752|0.10753" "Q2_K|12,030,688|0.28984"
  "IQ4_NL|16,718,560|0.02604" "IQ4_XS|15,997,664|0.02730"
)
for r in "${REFS[@]}"; do
  IFS='|' read -r type ref_size ref_kld <<<"$r"
  [[ -z "${TYPES:-}" || " $TYPES " == *" $type "* ]] || continue
  f=$(mktemp -u /tmp/qf27m-XXXX).gguf
  ./build/qforge -t "$THREADS" quantize "$MODEL" -o "$f" --format gguf --type "$type" ${IMATRIX:+--imatrix "$IMATRIX"} >/dev/null
  ./build/qforge -t "$THREADS" eval "$f" --base "$BASE" --text "$TEXT" --ctx 512 --max-windows 120 --protocol llama.cpp --json |
    python3 -c "import json,sys; r=json.load(sys.stdin); r.update(type='$type', ref_size=int('$ref_size'.replace(',','')), ref_kld=$ref_kld); print(json.dumps(r))" \
    >>"$RESULTS"
  rm -f "$f"
  tail -n 1 "$RESULTS" | python3 -c "
import json,sys; r=json.load(sys.stdin)
print(f\"{r['type']:<7} {r['file_bytes']:>11,} B (llama.cpp {r['ref_size']:,}, {r['file_bytes']-r['ref_size']:+d})  PPL {r['ppl']:.3f}  KLD {r['kld']:.5f} (llama.cpp {r['ref_kld']}, {100*(r['kld']/r['ref_kld']-1):+.1f} %)  top-1 {100*r['top1']:.2f} %  {r['body_bits_per_weight']:.2f} bpw\", flush=True)"
done
