# Sourced by the bench/gpu_*.sh scripts on the accelerator machine: Keras 3 on JAX, no
# TensorFlow. Pip wheels in $WHEELS, if set, are installed to /tmp/site first (that machine
# has no network); the repository root (the working directory) goes on PYTHONPATH, and
# train/ and convert/ are linked as the namespace package edge_seg (what `pip install .`
# does) so that `python3 -m edge_seg.train.portable` works without installing.
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || return 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
mkdir -p /tmp/edge_seg_src/edge_seg
ln -sfn "$PWD/train" /tmp/edge_seg_src/edge_seg/train
ln -sfn "$PWD/convert" /tmp/edge_seg_src/edge_seg/convert
export PYTHONPATH="$PWD:/tmp/edge_seg_src:${PYTHONPATH:-}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
