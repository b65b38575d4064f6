"""The training loop: checkpoints, exact resume, CSV log, schedule, early stopping, signals.

A run folder holds:
  config.json      everything needed to rebuild the model, the data and the split
  split.json       the validation families and sample keys (never a slice-level split)
  log.csv          one row per epoch
  state.json       last completed epoch, best score, early-stopping counter
  last.keras       model + optimizer after the last completed epoch (resume point)
  best.keras       the best model by validation Dice
  report.json      final validation report (full-resolution metrics)

Distribution (``cfg.strategy``, see docs/DISTRIBUTED.md): "default" (one device), "mirrored"
(every local GPU, or the CPU) or "multiworker" (MultiWorkerMirroredStrategy, cluster from
TF_CONFIG). ``batch_size`` is always the GLOBAL batch: each step's batch is split across all
replicas and the gradients are summed, so an epoch is the same batches whatever the device
count. Only the chief (task "chief", or worker 0 when the cluster has no chief) writes the run
folder; every other worker writes the same files to a temporary folder that is deleted at the
end (TF's multi-worker guidance: every worker takes part in every save, non-chiefs to a
temporary path).
"""

import atexit
import csv
import json
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_runtime.datasets import discover, split_by_family, split_by_source
from edge_runtime.preprocess import Preprocessing


@dataclass
class TrainConfig:
    variant: str = "resunet_ag"
    preset: str = "edge"
    data: list = field(default_factory=list)        # labelled folders
    negatives: list = field(default_factory=list)   # tumour-free folders
    epochs: int = 60
    batch_size: int = 16
    patch_size: int = 128
    learning_rate: float = 2e-3
    min_learning_rate: float = 2e-5
    warmup_epochs: int = 2
    loss: str = "dice_bce"
    val_fraction: float = 0.2
    seed: int = 0
    # Seed of the train/validation split; None: ``seed``. Give it to train another seed
    # (initialisation, batches, augmentation) on the same split.
    split_seed: int = None
    patience: int = 15
    tumour_centred: float = 0.9
    negatives_per_epoch: float = 0.5   # tumour-free scans per epoch, relative to tumour scans
    # Training tumour-free scans at least this similar to a validation scan are left out
    # (edge_seg.train.twins; 0: keep all, as runs made before this option did).
    twin_similarity: float = 0.98
    # XLA for the training step; None: the variant family's choice
    # (registry.default_jit_compile), recorded in config.json as what was used.
    jit_compile: bool = None
    strategy: str = "default"
    base_filters: int = None
    depth: int = None
    input_size: int = None
    preprocessing: dict = None
    init_from: str = None   # start from these weights (a .keras model), new optimizer + schedule
    # A pretrained encoder for the variants that take one (lite0_unet: an EfficientNet-Lite0
    # npz, docs/LITE0.md); its sha256 is recorded beside it. None: random initialisation.
    encoder_weights: str = None
    encoder_weights_sha256: str = None
    # Neighbouring slices on each side fed as extra input channels (train.data.with_context;
    # runs/CONTEXT.md). A research option: the report, export and runtime take one slice.
    context: int = 0
    # Split each data folder (source) on its own, figshare's patients exactly as when it is
    # alone, with per-source validation shares {folder name: fraction} (runs/ROBUST.md).
    split_by_source: bool = False
    val_fractions: dict = None
    # Scanner-difference augmentations (train.data.SCANNER_AUGMENTATIONS), none by default.
    augment: list = field(default_factory=list)
    # A teacher (train.distill): bundles whose mean probability map is a second target,
    # weighted by distill_weight in the loss; their {path, name, sha256, format} recorded.
    teacher: list = field(default_factory=list)
    teacher_bundles: list = None
    distill_weight: float = 1.0

    @property
    def input_channels(self):
        return 1 + 2 * self.context

    def preprocessing_spec(self):
        if self.preprocessing:
            return Preprocessing.from_dict(self.preprocessing)
        from edge_seg.train.models.registry import model_config
        cfg = model_config(self.variant, self.preset, input_size=self.input_size)
        return Preprocessing(input_size=cfg["input_size"])


