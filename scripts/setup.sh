#!/usr/bin/env bash
# Installs the Debian 12 packages qforge needs to build, test and benchmark.
# Idempotent; run as root (or with sudo available).
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS=(
  build-essential cmake ninja-build pkg-config
  libopenblas-dev liblapacke-dev
  libhwy-dev libsentencepiece-dev libpcre2-dev libutf8proc-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libomp-dev
  python3 time
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# The CUDA toolkit is not installed here: scripts/build.sh builds the CUDA backend when it finds one.
nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
if [ -x "$nvcc" ]; then echo "setup: CUDA toolkit at $nvcc ($("$nvcc" --version | tail -1))"
else echo "setup: no CUDA toolkit (\$CUDA_HOME/bin/nvcc): qforge builds CPU-only"; fi

# llama.cpp itself, as the prebuilt build node-llama-cpp ships (bench/package.json): the
# interop tests load qforge's GGUF files with it, the benchmarks time it. Needs Node.js ≥ 20.
cd "$(dirname "$0")/.."
if command -v npm >/dev/null 2>&1 && node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)'; then
  echo "setup: installing node-llama-cpp into bench/node_modules"
  (cd bench && npm install --omit=optional --no-audit --no-fund --loglevel=error)
else
  echo "setup: Node.js >= 20 with npm not found; the llama.cpp interop tests will skip"
fi
