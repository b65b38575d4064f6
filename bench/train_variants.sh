#!/usr/bin/env bash
# Train, report and convert the four Res-UNet variants with one protocol, resumably.
#
#   bench/train_variants.sh [RUNS_DIR] [EPOCHS_THIS_CALL]
#   JOBS=2 bench/train_variants.sh runs        # one variant per core, two at a time
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
#   python -m bench.kit --runs-dir RUNS_DIR --out bench/paper_kit
#   python -m bench.paper_table --runs-dir RUNS_DIR --out bench/results
#
# JOBS=N (default 1) trains N variants at once, each pinned to one core with one TensorFlow
# thread: on a 2-core host two one-thread runs do about twice the work of one two-thread run
# (296 s an epoch each against about 300 s; runs/KIT.md). VARIANTS="resunet_ag resunet" picks
# which (default: all four). With JOBS > 1 each variant's output goes to
# ${TMPDIR:-/tmp}/train_variants_VARIANT.log.
# Needs the train extra (TensorFlow) and the data in ../shared/data (see its README).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs}"
now="${2:-}"
data="${EDGE_SEG_DATA:-../shared/data}"
jobs="${JOBS:-1}"
variants=(${VARIANTS:-resunet resunet_se resunet_cbam resunet_ag})

finished() {
  python -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1])).get("finished") else 1)' \
    "$1/state.json" 2>/dev/null
}

one() {                                   # one variant: train or resume, report, convert
  local variant="$1" out="$runs/${1}_edge" pin=()
  local limit=()
  [ -n "$now" ] && limit=(--max-epochs-now "$now")
  if [ "$jobs" -gt 1 ]; then
    export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1
    pin=(taskset -c "$2")
  fi
  if [ -f "$out/state.json" ]; then
    finished "$out" || "${pin[@]}" edge-seg train --resume --out "$out" "${limit[@]}"
  else
    "${pin[@]}" edge-seg train --variant "$variant" --preset edge --data "$data/figshare" \
      --negatives "$data/notumor" --out "$out" --epochs 22 --patience 12 "${limit[@]}"
  fi
  if finished "$out"; then
    [ -f "$out/report.json" ] || edge-seg train --out "$out" --report
    [ -f "$out/export/${variant}_edge_int8.zip" ] || \
      edge-seg convert "$out" --all --allow-drop --out "$out/export"
  fi
}

cores=$(nproc)
i=0
pids=()
for variant in "${variants[@]}"; do
  if [ "$jobs" -gt 1 ]; then
    log="${TMPDIR:-/tmp}/train_variants_${variant}.log"
    echo "train_variants: $variant on core $(( i % cores )), log $log" >&2
    one "$variant" $(( i % cores )) > "$log" 2>&1 &
    pids+=($!)
    i=$(( i + 1 ))
    if [ "${#pids[@]}" -ge "$jobs" ]; then
      wait "${pids[0]}"; pids=("${pids[@]:1}")
    fi
  else
    one "$variant" 0
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
