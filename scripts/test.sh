#!/usr/bin/env bash
# Runs the tests: unit tests, then the golden tests on the real models in ../shared.
#   scripts/test.sh          the CI tier (about 30 min on 2 cores): every golden check except the
#                            whole-text quantization anchors and the long perplexities
#   scripts/test.sh --full   both tiers (QFORGE_FULL_TESTS=1): every golden value
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--full" ]; then
  export QFORGE_FULL_TESTS=1
  shift
fi
scripts/build.sh
ctest --test-dir build --output-on-failure -j1 "$@"
