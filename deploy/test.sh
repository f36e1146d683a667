#!/usr/bin/env bash
# Installs the dependencies, builds with a CMake preset and runs the whole test suite.
# usage: deploy/test.sh [PRESET]        PRESET: default (debug), asan, release
#        deploy/test.sh fuzz            builds the libFuzzer targets and runs the fuzz smoke
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:-default}
JOBS=${BH_JOBS:-$(nproc)}

bash deploy/install-deps.sh
cmake --preset "$PRESET" >/dev/null
if [ "$PRESET" = fuzz ]; then
  cmake --build --preset fuzz -j"$JOBS" --target fuzz_targets
  ctest --test-dir build/fuzz -L fuzz --output-on-failure
  exit 0
fi
cmake --build --preset "$PRESET" -j"$JOBS"
ctest --preset "$PRESET"
