"""The scans a bench script scores: a run's validation split, or every scan in folders."""

from pathlib import Path


def load_samples(run=None, data=()):
    """-> (samples, a phrase naming them). ``run``: a training run folder, whose validation
    split is scored (its data folders, or ``data`` when given); else every scan in ``data``.
    Raises ``ValueError`` when neither is given, ``EdgeSegError`` when they cannot be read."""
    from edge_runtime.datasets import discover
    from edge_runtime.evaluate import run_validation_samples

    data = list(data or ())
    if run:
        samples, _ = run_validation_samples(run, data or None)
        return samples, f"the validation split of {Path(run).name} ({len(samples)} scans)"
    if not data:
        raise ValueError("give --run RUN (its validation split) or --data DIR")
    samples = [s for d in data for s in discover(d)[1]]
    return samples, f"{', '.join(map(str, data))} ({len(samples)} scans)"


def add_arguments(parser):
    """BUNDLE, --run RUN and --data DIR: what a bench script that runs a bundle over scans
    takes (``open_inputs`` reads them)."""
    parser.add_argument("bundle")
    parser.add_argument("--run", default=None,
                        help="training run whose validation split to score")
    parser.add_argument("--data", action="append", default=[],
                        help="scan folders (repeatable)")


def open_inputs(args):
    """-> (bundle, samples, a phrase naming them) for arguments from ``add_arguments``.
    Raises ``EdgeSegError``, ``ValueError`` or ``OSError`` (one line) when they cannot be
    used."""
    from edge_runtime.bundle import load_bundle
    bundle = load_bundle(args.bundle)
    samples, source = load_samples(args.run, args.data)
    return bundle, samples, source
