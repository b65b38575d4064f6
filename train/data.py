"""Training data: decode each scan once, then a deterministic tf.data patch pipeline.

Scans go through ``edge_runtime.preprocess`` (the same code the device runs), are cached
as arrays at model resolution, and an epoch is a stateless function of (seed, epoch): the
same run resumed at epoch k sees exactly the batches it would have seen without a stop.
"""

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_runtime.imageio import load_scan
from edge_runtime.preprocess import prepare_image, prepare_mask


def default_cache_dir():
    return Path(os.environ.get("EDGE_SEG_CACHE", Path.home() / ".cache" / "edge-seg"))


def _cache_key(samples, spec):
    h = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for s in samples:
        h.update(f"{s.image}|{s.mask}|".encode())
    return h.hexdigest()[:20]


def load_arrays(samples, spec, cache_dir=None, progress=None):
    """Return (images float16 (N,S,S), masks uint8 (N,S,S)) for samples; cached on disk."""
    cache_dir = Path(cache_dir) if cache_dir else None
    path = cache_dir / f"arrays_{_cache_key(samples, spec)}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            return z["images"], z["masks"]
    n, size = len(samples), spec.input_size
    images = np.zeros((n, size, size), np.float16)
    masks = np.zeros((n, size, size), np.uint8)
    for i, s in enumerate(samples):
        scan = load_scan(s.image)
        images[i], _ = prepare_image(scan.pixels, spec)
        if s.mask is not None:
            masks[i] = prepare_mask(load_scan(s.mask).pixels, spec)
        if progress:
            progress(i + 1, n)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.replacing(path, ".npz") as tmp:        # workers may share the cache
            np.savez(tmp, images=images, masks=masks)
    return images, masks


def context_order(context):
    """The slice offsets of the input channels for ``context`` neighbours on each side:
    the slice itself first (channel 0), then -1, +1, -2, +2, ..."""
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    return [0] + [sign * d for d in range(1, context + 1) for sign in (-1, 1)]


def with_context(images, samples, context):
    """(N,S,S) arrays of ``samples`` -> (N,S,S,1+2*context): each scan followed by its
    neighbouring slices (``context_order``; ``datasets.slice_neighbours`` among
    ``samples``). A neighbour that is not there is replaced by the next one towards the
    scan itself, in the end the scan: a single slice, and every tumour-free scan, is its own
    context. ``context`` 0 returns (N,S,S,1)."""
    from edge_runtime.datasets import slice_neighbours
    images = np.asarray(images)
    if len(images) != len(samples):
        raise ValueError(f"{len(images)} arrays for {len(samples)} samples")
    channels = [images]
    nearer = {-1: np.arange(len(samples)), 1: np.arange(len(samples))}
    for offset in context_order(context)[1:]:
        side = 1 if offset > 0 else -1
        j = np.asarray(slice_neighbours(samples, offset), np.int64)
        nearer[side] = np.where(j >= 0, j, nearer[side])
        channels.append(images[nearer[side]])
    return np.stack(channels, axis=-1)


# ---------------------------------------------------------------- tf.data (TensorFlow only)

def _affine_matrix(tf, angle, scale, size):
    """Projective transform (output -> input coordinates) rotating/scaling about the centre."""
    c = (tf.cast(size, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = c - a0 * c - a1 * c
    b2 = c - b0 * c - b1 * c
    return tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])


# Scanner-difference augmentations (``--augment``), each applied to a patch with probability
# SCANNER_AUGMENT_P, in this order (the order a scan is degraded in: acquisition, then display,
# then storage). Name -> what it does.
SCANNER_AUGMENTATIONS = {
    "contrast": "wider intensity changes: gamma 0.6-1.7, contrast x0.75-1.25, brightness "
                "+-0.1 (instead of 0.7-1.4, x0.9-1.1, +-0.05)",
    "lowres": "resolution loss: down to 1/1.2-1/2.5 of the side and back (bilinear)",
    "blur": "blur or sharpen: x + a (x - gaussian(x, sigma 0.5-1.5)), a in [-1, 1.5]",
    "bias": "smooth multiplicative bias field exp(quadratic in x, y), up to about +-35 %",
    "noise": "gaussian noise, sigma 0.005-0.04 of the intensity range",
    "jpeg": "JPEG re-encoding at quality 30-95 (one-channel scans only)",
}
SCANNER_AUGMENT_P = 0.35


