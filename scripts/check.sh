#!/usr/bin/env bash
# Static and dynamic checks beyond the tests:
#   1. every source formatted by .clang-format (clang-format --dry-run --Werror);
#   2. a build with every warning an error (build-werror/, -DQFORGE_WERROR=ON);
#   3. the unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/,
#      -DQFORGE_SANITIZE=ON; any report fails the run: -fno-sanitize-recover).
#   scripts/check.sh [format|werror|asan ...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${*:-"format werror asan"}
for step in $STEPS; do
  case $step in
    format)
      echo "== clang-format"
      git ls-files '*.cc' '*.h' | xargs clang-format --dry-run --Werror
      ;;
    werror)
      echo "== -Werror build"
      cmake -S . -B build-werror -G Ninja -DCMAKE_BUILD_TYPE=Release -DQFORGE_WERROR=ON >/dev/null
      cmake --build build-werror -j"$(nproc)"
      ;;
    asan)
      echo "== unit tests under ASan + UBSan"
      cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQFORGE_SANITIZE=ON >/dev/null
      cmake --build build-asan -j"$(nproc)" --target unit_tests qforge
      # OpenBLAS and OpenMP keep thread pools alive at exit: leaks there are the libraries', not ours.
      ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 OMP_NUM_THREADS=2 \
        build-asan/tests/unit_tests
      ;;
    *) echo "unknown step '$step' (format, werror, asan)" >&2; exit 2 ;;
  esac
done
echo "checks passed: $STEPS"
