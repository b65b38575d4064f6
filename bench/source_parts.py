"""Folders of symbolic links to each source's training and validation part of a run's split.

    python -m bench.source_parts runs/robust_ft --out /tmp/parts

``edge-seg calibrate`` and ``edge-seg eval --data`` take folders; a run trained with
``--split-by-source`` splits each source folder in two (runs/ROBUST.md). This writes
``OUT/SOURCE_train`` and ``OUT/SOURCE_val`` for each source: tumour-free parts as a flat folder
of links, labelled parts as ``images/`` + ``masks/`` links (matched by stem), so the data stays
where it is (it may not be copied into the project). A training part is every scan of the
source that is not in validation (the tumour-free scans training left out as twins of
validation scans included): for brisc_notumor, the 295-scan calibration part of
runs/ROBUST.md. Refuses an existing ``--out``.
"""

import argparse
import os
import sys
from pathlib import Path


def write_parts(run, out):
    """-> {folder name: scans linked}."""
    from edge_runtime.evaluate import run_split_samples
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists")
    from edge_runtime.datasets import discover
    _train, val, info = run_split_samples(run)
    in_val = {(s.source, s.key) for s in val}
    train = [s for d in info["data"] for s in discover(d)[1] if (s.source, s.key) not in in_val]
    counts = {}
    for side, samples in (("train", train), ("val", val)):
        for s in samples:
            folder = out / f"{s.source}_{side}"
            if s.has_tumour:
                for sub, path in (("images", s.image), ("masks", s.mask)):
                    (folder / sub).mkdir(parents=True, exist_ok=True)
                    os.symlink(Path(path).resolve(), folder / sub / Path(path).name)
            else:
                folder.mkdir(parents=True, exist_ok=True)
                os.symlink(Path(s.image).resolve(), folder / Path(s.image).name)
            counts[folder.name] = counts.get(folder.name, 0) + 1
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.source_parts", description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        counts = write_parts(args.run, args.out)
    except (OSError, ValueError) as exc:
        print(f"bench.source_parts: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # EdgeSegError from the run folder
        print(f"bench.source_parts: {exc}", file=sys.stderr)
        return 2
    for name, n in sorted(counts.items()):
        print(f"{Path(args.out) / name}: {n} scans")
    return 0


if __name__ == "__main__":
    sys.exit(main())
