#!/usr/bin/env bash
# The headline: GPTQ-rounded GGUF files (`qforge quantize --format gguf --method gptq`, block
# scales fitted with an importance matrix) against llama.cpp's own files of the same type and
# size with the same kind of imatrix (ANCHORS.md §2), on qf-27m. Each file is scored twice under
# llama-perplexity's protocol (wiki.test.raw, ctx 512, 120 chunks, KL divergence against
# llama.cpp's F16 conversion): by `qforge eval --protocol llama.cpp`, and by llama.cpp itself
# (node-llama-cpp, bench/llamacpp_eval.mjs). One JSON line per type to
# bench/results/gptq_gguf.jsonl, then a table. METHOD=awq or awq+gptq writes AWQ-scaled files
# instead (to awq_gguf.jsonl / awq_gptq_gguf.jsonl); EXTRA adds quantize flags ("--nsamples 32").
# Usage: [METHOD=gptq] [EXTRA=flags] [TYPES="Q4_K_M Q2_K"] [IMATRIX=qf-27m.dat] bench/gptq_gguf.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
SHARED=$(realpath "${QFORGE_SHARED:-../shared}")
MODEL=$SHARED/models/qf-27m
BASE=$MODEL/qf-27m-f16.gguf
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
CALIB=$SHARED/data/calib-wiki.txt
TYPES=${TYPES:-"Q4_K_M IQ4_XS Q3_K_M Q2_K"}
METHOD=${METHOD:-gptq}
EXTRA=${EXTRA:-}
OUT=$(realpath bench/results)
TMP=$(mktemp -d /tmp/qf-gptq-gguf-XXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
IMATRIX=${IMATRIX:-}
if [[ -z "$IMATRIX" ]]; then
  IMATRIX=$TMP/qf-27m.dat
  ./build/qforge -t "$THREADS" imatrix "$MODEL" --calib "$CALIB" -o "$IMATRIX" >/dev/null
fi
files=()
for type in $TYPES; do
  f=$TMP/$type.gguf
  /usr/bin/time -v -o "$TMP/$type.time" ./build/qforge -t "$THREADS" quantize "$MODEL" -o "$f" --format gguf --type "$type" \
    --method "$METHOD" $EXTRA --calib "$CALIB" --imatrix "$IMATRIX" >/dev/null
  ./build/qforge -t "$THREADS" eval "$f" --base "$BASE" --text "$TEXT" --ctx 512 --max-windows 120 --protocol llama.cpp --json \
    >"$TMP/$type.qforge.json"
  files+=("$f")
done
args=(--base "$BASE" --text "$TEXT" --ctx 512 --chunks 120 --threads 1)
half=$(((${#files[@]} + 1) / 2))
(cd bench && node llamacpp_eval.mjs "${files[@]:0:half}" "${args[@]}" >"$TMP/a.jsonl") &
(cd bench && node llamacpp_eval.mjs "${files[@]:half}" "${args[@]}" >"$TMP/b.jsonl") &
wait
TMP=$TMP python3 - "$OUT/${METHOD/+/_}_gguf.jsonl" <<'PY'
import json, os, re, sys
tmp = os.environ['TMP']
# llama.cpp's own files with its imatrix (ANCHORS.md §2): type -> (file bytes, KLD, PPL, top-1 %)
ref = {'Q4_K_M': (17191648, 0.02009, 78.291, 90.53), 'IQ4_XS': (15997664, 0.02483, 78.325, 89.28),
       'Q3_K_M': (14627552, 0.06035, 81.923, 83.79), 'Q2_K': (12030688, 0.24463, 93.034, 70.21),
       'Q4_0': (16718560, 0.03030, 78.006, 88.60), 'Q6_K': (22665952, 0.00264, 77.144, 96.17),
       'Q5_K_M': (19845856, 0.00614, 77.108, 94.43)}
node = {}
for part in ('a.jsonl', 'b.jsonl'):
    for line in open(os.path.join(tmp, part)):
        r = json.loads(line)
        node[os.path.basename(r['model'])[:-5]] = r
with open(sys.argv[1], 'w') as out:
    for name in sorted(node, key=lambda n: -ref.get(n, (0,))[0]):
        q = json.load(open(os.path.join(tmp, name + '.qforge.json')))
        t = open(os.path.join(tmp, name + '.time')).read()
        secs = re.search(r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)', t).group(1).split(':')
        secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(secs)))
        rss = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', t).group(1))
        n = node[name]
        rb, rk, rp, rt = ref[name]
        row = dict(type=name, file_bytes=q['file_bytes'], qforge_ppl=q['ppl'], qforge_kld=q['kld'], qforge_top1=q['top1'],
                   llamacpp_ppl=n['ppl'], llamacpp_kld=n['kld'], llamacpp_top1=n['top1'], ref_bytes=rb, ref_kld=rk,
                   ref_ppl=rp, ref_top1=rt, quantize_seconds=secs, quantize_peak_rss_kb=rss)
        out.write(json.dumps(row) + '\n')
        print(f"{name:<7} {q['file_bytes']:>11,} B (llama.cpp {rb:,})  KLD llama.cpp runtime {n['kld']:.5f} "
              f"(llama.cpp's own file {rk}, {100*(n['kld']/rk-1):+.1f} %)  qforge runtime {q['kld']:.5f}  "
              f"PPL {n['ppl']:.3f} (own {rp})  top-1 {100*n['top1']:.2f} % (own {rt})  quantize {secs:.0f} s, {rss/1024:.0f} MiB")
PY
