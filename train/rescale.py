"""Bring a trained network's input convolutions to their initial size, same function.

    python -m edge_seg.train.rescale MODEL.keras --out NEW.keras

``edge_seg.train.models.surgery.rescale_input_convs``: why and how (a fine-tune from a bundle's
folded kernels learns its input layer several times slower than from scratch). Prints each
rescaled layer with its factor and the largest change of the output on a random batch (it
should be ~1e-6). Refuses to overwrite ``--out``; writes it atomically.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m edge_seg.train.rescale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    src, out = Path(args.model), Path(args.out)
    if out.exists():
        print(f"rescale: {out}: exists; choose a new --out (nothing is overwritten)",
              file=sys.stderr)
        return 2
    if not src.is_file():
        print(f"rescale: {src}: not found", file=sys.stderr)
        return 2
    import keras

    import edge_seg.train.models  # noqa: F401 - registers the custom layers for loading
    from edge_seg.train.models.surgery import rescale_input_convs
    try:
        model = keras.models.load_model(src, compile=False)
        x = np.random.default_rng(0).random((2, 64, 64, model.input_shape[-1]), np.float32)
        before = model.predict(x, verbose=0)
        done = rescale_input_convs(model)
    except (ValueError, OSError) as exc:
        print(f"rescale: {src}: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 2
    change = float(np.abs(model.predict(x, verbose=0) - before).max())
    from edge_runtime import atomic
    with atomic.replacing(out, ".keras") as tmp:
        model.save(tmp)
    print(json.dumps({"written": str(out), "rescaled": dict(done),
                      "max_output_change": change}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
