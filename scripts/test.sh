#!/usr/bin/env bash
# Runs every test: unit tests, then the golden tests on the real models in ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir build --output-on-failure -j1 "$@"
