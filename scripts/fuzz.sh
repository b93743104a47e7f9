#!/usr/bin/env bash
# Fuzzes qforge's readers with libFuzzer under ASan+UBSan (clang): GGUF, safetensors (file and
# sharded index), config.json, tokenizer.json, the quantized HF layouts, imatrix files.
#   scripts/fuzz.sh [SECONDS] [TARGET...]   SECONDS per target (default 600); all targets by default
# Seeds come from the shared models and what qforge itself writes from them (build/ first);
# corpora grow in build-fuzz/corpus/TARGET, crashes land in build-fuzz/findings/TARGET, logs in
# build-fuzz/logs. A summary line per target is printed at the end (executions, coverage, findings).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-600}
shift || true
TARGETS=${*:-"gguf safetensors safetensors_index config hf_layout tokenizer imatrix"}
SHARED=${QFORGE_SHARED:-$(pwd)/../shared}
S=$SHARED/models/stories260K

CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQFORGE_FUZZ=ON -DQFORGE_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)"
scripts/build.sh >/dev/null

F=build-fuzz
SEEDS=$F/seeds
if [ ! -d "$SEEDS" ]; then
  rm -rf "$SEEDS.tmp" && mkdir -p "$SEEDS.tmp" && T=$SEEDS.tmp
  for t in $TARGETS gguf safetensors safetensors_index config hf_layout tokenizer imatrix; do mkdir -p "$T/$t"; done
  Q="build/qforge"
  split=$'\n--qforge-fuzz-split--\n'
  # A one-layer cut of qf-tiny-5m (rows of 256: every GGUF block type applies) with stories260K's
  # 512-token vocabulary: small enough for fast executions, whole enough for every layout.
  M=$T/model && mkdir -p "$M" && cp "$S/hf/tokenizer.json" "$M/"
  python3 - "$SHARED/models/qf-tiny-5m" "$M" <<'PY'
import json, struct, sys
src, out = sys.argv[1], sys.argv[2]
cfg = json.load(open(src + '/config.json'))
cfg.update(num_hidden_layers=1, vocab_size=512, bos_token_id=1, eos_token_id=2)
json.dump(cfg, open(out + '/config.json', 'w'), indent=1)
b = open(src + '/model.safetensors', 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
hdr = json.loads(b[8:8 + n]); data = b[8 + n:]
keep, blob = {}, b''
for name in sorted(k for k in hdr if k != '__metadata__'):
    if name.startswith('model.layers.') and not name.startswith('model.layers.0.'): continue
    t = hdr[name]; lo, hi = t['data_offsets']; shape = list(t['shape'])
    if name == 'model.embed_tokens.weight':
        hi = lo + (hi - lo) // shape[0] * 512; shape[0] = 512
    keep[name] = {'dtype': t['dtype'], 'shape': shape, 'data_offsets': [len(blob), len(blob) + hi - lo]}
    blob += data[lo:hi]
h = json.dumps(keep).encode(); h += b' ' * (-len(h) % 8)
open(out + '/model.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + blob)
PY
  cp "$S/stories260K.gguf" "$T/gguf/"
  for ty in F16 Q8_0 Q4_0 Q4_K_M Q6_K IQ4_XS Q2_K; do
    $Q quantize "$M" --format gguf --type $ty -o "$T/gguf/$ty.gguf" >/dev/null
  done
  cp "$M/model.safetensors" "$T/safetensors/bf16.safetensors"
  cp "$S/hf/config.json" "$T/config/stories260K.json"
  for m in qf-tiny-5m qf-llama3-9m qf-qwen3-9m qf-mixtral-11m; do cp "$SHARED/models/$m/config.json" "$T/config/$m.json"; done
  cp "$S/hf/tokenizer.json" "$T/tokenizer/stories260K.json"
  cp "$SHARED/models/qf-27m/tokenizer.json" "$T/tokenizer/qf-27m.json"
  for spec in "gptq --bits 4 --group 32" "gptq --bits 3 --group 32 --act-order" "awq --bits 4 --group 32" \
              "nf4 --blocksize 64" "fp4 --blocksize 64 --double-quant" "llm-int8" "quip# --bits 2"; do
    name=$(echo "$spec" | tr -c 'a-z0-9\n' '_')
    calib=()
    case $spec in gptq*|awq*|quip*) calib=(--calib "$SHARED/data/tinystories/tinystories_val_head.txt" --nsamples 4 --seqlen 64);; esac
    $Q quantize "$M" --method $spec "${calib[@]}" -o "$T/q_$name" >/dev/null
    { cat "$T/q_$name/config.json"; printf '%s' "$split"; cat "$T/q_$name/model.safetensors"; } > "$T/hf_layout/$name"
    cp "$T/q_$name/model.safetensors" "$T/safetensors/$name.safetensors"
    rm -rf "$T/q_$name"
  done
  $Q imatrix "$M" --calib "$SHARED/data/tinystories/tinystories_val_head.txt" --ctx 64 --chunks 4 -o "$T/imatrix/tiny.dat" >/dev/null
  rm -rf "$M"
  # Two shards and their index, made from stories260K's first two tensors.
  python3 - "$S/hf/model.safetensors" "$T/safetensors_index/two_shards" <<'PY'
import json, struct, sys
src, out = sys.argv[1], sys.argv[2]
b = open(src, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
hdr = json.loads(b[8:8 + n]); data = b[8 + n:]
names = [k for k in sorted(hdr) if k != '__metadata__'][:2]
def shard(name):
    t = hdr[name]; lo, hi = t['data_offsets']
    h = json.dumps({name: {'dtype': t['dtype'], 'shape': t['shape'], 'data_offsets': [0, hi - lo]}}).encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + data[lo:hi]
index = json.dumps({'metadata': {'total_size': 0}, 'weight_map': {
    names[0]: 'model-00001-of-00002.safetensors', names[1]: 'model-00002-of-00002.safetensors'}}).encode()
split = b'\n--qforge-fuzz-split--\n'
open(out, 'wb').write(index + split + shard(names[0]) + split + shard(names[1]))
PY
  mv "$T" "$SEEDS"
fi

mkdir -p $F/logs
export OMP_NUM_THREADS=1 QFORGE_SHARED="$SHARED"
export UBSAN_OPTIONS=print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1
for t in $TARGETS; do
  mkdir -p "$F/corpus/$t" "$F/findings/$t"
  tmp=$(mktemp -d)
  TMPDIR=$tmp "$F/${t}_fuzz" "$F/corpus/$t" "$SEEDS/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=60 \
    -rss_limit_mb=6144 -print_final_stats=1 -artifact_prefix="$F/findings/$t/" >"$F/logs/$t.log" 2>&1 || true
  rm -rf "$tmp"
done
printf '%-18s %12s %8s %8s %8s %9s\n' target executions exec/s cov ft findings
for t in $TARGETS; do
  log=$F/logs/$t.log
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo ?)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo ?)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo ?)
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo ?)
  printf '%-18s %12s %8s %8s %8s %9s\n' "$t" "$execs" "$rate" "$cov" "$ft" "$(ls "$F/findings/$t" | wc -l)"
done
