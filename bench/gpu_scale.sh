#!/usr/bin/env bash
# Issue 20's scale benchmark, one call on the lent H200 after bench/gpu_check.sh has unpacked
# .device/ (it sets the environment; run as `bench/gpu_check.sh scale`): a random-weight
# checkpoint of Llama-3-8B's shape (bench/make_8b_shape.py) quantized on the GPU, each run's wall
# time, peak RSS (GNU time) and peak GPU memory (qforge's cudaMemGetInfo report, and nvidia-smi's
# sampled maximum), then eval at ctx 2048. Calibration: 128 windows of 2048 tokens of
# calib-wiki.txt (its 198k Llama 3 tokens, windows drawn as GPTQ's reference draws them).
set -uo pipefail
S=${QFORGE_SHARED:?run through bench/gpu_check.sh scale}
M=/tmp/llama3-8b-shape${LAYERS:+-$LAYERS}  # LAYERS=N (make_8b_shape.py): the first N layers only
OUT=${OUT:-/tmp/qf_out}
exec > >(tee -a "$OUT/scale.log") 2>&1  # every line reaches $OUT, also when the call is cut off
export QFORGE_PROGRESS=1  # progress bars and info lines, also into a pipe
date
[[ -d $M ]] || python3 bench/make_8b_shape.py $M "$S/tokenizers/llama3" || exit 1
date
gpu_peak() {  # runs "$@" while sampling the GPU's memory in use every 0.2 s; prints the maximum
  local log; log=$(mktemp)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$log" &
  local smi=$!
  /usr/bin/time -f '%e s wall, %M KiB peak RSS' "$@"
  local rc=$?
  kill $smi; wait $smi 2>/dev/null
  echo "nvidia-smi peak memory.used: $(sort -n "$log" | tail -1) MiB"
  return $rc
}
run() {  # name, qforge arguments...; its whole output (progress included) in $OUT/name$TAG.log
  local name=$1${TAG:-}
  rm -rf /tmp/q_$1 /tmp/q_$1.gguf
  shift
  echo "== $name: qforge $* ($(date +%T))"
  gpu_peak timeout "${STEP_TIMEOUT:-300}" build/qforge "$@" 2>&1 | stdbuf -oL tr '\r' '\n' |
    grep --line-buffered -vE '^\s*$' >"$OUT/$name.log"  # line by line: a cut-off call keeps its lines
  grep -vE '\] [0-9]+/[0-9]+ ' "$OUT/$name.log" | tail -30  # all but the progress bar
  grep -E '\] [0-9]+/[0-9]+ ' "$OUT/$name.log" | tail -1
}
calib=(--calib "$S/data/calib-wiki.txt" --nsamples 128 --seqlen 2048 --device cuda)
for step in ${SCALE_STEPS:-rtn gptq eval}; do
  case $step in
  rtn) run rtn quantize $M -o /tmp/q_rtn --method rtn ;;
  gptq) run gptq quantize $M -o /tmp/q_gptq --method gptq --act-order "${calib[@]}" ;;
  gptq-bf16)  # GPTQModel's precision: bf16 weights, products and Hessian inputs
    QFORGE_CUDA_MATH=bf16 run gptq_bf16 quantize $M -o /tmp/q_gptq_bf16 --method gptq --act-order "${calib[@]}" ;;
  awq)  # AutoAWQ's default calibration: 128 samples of 512 tokens
    run awq quantize $M -o /tmp/q_awq --method awq --calib "$S/data/calib-wiki.txt" --nsamples 128 --seqlen 512 --device cuda ;;
  quip)  # QuIP# 2-bit (E8P12), GPTQ's calibration
    run quip quantize $M -o /tmp/q_quip --method 'quip#' --bits 2 "${calib[@]}" ;;
  gguf-gptq) run gguf_gptq quantize $M -o /tmp/q_gguf_gptq.gguf --format gguf --type Q4_K_M --method gptq "${calib[@]}" ;;
  imatrix-q4km)  # llama.cpp's recipe: imatrix over 512-token chunks of the calibration text, then Q4_K_M
    rm -f /tmp/im_8b.dat
    run imatrix imatrix $M -o /tmp/im_8b.dat --calib "$S/data/calib-wiki.txt" --ctx 512 --device cuda
    run q4km quantize $M -o /tmp/q_q4km.gguf --format gguf --type Q4_K_M --imatrix /tmp/im_8b.dat ;;
  eval) run eval eval $M --text "$S/data/wikitext-2-raw/wiki.test.raw" --ctx 2048 --max-windows 147 --device cuda ;;
  eval-profile)  # where eval's time goes: qforge's phase timers over 20 windows, then nsys's kernel table
    QFORGE_PROFILE=1 QFORGE_CUDA_MATH=bf16 run eval_profile eval $M --text "$S/data/wikitext-2-raw/wiki.test.raw" --ctx 2048 --max-windows 20 --device cuda
    nsys=$(command -v nsys || find /usr/local /opt -name nsys -type f 2>/dev/null | head -1)
    [[ -n $nsys ]] && QFORGE_CUDA_MATH=bf16 timeout 200 "$nsys" profile -o /tmp/eval_nsys --force-overwrite true --stats=true \
      build/qforge eval $M --text "$S/data/wikitext-2-raw/wiki.test.raw" --ctx 2048 --max-windows 10 --device cuda 2>&1 |
      grep -A40 'cuda_gpu_kern_sum' | cut -c1-220 | tee "$OUT/eval_nsys.log" ;;
  eval-bf16)  # the same with bf16 weights and bf16 tensor-core products
    QFORGE_CUDA_MATH=bf16 run eval_bf16 eval $M --text "$S/data/wikitext-2-raw/wiki.test.raw" --ctx 2048 --max-windows 147 --device cuda ;;
  esac
done
