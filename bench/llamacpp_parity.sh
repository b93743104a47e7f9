#!/usr/bin/env bash
# Like-for-like quality parity with llama.cpp (ANCHORS.md §2): qforge's GGUF files scored by
# llama.cpp itself (node-llama-cpp, bench/llamacpp_eval.mjs) under llama-perplexity's protocol —
# wiki.test.raw, ctx 512, 120 chunks, second half scored, KL divergence against llama.cpp's own
# F16 conversion — next to the numbers llama.cpp's own files gave. Types without and with the
# importance matrix IMATRIX (default: computed here with `qforge imatrix` from calib-wiki.txt).
# Models are split across two node processes of one thread each. One JSON line per file to
# bench/results/llamacpp_parity.jsonl, then a table.
# Usage: [TYPES="Q4_K_M Q2_K"] [IMATRIX=qf-27m.dat] bench/llamacpp_parity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=$(realpath "${QFORGE_SHARED:-../shared}")
MODEL=$SHARED/models/qf-27m
TEXT=$SHARED/data/wikitext-2-raw/wiki.test.raw
TYPES=${TYPES:-"Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0 IQ4_XS Q3_K_M Q2_K"}
OUT=$(realpath bench/results)
TMP=$(mktemp -d /tmp/qf-parity-XXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
IMATRIX=${IMATRIX:-}
if [[ -z "$IMATRIX" ]]; then
  IMATRIX=$TMP/qf-27m.dat
  ./build/qforge imatrix "$MODEL" --calib "$SHARED/data/calib-wiki.txt" -o "$IMATRIX" >/dev/null
fi
files=()
for type in $TYPES; do
  ./build/qforge quantize "$MODEL" -o "$TMP/$type.gguf" --format gguf --type "$type" >/dev/null
  files+=("$TMP/$type.gguf")
  [[ "$type" == Q8_0 ]] && continue # Q8_0 has no importance-weighted path
  ./build/qforge quantize "$MODEL" -o "$TMP/$type+imatrix.gguf" --format gguf --type "$type" --imatrix "$IMATRIX" >/dev/null
  files+=("$TMP/$type+imatrix.gguf")
done
args=(--base "$MODEL/qf-27m-f16.gguf" --text "$TEXT" --ctx 512 --chunks 120 --threads 1)
half=$(((${#files[@]} + 1) / 2))
(cd bench && node llamacpp_eval.mjs "${files[@]:0:half}" "${args[@]}" >"$TMP/a.jsonl") &
(cd bench && node llamacpp_eval.mjs "${files[@]:half}" "${args[@]}" >"$TMP/b.jsonl") &
wait
cat "$TMP/a.jsonl" "$TMP/b.jsonl" | python3 -c "
import json, os, sys
# llama.cpp's own files (ANCHORS.md §2): type -> (KLD, PPL) without, with imatrix; PPL without is not published.
ref = {'Q8_0': ((0.00044, 76.716), None), 'Q6_K': ((0.00272, None), (0.00264, 77.144)),
       'Q5_K_M': ((0.00658, None), (0.00614, 77.108)), 'Q4_K_M': ((0.02215, 78.433), (0.02009, 78.291)),
       'Q4_0': ((0.03422, None), (0.03030, 78.006)), 'IQ4_XS': ((0.02730, None), (0.02483, 78.325)),
       'Q3_K_M': ((0.06245, None), (0.06035, 81.923)), 'Q2_K': ((0.28984, None), (0.24463, 93.034))}
rows = [json.loads(l) for l in sys.stdin]
rows.sort(key=lambda r: list(ref).index(os.path.basename(r['model']).split('.')[0].split('+')[0]) * 2 + ('+' in r['model']))
with open('$OUT/llamacpp_parity.jsonl', 'w') as f:
    for r in rows:
        name = os.path.basename(r['model'])[:-5]
        kind, imat = name.split('+')[0], '+imatrix' in name
        rk = ref[kind][imat]
        r.update(type=kind, imatrix=imat, file_bytes=os.path.getsize(r['model']), ref_kld=rk[0], ref_ppl=rk[1])
        f.write(json.dumps(r) + '\n')
        ppl = f\"{r['ppl']:.3f}\" + (f\" ({100*(r['ppl']/rk[1]-1):+.2f} %)\" if rk[1] else '')
        print(f\"{kind:<7} {'imatrix' if imat else '-':<7} {r['file_bytes']:>11,} B  KLD {r['kld']:.5f} (llama.cpp {rk[0]:.5f}, {100*(r['kld']/rk[0]-1):+.1f} %)  PPL {ppl}  top-1 {100*r['top1']:.2f} %\")
"
