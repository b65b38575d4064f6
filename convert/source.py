"""What ``edge-seg convert`` converts: a training run folder or a bare ``.keras`` file.

A run folder ``runs/NAME/`` (written by ``edge-seg train``) holds ``config.json`` (variant,
preset, preprocessing, data folders, split seed and validation families), ``best.keras`` and
maybe ``report.json``. From it come the model, its preprocessing, the validation scans for the
accuracy gate and the training scans for int8 calibration. A bare ``.keras`` file has no
config: preprocessing defaults to the model's input size, and the scans come from ``--data``
folders split by family with seed 0 (validation for the gate, training for calibration).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.datasets import discover, split_by_family
from edge_runtime.errors import EdgeSegError
from edge_runtime.preprocess import Preprocessing

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
        if size is None and model is not None:
            size = model.inputs[0].shape[1]
        if size is None:
            raise SourceError(f"{self.model_path}: no preprocessing in a config.json and the "
                              "model's input size is not fixed; convert a run folder instead")
        return Preprocessing(input_size=int(size))

    @property
    def split_seed(self):
        split = self.config.get("split") if isinstance(self.config.get("split"), dict) else {}
        return int(_first(split, "seed", default=_first(self.config, "split_seed", "seed",
                                                         default=0)))

    @property
    def val_fraction(self):
        split = self.config.get("split") if isinstance(self.config.get("split"), dict) else {}
        return float(_first(split, "val_fraction",
                            default=_first(self.config, "val_fraction", default=0.2)))

    @property
    def val_families(self):
        split = self.config.get("split") if isinstance(self.config.get("split"), dict) else {}
        fams = _first(split, "val_families", default=_first(self.config, "val_families"))
        return None if fams is None else set(map(str, fams))

    def threshold(self, default=0.5):
        return float(_first(self.config, "threshold",
                            default=_first(self.report or {}, "threshold", default=default)))

    def min_area_fraction(self, default):
        return float(_first(self.config, "min_area_fraction",
                            default=_first(self.report or {}, "min_area_fraction",
                                           default=default)))

    def data_dirs(self):
        """Labelled and tumour-free folders the run trained on (paths as recorded)."""
        data = self.config.get("data") if isinstance(self.config.get("data"), dict) else {}
        dirs = (_as_list(_first(data, "dirs", "data_dirs", "labelled", "labeled"))
                + _as_list(_first(data, "negatives", "negative_dirs", "tumour_free")))
        if not dirs:
            dirs = (_as_list(_first(self.config, "data_dirs", "data", "dataset_dirs"))
                    + _as_list(_first(self.config, "negatives", "negative_dirs",
                                      "negatives_dirs", "tumour_free_dirs")))
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
        """-> (train samples, validation samples, {dataset info}) from the data folders."""
        dirs = [Path(d) for d in (data_dirs or self.data_dirs())]
        if not dirs:
            raise SourceError(f"{self.model_path}: no data folders recorded in config.json; "
                              "pass --data DIR (labelled scans) [--data DIR ...]")
        samples, layouts = [], []
        for d in dirs:
            try:
                layout, found = discover(d)
            except ValueError as exc:
                raise SourceError(f"--data {d}: {exc}") from None
            layouts.append({"path": str(d), "layout": layout, "scans": len(found)})
            samples.extend(found)
        fams = self.val_families
        if fams is not None:
            val = [s for s in samples if (s.family or s.key) in fams]
            train = [s for s in samples if (s.family or s.key) not in fams]
        else:
            train, val = split_by_family(samples, self.val_fraction, self.split_seed)
        info = {"folders": layouts,
                "patients": len({s.patient for s in samples if s.mask is not None}),
                "families": len({s.family for s in samples if s.mask is not None}),
                "tumour_free_scans": sum(1 for s in samples if s.mask is None),
                "train_scans": len(train), "val_scans": len(val),
                "val_families_from": "config.json" if fams is not None else
                f"split_by_family(val_fraction={self.val_fraction}, seed={self.split_seed})"}
        return train, val, info

    # ----------------------------------------------------------- model
    def load_model(self):
        """Load the Keras model (registers the project's custom layers first)."""
        try:
            import train.models  # noqa: F401 - registers custom layers for deserialisation
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
        return Source(model, path.resolve().name, config, report, path)
    if path.is_file():
        if path.suffix != ".keras":
            raise SourceError(f"{path}: expected a run folder or a .keras file, "
                              f"got a {path.suffix or 'suffix-less'} file")
        cfg_path = path.parent / "config.json"
        config = _read_json(cfg_path) if cfg_path.is_file() else {}
        return Source(path, path.parent.name if config else path.stem, config, None,
                      path.parent if config else None)
    raise SourceError(f"{path}: no such run folder or .keras file")


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path}: cannot read JSON ({exc})") from None
