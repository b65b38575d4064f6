"""Backend-neutral training: the same networks, loss and schedule on any Keras 3 backend.

For a machine without TensorFlow (a lent GPU with JAX or PyTorch). Two steps:

    # here (the data lives here): the run's split, preprocessed, in one file
    python -m edge_seg.train.portable pack --variant resunet_ag --data ../shared/data/figshare \
        --negatives ../shared/data/notumor --out PACK.npz [--quality 92]
    # there: KERAS_BACKEND=jax, no TensorFlow
    python -m edge_seg.train.portable fit PACK.npz --out RUN_DIR --epochs 60 [--minutes 9]

``pack`` splits by patient family exactly as ``edge-seg train`` does (same seed, same
``TrainConfig`` defaults, so ``split.json`` is the same) and stores each scan at model
resolution, already preprocessed, as an 8-bit image. With ``--quality Q`` the images are
JPEG-compressed (quality Q) so the file is small enough to travel (masks stay lossless); the
validation images there only pick the best epoch. Every reported number is computed
afterwards here, on the original scans (``edge-seg train --out RUN_DIR --report``).

``fit`` trains on WHOLE scans at model resolution (no patches: the network sees each tumour
in its full context) with augmentation on the accelerator (left-right flip, rotation
+-15 deg, scale +-15 %, gamma/contrast/brightness; one random draw per scan), the
``dice_bce`` loss and the warm-up + cosine schedule of ``train.trainer.lr_at``. It writes the
run folder ``edge-seg train`` writes (config.json, split.json, log.csv, state.json,
best.keras, last.keras; best by validation Dice at model resolution) and resumes from it
(weights and epoch; the optimizer's moments start afresh on resume). The .keras files load
under TensorFlow for the report and ``edge-seg convert``.
"""

import argparse
import io
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_seg.train.trainer import (TrainConfig, config_from_saved, gather_samples, load_split_arrays,
                           lr_at, make_split, split_record)

PACK_VERSION = 1


# ------------------------------------------------------------------------------ pack

def _jpeg(a, quality):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=int(quality))
    return np.frombuffer(buf.getvalue(), np.uint8)


def _unjpeg(b):
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(b.tobytes())), dtype=np.uint8)


