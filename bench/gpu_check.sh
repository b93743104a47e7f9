#!/usr/bin/env bash
# One call on the lent GPU machine (the device tool), from the repository root, .device/ carried
# (scripts/device_bundle.sh made it here): unpacks the binaries, libraries, models and texts, runs
# the CUDA unit and golden tests, then times eval and GPTQ on the CPU and on the GPU side by side.
# Logs land in $OUT. Usage there: bench/gpu_check.sh [unit|tests|eval|gptq|scale|golden=FILTER]...  (default: the
# first three; scale is bench/gpu_scale.sh on the 8B shape)
set -uo pipefail
OUT=${OUT:-/tmp/qf_out}
mkdir -p "$OUT" /tmp/qf
[[ -x /tmp/qf/bin/qforge ]] || tar -xJf .device/bundle.tar.xz -C /tmp/qf || exit 1  # once per machine
root=$PWD
# The test binaries know the source tree as /work/main (where they were built).
if [[ "$root" != /work/main ]]; then mkdir -p /work && rm -rf /work/main && ln -s "$root" /work/main; fi
mkdir -p build/tests && cp /tmp/qf/bin/qforge /tmp/qf/bin/libqforge_cuda.so build/ &&
  cp /tmp/qf/bin/unit_tests /tmp/qf/bin/golden_tests build/tests/
cublas=$(find /usr/local /opt -name 'libcublasLt.so.13*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH=/tmp/qf/lib:$(dirname "${cublas:-/usr/local/cuda/lib64/x}"):${LD_LIBRARY_PATH:-}
export QFORGE_SHARED=/tmp/qf/shared
S=$QFORGE_SHARED
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
lscpu | grep -E 'Model name|^CPU\(s\)'
ldd build/qforge build/libqforge_cuda.so | grep 'not found'
build/qforge --version
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(tests eval gptq)
T() { /usr/bin/time -f '%e s wall, %M KiB peak RSS' "$@"; }
for step in "${steps[@]}"; do
  case $step in
  unit) build/tests/unit_tests --gtest_filter='Cuda*' 2>&1 | tee "$OUT/unit_cuda.log" | grep -E 'GPTQ|OK|FAILED|Failure' ;;
  tests)
    build/tests/unit_tests --gtest_filter='Cuda*' 2>&1 | tee "$OUT/unit_cuda.log" | tail -40
    build/tests/golden_tests --gtest_filter='CudaGolden*' 2>&1 | tee "$OUT/golden_cuda.log" | grep -E 'cuda |GPTQ|bytes equal|OK|FAILED|Failure|error' | head -60
    ;;
  eval)
    for m in $(ls "$S/models"); do
      for d in cpu cuda; do
        echo "== eval $m --device $d (wiki.test.raw, ctx 512)"
        T build/qforge eval "$S/models/$m" --text "$S/data/wikitext-2-raw/wiki.test.raw" --ctx 512 --device $d 2>&1 | grep -E 'perplexity|device|wall|error'
      done
      QFORGE_CUDA_MATH=tf32 T build/qforge eval "$S/models/$m" --text "$S/data/wikitext-2-raw/wiki.test.raw" --ctx 512 --device cuda 2>&1 | grep -E 'perplexity|wall|error' | sed 's/^/tf32: /'
    done
    ;;
  gptq)
    for m in $(ls "$S/models"); do
      for d in cpu cuda; do
        rm -rf /tmp/q_$d
        echo "== quantize $m gptq W4 g128 act-order, 128 x 512 calibration, --device $d"
        T build/qforge quantize "$S/models/$m" -o /tmp/q_$d --method gptq --act-order --calib "$S/data/calib-wiki.txt" --device $d 2>&1 | grep -E 'wrote|device|wall|error|warning'
        build/qforge eval /tmp/q_$d --base "$S/models/$m" --text "$S/data/wikitext-2-raw/wiki.test.raw" --ctx 512 --max-windows 100 --device cuda 2>&1 | grep -E 'perplexity|KL|error'
      done
    done
    ;;
  scale) SCALE_STEPS=${SCALE_STEPS:-gptq eval rtn} bench/gpu_scale.sh ;;
  golden=*)  # golden=FILTER: the golden tests that FILTER selects (e.g. golden='CudaGolden.Awq*')
    build/tests/golden_tests --gtest_filter="${step#golden=}" 2>&1 | tee "$OUT/golden_${step//[^A-Za-z0-9]/_}.log" | tail -40 ;;
  esac
done
