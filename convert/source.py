"""What ``edge-seg convert`` converts: a training run folder or a bare ``.keras`` file.

A run folder ``runs/NAME/`` (written by ``edge-seg train``) holds ``config.json`` (variant,
preset, preprocessing, ``data``/``negatives`` folders, ``seed``, ``val_fraction``),
``split.json`` (validation keys), ``best.keras`` and maybe ``report.json``. From it come the
model, its preprocessing, the validation scans for the accuracy gate and the training scans
for int8 calibration. A bare ``.keras`` file has no config: preprocessing defaults to the
model's input size, and the scans come from ``--data`` folders split by family with seed 0
and 0.2 (validation for the gate, training for calibration).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.datasets import discover, split_by_family
from edge_runtime.errors import EdgeSegError
from edge_runtime.preprocess import Preprocessing
from edge_seg.train.report import refuse_context_run

MODEL_FILES = ("best.keras", "last.keras")


class SourceError(EdgeSegError):
    """The run folder or model file cannot be used (exit code 2)."""


def _first(cfg, *keys, default=None):
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    return default


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)


@dataclass
class Source:
    model_path: Path
    name: str
    config: dict = field(default_factory=dict)
    report: dict = None
    run_dir: Path = None

    # ----------------------------------------------------------- settings from the config
    @property
    def state(self):
        """The run's state.json (epochs run, best epoch, finished) or None."""
        path = Path(self.run_dir) / "state.json" if self.run_dir else None
        return _read_json(path) if path is not None and path.is_file() else None

    @property
    def variant(self):
        return _first(self.config, "variant", default=None)

    @property
    def preset(self):
        return _first(self.config, "preset", default=None)

    def preprocessing(self, model=None):
        pre = self.config.get("preprocessing")
        if isinstance(pre, dict):
            return Preprocessing.from_dict(pre)
        size = _first(self.config, "input_size")
        if size is None and self.variant and self.preset:
            try:
                from edge_seg.train.models.registry import model_config
                size = model_config(self.variant, self.preset)["input_size"]
            except Exception:  # noqa: BLE001 - a foreign run: fall back to the model
                size = None
        if size is None and model is not None:
            size = model.inputs[0].shape[1]
        if size is None:
            raise SourceError(f"{self.model_path}: no preprocessing in a config.json and the "
                              "model's input size is not fixed; convert a run folder instead")
        return Preprocessing(input_size=int(size))

    @property
    def split_seed(self):
        return int(_first(self.config, "split_seed", "seed", default=0))

    @property
    def val_fraction(self):
        return float(_first(self.config, "val_fraction", default=0.2))

    def threshold(self, default=0.5):
        return float(_first(self.config, "threshold",
                            default=_first(self.report or {}, "threshold", default=default)))

    def min_area_fraction(self, default):
        return float(_first(self.config, "min_area_fraction",
                            default=_first(self.report or {}, "min_area_fraction",
                                           default=default)))

    def min_peak_probability(self, default):
        return float(_first(self.config, "min_peak_probability",
                            default=_first(self.report or {}, "min_peak_probability",
                                           default=default)))

    def data_dirs(self):
        """Labelled and tumour-free folders the run trained on (config ``data``, ``negatives``)."""
        dirs = _as_list(self.config.get("data")) + _as_list(self.config.get("negatives"))
        return [self._resolve(d) for d in dirs if isinstance(d, (str, Path))]

    def _resolve(self, d):
        p = Path(d).expanduser()
        if p.is_absolute() or p.exists() or self.run_dir is None:
            return p
        for base in (self.run_dir, *self.run_dir.parents):   # relative to the project root
            if (base / p).exists():
                return base / p
        return p

    # ----------------------------------------------------------- scans
    def split(self, data_dirs=None):
        """-> (train samples, validation samples, {dataset info}).

        A training run: the validation scans are exactly those of ``edge-seg eval --split val
        --run`` (``edge_runtime.evaluate.run_validation_samples``: the run's split.json, else
        its config's seed and val_fraction); every other scan of the same folders is a
        training scan (int8 calibration). Without a run: labelled and tumour-free scans of
        ``data_dirs`` are each split by family with ``split_by_family`` (seed 0, 0.2), as
        training does.
        """
        if self.run_dir is not None and (self.run_dir / "config.json").is_file():
            from edge_runtime.evaluate import run_validation_samples
            val, vinfo = run_validation_samples(self.run_dir, data_dirs)
            dirs, split_from = [Path(d) for d in vinfo["data"]], vinfo["split_from"]
        else:
            dirs, val, split_from = [Path(d) for d in (data_dirs or [])], None, None
            if not dirs:
                raise SourceError(f"{self.model_path}: no training run (config.json) beside "
                                  "it; pass --data DIR (labelled scans) [--data DIR ...]")
        labelled, negatives, layouts = [], [], []
        for d in dirs:
            try:
                layout, found = discover(d)
            except ValueError as exc:
                raise SourceError(f"--data {d}: {exc}") from None
            layouts.append({"path": str(d), "layout": layout, "scans": len(found)})
            (negatives if layout == "negatives" else labelled).extend(found)
        if val is None:
            seed, fraction = self.split_seed, self.val_fraction
            val = split_by_family(labelled, fraction, seed)[1] if labelled else []
            val += split_by_family(negatives, fraction, seed)[1] if negatives else []
            split_from = f"split_by_family(val_fraction={fraction}, seed={seed})"
        val_images = {str(s.image) for s in val}
        train = [s for s in labelled + negatives if str(s.image) not in val_images]
        info = {"folders": layouts,
                "patients": len({s.patient for s in labelled}),
                "families": len({s.family for s in labelled}),
                "tumour_free_scans": len(negatives),
                "train_scans": len(train), "val_scans": len(val),
                "val_split_from": split_from}
        return train, val, info

    # ----------------------------------------------------------- model
    def load_model(self):
        """Load the Keras model (registers the project's custom layers first)."""
        try:
            import edge_seg.train.models  # noqa: F401 - registers custom layers for deserialisation
        except Exception:  # noqa: BLE001 - a foreign model does not need them
            pass
        import keras
        try:
            return keras.saving.load_model(self.model_path, compile=False)
        except Exception as exc:  # noqa: BLE001
            msg = " ".join(str(exc).split())[:300]
            raise SourceError(f"{self.model_path}: cannot load the Keras model ({msg})") from None


def open_source(path):
    """A run folder or a ``.keras`` file -> ``Source``; raises ``SourceError``."""
    path = Path(path)
    if path.is_dir():
        model = next((path / m for m in MODEL_FILES if (path / m).is_file()), None)
        if model is None:
            raise SourceError(f"{path}: run folder has no {' or '.join(MODEL_FILES)}")
        cfg_path = path / "config.json"
        config = _read_json(cfg_path) if cfg_path.is_file() else {}
        report = _read_json(path / "report.json") if (path / "report.json").is_file() else None
        refuse_context_run(path, config, "a bundle", SourceError)
        return Source(model, path.resolve().name, config, report, path)
    if path.is_file():
        if path.suffix != ".keras":
            raise SourceError(f"{path}: expected a run folder or a .keras file, "
                              f"got a {path.suffix or 'suffix-less'} file")
        cfg_path = path.parent / "config.json"
        config = _read_json(cfg_path) if cfg_path.is_file() else {}
        refuse_context_run(path, config, "a bundle", SourceError)
        return Source(path, path.parent.name if config else path.stem, config, None,
                      path.parent if config else None)
    raise SourceError(f"{path}: no such run folder or .keras file")


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path}: cannot read JSON ({exc})") from None