def _to_u8(images):
    return np.round(np.clip(images.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def pack(cfg, out_path, quality=None, log=print):
    """Write the run's training and validation scans (preprocessed) to ``out_path`` (.npz)."""
    from edge_seg.train.data import default_cache_dir

    spec = cfg.preprocessing_spec()
    cfg.preprocessing = spec.to_dict()
    labelled, negatives = gather_samples(cfg)
    tr, va, ntr, nva, twins = make_split(cfg, labelled, negatives, log=log)
    x_tr, y_tr, x_va, y_va, has_tumour = load_split_arrays(cfg, spec, tr, va, ntr, nva,
                                                           default_cache_dir())
    split = split_record(cfg, tr, va, ntr, nva, twins)
    arrays = {"y_train": np.packbits(y_tr > 0, axis=-1), "y_val": np.packbits(y_va > 0, axis=-1),
              "val_has_tumour": has_tumour}
    for name, images in (("x_train", _to_u8(x_tr)), ("x_val", _to_u8(x_va))):
        if quality:
            blobs = [_jpeg(a, quality) for a in images]
            arrays[f"{name}_jpeg"] = np.concatenate(blobs)
            arrays[f"{name}_jpeg_ends"] = np.cumsum([len(b) for b in blobs])
        else:
            arrays[name] = images
    meta = {"pack_version": PACK_VERSION, "config": asdict(cfg), "split": split,
            "jpeg_quality": quality, "size": spec.input_size}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(out_path, ".npz") as tmp:
        np.savez_compressed(tmp, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                            **arrays)
    log(f"packed {len(x_tr)} training and {len(x_va)} validation scans into {out_path} "
        f"({out_path.stat().st_size / 1e6:.1f} MB)")
    return out_path


def load_pack(path):
    """-> (meta, x_train u8, y_train u8 0/1, x_val u8, y_val u8 0/1, val_has_tumour)."""
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        size = meta["size"]
        def images(name):
            if name in z:
                return z[name]
            data, ends = z[f"{name}_jpeg"], z[f"{name}_jpeg_ends"]
            starts = np.concatenate([[0], ends[:-1]])
            return np.stack([_unjpeg(data[a:b]) for a, b in zip(starts, ends)])
        y_tr = np.unpackbits(z["y_train"], axis=-1)[..., :size]
        y_va = np.unpackbits(z["y_val"], axis=-1)[..., :size]
        return meta, images("x_train"), y_tr, images("x_val"), y_va, z["val_has_tumour"]


# ------------------------------------------------------------------------------ fit

def _augment_layer(keras, seed, max_rotation_deg=15.0, scale_range=0.15):
    from keras import ops

    @keras.saving.register_keras_serializable(package="edge_seg")
    class ScanAugment(keras.layers.Layer):
        """(B, S, S, 2) [image, mask] -> the same, augmented (training only): one flip,
        rotation and scale per scan for image and mask together; gamma, contrast and
        brightness on the image; the mask re-binarised."""

        def __init__(self, seed=0, **kwargs):
            super().__init__(**kwargs)
            self.seed = seed
            self.gen = keras.random.SeedGenerator(seed)

        def call(self, both, training=None):
            if not training:
                return both
            b = ops.shape(both)[0]
            size = ops.cast(ops.shape(both)[1], "float32")
            u = keras.random.uniform((b, 6), seed=self.gen)
            flip = ops.reshape(u[:, 0] < 0.5, (-1, 1, 1, 1))
            both = ops.where(flip, ops.flip(both, axis=2), both)
            angle = (u[:, 1] * 2.0 - 1.0) * (max_rotation_deg * math.pi / 180.0)
            scale = 1.0 + (u[:, 2] * 2.0 - 1.0) * scale_range
            c = (size - 1.0) / 2.0
            cos, sin = ops.cos(angle) / scale, ops.sin(angle) / scale
            a2 = c - cos * c + sin * c
            b2 = c - sin * c - cos * c
            zero = ops.zeros_like(cos)
            transform = ops.stack([cos, -sin, a2, sin, cos, b2, zero, zero], axis=1)
            both = ops.image.affine_transform(both, transform, interpolation="bilinear",
                                              fill_mode="constant", fill_value=0.0,
                                              data_format="channels_last")
            img, msk = both[..., :1], ops.cast(both[..., 1:] >= 0.5, both.dtype)
            gamma = ops.reshape(ops.exp((u[:, 3] * 2.0 - 1.0) * 0.35), (-1, 1, 1, 1))
            contrast = ops.reshape(1.0 + (u[:, 4] * 2.0 - 1.0) * 0.1, (-1, 1, 1, 1))
            bright = ops.reshape((u[:, 5] * 2.0 - 1.0) * 0.05, (-1, 1, 1, 1))
            img = ops.clip(ops.power(ops.maximum(img, 1e-6), gamma) * contrast + bright,
                           0.0, 1.0)
            return ops.concatenate([img, msk], axis=-1)

        def get_config(self):
            return dict(super().get_config(), seed=self.seed)

    return ScanAugment(seed=seed, name="scan_augment")


def _check_patch_size(patch_size, size):
    if not 0 < patch_size <= size:
        raise ValueError(f"patch size must be in 1..{size} (the pack's scan size), "
                         f"got {patch_size}")


def patch_offsets(masks, patch_size, tumour_centred, rng):
    """Top-left corners (N, 2) of one epoch's patches, as ``train.data.make_dataset`` picks
    them: a scan with a tumour is centred on a random tumour pixel (jittered by up to a
    quarter patch) with probability ``tumour_centred``, any other at random. Here the corner
    is chosen on the scan before augmentation (the crop follows it on the accelerator), so a
    rotated or scaled tumour can sit off-centre: the jitter is of the same order."""
    n, size = masks.shape[0], masks.shape[1]
    _check_patch_size(patch_size, size)
    span = size - patch_size
    half = patch_size // 2
    u = rng.random((n, 5))   # column 4 is unused; kept so that recorded runs draw the same
    out = np.stack([(u[:, 0] * (span + 1)).astype(int), (u[:, 1] * (span + 1)).astype(int)], 1)
    for i in np.flatnonzero(u[:, 2] < tumour_centred):
        fg = np.argwhere(masks[i] > 0)
        if len(fg):
            cy, cx = fg[min(int(u[i, 3] * len(fg)), len(fg) - 1)]
            jy, jx = (rng.random(2) - 0.5) * half
            out[i] = np.clip([cy - half + int(jy), cx - half + int(jx)], 0, span)
    return out.astype(np.int32)


def _crop_layer(keras, patch_size):
    from keras import ops

    @keras.saving.register_keras_serializable(package="edge_seg")
    class PatchCrop(keras.layers.Layer):
        """[(B, S, S, C), (B, 2) top-left corners] -> (B, P, P, C), one patch per scan.
        One-hot matrix products, so it compiles the same on every backend."""

        def __init__(self, patch_size=128, **kwargs):
            super().__init__(**kwargs)
            self.patch_size = patch_size

        def call(self, both, corners):
            size = ops.shape(both)[1]
            rows = ops.cast(corners[:, :1], "int32") + ops.arange(self.patch_size)[None]
            cols = ops.cast(corners[:, 1:], "int32") + ops.arange(self.patch_size)[None]
            pick_y = ops.one_hot(rows, size, dtype=both.dtype)        # (B, P, S)
            pick_x = ops.one_hot(cols, size, dtype=both.dtype)        # (B, P, S)
            both = ops.einsum("bps,bsxc->bpxc", pick_y, both)
            return ops.einsum("bqx,bpxc->bpqc", pick_x, both)

        def get_config(self):
            return dict(super().get_config(), patch_size=self.patch_size)

    return PatchCrop(patch_size=patch_size, name="patch_crop")


def _training_model(keras, seg, size, seed, patch_size=None):
    """[image, mask] in, [probability, augmented mask] out: augmentation runs on the
    accelerator inside the compiled step, and the loss reads its target from the output.
    With ``patch_size``, a second input gives each scan's patch corner: the scan is augmented
    whole, then the patch is cut (as the patch trainer does)."""
    from keras import ops
    inp = keras.Input((size, size, 2))
    aug = _augment_layer(keras, seed)(inp)
    inputs = inp
    if patch_size and patch_size != size:
        corners = keras.Input((2,), dtype="int32")
        aug = _crop_layer(keras, patch_size)(aug, corners)
        inputs = [inp, corners]
    prob = seg(aug[..., :1])
    return keras.Model(inputs, ops.concatenate([prob, aug[..., 1:]], axis=-1))


def _load_init(keras, cfg, size):
    """The model to fine-tune, rebuilt at any input size with the saved weights: the
    variant's network is built fresh (dynamic size) and the weights copied layer by layer, so a
    mismatch in architecture fails here with the file's name, not mid-training."""
    from edge_seg.train.models import build_model

    saved = keras.models.load_model(cfg.init_from, compile=False)
    seg = build_model(cfg.variant, cfg.preset, input_size=size, dynamic_size=True)
    if [w.shape for w in seg.weights] != [w.shape for w in saved.weights]:
        raise ValueError(f"{cfg.init_from}: its weights do not fit variant {cfg.variant!r} "
                         f"preset {cfg.preset!r} ({len(saved.weights)} weights, expected "
                         f"{len(seg.weights)}); pass the variant it was trained as")
    seg.set_weights(saved.get_weights())
    return seg


def _packed_loss(loss):
    def packed(_y_true, y_pred):
        return loss(y_pred[..., 1:], y_pred[..., :1])
    return packed


def fit(pack_path, out_dir, epochs=None, batch_size=32, learning_rate=None, minutes=None,
        variant=None, fit_to_minutes=None, patience=None, init_from=None, warmup_epochs=None,
        loss=None, preset=None, patch_size=None, tumour_centred=None, log=print):
    """Train (or resume) ``out_dir`` from a pack; returns the state dict.

    ``init_from``: a new run starts from the weights of this .keras model (fine-tuning: a new
    run folder, a fresh optimizer and schedule; recorded in config.json). It must be the run's
    variant and preset (the pack's, or ``variant``): its weights are copied into a freshly
    built network, and a model that does not fit is refused with the file's name.

    ``patch_size``: train on patches of this size cut from the augmented scans (default:
    whole scans), ``tumour_centred`` of them centred on the tumour (default 0.9 with patches),
    as the patch trainer does; validation stays on whole scans.
    ``preset``: the model size (a registry preset's filters and depth; the input size stays
    the pack's), e.g. to check what a larger network reaches on the same split.
    ``minutes``: stop after the epoch that passes this budget (resume later).
    ``fit_to_minutes``: a new run times its first epoch after the warm-up and shortens
    ``epochs`` so the whole schedule ends within this budget (recorded in config.json).
    The step is compiled with XLA except under the TensorFlow backend, whose image
    transform (the rotation/scale augmentation) has no XLA kernel.
    """
    import keras

    from edge_seg.train.losses import get_loss
    from edge_seg.train.models import build_model
    from edge_seg.train.trainer import record_epoch, validation_scores, write_record

    t_start = time.time()
    meta, x_tr, y_tr, x_va, y_va, has_tumour = load_pack(pack_path)
    size = meta["size"]
    out = Path(out_dir)
    resume = (out / "state.json").is_file()
    if resume:
        saved = json.loads((out / "config.json").read_text())
        saved.pop("trained_with", None)
        cfg = config_from_saved(saved)
        state = json.loads((out / "state.json").read_text())
    else:
        base = dict(meta["config"])
        patch = int(patch_size or size)
        _check_patch_size(patch, size)
        base.update(patch_size=patch, batch_size=batch_size,
                    tumour_centred=float(0.0 if patch == size else
                                         0.9 if tumour_centred is None else tumour_centred),
                    jit_compile=keras.backend.backend() != "tensorflow",
                    strategy=f"portable ({keras.backend.backend()})")
        if epochs:
            base["epochs"] = int(epochs)
        if learning_rate:
            base["learning_rate"] = float(learning_rate)
        if variant:
            base["variant"] = variant
        if preset:
            from edge_seg.train.models.registry import model_config
            model_config(base["variant"], preset)  # an unknown name is refused, as in training
            base["preset"] = preset
        if patience:
            base["patience"] = int(patience)
        if warmup_epochs is not None:
            base["warmup_epochs"] = int(warmup_epochs)
        if loss:
            get_loss(loss)  # an unknown name is refused before the run folder is written
            base["loss"] = loss
        if init_from:
            if not Path(init_from).is_file():
                raise FileNotFoundError(f"{init_from}: --init-from model not found")
            base["init_from"] = str(init_from)
        cfg = config_from_saved(base)
        # A model that does not fit is refused before the run folder is written.
        seg = _load_init(keras, cfg, size) if cfg.init_from else None
        state = {"epoch": 0, "best_val_dice": -1.0, "best_epoch": None, "bad_epochs": 0,
                 "finished": False}
        out.mkdir(parents=True, exist_ok=True)
        write_record(out / "config.json", dict(asdict(cfg), trained_with={
            "trainer": "train.portable", "backend": keras.backend.backend(),
            "whole_scans": cfg.patch_size == size, "jpeg_quality": meta.get("jpeg_quality")}))
        write_record(out / "split.json", meta["split"])
    keras.utils.set_random_seed(cfg.seed + state["epoch"])
    if resume:
        seg = keras.models.load_model(out / "last.keras", compile=False)
    elif seg is not None:
        log(f"initialised from {cfg.init_from} (fresh optimizer and schedule)")
    else:
        seg = build_model(cfg.variant, cfg.preset, input_size=size, dynamic_size=True,
                          encoder_weights=cfg.encoder_weights)
    model = _training_model(keras, seg, size, cfg.seed, cfg.patch_size)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss=_packed_loss(get_loss(cfg.loss)),
                  jit_compile=cfg.jit_compile and keras.backend.backend() != "tensorflow")
    x = np.stack([x_tr, y_tr * 255], axis=-1).astype(np.float32) / 255.0
    dummy = np.zeros((len(x), 1), np.float32)
    xv = x_va.astype(np.float32) / 255.0
    log(f"{keras.backend.backend()}: {len(x)} training scans, {len(xv)} validation scans, "
        f"{size}x{size}, patches {cfg.patch_size}, batch {cfg.batch_size}, "
        f"epochs {state['epoch']}..{cfg.epochs}")
    first = state["epoch"]
    while state["epoch"] < cfg.epochs and not state["finished"]:
        if minutes and state["epoch"] > first and (time.time() - t_start) / 60.0 > minutes:
            log(f"time budget of {minutes} min reached after epoch {state['epoch']}")
            break
        epoch = state["epoch"]
        lr = lr_at(cfg, epoch)
        model.optimizer.learning_rate.assign(lr)
        t = time.time()
        # Whole batches only (a different few scans sit out each epoch): one compiled step.
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(x))
        order = order[:len(order) - len(order) % cfg.batch_size]
        inputs = x[order]
        if cfg.patch_size != size:
            corners = patch_offsets(y_tr, cfg.patch_size, cfg.tumour_centred,
                                    np.random.default_rng([cfg.seed, epoch, 1]))
            inputs = [inputs, corners[order]]
        hist = model.fit(inputs, dummy[order], batch_size=cfg.batch_size, epochs=1,
                         shuffle=False, verbose=0)
        scores, _ = validation_scores(seg, xv, y_va, has_tumour, batch_size=64)
        secs = time.time() - t
        record_epoch(cfg, state, seg, out, epoch, lr, hist.history["loss"][-1], scores, secs,
                     log)
        if fit_to_minutes and epoch + 1 == cfg.warmup_epochs + 1 and not state["finished"]:
            # The cosine starts after the warm-up, so its length can still be chosen here
            # without changing any epoch already run: fit it to the time left.
            left = fit_to_minutes * 60.0 - (time.time() - t_start)
            fitted = max(epoch + 2, min(cfg.epochs, epoch + 1 + int(left / (secs * 1.05))))
            if fitted != cfg.epochs:
                log(f"{secs:.1f}s per epoch: {fitted} epochs fit in {fit_to_minutes} min")
                cfg.epochs = fitted
                saved = json.loads((out / "config.json").read_text())
                saved["epochs"] = fitted
                saved["trained_with"]["epochs_fitted_to_minutes"] = fit_to_minutes
                write_record(out / "config.json", saved)
    return state


