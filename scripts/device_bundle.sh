#!/usr/bin/env bash
# Packs what a run on the lent GPU machine needs into .device/ (ignored; carried by the device
# tool): the built binaries, the shared libraries they load that the device image may lack, and
# the shared models and texts named below. The device runs bench/gpu_check.sh on it.
#   scripts/device_bundle.sh [MODEL...]    (default: qf-tiny-5m qf-llama3-9m qf-qwen3-9m)
# The device tool carries at most 64 MiB with the working tree: qf-27m (55 MB) goes alone, with
# BUNDLE_TEXTS='calib-wiki.txt wikitext-2-raw/wiki.test.raw'.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p "$(git rev-parse --git-dir)/info"
grep -qx "/.device/" "$(git rev-parse --git-dir)/info/exclude" 2>/dev/null || echo "/.device/" >>"$(git rev-parse --git-dir)/info/exclude"
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(qf-tiny-5m qf-llama3-9m qf-qwen3-9m)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/shared/models" "$stage/shared/data"
for b in build/qforge build/tests/unit_tests build/tests/golden_tests build/libqforge_cuda.so; do
  strip -o "$stage/bin/$(basename "$b")" "$b"
done
# Libraries outside glibc/libstdc++/CUDA (the device has those): OpenBLAS, LAPACK, fmt, ...
ldd build/qforge build/tests/unit_tests build/libqforge_cuda.so | awk '/=> \//{print $3}' | sort -u |
  grep -v '^/usr/local/cuda' | grep -vE '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' |
  while read -r l; do cp -L "$l" "$stage/lib/"; done
shared=${QFORGE_SHARED:-../shared}
for m in "${models[@]}"; do
  mkdir -p "$stage/shared/models/$m"
  find "$shared/models/$m" -maxdepth 1 -type f ! -name '*.gguf' -exec cp {} "$stage/shared/models/$m/" \;
done
mkdir -p "$stage/shared/tokenizers" && cp -r "$shared/tokenizers/llama3" "$stage/shared/tokenizers/"
texts=${BUNDLE_TEXTS:-calib-wiki.txt qf-heldout.txt wikitext-2-raw/wiki.test.raw tinystories/tinystories_val_head.txt}
(cd "$shared/data" && cp --parents $texts "$stage/shared/data/")
rm -rf .device && mkdir .device
tar -C "$stage" -cf - . | xz -T0 -9e >.device/bundle.tar.xz
du -b .device/bundle.tar.xz | awk '{printf "%.1f MiB .device/bundle.tar.xz\n", $1 / 1048576}'
