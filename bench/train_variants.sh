#!/usr/bin/env bash
# Train, report and convert the four Res-UNet variants with one protocol, resumably.
#
#   bench/train_variants.sh [RUNS_DIR] [EPOCHS_THIS_CALL]
#
# Each variant gets the same recipe (edge preset, 128-px patches, batch 16, lr 2e-3 warmed up
# over 2 epochs then a cosine decay over 22 epochs, seed 0, the same patient-family split):
# the recipe of runs/resunet_ag_edge, the first cycle of the shipped model (which was then
# fine-tuned for 18 more epochs). Call it again to continue: a run that exists is resumed, at most
# EPOCHS_THIS_CALL epochs per variant per call (default: all of them), so a 2-core machine can
# spread the work over several sessions. A finished run gets its validation report
# (report.json: threshold and minimum area chosen on validation) and its bundles in every
# format (RUNS_DIR/NAME/export/NAME_{fp32,drq,fp16,int8}.zip; a Dice drop over the gate is
# recorded in the manifest, not refused: these are for the table). Then:
#   python -m bench.paper_table --runs-dir RUNS_DIR --out bench/results
# Needs the train extra (TensorFlow) and the data in ../shared/data (see its README).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs}"
now="${2:-}"
data="${EDGE_SEG_DATA:-../shared/data}"
finished() {
  python -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1])).get("finished") else 1)' \
    "$1/state.json" 2>/dev/null
}
for variant in resunet resunet_se resunet_cbam resunet_ag; do
  out="$runs/${variant}_edge"
  limit=()
  [ -n "$now" ] && limit=(--max-epochs-now "$now")
  if [ -f "$out/state.json" ]; then
    finished "$out" || edge-seg train --resume --out "$out" "${limit[@]}"
  else
    edge-seg train --variant "$variant" --preset edge --data "$data/figshare" \
      --negatives "$data/notumor" --out "$out" --epochs 22 --patience 12 "${limit[@]}"
  fi
  if finished "$out"; then
    [ -f "$out/report.json" ] || edge-seg train --out "$out" --report
    [ -f "$out/export/${variant}_edge_int8.zip" ] || \
      edge-seg convert "$out" --all --allow-drop --out "$out/export"
  fi
done
