#!/bin/bash
# On the lent GPU machine (2026-11-24 evening, third call): four runs side by side on 192-px
# (one 128-px) tumour-centred patches cut from the augmented whole scans, as the CPU patch
# trainer does. Three continue from the shipped ft192 weights (fp16-rounded for transport),
# one trains resunet_se edge from scratch.
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
F="timeout 460 python3 -m train.portable fit .gpu/pack.npz --minutes 6.6 --fit-to-minutes 6.1 --variant resunet_se --patience 1000"
R=/tmp/runs; mkdir -p $R
I="--init-from /tmp/ft192.keras --lr 3e-4 --warmup-epochs 1 --epochs 300 --batch-size 16"
$F --out $R/sep_ft_bce $I --patch-size 192 > $R/sep_ft_bce.log 2>&1 &
$F --out $R/sep_ft_sd $I --patch-size 192 --loss scan_dice_bce > $R/sep_ft_sd.log 2>&1 &
$F --out $R/sep_ft_128 $I --patch-size 128 > $R/sep_ft_128.log 2>&1 &
$F --out $R/sep_edge --epochs 300 --batch-size 32 --patch-size 192 > $R/sep_edge.log 2>&1 &
sleep 150; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
wait
for r in sep_ft_bce sep_ft_sd sep_ft_128 sep_edge; do echo "== $r"; tail -2 $R/$r.log; done
tar -C $R -cf $OUT/runs_small.tar --exclude='*.keras' .
for r in sep_ft_bce sep_ft_sd sep_ft_128 sep_edge; do tar -C $R -cf $OUT/$r.tar $r/best.keras $r/last.keras; done
ls -la $OUT
