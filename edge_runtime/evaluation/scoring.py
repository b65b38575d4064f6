"""The one evaluation loop: scans on disk -> ``predict_fn`` -> full-resolution masks -> one
row of scores per scan (``evaluate``), and the model pass it shares with ``sweep``
(``iter_predictions``). See ``edge_runtime.evaluation`` for the steps."""

import time
from dataclasses import dataclass, field

import numpy as np

from edge_runtime import metrics
from edge_runtime.errors import InputImageError
from edge_runtime.evaluation.summary import summarise
from edge_runtime.imageio import load_scan
from edge_runtime.preprocess import Preprocessing, prepare_image, restore


@dataclass
class EvalResult:
    rows: list                      # one dict per scan, keys ROW_FIELDS
    summary: dict                   # aggregate numbers (see ``summarise``)
    failures: list = field(default_factory=list)   # [(path, problem)] for failed scans

    @property
    def ok(self):
        return not self.failures


def _base_row(sample):
    return {
        "key": sample.key, "image": str(sample.image),
        "mask": "" if sample.mask is None else str(sample.mask),
        "label": sample.label, "label_name": sample.label_name, "family": sample.family,
        "has_tumour": sample.mask is not None, "status": "ok", "error": "",
        "source": getattr(sample, "source", "") or "",
    }


def _load_truth(sample, scan):
    """The truth mask (bool, same size as the scan) of a sample."""
    if sample.mask is None:
        return np.zeros(scan.pixels.shape, dtype=bool)
    mask = load_scan(sample.mask).pixels
    if mask.shape != scan.pixels.shape:
        raise InputImageError(sample.mask, f"mask is {mask.shape[1]}x{mask.shape[0]} but the "
                                           f"scan {scan.path.name} is "
                                           f"{scan.pixels.shape[1]}x{scan.pixels.shape[0]}")
    return mask != 0


def _postprocess_fn():
    from edge_runtime.postprocess import postprocess
    return postprocess


def score(pred_mask, truth_mask, spacing_mm=None):
    """Per-scan scores of one predicted mask against its truth (both full resolution)."""
    return metrics.scan_metrics(pred_mask, truth_mask, spacing_mm)


def iter_predictions(samples, predict_fn, preprocessing, batch_size, fail, progress=False,
                 label="evaluating"):
    """Yield ``(row, sample, scan, truth, prob)`` for each scan that reads and predicts.

    ``prob`` is the probability map restored to the scan's own size. A scan that cannot be
    read, or a batch the model fails on, goes to ``fail(row, path, problem)`` instead.
    """
    pending = []

    def flush():
        batch = np.stack([p[4] for p in pending])[..., None].astype(np.float32)
        try:
            probs = np.asarray(predict_fn(batch), dtype=np.float32)
            if probs.ndim == 4:
                probs = probs[..., 0]
            if probs.shape != batch.shape[:3]:
                raise ValueError(f"predict_fn returned shape {probs.shape} for input "
                                 f"{batch.shape}")
        except Exception as exc:  # noqa: BLE001 - the model failed on these scans
            for row, sample, *_ in pending:
                fail(row, sample.image, f"model failed ({exc})")
            return []
        return [(row, sample, scan, truth, restore(prob, geo))
                for (row, sample, scan, truth, _x, geo), prob in zip(pending, probs)]

    def loop(items):
        for sample in items:
            row = _base_row(sample)
            row["_sample"] = id(sample)
            try:
                scan = load_scan(sample.image)
                truth = _load_truth(sample, scan)
                x, geo = prepare_image(scan.pixels, preprocessing)
            except InputImageError as exc:
                fail(row, exc.path, exc.problem)
                continue
            except Exception as exc:  # noqa: BLE001
                fail(row, sample.image, str(exc))
                continue
            pending.append((row, sample, scan, truth, x, geo))
            if len(pending) >= batch_size:
                yield from flush()
                pending.clear()
        if pending:
            yield from flush()
            pending.clear()

    if progress:
        import sys

        import click
        with click.progressbar(samples, label=label, file=sys.stderr,
                               item_show_func=lambda s: s.key if s else "") as bar:
            yield from loop(bar)
    else:
        yield from loop(samples)


def check_threshold(threshold):
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    return float(threshold)


def check_args(preprocessing, batch_size, samples, limit):
    if isinstance(preprocessing, dict):
        preprocessing = Preprocessing.from_dict(preprocessing)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    samples = list(samples)
    if limit is not None:
        samples = samples[:int(limit)]
    return preprocessing, samples


def evaluate(samples, predict_fn, preprocessing, threshold=0.5, min_area_fraction=0.0,
             progress=False, batch_size=1, limit=None, label="evaluating",
             min_peak_probability=0.0):
    """Score ``predict_fn`` on ``samples`` (``datasets.Sample``) -> ``EvalResult``.

    ``preprocessing``: a ``Preprocessing`` (or its dict). ``batch_size``: scans per
    ``predict_fn`` call (TFLite models are batch 1; a Keras model can take more).
    ``limit``: score only the first N samples. ``progress``: a click progress bar on stderr.
    ``threshold``, ``min_area_fraction``, ``min_peak_probability``: see
    ``postprocess.postprocess``.
    """
    check_threshold(threshold)
    preprocessing, samples = check_args(preprocessing, batch_size, samples, limit)
    postprocess = _postprocess_fn()
    rows, failures = [], []
    start = time.perf_counter()

    def fail(row, path, problem):
        row.update(status="failed", error=problem)
        rows.append(row)
        failures.append((str(path), problem))

    for row, sample, scan, truth, full in iter_predictions(samples, predict_fn, preprocessing,
                                                           batch_size, fail, progress, label):
        try:
            pred = postprocess(full, threshold, min_area_fraction,
                               min_peak_probability=min_peak_probability)
            row.update(score(pred, truth, scan.spacing_mm))
            row.update(height=int(truth.shape[0]), width=int(truth.shape[1]),
                       any_tumour_predicted=bool(pred.any()),
                       max_probability=float(full.max()))
            rows.append(row)
        except Exception as exc:  # noqa: BLE001 - one bad scan does not stop the rest
            fail(row, sample.image, f"cannot score ({exc})")
    order = {id(s): i for i, s in enumerate(samples)}
    rows.sort(key=lambda r: order.get(r.pop("_sample"), 0))   # the samples' order
    summary = summarise(rows)
    summary.update(threshold=float(threshold), min_area_fraction=float(min_area_fraction),
                   min_peak_probability=float(min_peak_probability),
                   preprocessing=preprocessing.to_dict(),
                   seconds=round(time.perf_counter() - start, 3))
    return EvalResult(rows, summary, failures)


# The name used in docs/DESIGN.md.
evaluate_predictions = evaluate
