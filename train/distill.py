"""A teacher's probability maps as a second training target (``edge-seg train --teacher``).

The teacher is one or more bundles (TFLite, run with the device interpreter): the mean of
their probability maps, in the model's input space, for every training scan. The maps ride
through the batches as one more channel of the mask (the same crops, flips, rotations and
scales: ``train.data.make_dataset(soft=...)``) and the loss adds a cross-entropy towards
them (``train.losses.DistillLoss``). Every teacher must preprocess exactly as the run does,
so that its map lies on the student's pixels; anything else is refused in one line.
"""

import hashlib
from pathlib import Path

import numpy as np


class TeacherError(ValueError):
    """A teacher bundle cannot teach this run."""


def mean_predictor(predict_fns):
    """``predict_fn``s -> one that returns the mean of their probability maps."""
    def predict(batch):
        maps = [np.asarray(fn(batch), np.float32) for fn in predict_fns]
        return np.mean(maps, axis=0, dtype=np.float32)
    return predict


def load_teacher(bundle_paths, preprocessing, threads=None):
    """Bundles -> (predict_fn on a batch (N,S,S,1) of preprocessed scans, [record]).

    Each bundle is loaded (and trust-checked) as ``edge-seg run`` loads it; its
    preprocessing must equal ``preprocessing`` (a dict), or a ``TeacherError`` says both.
    A record is {path, name, sha256, format} for config.json.
    """
    from edge_runtime.bundle import load_bundle
    from edge_runtime.evaluation.tflite_adapter import predict_fn_for_interpreter
    from edge_runtime.interpreter import make_interpreter

    if not bundle_paths:
        raise TeacherError("a teacher needs at least one bundle")
    fns, records = [], []
    for path in bundle_paths:
        bundle = load_bundle(path)
        theirs = bundle.preprocessing.to_dict()
        if theirs != dict(preprocessing):
            raise TeacherError(f"{path}: the teacher preprocesses as {theirs}, the run as "
                               f"{dict(preprocessing)}; its maps would not lie on the "
                               f"student's pixels")
        fns.append(predict_fn_for_interpreter(make_interpreter(bundle.model_bytes, threads,
                                                               label=bundle.path)))
        records.append({"path": str(path), "name": bundle.name, "sha256": bundle.sha256,
                        "format": (bundle.manifest or {}).get("format")})
    return (fns[0] if len(fns) == 1 else mean_predictor(fns)), records


def _cache_file(cache_dir, images, records):
    h = hashlib.sha256()
    for r in records:
        h.update(r["sha256"].encode())
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return Path(cache_dir) / f"teacher-{h.hexdigest()[:20]}.npy"


def teacher_maps(images, predict, records=(), cache_dir=None, log=print):
    """Preprocessed scans (N,S,S) -> the teacher's maps, uint8 (N,S,S), 0..255 for 0..1.

    With ``cache_dir``, kept in a file named by the teacher's sha256s and the scans' bytes,
    so a resumed run reads the same maps without running the teacher again.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise TeacherError(f"a teacher takes one-slice scans (N, S, S), got {images.shape} "
                           f"(neighbouring slices, --context, are not supported)")
    cached = _cache_file(cache_dir, images, records) if cache_dir else None
    if cached is not None and cached.is_file():
        maps = np.load(cached)
        if maps.shape == images.shape and maps.dtype == np.uint8:
            return maps
    maps = np.zeros(images.shape, np.uint8)
    step = max(1, len(images) // 10)
    for i in range(len(images)):
        prob = np.asarray(predict(images[i][None, ..., None].astype(np.float32)))
        maps[i] = np.clip(np.rint(prob.reshape(images.shape[1:]) * 255.0), 0, 255)
        if log and (i + 1) % step == 0:
            log(f"teacher: {i + 1}/{len(images)} scans")
    if cached is not None:
        from edge_runtime import atomic
        with atomic.replacing(cached, ".npy", parents=True) as tmp, open(tmp, "wb") as fh:
            np.save(fh, maps)
    return maps


def distill_loss(base="dice_bce", weight=1.0):
    """The loss of a run with a teacher: ``train.losses.DistillLoss`` (see there)."""
    from edge_seg.train.losses import DistillLoss
    return DistillLoss(base=base, weight=weight)
