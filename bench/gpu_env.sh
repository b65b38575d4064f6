# Sourced by the bench/gpu_*.sh scripts on the accelerator machine: Keras 3 on JAX, no
# TensorFlow. Pip wheels in $WHEELS, if set, are installed to /tmp/site first (that machine
# has no network); the repository root (the working directory) goes on PYTHONPATH.
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || return 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
