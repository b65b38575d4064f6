"""How much Dice the model's input resolution alone costs: each expert mask is taken to model
resolution exactly as training does (``preprocess.prepare_mask``: letterbox, resize,
threshold 0.5), brought back to the scan's own size as the runtime brings back its
probability map (``preprocess.restore``, threshold 0.5) and scored against itself. A model
that were perfect at 256 px would score this; the gap to it is the model's, not the
resolution's.

    python -m bench.lab.resolution_ceiling --run runs/NAME [--size 256 ...]

Prints the mean Dice per scan over the run's validation scans with a tumour, per class.
"""

import argparse
import sys
from collections import defaultdict


def ceiling(samples, size):
    """-> {class name: [Dice per scan]} for the samples with a tumour, at input ``size``."""
    from edge_runtime.imageio import load_scan
    from edge_runtime.metrics import dice
    from edge_runtime.preprocess import Preprocessing, geometry_for, prepare_mask, restore

    spec = Preprocessing(input_size=size)
    out = defaultdict(list)
    for s in samples:
        if not s.has_tumour:
            continue
        truth = load_scan(s.mask).pixels > 0
        small = prepare_mask(truth, spec).astype("float32")
        back = restore(small, geometry_for(*truth.shape)) >= 0.5
        out[s.label_name].append(dice(back, truth))
    return dict(out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.lab.resolution_ceiling",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a training run folder (its validation split)")
    ap.add_argument("--data", action="append", default=None,
                    help="data folders (default: the run's own)")
    ap.add_argument("--size", type=int, action="append", default=None,
                    help="model input size(s) to check (default: 256)")
    args = ap.parse_args(argv)
    from edge_runtime.errors import EdgeSegError
    from edge_runtime.evaluate import run_validation_samples
    try:
        samples, _ = run_validation_samples(args.run, args.data)
    except EdgeSegError as exc:
        print(f"resolution_ceiling: {exc}", file=sys.stderr)
        return 2
    for size in args.size or [256]:
        per_class = ceiling(samples, size)
        scores = [d for v in per_class.values() for d in v]
        if not scores:
            print(f"resolution_ceiling: {args.run}: no validation scan with a tumour",
                  file=sys.stderr)
            return 2
        parts = ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in sorted(per_class.items()))
        print(f"{size} px: Dice {sum(scores) / len(scores):.3f} over {len(scores)} scans "
              f"({parts}); worst scan {min(scores):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
