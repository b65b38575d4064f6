#!/usr/bin/env bash
# Run the device install of edge-seg on an emulated Cortex-A72 (aarch64) and compare its masks
# with this host's. All the work is in emulate.py next to this file; see docs/ARM.md.
#   bench/arm/emulate.sh [--bundle ZIP] [--scans PATH...] [--cache DIR] [--out DIR] ...
# Exit: 0 ok, 1 masks differ / a command failed, 2 usage, 3 setup failed, 77 skipped: no network.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python3}" "$here/emulate.py" "$@"
