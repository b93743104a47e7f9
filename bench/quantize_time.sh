#!/usr/bin/env bash
# Time and peak memory to quantize a model to GGUF types: qforge (from the HF bf16 checkpoint)
# next to llama.cpp's own llama-quantize (bench/llamacpp.sh; from the same weights as a BF16 GGUF,
# its usual input), both with the same importance matrix (qforge's, in llama.cpp's .dat format),
# THREADS threads each, same run, alternating. GNU time's wall clock and peak RSS.
#   bench/quantize_time.sh [qf-27m | llama-3.2-1b]   (default llama-3.2-1b: bench/cpu_speed.sh's
#   random-weight checkpoint of Llama-3.2-1B's shape, made here if missing)
# Environment: THREADS (2), TYPES (Q4_K_M Q4_0 IQ4_XS Q6_K), CHUNKS (imatrix chunks of 512, 8).
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:-llama-3.2-1b}
THREADS=${THREADS:-2}
TYPES=${TYPES:-Q4_K_M Q4_0 IQ4_XS Q6_K}
SHARED=${QFORGE_SHARED:-../shared}
FILES=bench/results/cpu/$SET/models
OUT=bench/results/quantize/$SET
LLAMA=$(bench/llamacpp.sh)
mkdir -p "$FILES" "$OUT"
source bench/sets.sh
HF=$(hf_of "$SET" "$FILES" "$SHARED")
IM=$OUT/imatrix.dat
[[ -f $IM ]] || ./build/qforge -t "$THREADS" imatrix "$HF" --calib "$SHARED/data/calib-wiki.txt" -o "$IM" \
  --ctx 512 --chunks "${CHUNKS:-8}" --device cpu
[[ -f $FILES/BF16.gguf ]] || ./build/qforge -t "$THREADS" quantize "$HF" -o "$FILES/BF16.gguf" --format gguf --type BF16

T() {  # name, command...: wall seconds and peak RSS into $OUT/name.time
  local name=$1
  shift
  /usr/bin/time -f '%e %M' -o "$OUT/$name.time" "$@" >"$OUT/$name.log" 2>&1
}
echo "| type | llama-quantize | qforge quantize | ratio (qforge / llama.cpp) | peak RSS llama.cpp / qforge MB | same tensors |"
echo "|---|---:|---:|---:|---:|---|"
for t in $TYPES; do
  rm -f "$OUT/llama-$t.gguf" "$OUT/qforge-$t.gguf"
  T "llama-$t" "$LLAMA/llama-quantize" --imatrix "$IM" "$FILES/BF16.gguf" "$OUT/llama-$t.gguf" "$t" "$THREADS"
  T "qforge-$t" ./build/qforge -t "$THREADS" quantize "$HF" -o "$OUT/qforge-$t.gguf" --format gguf --type "$t" --imatrix "$IM"
  read -r lw lr <"$OUT/llama-$t.time"
  read -r qw qr <"$OUT/qforge-$t.time"
  same=$(python3 bench/gguf_tensors_equal.py "$OUT/llama-$t.gguf" "$OUT/qforge-$t.gguf" >"$OUT/same-$t.txt" && echo yes || echo no)
  awk -v t="$t" -v lw="$lw" -v qw="$qw" -v lr="$lr" -v qr="$qr" -v same="$same" \
    'BEGIN { printf "| %s | %.1f s | %.1f s | %.2f | %.0f / %.0f | %s |\n", t, lw, qw, qw / lw, lr / 1024, qr / 1024, same }'
  rm -f "$OUT/llama-$t.gguf" "$OUT/qforge-$t.gguf"
done
