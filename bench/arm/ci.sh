#!/usr/bin/env bash
# CI hook for the ARM check: call after the tests, e.g. `bench/arm/ci.sh` in .ci/run.
# Runs bench/arm/emulate.sh (arguments are passed on) and ends with ONE summary line:
#   ARM aarch64 check: PASSED|PASSED WITH WARNING|FAILED|SKIPPED ... (N s)
# (WARNING: a mask is below the Dice tolerance but every flipped pixel lies on the mask's
# boundary, see docs/ARM.md.)
# Exit 0 when it passed, and when it was skipped because the Debian mirror or the package
# index cannot be reached on a cold cache (set EDGE_SEG_ARM_STRICT=1 to fail then, exit 77).
# Any other result exits with emulate.sh's code (1 masks differ, 2 usage, 3 setup).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log="$(mktemp "${TMPDIR:-/tmp}/edge-seg-arm.XXXXXX.log")"
trap 'rm -f "$log"' EXIT
start=$(date +%s)
"$here/emulate.sh" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
secs=$(( $(date +%s) - start ))
detail="$(grep -E '^arm: ' "$log" | tail -n 1 | sed -E 's/^arm: ([A-Za-z ()]+: )?//')"
case "$rc" in
  0)  case "$detail" in
        *WARNING*) echo "ARM aarch64 check: PASSED WITH WARNING: ${detail} (${secs} s)" ;;
        *)         echo "ARM aarch64 check: PASSED: ${detail} (${secs} s)" ;;
      esac
      exit 0 ;;
  77) echo "ARM aarch64 check: SKIPPED (no network): ${detail} (${secs} s)"
      if [ "${EDGE_SEG_ARM_STRICT:-0}" = "1" ]; then exit 77; fi; exit 0 ;;
  *)  echo "ARM aarch64 check: FAILED (exit ${rc}): ${detail} (${secs} s)"; exit "$rc" ;;
esac