def write_record(path, obj):
    """A run's JSON record (config, split, state) written atomically (``default=str``)."""
    return atomic.write_json(path, obj, default=str)


def save_model(model, path):
    """``model.save`` to a ``.keras`` path atomically (a temporary ``.keras`` file next to it,
    then ``os.replace``)."""
    with atomic.replacing(path, ".keras") as tmp:
        model.save(tmp)
    return Path(path)


def lr_at(cfg, epoch):
    """Linear warm-up then cosine decay, a pure function of the epoch (resume-exact)."""
    if epoch < cfg.warmup_epochs:
        return cfg.learning_rate * (epoch + 1) / cfg.warmup_epochs
    t = (epoch - cfg.warmup_epochs) / max(1, cfg.epochs - cfg.warmup_epochs)
    return cfg.min_learning_rate + 0.5 * (cfg.learning_rate - cfg.min_learning_rate) * (
        1 + math.cos(math.pi * min(1.0, t)))


def gather_samples(cfg):
    labelled, negatives = [], []
    for d in cfg.data:
        layout, s = discover(d)
        (negatives if layout == "negatives" else labelled).extend(s)
    for d in cfg.negatives:
        _layout, s = discover(d)
        negatives.extend(s)
    if not labelled:
        raise ValueError(f"no labelled scans found in {cfg.data}")
    return labelled, negatives


def config_from_saved(saved, **override):
    """A run's config.json -> ``TrainConfig``; keys a run was made before keep the behaviour
    it was made with (``twin_similarity``: 0, no tumour-free scan left out)."""
    return TrainConfig(**dict({"twin_similarity": 0.0}, **dict(saved, **override)))


def saved_context(run_dir):
    """The ``context`` a run folder was trained with (0: one slice, or no config.json)."""
    path = Path(run_dir) / "config.json"
    return int(json.loads(path.read_text()).get("context") or 0) if path.is_file() else 0


def effective_split_seed(cfg):
    """The seed the split is drawn with: ``cfg.split_seed``, else the run's ``seed``."""
    return cfg.seed if cfg.split_seed is None else cfg.split_seed


def make_split(cfg, labelled, negatives, log=None):
    """-> (train, val, train tumour-free, val tumour-free, twins left out of training).

    Both kinds are split by family. The tumour-free scans carry no patient id, so a copy of
    one, or a neighbouring slice, can fall on the other side: training tumour-free scans at
    least ``cfg.twin_similarity`` similar to a validation scan are left out (listed in the
    fifth value), so validation never scores scans training has all but seen."""
    seed = effective_split_seed(cfg)
    if cfg.split_by_source:
        def split(samples):
            return split_by_source(samples, cfg.val_fraction, seed,
                                   {k: v for k, v in (cfg.val_fractions or {}).items()
                                    if any(s.source == k for s in samples)})
        unknown = sorted(set(cfg.val_fractions or {})
                         - {s.source for s in labelled + negatives})
        if unknown:
            raise ValueError(f"--val-fraction-of names {unknown}, which are not among the "
                             f"data folders {sorted({s.source for s in labelled + negatives})}")
    else:
        def split(samples):
            return split_by_family(samples, cfg.val_fraction, seed)
    tr, va = split(labelled)
    ntr, nva = split(negatives) if negatives else ([], [])
    twins = []
    if cfg.twin_similarity and ntr:
        from edge_seg.train.twins import drop_twins
        ntr, twins = drop_twins(ntr, va + nva, cfg.twin_similarity, log)
        if log:
            log(f"left out {len(twins)} training tumour-free scans with a validation twin "
                f"(similarity >= {cfg.twin_similarity})")
    return tr, va, ntr, nva, twins


