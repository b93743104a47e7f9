#!/usr/bin/env bash
# Prompt and generation speed of every format on qf-27m: `qforge bench` next to llama.cpp
# (node-llama-cpp's prebuilt build, bench/llamacpp_bench.mjs) on the same files, same machine,
# same run, interleaved file by file, 10 repetitions each (mean ± stdev). GGUF files: llama.cpp's own F16 conversion, and Q8_0,
# Q6_K, Q4_K_M, Q4_0, IQ4_XS made by qforge with one importance matrix. HF layouts (GPTQ W4 g128
# act-order, AWQ W4 g128, NF4, LLM.int8()) do not load in llama.cpp: their ratio is against
# qforge's own Q4_0 (4.5 bits per weight, the GGUF type of their size) or Q8_0 (LLM.int8()).
# Writes JSON lines to bench/results/kernels/ and a table on stdout.
# Usage: bench/kernels_e2e.sh [THREADS]   (needs scripts/build.sh; installs node-llama-cpp via npm)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
SHARED=${QFORGE_SHARED:-../shared}
OUT=bench/results/kernels
MODELS=$OUT/models
QF="./build/qforge -t $THREADS"
mkdir -p "$MODELS"
[ -d bench/node_modules/node-llama-cpp ] || npm --prefix bench install --no-audit --no-fund --loglevel=error
HF=$SHARED/models/qf-27m
CALIB=$SHARED/data/calib-wiki.txt

# The files (made once; delete bench/results/kernels/models to remake them).
[ -f "$MODELS/imatrix.dat" ] || $QF imatrix "$HF" --calib "$CALIB" -o "$MODELS/imatrix.dat" --ctx 512 --chunks 32
for t in Q8_0 Q6_K Q4_K_M Q4_0 IQ4_XS; do
  [ -f "$MODELS/$t.gguf" ] || $QF quantize "$HF" -o "$MODELS/$t.gguf" --format gguf --type $t --imatrix "$MODELS/imatrix.dat"
done
CAL="--calib $CALIB --nsamples 32 --seqlen 512"
[ -d "$MODELS/gptq-w4g128" ] || $QF quantize "$HF" -o "$MODELS/gptq-w4g128" --method gptq --bits 4 --group 128 --act-order $CAL
[ -d "$MODELS/awq-w4g128" ] || $QF quantize "$HF" -o "$MODELS/awq-w4g128" --method awq --bits 4 --group 128 $CAL
[ -d "$MODELS/nf4" ] || $QF quantize "$HF" -o "$MODELS/nf4" --method nf4
[ -d "$MODELS/llm-int8" ] || $QF quantize "$HF" -o "$MODELS/llm-int8" --method llm-int8

bench_pair() {  # name, file; llama.cpp too when the file is GGUF
  $QF bench "$2" --reps 10 --json >"$OUT/qforge-$1.json"
  case "$2" in *.gguf) node bench/llamacpp_bench.mjs "$2" --threads "$THREADS" --reps 10 >"$OUT/llamacpp-$1.json" ;; esac
}
bench_pair F16 "$HF/qf-27m-f16.gguf"
for t in Q8_0 Q6_K Q4_K_M Q4_0 IQ4_XS; do bench_pair $t "$MODELS/$t.gguf"; done
for m in gptq-w4g128 awq-w4g128 nf4 llm-int8; do bench_pair $m "$MODELS/$m"; done

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
ld = lambda n: json.load(open(f"{out}/{n}.json"))
print(f"{'file':<13} {'qforge pp512':>14} {'llama.cpp pp512':>16} {'ratio':>6} {'qforge tg128':>13} {'llama.cpp tg128':>16} {'ratio':>6}  MB/token")
for name in ["F16", "Q8_0", "Q6_K", "Q4_K_M", "Q4_0", "IQ4_XS", "gptq-w4g128", "awq-w4g128", "nf4", "llm-int8"]:
    q = ld(f"qforge-{name}")
    ref_name = f"llamacpp-{name}" if os.path.exists(f"{out}/llamacpp-{name}.json") else None
    if ref_name:
        r, label = ld(ref_name), "llama.cpp"
    else:  # HF layouts: against qforge's GGUF type of the same size
        r, label = ld("qforge-Q8_0" if name == "llm-int8" else "qforge-Q4_0"), "qforge Q8_0" if name == "llm-int8" else "qforge Q4_0"
    fmt = lambda d, k: f"{d[k]:>7.1f} ± {d[k + '_stdev']:<5.1f}"
    print(f"{name:<13} {fmt(q, 'prompt_tps'):>14} {fmt(r, 'prompt_tps'):>16} {q['prompt_tps'] / r['prompt_tps']:>6.2f}"
          f" {fmt(q, 'gen_tps'):>13} {fmt(r, 'gen_tps'):>16} {q['gen_tps'] / r['gen_tps']:>6.2f}"
          f"  {q['weight_bytes_per_token'] / 1e6:6.1f}{'' if ref_name else '  (vs ' + label + ')'}")
PY