def check_scanner_augment(names):
    """The augmentation names, validated -> list in SCANNER_AUGMENTATIONS' order."""
    names = [n.strip() for n in (names or []) if n and n.strip()]
    unknown = sorted(set(names) - set(SCANNER_AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; allowed: "
                         f"{', '.join(SCANNER_AUGMENTATIONS)}")
    return [n for n in SCANNER_AUGMENTATIONS if n in names]


def _gaussian_blur(tf, img, sigma):
    """img (P,P,C) blurred by a 5x5 gaussian of standard deviation ``sigma`` (pixels)."""
    r = tf.range(-2.0, 3.0)
    k1 = tf.exp(-(r * r) / (2.0 * sigma * sigma))
    k1 = k1 / tf.reduce_sum(k1)
    k2 = k1[:, None] * k1[None, :]
    channels = img.shape[-1]
    kernel = tf.tile(k2[:, :, None, None], [1, 1, channels, 1])
    padded = tf.pad(img[None], [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")[0]


def apply_scanner_augment(tf, img, names, seed, patch_size, p=SCANNER_AUGMENT_P):
    """Apply the ``names`` augmentations (SCANNER_AUGMENTATIONS) to one patch (P,P,C) in
    [0, 1], each with probability ``p``, from the stateless ``seed`` (2,) -> (P,P,C).
    ("contrast" is applied by the caller: it widens the ranges of the default intensity
    augmentation.)"""
    u = tf.random.stateless_uniform([16], seed=seed + tf.constant([0, 7_777_777], tf.int64))
    channels = img.shape[-1]

    def maybe(i, fn, x):
        return tf.cond(u[2 * i] < p, lambda: fn(x, u[2 * i + 1]), lambda: x)

    if "lowres" in names:
        def lowres(x, v):
            f = 1.2 + v * 1.3
            small = tf.cast(tf.round(patch_size / f), tf.int32)
            x = tf.image.resize(x, tf.stack([small, small]), method="bilinear", antialias=True)
            return tf.image.resize(x, [patch_size, patch_size], method="bilinear")
        img = maybe(0, lowres, img)
    if "blur" in names:
        def blur(x, v):
            sigma = 0.5 + u[12] * 1.0
            a = -1.0 + v * 2.5
            return x + a * (x - _gaussian_blur(tf, x, sigma))
        img = maybe(1, blur, img)
    if "bias" in names:
        def bias(x, v):
            c = (tf.random.stateless_uniform([5], seed=seed + tf.constant([0, 3_333_331], tf.int64))
                 * 2 - 1) * 0.3 * (0.5 + v)
            g = tf.linspace(-1.0, 1.0, patch_size)
            yy, xx = g[:, None], g[None, :]
            field = tf.exp(c[0] * xx + c[1] * yy + c[2] * xx * yy + c[3] * xx * xx
                           + c[4] * yy * yy)
            return x * field[..., None]
        img = maybe(2, bias, img)
    if "noise" in names:
        def noise(x, v):
            sigma = 0.005 + v * 0.035
            return x + sigma * tf.random.stateless_normal(
                tf.shape(x), seed=seed + tf.constant([0, 5_555_557], tf.int64))
        img = maybe(3, noise, img)
    img = tf.clip_by_value(img, 0.0, 1.0)
    if "jpeg" in names and channels == 1:
        def jpeg(x, v):
            q = tf.cast(30 + v * 65, tf.int32)
            y = tf.image.adjust_jpeg_quality(x, q)
            return tf.ensure_shape(tf.cast(y, tf.float32), [patch_size, patch_size, 1])
        img = maybe(4, jpeg, img)
    return img


def make_dataset(images, masks, patch_size, batch_size, seed,
                 tumour_centred=0.9, augment=True, max_rotation_deg=15.0, scale_range=0.15,
                 scanner_augment=(), soft=None):
    """Return (epoch_dataset, steps): ``epoch_dataset(e)`` yields epoch ``e``'s ``steps``
    batches of (patch (B,P,P,C), mask (B,P,P,1)), the same every time it is asked for.
    ``images``: (N,S,S) scans (C = 1) or (N,S,S,C) scans with their context channels
    (``with_context``): every channel gets the same crop and augmentation.
    ``batch_size`` is the global batch: under tf.distribute each replica gets its share.

    Each epoch visits every scan once in a stateless shuffled order. A scan with a tumour
    is cropped around a random tumour pixel with probability ``tumour_centred`` (the
    patch position jittered so the tumour is not always central), otherwise at random.
    ``scanner_augment``: names from SCANNER_AUGMENTATIONS (none: the batches are exactly
    those of a run made before they existed).
    ``soft``: a teacher's maps, uint8 (N,S,S), 0..255 for 0..1 (``train.distill``): each
    rides with its scan's mask through the same crop and geometry, and the targets become
    (B,P,P,2), the mask then the map. The random draws do not change, so the batches are
    those of the same run without a teacher, plus the map.
    """
    import tensorflow as tf

    names = check_scanner_augment(scanner_augment)
    if "jpeg" in names and images.ndim == 4 and images.shape[3] != 1:
        raise ValueError("the jpeg augmentation needs one-channel scans (no --context)")
    wide = "contrast" in names
    n, size = images.shape[0], images.shape[1]
    channels = images.shape[3] if images.ndim == 4 else 1
    if patch_size > size:
        raise ValueError(f"patch_size must be <= the scan size {size}, got {patch_size}")
    if soft is not None and np.shape(soft) != np.shape(masks):
        raise ValueError(f"teacher maps of shape {np.shape(soft)} for masks of shape "
                         f"{np.shape(masks)}: one map per scan, at the same size")
    images_t = tf.constant(images.astype(np.float32))
    masks_t = tf.constant(masks)
    soft_t = None if soft is None else tf.constant(np.asarray(soft, np.uint8))
    targets = 1 if soft is None else 2
    half = patch_size // 2
    pi = math.pi

    def scanner_augment_fn(img, s):
        return apply_scanner_augment(tf, img, names, s, patch_size)

    def example(epoch, i, idx):
        s = tf.stack([tf.cast(seed, tf.int64), epoch * 1_000_003 + i])
        u = tf.random.stateless_uniform([12], seed=s)
        img = images_t[idx] if images.ndim == 4 else images_t[idx][..., None]
        msk = tf.cast(masks_t[idx], tf.float32)[..., None]
        if soft_t is not None:
            msk = tf.concat([msk, tf.cast(soft_t[idx], tf.float32)[..., None] / 255.0], -1)
        both = tf.concat([img, msk], axis=-1)
        if augment:
            both = tf.cond(u[0] < 0.5, lambda: tf.image.flip_left_right(both), lambda: both)
            angle = (u[1] * 2 - 1) * max_rotation_deg * pi / 180.0
            scale = 1.0 + (u[2] * 2 - 1) * scale_range
            m = _affine_matrix(tf, angle, scale, size)
            both = tf.raw_ops.ImageProjectiveTransformV3(
                images=both[None], transforms=m[None], output_shape=[size, size],
                fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")[0]
        img = both[..., :channels]
        msk = tf.cast(both[..., channels:channels + 1] >= 0.5, tf.float32)
        teach = both[..., channels + 1:]
        # Patch position.
        fg = tf.where(msk[..., 0] > 0)
        n_fg = tf.shape(fg)[0]
        rand_y = tf.cast(u[3] * (size - patch_size + 1), tf.int32)
        rand_x = tf.cast(u[4] * (size - patch_size + 1), tf.int32)

        def centred():
            k = tf.minimum(tf.cast(u[5] * tf.cast(n_fg, tf.float32), tf.int32), n_fg - 1)
            cy, cx = tf.cast(fg[k, 0], tf.int32), tf.cast(fg[k, 1], tf.int32)
            jy = tf.cast((u[6] - 0.5) * half, tf.int32)
            jx = tf.cast((u[7] - 0.5) * half, tf.int32)
            y0 = tf.clip_by_value(cy - half + jy, 0, size - patch_size)
            x0 = tf.clip_by_value(cx - half + jx, 0, size - patch_size)
            return y0, x0

        use_centre = tf.logical_and(n_fg > 0, u[8] < tumour_centred)
        y0, x0 = tf.cond(use_centre, centred, lambda: (rand_y, rand_x))
        img = img[y0:y0 + patch_size, x0:x0 + patch_size]
        msk = msk[y0:y0 + patch_size, x0:x0 + patch_size]
        if soft_t is not None:
            msk = tf.concat([msk, teach[y0:y0 + patch_size, x0:x0 + patch_size]], -1)
        if augment and [m for m in names if m != "contrast"]:
            img = scanner_augment_fn(img, s)
        if augment:
            gamma = tf.exp((u[9] * 2 - 1) * (0.53 if wide else 0.35))   # 0.59-1.70 / 0.70-1.42
            contrast = 1.0 + (u[10] * 2 - 1) * (0.25 if wide else 0.1)
            bright = (u[11] * 2 - 1) * (0.1 if wide else 0.05)
            img = tf.clip_by_value(tf.pow(img, gamma) * contrast + bright, 0.0, 1.0)
        img = tf.ensure_shape(img, [patch_size, patch_size, channels])
        msk = tf.ensure_shape(msk, [patch_size, patch_size, targets])
        return img, msk

    def epoch_ds(epoch):
        order = tf.argsort(tf.random.stateless_uniform(
            [n], seed=tf.stack([tf.cast(seed, tf.int64), epoch])))
        idx = tf.data.Dataset.from_tensor_slices(order)
        pos = tf.data.Dataset.range(n)
        return tf.data.Dataset.zip((pos, idx)).map(lambda i, j: example(epoch, i, j))

    steps = n // batch_size
    if steps < 1:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} training scans")

    # Under tf.distribute, Keras splits every (global) batch across the replicas. The data
    # lives in memory, so there are no files to shard: shard by DATA (each worker builds
    # the batch and keeps its slice) and say so rather than let AUTO warn and fall back.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def epoch_dataset(epoch):
        # Drop the remainder so an epoch is exactly `steps` batches.
        return (epoch_ds(tf.constant(epoch, tf.int64)).batch(batch_size, drop_remainder=True)
                .prefetch(2).with_options(options))

    return epoch_dataset, steps