def score(pack_path, model_paths):
    """Yield (path, proxy scores) per saved model: the validation proxy that ``fit`` logs,
    on the pack's validation scans."""
    import keras

    import edge_seg.train.models  # noqa: F401 - registers the custom layers for loading
    from edge_seg.train.trainer import validation_scores
    _meta, _x, _y, x_va, y_va, has_tumour = load_pack(pack_path)
    xv = x_va.astype(np.float32) / 255.0
    for path in model_paths:
        model = keras.models.load_model(path, compile=False)
        yield path, validation_scores(model, xv, y_va, has_tumour, batch_size=16)[0]


# ------------------------------------------------------------------------------ CLI

def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m edge_seg.train.portable", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="write the run's split, preprocessed, to one .npz")
    p.add_argument("--variant", default="resunet_ag")
    p.add_argument("--preset", default="edge")
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--negatives", action="append", default=[])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--negatives-per-epoch", type=float, default=0.5)
    p.add_argument("--twin-similarity", type=float, default=0.98,
                   help="leave out training tumour-free scans at least this similar to a "
                        "validation scan, as edge-seg train (0 keeps them all)")
    p.add_argument("--quality", type=int, default=None,
                   help="JPEG quality for the images (default: lossless; masks always are)")
    p.add_argument("--out", required=True)
    f = sub.add_parser("fit", help="train (or resume) a run folder from a pack")
    f.add_argument("pack")
    f.add_argument("--out", required=True)
    f.add_argument("--variant", default=None, help="default: the pack's")
    f.add_argument("--patch-size", type=int, default=None,
                   help="train on patches cut from the augmented scans (default: whole scans)")
    f.add_argument("--tumour-centred", type=float, default=None,
                   help="share of patches centred on the tumour (default 0.9 with patches)")
    f.add_argument("--preset", default=None,
                   help="model size (default: the pack's); the input size stays the pack's")
    f.add_argument("--epochs", type=int, default=None)
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--lr", type=float, default=None)
    f.add_argument("--patience", type=int, default=None,
                   help="epochs without a better validation Dice before stopping "
                        "(default: the pack's config, 15)")
    f.add_argument("--minutes", type=float, default=None,
                   help="stop after the epoch that passes this wall-clock budget")
    f.add_argument("--fit-to-minutes", type=float, default=None,
                   help="shorten --epochs so the whole schedule ends within this budget")
    f.add_argument("--init-from", default=None,
                   help="start a new run from the weights of this .keras model (fine-tuning: "
                        "fresh optimizer and schedule)")
    f.add_argument("--warmup-epochs", type=int, default=None,
                   help="linear warm-up epochs before the cosine (default: the pack's, 2)")
    f.add_argument("--loss", default=None,
                   help="training loss, as edge-seg train --loss (default: the pack's, dice_bce)")
    sc = sub.add_parser("score", help="the in-training proxy (validation Dice at the pack's "
                        "size, threshold 0.5, no post-processing) for saved models, on one "
                        "pack: compares runs trained anywhere on one footing")
    sc.add_argument("pack")
    sc.add_argument("models", nargs="+", help=".keras models (a run's best.keras)")
    args = ap.parse_args(argv)
    if args.cmd == "score":
        for path in args.models:
            if not Path(path).is_file():
                ap.error(f"{path}: model not found")
        for path, s in score(args.pack, args.models):
            print(f"{path}\tval_dice {s['val_dice']:.4f}\t"
                  f"fp_scans {s.get('val_fp_scan_rate', float('nan')):.4f}", flush=True)
        return 0
    if args.cmd == "pack":
        if args.quality is not None and not 1 <= args.quality <= 100:
            ap.error(f"--quality must be in 1..100, got {args.quality}")
        cfg = TrainConfig(variant=args.variant, preset=args.preset, data=args.data,
                          negatives=args.negatives, seed=args.seed,
                          val_fraction=args.val_fraction,
                          negatives_per_epoch=args.negatives_per_epoch,
                          twin_similarity=args.twin_similarity)
        pack(cfg, args.out, quality=args.quality,
             log=lambda m: print(f"pack: {m}", file=sys.stderr))
    else:
        try:
            state = _fit_cli(args)
        except (FileNotFoundError, ValueError) as e:
            ap.error(str(e))
        print(json.dumps(state))
    return 0


def _fit_cli(args):
    return fit(args.pack, args.out, epochs=args.epochs, batch_size=args.batch_size,
               learning_rate=args.lr, minutes=args.minutes, variant=args.variant,
               fit_to_minutes=args.fit_to_minutes, patience=args.patience,
               init_from=args.init_from, warmup_epochs=args.warmup_epochs, loss=args.loss,
               preset=args.preset, patch_size=args.patch_size,
               tumour_centred=args.tumour_centred,
               log=lambda m: print(f"fit: {m}", file=sys.stderr, flush=True))


if __name__ == "__main__":
    sys.exit(main())
