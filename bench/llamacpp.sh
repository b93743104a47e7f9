#!/usr/bin/env bash
# Builds llama.cpp's own tools — llama-bench, llama-perplexity, llama-quantize, llama-imatrix —
# from the source the node-llama-cpp npm package ships (bench/node_modules/node-llama-cpp/llama/
# gitRelease.bundle, a git bundle of llama.cpp at node-llama-cpp's release; scripts/setup.sh
# installs the package) into bench/.llama.cpp/ (ignored; no llama.cpp code is committed), once:
# Release, GGML_NATIVE=ON (this machine's ISA), CPU only. Prints the folder holding the binaries.
# Every speed comparison against llama.cpp in bench/ and BENCHMARKS.md runs these binaries.
#   bench/llamacpp.sh            # build if needed, print the bin folder
set -euo pipefail
cd "$(dirname "$0")"
bundle=node_modules/node-llama-cpp/llama/gitRelease.bundle
root=.llama.cpp
tools=(llama-bench llama-perplexity llama-quantize llama-imatrix)
[[ -f $bundle ]] || { echo "bench/llamacpp.sh: $bundle not found: run scripts/setup.sh first" >&2; exit 1; }
built=1
for t in "${tools[@]}"; do [[ -x $root/build/bin/$t ]] || built=0; done
if [[ $built == 0 ]]; then
  [[ -d $root/src/.git ]] || { rm -rf "$root/src" && mkdir -p "$root" && git clone -q "$bundle" "$root/src"; }
  echo "bench/llamacpp.sh: building ${tools[*]} from llama.cpp $(git -C "$root/src" rev-parse --short HEAD)" >&2
  cmake -S "$root/src" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
  cmake --build "$root/build" -j"$(nproc)" --target "${tools[@]}" >&2
fi
echo "$PWD/$root/build/bin"
