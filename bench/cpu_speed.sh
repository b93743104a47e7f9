#!/usr/bin/env bash
# Prompt and generation speed on the CPU: `qforge bench` next to llama.cpp's own `llama-bench`
# (built by bench/llamacpp.sh from the source node-llama-cpp ships, GGML_NATIVE) on the same files,
# same machine, same run, interleaved file by file; pp512 = one batch of 512 prompt tokens, tg128 =
# 128 tokens decoded one at a time, each from an empty cache; one warm-up, then REPS repetitions;
# medians (and peak RSS, GNU time). GGUF files of every type are made once by qforge from the HF
# checkpoint (one importance matrix for all); the HF layouts (GPTQ W4 g128 act-order, AWQ W4 g128,
# NF4) do not load in llama.cpp: their ratio is against qforge's own Q4_0 (the GGUF type of their size).
#   bench/cpu_speed.sh [qf-27m | llama-3.2-1b]   (default qf-27m; llama-3.2-1b: a random-weight
#   checkpoint of Llama-3.2-1B's shape, made by build/qforge_make_shape)
# Environment: THREADS (2), REPS (5), TYPES (the GGUF types), LAYOUTS (the HF layouts), PROMPT (512),
# CHUNKS (the importance matrix's chunks of 512 tokens, 32),
# GEN (128). Results: JSON per run in bench/results/cpu/SET/, a Markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:-qf-27m}
THREADS=${THREADS:-2}
REPS=${REPS:-5}
PROMPT=${PROMPT:-512}
GEN=${GEN:-128}
TYPES=${TYPES:-F16 BF16 Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0 IQ4_XS Q3_K_M Q2_K}
LAYOUTS=${LAYOUTS-gptq-w4g128 awq-w4g128 nf4}  # LAYOUTS="": none
SHARED=${QFORGE_SHARED:-../shared}
OUT=bench/results/cpu/$SET
FILES=bench/results/cpu/$SET/models
LLAMA=$(bench/llamacpp.sh)
QF="./build/qforge -t $THREADS"
CALIB=$SHARED/data/calib-wiki.txt
mkdir -p "$FILES"
source bench/sets.sh
HF=$(hf_of "$SET" "$FILES" "$SHARED")

# The files (made once; delete $FILES to remake them).
[[ -f $FILES/imatrix.dat ]] || $QF imatrix "$HF" --calib "$CALIB" -o "$FILES/imatrix.dat" --ctx 512 --chunks "${CHUNKS:-32}" --device cpu
for t in $TYPES; do
  im=(--imatrix "$FILES/imatrix.dat")
  [[ $t == F16 || $t == BF16 || $t == Q8_0 ]] && im=()
  [[ -f $FILES/$t.gguf ]] || $QF quantize "$HF" -o "$FILES/$t.gguf" --format gguf --type "$t" "${im[@]}"
done
CAL=(--calib "$CALIB" --nsamples 32 --seqlen 512 --device cpu)
for m in $LAYOUTS; do
  [[ -d $FILES/$m ]] && continue
  case $m in
  gptq-w4g128) $QF quantize "$HF" -o "$FILES/$m" --method gptq --bits 4 --group 128 --act-order "${CAL[@]}" ;;
  awq-w4g128) $QF quantize "$HF" -o "$FILES/$m" --method awq --bits 4 --group 128 "${CAL[@]}" ;;
  nf4) $QF quantize "$HF" -o "$FILES/$m" --method nf4 ;;
  esac
done

rss() { awk '/Maximum resident set size/ {print $NF}' "$1"; }
for name in $TYPES $LAYOUTS; do
  f=$FILES/$name
  [[ -f $f.gguf ]] && f=$f.gguf
  echo "== $name" >&2
  /usr/bin/time -v $QF bench "$f" --prompt "$PROMPT" --gen "$GEN" --reps "$REPS" --json >"$OUT/qforge-$name.json" 2>"$OUT/qforge-$name.time"
  echo "{\"peak_rss_kb\": $(rss "$OUT/qforge-$name.time")}" >"$OUT/qforge-$name.rss.json"
  if [[ $f == *.gguf ]]; then
    /usr/bin/time -v "$LLAMA/llama-bench" -m "$f" -t "$THREADS" -p "$PROMPT" -n "$GEN" -r "$REPS" -o json \
      >"$OUT/llamacpp-$name.json" 2>"$OUT/llamacpp-$name.time"
    echo "{\"peak_rss_kb\": $(rss "$OUT/llamacpp-$name.time")}" >"$OUT/llamacpp-$name.rss.json"
  fi
done

python3 - "$OUT" "$TYPES $LAYOUTS" "$PROMPT" "$GEN" <<'PY'
import json, os, statistics, sys
out, names, pp, tg = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
def load(n):
    with open(f"{out}/{n}.json") as f:
        return json.load(f)
def qforge(name):
    q = load(f"qforge-{name}")
    return q["prompt_tps_median"], q["gen_tps_median"], load(f"qforge-{name}.rss")["peak_rss_kb"], q["isa"]
def llamacpp(name):
    runs = load(f"llamacpp-{name}")
    p = next(r for r in runs if r["n_prompt"] > 0 and r["n_gen"] == 0)
    g = next(r for r in runs if r["n_gen"] > 0 and r["n_prompt"] == 0)
    return statistics.median(p["samples_ts"]), statistics.median(g["samples_ts"]), load(f"llamacpp-{name}.rss")["peak_rss_kb"], runs[0]
isa, info = None, None
print(f"| file | llama.cpp pp{pp} | qforge pp{pp} | ratio | llama.cpp tg{tg} | qforge tg{tg} | ratio | RSS llama.cpp / qforge MB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name in names:
    qp, qg, qr, isa = qforge(name)
    if os.path.exists(f"{out}/llamacpp-{name}.json"):
        lp, lg, lr, info = llamacpp(name)
        print(f"| {name} | {lp:,.0f} | {qp:,.0f} | {qp / lp:.2f} | {lg:,.1f} | {qg:,.1f} | {qg / lg:.2f} | {lr / 1024:.0f} / {qr / 1024:.0f} |")
    elif os.path.exists(f"{out}/qforge-Q4_0.json"):  # an HF layout: against qforge's own Q4_0
        rp, rg, _, _ = qforge("Q4_0")
        print(f"| {name} (vs qforge Q4_0) | {rp:,.0f} | {qp:,.0f} | {qp / rp:.2f} | {rg:,.1f} | {qg:,.1f} | {qg / rg:.2f} | – / {qr / 1024:.0f} |")
flags = next((l.split(":")[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
isa_flags = " ".join(f for f in ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16"] if f in flags)
if info:
    print(f"\nllama.cpp {info.get('build_commit')} ({info.get('backends')}), CPU: {info.get('cpu_info')} "
          f"[{isa_flags}], {info.get('n_threads')} threads; qforge SIMD target {isa}; medians of the repetitions")
PY