def validation_scores(model, images, masks, has_tumour, batch_size=8, threshold=0.5):
    """Per-scan Dice at model resolution on tumour scans; share of tumour-free scans with any
    predicted tumour pixel. A quick in-training proxy; the report uses full resolution."""
    x = images[..., None] if images.ndim == 3 else images
    probs = model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0)[..., 0]
    pred = probs >= threshold
    truth = masks > 0
    inter = (pred & truth).sum(axis=(1, 2))
    denom = pred.sum(axis=(1, 2)) + truth.sum(axis=(1, 2))
    dice = np.where(denom > 0, 2 * inter / np.maximum(denom, 1), 1.0)
    pos = has_tumour
    out = {"val_dice": float(dice[pos].mean()) if pos.any() else float("nan")}
    if (~pos).any():
        out["val_fp_scan_rate"] = float(pred[~pos].any(axis=(1, 2)).mean())
    return out, probs


class _StopFlag:
    """SIGINT/SIGTERM ask training to stop after the current batch."""

    def __init__(self):
        self.stop = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, _frame):
        self.stop = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _multiworker_class():
    import tensorflow as tf

    class MultiWorker(tf.distribute.MultiWorkerMirroredStrategy):
        """MultiWorkerMirroredStrategy with the ``reduce`` that Keras 3 ``fit`` expects.

        Keras 3.x ``fit`` under this strategy fails (keras-team/keras#20585) because
        (1) it reduces a whole (x, y) batch of per-replica values in one call (the
        strategy takes one value at a time: "Attempt to convert a value (PerReplica...)")
        and (2) it reduces each scalar metric with ``axis=0`` ("Invalid reduction dimension
        0 for input with 0 dimensions"). Reduce leaf by leaf, and across replicas only for
        scalars, which is what the single-worker strategies end up doing.
        """

        def reduce(self, reduce_op, value, axis):
            parent = super(MultiWorker, self)

            def leaf(v):
                local = self.experimental_local_results(v)[0]
                rank = getattr(getattr(local, "shape", None), "rank", None)
                return parent.reduce(reduce_op, v, None if rank == 0 else axis)

            return tf.nest.map_structure(leaf, value)

    return MultiWorker


def _strategy(name):
    """The tf.distribute strategy for ``name``. Call before any other TensorFlow op:
    MultiWorkerMirroredStrategy has to configure collective ops at program start."""
    import tensorflow as tf
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return _multiworker_class()()
    raise ValueError(f"unknown strategy {name!r}; allowed: default, mirrored, multiworker")


def _chief_rule(task_type, task_id, cluster):
    return task_type in (None, "chief") or (
        task_type == "worker" and not task_id and "chief" not in cluster)


def is_chief_process(strategy_name):
    """False only for a non-chief task of a multi-worker run (read from TF_CONFIG, as
    MultiWorkerMirroredStrategy reads it). Only the chief writes the run folder."""
    if strategy_name != "multiworker":
        return True
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task", {})
    return _chief_rule(task.get("type"), task.get("index"), tf_config.get("cluster", {}))


