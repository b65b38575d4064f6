"""A training run's split (``runs/NAME/``: ``split.json``, else ``config.json``) -> the
training and validation samples, found in the run's data folders or the ones given."""

import json
from pathlib import Path


def _resolve_dir(d, run_dir):
    p = Path(d).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for base in (run_dir, *run_dir.parents):     # recorded relative to the project root
        if (base / p).exists():
            return base / p
    return p


def run_validation_samples(run_dir, data_dirs=None):
    """The validation scans of a training run ``runs/NAME/`` -> (samples, info dict).
    See ``run_split_samples``."""
    _train, val, info = run_split_samples(run_dir, data_dirs)
    return val, info


def run_split_samples(run_dir, data_dirs=None):
    """Both sides of a training run's split -> (training samples, validation samples, info).
    The training side leaves out the tumour-free scans that training left out as twins of
    validation scans (``split.json`` ``train_negatives_left_out``).

    Uses the run's ``split.json`` (``val_keys``, ``val_negative_keys``) when present, else
    re-creates the split from ``config.json`` (``val_fraction``, ``seed``) with
    ``datasets.split_by_family``, exactly as training did. The data folders are the run's own
    (``config.json`` ``data`` and ``negatives``) unless ``data_dirs`` is given.
    Raises ``EdgeSegError`` (one line) when the run folder cannot be used.
    """
    from edge_runtime.datasets import discover, split_by_family
    from edge_runtime.errors import EdgeSegError
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeSegError(f"{run_dir}: not a training run (no config.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgeSegError(f"{cfg_path}: cannot read JSON ({exc})") from None
    split = None
    if (run_dir / "split.json").is_file():
        try:
            split = json.loads((run_dir / "split.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EdgeSegError(f"{run_dir / 'split.json'}: cannot read JSON ({exc})") from None
    if data_dirs:
        dirs = [Path(d) for d in data_dirs]
    else:
        recorded = list(config.get("data") or []) + list(config.get("negatives") or [])
        dirs = [_resolve_dir(d, run_dir) for d in recorded]
    if not dirs:
        raise EdgeSegError(f"{cfg_path}: no data folders recorded; pass --data DIR")
    labelled, negatives = [], []
    for d in dirs:
        try:
            layout, found = discover(d)
        except ValueError as exc:
            raise EdgeSegError(f"--data {d}: {exc}") from None
        (negatives if layout == "negatives" else labelled).extend(found)
    if split is not None and "val_keys" in split:
        val_keys = set(map(str, split.get("val_keys") or ()))
        neg_keys = set(map(str, split.get("val_negative_keys") or ()))
        val = ([s for s in labelled if s.key in val_keys]
               + [s for s in negatives if s.key in neg_keys])
        left_out = {str(t.get("train")) for t in split.get("train_negatives_left_out") or ()}
        train = ([s for s in labelled if s.key not in val_keys]
                 + [s for s in negatives if s.key not in neg_keys | left_out])
        source = "split.json"
        expected = len(val_keys) + len(neg_keys)
    else:
        fraction = float(config.get("val_fraction", 0.2))
        seed = int(config.get("split_seed") if config.get("split_seed") is not None
                   else config.get("seed", 0))
        train, val = split_by_family(labelled, fraction, seed) if labelled else ([], [])
        if negatives:
            train_neg, val_neg = split_by_family(negatives, fraction, seed)
            train, val = train + train_neg, val + val_neg
        source = f"split_by_family(val_fraction={fraction}, seed={seed})"
        expected = len(val)
    if not val:
        raise EdgeSegError(f"{run_dir}: none of the run's validation scans were found in "
                           f"{', '.join(map(str, dirs))}")
    info = {"run": str(run_dir), "split_from": source, "data": [str(d) for d in dirs],
            "val_scans": len(val), "val_scans_recorded": expected}
    return train, val, info
