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


def make_parser(prog, doc, limit=False):
    """The argument parser of a bench script that runs a bundle over scans (``prog``: the
    module, ``doc``: its docstring), with BUNDLE, --run RUN, --data DIR, --out DIR and
    --threads N (and --limit N when ``limit``): ``open_inputs`` reads them."""
    import argparse
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--run", default=None,
                        help="training run whose validation split to score")
    parser.add_argument("--data", action="append", default=[],
                        help="scan folders (repeatable)")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--threads", type=int, default=None)
    if limit:
        parser.add_argument("--limit", type=int, default=None,
                            help="score only the first N scans")
    return parser


def open_inputs(args):
    """-> (bundle, samples, a phrase naming them) for arguments from ``make_parser``.
    Raises ``EdgeSegError``, ``ValueError`` or ``OSError`` (one line) when they cannot be
    used."""
    from edge_runtime.bundle import load_bundle
    bundle = load_bundle(args.bundle)
    samples, source = load_samples(args.run, args.data)
    return bundle, samples, source


def run_measurement(ap, args, prog, measure, render, stem):
    """The rest of the ``main`` of a bench script that runs a bundle over scans -> exit code.

    Opens the inputs (``make_parser``; one line on stderr and 2 when they cannot be used),
    runs ``measure(bundle, samples, log)`` -> result dict, adds ``scans`` (the phrase naming
    them) and writes ``STEM.json`` and ``STEM.md`` (``render(result, phrase)``) into
    ``args.out`` atomically; prints the written paths as one JSON line."""
    import json
    import sys

    from edge_runtime.errors import EdgeSegError

    if not args.run and not args.data:
        ap.error("give --run RUN (its validation split) or --data DIR")
    try:
        bundle, samples, source = open_inputs(args)
    except (EdgeSegError, ValueError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    result = measure(bundle, samples, lambda m: print(f"{prog}: {m}", file=sys.stderr))
    result["scans"] = source
    written = write_results(args.out, stem, render(result, source), result)
    print(json.dumps({"written": [str(p) for p in written]}))
    return 0


def write_results(out, stem, md, payload):
    """Write ``STEM.md`` (the text ``md``) and ``STEM.json`` (``payload``) into the folder
    ``out``, made if missing, each atomically -> (md path, json path)."""
    from edge_runtime import atomic
    from edge_runtime.evaluate import to_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / f"{stem}.md", out / f"{stem}.json"
    atomic.write_text(paths[0], md)
    atomic.write_text(paths[1], to_json(payload))
    return paths