def _task(strategy):
    """(is_chief, label) of this process in the cluster; (True, "chief") outside one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return True, "chief"
    cluster = resolver.cluster_spec().as_dict()
    return _chief_rule(task_type, resolver.task_id, cluster), f"{task_type} {resolver.task_id}"


def weights_fingerprint(model):
    """sha256 over the trainable weights: equal on every replica of a synchronous run.
    (BatchNormalization moving statistics are not synchronised: each replica keeps its own,
    estimated from its slice of every batch; the chief's first replica's are saved.)"""
    import hashlib
    h = hashlib.sha256()
    for w in model.trainable_weights:
        h.update(np.ascontiguousarray(np.asarray(w)).tobytes())
    return h.hexdigest()[:16]


def split_record(cfg, tr, va, ntr, nva, twins=()):
    """The run's split.json: seed, families and validation keys (shared by every trainer);
    the training tumour-free scans left out as twins of validation scans, when any."""
    record = {
        "seed": effective_split_seed(cfg), "val_fraction": cfg.val_fraction,
        "train_families": sorted({s.family for s in tr}),
        "val_families": sorted({s.family for s in va}),
        "val_keys": [s.key for s in va], "val_negative_keys": [s.key for s in nva],
        "counts": {"train_scans": len(tr), "val_scans": len(va),
                   "train_families": len({s.family for s in tr}),
                   "val_families": len({s.family for s in va}),
                   "train_negatives": len(ntr), "val_negatives": len(nva)}}
    if twins:
        record["train_negatives_left_out"] = list(twins)
        record["counts"]["train_negatives_left_out"] = len(twins)
    if cfg.split_by_source:
        record["split_by_source"] = True
        record["val_fractions"] = dict(cfg.val_fractions or {})
        record["sources"] = source_counts(tr, va, ntr, nva, twins)
    return record


def source_counts(tr, va, ntr, nva, twins=()):
    """{source: {train, val, train_families, val_families}} of a split (scans of every kind;
    the training tumour-free scans left out as twins are not counted as training)."""
    left_out = {str(t.get("train")) for t in twins or ()}
    out = {}
    for side, samples in (("train", tr + ntr), ("val", va + nva)):
        for s in samples:
            if side == "train" and not s.has_tumour and s.key in left_out:
                continue
            c = out.setdefault(s.source, {"train": 0, "val": 0, "train_families": set(),
                                          "val_families": set()})
            c[side] += 1
            c[f"{side}_families"].add(s.family or s.key)
    return {k: dict(v, train_families=len(v["train_families"]),
                    val_families=len(v["val_families"])) for k, v in sorted(out.items())}


def load_split_arrays(cfg, spec, tr, va, ntr, nva, cache):
    """Decode the split -> (x_train, y_train, x_val, y_val, val_has_tumour). A fixed, seeded
    subset of tumour-free scans joins the training set; all of the validation ones are kept.
    Scans are (N,S,S), or (N,S,S,C) with ``cfg.context`` neighbouring slices each side."""
    from edge_seg.train.data import load_arrays, with_context

    def load(samples):
        x, y = load_arrays(samples, spec, cache)
        return (with_context(x, samples, cfg.context) if cfg.context else x), y

    x_tr, y_tr = load(tr)
    x_va, y_va = load(va)
    if ntr:
        xn_tr, yn_tr = load(ntr)
        xn_va, yn_va = load(nva)
        k = min(len(ntr), int(round(cfg.negatives_per_epoch * len(tr))))
        pick = np.random.default_rng(cfg.seed).permutation(len(ntr))[:k]
        x_tr = np.concatenate([x_tr, xn_tr[pick]])
        y_tr = np.concatenate([y_tr, yn_tr[pick]])
        x_va = np.concatenate([x_va, xn_va])
        y_va = np.concatenate([y_va, yn_va])
    has_tumour = np.arange(len(x_va)) < len(va)
    return x_tr, y_tr, x_va, y_va, has_tumour


def teacher_targets(cfg, x_train, cache, log=print):
    """The teacher's maps of the training scans (uint8 (N,S,S)); on a resumed run the
    teachers must be the very bundles it started with (their sha256)."""
    from edge_seg.train.distill import load_teacher, teacher_maps
    predict, records = load_teacher(cfg.teacher, cfg.preprocessing)
    if cfg.teacher_bundles is not None:
        was = [r["sha256"] for r in cfg.teacher_bundles]
        if was != [r["sha256"] for r in records]:
            raise ValueError(f"--teacher: the bundles now at {', '.join(cfg.teacher)} are not "
                             f"the ones this run started with (model sha256 "
                             f"{', '.join(w[:12] for w in was)})")
    cfg.teacher_bundles = records
    log(f"teacher: mean of {len(records)} bundle(s) "
        f"({', '.join(r['name'] for r in records)}) on {len(x_train)} training scans")
    return teacher_maps(x_train, predict, records, cache_dir=cache, log=log)


def training_loss(cfg):
    """The loss by name, or with a teacher ``train.distill.DistillLoss`` around it (which
    refuses an unknown name as ``get_loss`` does)."""
    if cfg.teacher:
        from edge_seg.train.distill import distill_loss
        return distill_loss(cfg.loss, cfg.distill_weight)
    from edge_seg.train.losses import get_loss
    return get_loss(cfg.loss)


LOG_FIELDS = ("epoch", "lr", "loss", "val_dice", "val_fp_scan_rate", "seconds", "best")


def record_epoch(cfg, state, model, out, epoch, lr, loss, scores, secs, log=print):
    """The end of epoch ``epoch`` (0-based), for every trainer: update ``state`` (best
    validation Dice, patience, finished), save best.keras / last.keras, append a row to
    log.csv and write state.json. Returns the row."""
    state["epoch"] = epoch + 1
    improved = scores["val_dice"] > state["best_val_dice"]
    if improved:
        state.update(best_val_dice=scores["val_dice"], best_epoch=epoch + 1, bad_epochs=0)
        save_model(model, out / "best.keras")
    else:
        state["bad_epochs"] += 1
    save_model(model, out / "last.keras")
    if state["bad_epochs"] >= cfg.patience:
        state["finished"] = True
        log(f"early stopping: no better validation Dice for {cfg.patience} epochs")
    if state["epoch"] >= cfg.epochs:
        state["finished"] = True
    row = {"epoch": epoch + 1, "lr": f"{lr:.3g}", "loss": f"{loss:.4f}",
           "val_dice": f"{scores['val_dice']:.4f}",
           "val_fp_scan_rate": f"{scores.get('val_fp_scan_rate', float('nan')):.4f}",
           "seconds": f"{secs:.0f}", "best": int(improved)}
    log_path = out / "log.csv"
    new = not log_path.exists()
    with open(log_path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)
    write_record(out / "state.json", state)
    log(f"epoch {epoch + 1}/{cfg.epochs} loss {row['loss']} val_dice {row['val_dice']} "
        f"fp_scans {row['val_fp_scan_rate']} lr {row['lr']} {secs:.0f}s"
        + (" *" if improved else ""))
    return row


def train(cfg, out_dir, resume=False, log=print, max_epochs_this_call=None):
    """Train (or resume) a run in ``out_dir``. Returns the final state dict.

    ``cfg.strategy`` is the strategy of THIS call (a resumed run may change it). With
    "multiworker" every worker runs the same call; non-chief workers read ``out_dir`` (to
    resume it, so it must be on a shared file system) but write only to a temporary folder.
    """
    strategy = _strategy(cfg.strategy)  # first: no TensorFlow op may run before it
    is_chief, task = _task(strategy)
    import keras

    from edge_seg.train.data import default_cache_dir, make_dataset
    from edge_seg.train.models import build_model

    run_dir = Path(out_dir)
    if resume:
        if not (run_dir / "state.json").is_file():
            raise FileNotFoundError(f"{run_dir}: nothing to resume (no state.json)")
        saved = json.loads((run_dir / "config.json").read_text())
        other = saved.get("trained_with") or {}
        if other.get("trainer"):
            raise ValueError(
                f"{run_dir}: trained by {other['trainer']} ({other.get('backend', '?')}, whole "
                f"scans), not by edge-seg train; resume it with: python -m edge_seg.train.portable "
                f"fit PACK --out {run_dir}")
        cfg = config_from_saved(saved, strategy=cfg.strategy)
        state = json.loads((run_dir / "state.json").read_text())
    else:
        if (run_dir / "state.json").exists():
            raise FileExistsError(f"{run_dir}: a run already exists here; use --resume or a new "
                                  f"--out")
    if is_chief:
        out = run_dir
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = Path(tempfile.mkdtemp(prefix="edge-seg-worker-"))
        atexit.register(shutil.rmtree, out, True)
        log(f"{task}: not the chief, writing to {out} (deleted at the end)")
    if not resume:
        state = {"epoch": 0, "best_val_dice": -1.0, "best_epoch": None, "bad_epochs": 0,
                 "finished": False}
    spec = cfg.preprocessing_spec()
    cfg.preprocessing = spec.to_dict()
    keras.utils.set_random_seed(cfg.seed)

    labelled, negatives = gather_samples(cfg)
    tr, va, ntr, nva, twins = make_split(cfg, labelled, negatives, log=log)
    if cfg.jit_compile is None:
        from edge_seg.train.models.registry import default_jit_compile
        cfg.jit_compile = default_jit_compile(cfg.variant)
    if not resume:
        if cfg.encoder_weights:
            if not Path(cfg.encoder_weights).is_file():
                raise FileNotFoundError(f"{cfg.encoder_weights}: --encoder-weights file not "
                                        f"found")
            from edge_runtime.bundle import sha256_file
            cfg.encoder_weights_sha256 = sha256_file(cfg.encoder_weights)
        write_record(out / "config.json", asdict(cfg))
        write_record(out / "split.json", split_record(cfg, tr, va, ntr, nva, twins))

    cache = default_cache_dir()
    t0 = time.time()
    log(f"loading {len(tr) + len(va)} labelled and {len(ntr) + len(nva)} tumour-free scans "
        f"(cached in {cache})")
    x_tr, y_tr, x_val, y_val, has_tumour = load_split_arrays(cfg, spec, tr, va, ntr, nva,
                                                             cache)
    log(f"data ready in {time.time() - t0:.0f}s: {len(x_tr)} training scans, "
        f"{len(x_val)} validation scans ({len(va)} with tumour)")

    soft = teacher_targets(cfg, x_tr, cache, log) if cfg.teacher else None
    if not resume and cfg.teacher:
        write_record(out / "config.json", asdict(cfg))     # with the teachers' sha256
    epoch_dataset, steps = make_dataset(x_tr, y_tr, cfg.patch_size, cfg.batch_size, cfg.seed,
                                        tumour_centred=cfg.tumour_centred,
                                        scanner_augment=cfg.augment, soft=soft)

    with strategy.scope():
        if resume:
            import edge_seg.train.losses  # noqa: F401 - registers the losses it was saved with
            model = keras.models.load_model(run_dir / "last.keras", compile=True)
        else:
            if cfg.init_from:
                if not Path(cfg.init_from).is_file():
                    raise FileNotFoundError(f"{cfg.init_from}: --init-from model not found")
                model = keras.models.load_model(cfg.init_from, compile=False)
                log(f"initialised from {cfg.init_from} (fresh optimizer and schedule)")
                if model.input_shape[-1] != cfg.input_channels:
                    from edge_seg.train.models.surgery import widen_input
                    model = widen_input(model, cfg.variant, cfg.preset, cfg.input_channels,
                                        base_filters=cfg.base_filters, depth=cfg.depth,
                                        input_size=cfg.input_size, dynamic_size=True)
                    log(f"input widened to {cfg.input_channels} channels (the neighbours' "
                        f"weights start at zero)")
            else:
                model = build_model(cfg.variant, cfg.preset, base_filters=cfg.base_filters,
                                    depth=cfg.depth, input_size=cfg.input_size,
                                    dynamic_size=True, input_channels=cfg.input_channels,
                                    encoder_weights=cfg.encoder_weights)
                if cfg.encoder_weights:
                    log(f"encoder initialised from {cfg.encoder_weights} "
                        f"(sha256 {cfg.encoder_weights_sha256[:12]})")
            model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                          loss=training_loss(cfg), jit_compile=cfg.jit_compile)

    stop = _StopFlag()

    class _Guard(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if stop.stop:
                self.model.stop_training = True

    last_epoch = cfg.epochs if max_epochs_this_call is None else min(
        cfg.epochs, state["epoch"] + max_epochs_this_call)
    with stop:
        while state["epoch"] < last_epoch and not state["finished"]:
            epoch = state["epoch"]
            lr = lr_at(cfg, epoch)
            model.optimizer.learning_rate.assign(lr)
            t = time.time()
            hist = model.fit(epoch_dataset(epoch), epochs=1, verbose=0, callbacks=[_Guard()])
            if stop.stop:
                save_model(model, out / "interrupted.keras")
                log(f"stopped by signal during epoch {epoch + 1}; resume continues from the end "
                    f"of epoch {epoch} (last.keras); weights at the stop are in interrupted.keras")
                break
            scores, _ = validation_scores(model, x_val, y_val, has_tumour)
            record_epoch(cfg, state, model, out, epoch, lr, hist.history["loss"][-1], scores,
                         time.time() - t, log)
    if cfg.strategy == "multiworker":
        log(f"{task}: final trainable weights {weights_fingerprint(model)}")
    if not is_chief:
        shutil.rmtree(out, ignore_errors=True)
    return state
