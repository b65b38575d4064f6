"""Weight averaging of two runs on one split (a "model soup", Wortsman et al. 2022).

    python -m edge_seg.train.soup RUN_A RUN_B --weight W --out runs/NAME
    edge-seg train --out runs/NAME --report

The new run's ``best.keras`` holds ``(1 - W) * A + W * B`` for every weight, BatchNorm
statistics included: one network, so the same size and speed as either parent. It makes
sense for runs that share a starting point (B fine-tuned from A, or both from one model),
whose weights lie in one basin; two runs trained apart average into nonsense, and the
report says so. Both runs must be the same variant, preset and preprocessing, scored on
the same validation scans (``VALIDATION_KEYS`` of ``split.json``; the training side may
differ, e.g. one run left the tumour-free twins out). The new folder gets A's
``config.json`` (with a ``soup`` entry naming both parents and W) and ``split.json``; ``edge-seg train --report`` then scores it at full
resolution like any run, and ``edge-seg convert`` converts it. An existing folder is never
overwritten.
"""

import argparse
import json
import sys
from pathlib import Path

SAME = ("variant", "preset", "base_filters", "depth", "input_size", "preprocessing")
VALIDATION_KEYS = ("seed", "val_fraction", "val_families", "val_keys", "val_negative_keys")


def _read_run(run):
    run = Path(run)
    for name in ("config.json", "split.json", "best.keras"):
        if not (run / name).is_file():
            raise FileNotFoundError(f"{run}: no {name} (a training run folder has one)")
    return (json.loads((run / "config.json").read_text()),
            json.loads((run / "split.json").read_text()))


def soup(run_a, run_b, weight, out_dir):
    """Write ``out_dir`` (a new run folder) holding ``(1 - weight) * A + weight * B``.
    -> the new config dict. Raises ValueError when the runs cannot be averaged."""
    if not 0.0 < float(weight) < 1.0:
        raise ValueError(f"--weight must be strictly between 0 and 1, got {weight!r}")
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; a soup is written to a new folder")
    cfg_a, split_a = _read_run(run_a)
    cfg_b, split_b = _read_run(run_b)
    for key in SAME:
        if cfg_a.get(key) != cfg_b.get(key):
            raise ValueError(f"{run_a} and {run_b} differ in {key} ({cfg_a.get(key)!r} "
                             f"against {cfg_b.get(key)!r}): only one network can be averaged")
    if any(split_a.get(k) != split_b.get(k) for k in VALIDATION_KEYS):
        raise ValueError(f"{run_a} and {run_b} were split differently: their validation "
                         "scores would not be comparable")

    import keras
    import numpy as np

    import edge_seg.train.models  # noqa: F401 - registers the custom layers for loading
    from edge_seg.train.trainer import save_model, write_record

    a = keras.models.load_model(Path(run_a) / "best.keras", compile=False)
    b = keras.models.load_model(Path(run_b) / "best.keras", compile=False)
    wa, wb = a.get_weights(), b.get_weights()
    if len(wa) != len(wb) or any(x.shape != y.shape for x, y in zip(wa, wb)):
        raise ValueError(f"{run_a} and {run_b}: the weights do not line up")
    w = float(weight)
    a.set_weights([((1.0 - w) * x + w * y).astype(x.dtype)
                   if np.issubdtype(x.dtype, np.floating) else x for x, y in zip(wa, wb)])
    config = dict(cfg_a, soup={"a": str(run_a), "b": str(run_b), "weight": w})
    out.mkdir(parents=True)
    save_model(a, out / "best.keras")
    write_record(out / "config.json", config)
    write_record(out / "split.json", split_a)
    write_record(out / "state.json", {"epoch": 0, "best_val_dice": None, "best_epoch": None,
                                      "finished": True})
    return config


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m edge_seg.train.soup", description=__doc__.split("\n")[0])
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--weight", type=float, default=0.5,
                    help="share of RUN_B, strictly between 0 and 1 (default 0.5)")
    ap.add_argument("--out", required=True, help="new run folder")
    args = ap.parse_args(argv)
    try:
        soup(args.run_a, args.run_b, args.weight, args.out)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"soup: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"written": str(Path(args.out) / "best.keras"),
                      "next": f"edge-seg train --out {args.out} --report"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
