"""Near-identical scans across a split: the same image twice, or neighbouring slices.

A split by patient family keeps a patient's slices together only where the data says who the
patient is. Scans without a patient id (the tumour-free set) are each their own family, so
a copy of one (re-encoded, resized) or a neighbouring slice of the same patient can land on
the other side of the split. Two scans are compared by the Pearson correlation of their
64x64 thumbnails (``thumbnail``); scans of different patients stay well below
``DEFAULT_THRESHOLD`` (the figshare validation scans, split by family, reach at most 0.95
against their training side), copies reach 0.999.
"""

import numpy as np

THUMB = 64
DEFAULT_THRESHOLD = 0.98


def thumbnail(pixels, size=THUMB):
    """2-D scan -> float32 vector of a ``size`` x ``size`` thumbnail, zero mean, unit norm
    (all zeros for a flat scan), so that a dot product of two is their Pearson correlation."""
    from PIL import Image
    x = np.asarray(pixels, np.float32)
    small = np.array(Image.fromarray(x, "F").resize((size, size), Image.BILINEAR),
                     np.float32).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 0 else small


def thumbnails(samples, log=None):
    """Read each sample's scan -> (matrix [n, THUMB*THUMB], samples read, failures
    [(path, problem)] for the scans that could not be read)."""
    from edge_runtime.errors import InputImageError
    from edge_runtime.imageio import load_scan
    vecs, kept, failures = [], [], []
    for i, s in enumerate(samples, 1):
        try:
            vecs.append(thumbnail(load_scan(s.image).pixels))
            kept.append(s)
        except InputImageError as exc:
            failures.append((str(exc.path), exc.problem))
        if log and i % 1000 == 0:
            log(f"{i} of {len(samples)} scans read")
    matrix = np.stack(vecs) if vecs else np.zeros((0, THUMB * THUMB), np.float32)
    return matrix, kept, failures


def nearest(queries, pool, chunk=256):
    """-> (highest similarity, index into ``pool``) for each row of ``queries``
    (-1 and 0 when ``pool`` is empty)."""
    best = np.full(len(queries), -1.0, np.float32)
    arg = np.zeros(len(queries), np.int64)
    if not len(pool):
        return best, arg
    for i in range(0, len(queries), chunk):
        sim = queries[i:i + chunk] @ pool.T
        arg[i:i + chunk] = sim.argmax(1)
        best[i:i + chunk] = sim.max(1)
    return best, arg


def drop_twins(train, val, threshold=DEFAULT_THRESHOLD, log=None):
    """``train`` without the samples at least ``threshold`` similar to one of ``val``
    -> (kept training samples, [{"train", "val", "similarity"}] for each one dropped).
    A training scan that cannot be read is kept (training reports it as it always does)."""
    if not train or not val:
        return list(train), []
    t_vecs, t_read, _ = thumbnails(train, log)
    v_vecs, v_read, _ = thumbnails(val, log)
    best, arg = nearest(t_vecs, v_vecs)
    twin = {id(s): (v_read[a].key, float(b)) for s, b, a in zip(t_read, best, arg)
            if b >= threshold}
    kept = [s for s in train if id(s) not in twin]
    dropped = [{"train": s.key, "val": twin[id(s)][0], "similarity": round(twin[id(s)][1], 5)}
               for s in train if id(s) in twin]
    return kept, dropped
