#!/bin/bash
# On the lent GPU machine (session of 2026-11-24 evening): six runs side by side, whole 256-px
# scans, JAX. A/B: GPU third stage from the shipped ft192 weights (fp16-rounded for transport),
# C: resunet_se edge from scratch, D/E/F: larger networks from scratch (capacity check).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi -L
python3 - <<'PY' || exit 1
import numpy as np, keras
from train.models import build_model
w = np.load('.gpu/ft192_w16.npz'); w = [w[f'arr_{i}'].astype('float32') for i in range(len(w.files))]
m = build_model('resunet_se', 'edge', input_size=256, dynamic_size=True); m.set_weights(w)
m.save('/tmp/ft192.keras'); print('ft192 rebuilt', m.count_params())
PY
F="timeout 540 python3 -m train.portable fit .gpu/pack.npz --batch-size 32 --minutes 8.2 --fit-to-minutes 7.7"
R=/tmp/runs; mkdir -p $R
$F --out $R/se_ft_bce --variant resunet_se --init-from /tmp/ft192.keras --lr 3e-4 --warmup-epochs 1 --epochs 200 --patience 1000 > $R/se_ft_bce.log 2>&1 &
$F --out $R/se_ft_sd --variant resunet_se --init-from /tmp/ft192.keras --lr 3e-4 --warmup-epochs 1 --epochs 200 --patience 1000 --loss scan_dice_bce > $R/se_ft_sd.log 2>&1 &
$F --out $R/se_edge --variant resunet_se --epochs 300 --patience 40 > $R/se_edge.log 2>&1 &
$F --out $R/se_wide --variant resunet_se --preset edge_wide --epochs 300 --patience 40 > $R/se_wide.log 2>&1 &
$F --out $R/se_paper --variant resunet_se --preset paper --epochs 300 --patience 40 > $R/se_paper.log 2>&1 &
$F --out $R/ag_paper --variant resunet_ag --preset paper --epochs 300 --patience 40 > $R/ag_paper.log 2>&1 &
sleep 240; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
wait
for r in se_ft_bce se_ft_sd se_edge se_wide se_paper ag_paper; do echo "== $r"; tail -2 $R/$r.log; done
tar -C $R -cf $OUT/runs_small.tar --exclude='*.keras' .
for r in se_ft_bce se_ft_sd se_edge; do tar -C $R -cf $OUT/$r.tar $r/best.keras $r/last.keras; done
tar -C $R -cf $OUT/se_wide.tar se_wide/best.keras
ls -la $OUT
