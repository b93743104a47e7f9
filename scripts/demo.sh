#!/usr/bin/env bash
# qforge's main job on the bundled default model (stories260K): inspect it, generate from it,
# and measure its perplexity on TinyStories under the canonical protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/stories260K/hf
TEXT=../shared/data/tinystories/tinystories_val_head.txt
[ -f "$TEXT" ] || TEXT=models/stories260K/stories260K_greedy256.txt
./build/qforge inspect "$MODEL"
./build/qforge generate "$MODEL" --prompt "Once upon a time" -n 64
./build/qforge eval "$MODEL" --text "$TEXT" --ctx 128
