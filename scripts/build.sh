#!/usr/bin/env bash
# Configures and builds qforge (Release) into build/. Run scripts/setup.sh first on a new machine.
# The CUDA backend is built whenever the toolkit is found ($CUDA_HOME/bin/nvcc, else
# /usr/local/cuda); QFORGE_CUDA=OFF in the environment skips it. No GPU is needed to build.
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
cuda=(-DQFORGE_CUDA=OFF)
if [[ "${QFORGE_CUDA:-ON}" != OFF && -x "$nvcc" ]]; then
  cuda=(-DQFORGE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc")
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${cuda[@]}" >/dev/null
cmake --build build -j"$(nproc)"
