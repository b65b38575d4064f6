#!/usr/bin/env bash
# Step 3 of the shipped model, on one accelerator machine without TensorFlow
# (train.portable, KERAS_BACKEND=jax): three runs side by side on 192-px tumour-centred patches
# cut from the augmented whole scans. Two continue from INIT (a float16 weights file of
# runs/resunet_se_gpu_ft192/best.keras, see below), one with the default loss and one with
# the per-scan Dice loss; the third trains resunet_se edge from scratch.
#
#   bench/gpu_patches.sh PACK INIT_W16 OUT_DIR [MINUTES]     # default 6.1 minutes per run
#
# INIT_W16 is made here (float16 halves it, to keep the carried files under the device
# tool's 64 MiB; it was rounded so for the shipped model):
#   python -c "import keras, numpy as np, train.models; m = keras.models.load_model(
#     'runs/resunet_se_gpu_ft192/best.keras', compile=False); np.savez('.gpu/ft192_w16.npz',
#     *[w.astype('float16') for w in m.get_weights()])"
# The shipped model's call (.gpu/run5.sh, 2026-11-24) ran a fourth run beside these (128-px
# patches, runs/gpu_probes/c3_ft192_p128), so epoch counts will differ a little.
# Back here: python -m edge_seg.train.soup OUT/ft192_p192 OUT/ft192_p192sd --weight 0.5 --out RUN,
# then edge-seg train --out RUN --report and edge-seg convert RUN --all --max-drop 0.005.
set -uo pipefail
pack="$1"; init="$2"; out="$3"; minutes="${4:-6.1}"
source "$(dirname "$0")/gpu_env.sh" || exit 1
mkdir -p "$out"
python3 - "$init" "$out/init.keras" <<'PY' || exit 1
import sys
import numpy as np
from edge_seg.train.models import build_model
w = np.load(sys.argv[1])
m = build_model("resunet_se", "edge", input_size=256, dynamic_size=True)
m.set_weights([w[f"arr_{i}"].astype("float32") for i in range(len(w.files))])
m.save(sys.argv[2])
PY
stop=$(python3 -c "print($minutes + 0.5)")
fit=(python3 -m edge_seg.train.portable fit "$pack" --variant resunet_se --patience 1000 --epochs 300
     --patch-size 192 --minutes "$stop" --fit-to-minutes "$minutes")
ft=(--init-from "$out/init.keras" --lr 3e-4 --warmup-epochs 1 --batch-size 16)
"${fit[@]}" "${ft[@]}" --out "$out/ft192_p192" > "$out/ft192_p192.log" 2>&1 &
"${fit[@]}" "${ft[@]}" --loss scan_dice_bce --out "$out/ft192_p192sd" > "$out/ft192_p192sd.log" 2>&1 &
"${fit[@]}" --batch-size 32 --out "$out/p192" > "$out/p192.log" 2>&1 &
wait
for r in ft192_p192 ft192_p192sd p192; do echo "$r: $(tail -1 "$out/$r.log")"; done
