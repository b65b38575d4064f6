#!/usr/bin/env bash
# The four Res-UNet variants side by side on one accelerator machine, without TensorFlow
# (train.portable, KERAS_BACKEND=jax): whole 256-px scans, batch 32, lr 2e-3, warm-up 2 + cosine.
#
#   bench/gpu_variants.sh PACK OUT_DIR MINUTES            # schedule fitted to MINUTES per variant
#   bench/gpu_variants.sh PACK OUT_DIR MINUTES EPOCHS     # EPOCHS for all, stop after MINUTES
#                                                         # (call again to resume)
# PACK comes from this machine's data (it travels; the scans do not):
#   python -m edge_seg.train.portable pack --data ../shared/data/figshare \
#       --negatives ../shared/data/notumor --quality 92 --out .gpu/pack.npz
# The accelerator machine needs jax and keras>=3 (pip wheels in $WHEELS, if set, are installed
# to /tmp/site first: that machine has no network). Back here, for each OUT_DIR/<variant>_gpu:
#   edge-seg train --out RUN --report && edge-seg convert RUN --all --allow-drop --out RUN/export
# The four runs share the GPU, so epochs per minute differ between variants.
set -uo pipefail
pack="$1"; out="$2"; minutes="$3"; epochs="${4:-}"
source "$(dirname "$0")/gpu_env.sh" || exit 1
mkdir -p "$out"
for v in resunet resunet_ag resunet_se resunet_cbam; do
  if [ -n "$epochs" ]; then
    budget=(--epochs "$epochs" --patience 1000 --minutes "$minutes")
  else
    budget=(--epochs 300 --fit-to-minutes "$minutes")
  fi
  python3 -m edge_seg.train.portable fit "$pack" --out "$out/${v}_gpu" --variant "$v" \
    --batch-size 32 "${budget[@]}" > "$out/${v}.log" 2>&1 &
done
wait
for v in resunet resunet_ag resunet_se resunet_cbam; do echo "$v: $(tail -1 "$out/${v}.log")"; done
