"""Model bundles: one file that carries a model and everything needed to run it correctly.

A bundle is a zip archive (or an unpacked folder with the same files) holding exactly:

- ``model.tflite``: the TFLite model (input ``(1, S, S, 1)`` float32, output the same shape:
  the sigmoid probability of tumour);
- ``manifest.json``: how to run it (``schema_version`` 2; 1 is still read: keys below);
- ``MODEL_CARD.md``: what it is for, how it was trained and evaluated, its limits.

Manifest keys: schema_version, name, variant, preset, format, input {shape, dtype},
preprocessing (``Preprocessing.to_dict``), output {shape, dtype, meaning}, threshold,
min_area_fraction, min_peak_probability (new in schema 2; absent = 0, no peak filter: see
``postprocess.postprocess``), metrics {float, converted, drop}, training {dataset, patients, split_seed,
...}, interpreters_verified, model_sha256, created, edge_seg_version. Required:
``REQUIRED_KEYS``; the rest are informational but type-checked when present.

Loading trusts nothing: archive members (or the files of an unpacked folder) must be exactly
the three names (no other file, absolute paths, ``..``, symlinks, directories, duplicates or
encryption), sizes are bounded before and while reading, only regular files are opened (a FIFO
named ``model.zip`` is refused, not read), the manifest is strict JSON (no duplicate keys, no
NaN/Infinity, integers of at most ``MAX_JSON_INT_DIGITS`` digits, nesting of at most
``MAX_JSON_DEPTH``; nothing is unpickled), its schema is validated, and ``model.tflite`` must
match ``model_sha256``. Every refusal is a one-line ``BundleError``. A bare ``.tflite`` can be
loaded for experiments (with a warning), with the run settings given as overrides.

Integrity against tampering is not the job of ``model_sha256`` (whoever edits the manifest can
recompute it) but of ``Bundle.digest``, a sha256 over every member, which the commands check
against a trust list (``edge_runtime.trust``).
"""

import datetime
import hashlib
import io
import json
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime import __version__, atomic
from edge_runtime.errors import BundleError
from edge_runtime.formats import get_format
from edge_runtime.preprocess import Preprocessing
from edge_runtime.safeio import NotRegularFileError, open_regular, read_regular, shown

SCHEMA_VERSION = 2
# Versions this runtime reads. 2 added min_peak_probability: a runtime that reads only 1
# refuses a version-2 bundle rather than silently skipping its peak filter.
READ_SCHEMA_VERSIONS = (1, 2)
MODEL_NAME = "model.tflite"
MANIFEST_NAME = "manifest.json"
CARD_NAME = "MODEL_CARD.md"
MEMBERS = (MODEL_NAME, MANIFEST_NAME, CARD_NAME)
MAX_MODEL_BYTES = 512 * 1024 * 1024          # model.tflite, uncompressed
MAX_TEXT_BYTES = 1024 * 1024                 # manifest.json and MODEL_CARD.md each
MAX_TOTAL_BYTES = MAX_MODEL_BYTES + 2 * MAX_TEXT_BYTES
MEMBER_LIMITS = {MODEL_NAME: MAX_MODEL_BYTES, MANIFEST_NAME: MAX_TEXT_BYTES,
                 CARD_NAME: MAX_TEXT_BYTES}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)             # fixed member dates: same inputs, same bytes
MAX_JSON_DEPTH = 32                          # nesting of objects/lists in a manifest
MAX_JSON_INT_DIGITS = 64                     # digits of one integer in a manifest

# key -> allowed JSON types
REQUIRED_KEYS = {
    "schema_version": (int,),
    "name": (str,),
    "format": (str,),
    "input": (dict,),
    "preprocessing": (dict,),
    "threshold": (int, float),
    "min_area_fraction": (int, float),
    "model_sha256": (str,),
}
OPTIONAL_KEYS = {
    "min_peak_probability": (int, float),
    "variant": (str, type(None)),
    "preset": (str, type(None)),
    "output": (dict,),
    "metrics": (dict, type(None)),
    "training": (dict, type(None)),
    "interpreters_verified": (list,),
    "created": (str,),
    "edge_seg_version": (str,),
}
_TYPE_NAMES = {int: "integer", float: "number", str: "string", dict: "object", list: "list",
               type(None): "null"}

DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_AREA_FRACTION = 0.0005   # 33 px of a 256x256 scan
DEFAULT_MIN_PEAK_PROBABILITY = 0.0   # no peak filter


@dataclass
class Bundle:
    path: Path
    manifest: dict
    model_bytes: bytes = field(repr=False)
    model_card: str = field(default="", repr=False)
    kind: str = "zip"                      # "zip", "folder" or "tflite"
    warnings: list = field(default_factory=list)
    digest: str = ""                       # bundle_digest of its members (what trust pins)

    @property
    def preprocessing(self):
        return Preprocessing.from_dict(self.manifest["preprocessing"])

    @property
    def threshold(self):
        return float(self.manifest["threshold"])

    @property
    def min_area_fraction(self):
        return float(self.manifest["min_area_fraction"])

    @property
    def min_peak_probability(self):
        return float(self.manifest.get("min_peak_probability", DEFAULT_MIN_PEAK_PROBABILITY))

    @property
    def name(self):
        return self.manifest["name"]

    @property
    def sha256(self):
        return self.manifest["model_sha256"]

    @property
    def format(self):
        return self.manifest["format"]

    @property
    def input_size(self):
        return self.preprocessing.input_size


def default_bundle_path():
    """The bundle shipped with the package: ``edge_runtime/models/default.zip``."""
    return Path(__file__).resolve().parent / "models" / "default.zip"


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    """sha256 (hex) of a file's bytes, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bundle_digest(members):
    """{member name: bytes} -> the bundle's digest: the sha256 of the lines
    ``"<sha256 of member>  <name>\\n"`` in sorted name order (``sha256sum`` output, so
    ``sha256sum MODEL_CARD.md manifest.json model.tflite | sha256sum`` in an unpacked bundle
    gives the same value). A zip and its unpacked folder have the same digest; a bare
    ``.tflite`` is the one member ``model.tflite``. Changing any byte of any member (the
    manifest included) changes it."""
    lines = "".join(f"{sha256_hex(members[name])}  {name}\n" for name in sorted(members))
    return sha256_hex(lines.encode("utf-8"))


class _StrictJSON:
    def __init__(self, where, what):
        self.where, self.what = where, what

    def fail(self, problem):
        raise BundleError(f"{self.where}: {self.what} {problem}")

    def pairs(self, items):
        out = {}
        for key, value in items:
            if key in out:
                self.fail(f"has the key {shown(key)} twice (duplicate JSON keys are refused)")
            out[key] = value
        return out

    def integer(self, text):
        if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
            self.fail(f"has an integer of {len(text.lstrip('-'))} digits; the limit is "
                      f"{MAX_JSON_INT_DIGITS}")
        return int(text)

    def constant(self, name):
        self.fail(f"contains {name}, which is not JSON")


def _depth(value):
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json_strict(raw, where, what=MANIFEST_NAME):
    """Bytes of a small JSON document from an untrusted source -> the value.

    Refused (``BundleError``, one line, naming ``where`` and ``what``): not UTF-8, not JSON,
    duplicate keys, NaN/Infinity, an integer of more than ``MAX_JSON_INT_DIGITS`` digits,
    nesting deeper than ``MAX_JSON_DEPTH``."""
    strict = _StrictJSON(where, what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        strict.fail("is not valid JSON (not UTF-8 text)")
    try:
        value = json.loads(text, object_pairs_hook=strict.pairs, parse_int=strict.integer,
                           parse_constant=strict.constant)
    except json.JSONDecodeError as exc:
        strict.fail(f"is not valid JSON ({exc})")
    except RecursionError:
        strict.fail(f"is nested too deeply (the limit is {MAX_JSON_DEPTH})")
    except ValueError as exc:  # e.g. Python's own integer string limit
        strict.fail(f"cannot be read ({' '.join(str(exc).split())[:120]})")
    if _depth(value) > MAX_JSON_DEPTH:
        strict.fail(f"is nested too deeply (the limit is {MAX_JSON_DEPTH})")
    return value


def io_spec(input_size):
    shape = [1, int(input_size), int(input_size), 1]
    return ({"shape": shape, "dtype": "float32"},
            {"shape": list(shape), "dtype": "float32", "meaning": "sigmoid probability of tumour"})


def make_manifest(name, fmt, preprocessing, threshold=DEFAULT_THRESHOLD,
                  min_area_fraction=DEFAULT_MIN_AREA_FRACTION,
                  min_peak_probability=DEFAULT_MIN_PEAK_PROBABILITY, **extra):
    """A manifest dict with the required keys filled in (model_sha256 is set by write_bundle).

    ``preprocessing`` is a ``Preprocessing`` or its dict; ``extra`` adds the informational keys
    (variant, preset, metrics, training, interpreters_verified, ...).
    """
    if isinstance(preprocessing, Preprocessing):
        preprocessing = preprocessing.to_dict()
    spec = Preprocessing.from_dict(preprocessing)
    inp, out = io_spec(spec.input_size)
    manifest = {"schema_version": SCHEMA_VERSION, "name": name, "format": fmt,
                "input": inp, "preprocessing": spec.to_dict(), "output": out,
                "threshold": float(threshold), "min_area_fraction": float(min_area_fraction),
                "min_peak_probability": float(min_peak_probability)}
    manifest.update(extra)
    return manifest


def _type_names(types):
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _check_type(where, key, value, types):
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        raise BundleError(f"{where}: manifest key {key!r} must be {_type_names(types)}, "
                          f"got {type(value).__name__} {value!r:.60}")


def validate_manifest(manifest, where="manifest"):
    """Check a manifest's schema; raises ``BundleError`` with what was received and allowed."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: manifest must be a JSON object, got {type(manifest).__name__}")
    version = manifest.get("schema_version")
    if version not in READ_SCHEMA_VERSIONS or isinstance(version, bool):
        raise BundleError(f"{where}: unknown manifest schema_version {version!r}; "
                          f"this edge-seg {__version__} reads schema_version "
                          f"{' or '.join(map(str, READ_SCHEMA_VERSIONS))}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{where}: manifest is missing required keys {missing}")
    for key, types in REQUIRED_KEYS.items():
        _check_type(where, key, manifest[key], types)
    for key, types in OPTIONAL_KEYS.items():
        if key in manifest:
            _check_type(where, key, manifest[key], types)
    if not manifest["name"].strip():
        raise BundleError(f"{where}: manifest 'name' must not be empty")
    try:
        get_format(manifest["format"])
    except ValueError as exc:
        raise BundleError(f"{where}: {exc}") from None
    try:
        spec = Preprocessing.from_dict(manifest["preprocessing"])
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{where}: bad preprocessing: {exc}") from None
    threshold = float(manifest["threshold"])
    if not 0.0 < threshold < 1.0:
        raise BundleError(f"{where}: threshold must be in (0, 1), got {threshold}")
    fraction = float(manifest["min_area_fraction"])
    if not 0.0 <= fraction < 1.0:
        raise BundleError(f"{where}: min_area_fraction must be in [0, 1), got {fraction}")
    peak = float(manifest.get("min_peak_probability", DEFAULT_MIN_PEAK_PROBABILITY))
    if not 0.0 <= peak < 1.0:
        raise BundleError(f"{where}: min_peak_probability must be in [0, 1), got {peak}")
    want = [1, spec.input_size, spec.input_size, 1]
    shape = manifest["input"].get("shape")
    if shape != want:
        raise BundleError(f"{where}: input shape {shape!r} does not match preprocessing "
                          f"input_size {spec.input_size} (expected {want})")
    dtype = manifest["input"].get("dtype", "float32")
    if dtype != "float32":
        raise BundleError(f"{where}: input dtype must be 'float32', got {dtype!r}")
    sha = manifest["model_sha256"]
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise BundleError(f"{where}: model_sha256 must be 64 lowercase hex digits, got {sha!r:.80}")
    return manifest


def _check_model_bytes(where, model_bytes, manifest=None):
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise BundleError(f"{where}: {MODEL_NAME} is not a TFLite model (no TFL3 identifier)")
    if manifest is not None:
        actual = sha256_hex(model_bytes)
        if actual != manifest["model_sha256"]:
            raise BundleError(
                f"{where}: {MODEL_NAME} sha256 {actual[:16]}... does not match the manifest's "
                f"{manifest['model_sha256'][:16]}... (tampered or corrupted bundle)")


def _parse_manifest(where, raw):
    return validate_manifest(parse_json_strict(raw, where, MANIFEST_NAME), where)


# ---------------------------------------------------------------------- reading

def _safe_member_name(where, info):
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise BundleError(f"{where}: archive member {shown(name)} has an absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise BundleError(f"{where}: archive member {shown(name)} escapes the archive ('..')")
    mode = (info.external_attr >> 16) & 0o170000
    if mode == stat.S_IFLNK:
        raise BundleError(f"{where}: archive member {shown(name)} is a symbolic link")
    if info.is_dir() or (mode and mode != stat.S_IFREG):
        raise BundleError(f"{where}: archive member {shown(name)} is not a regular file")
    if name not in MEMBERS:
        raise BundleError(f"{where}: unexpected archive member {shown(name)}; "
                          f"allowed: {', '.join(MEMBERS)}")
    if info.flag_bits & 0x1:
        raise BundleError(f"{where}: archive member {name!r} is encrypted")
    limit = MEMBER_LIMITS[name]
    if info.file_size > limit:
        raise BundleError(f"{where}: archive member {name!r} is {info.file_size} bytes "
                          f"uncompressed; the limit is {limit}")


def _read_zip(path):
    where = shown(path)
    try:
        fh = open_regular(path)
    except NotRegularFileError as exc:
        raise BundleError(f"{where}: {exc.problem}; refused without reading it") from None
    except PermissionError:
        raise
    except OSError as exc:
        raise BundleError(f"{where}: cannot open ({exc.strerror or exc})") from None
    with fh:
        return _read_zip_file(where, fh)


def _read_zip_file(where, fh):
    if not zipfile.is_zipfile(fh):
        raise BundleError(f"{where}: not a zip archive (truncated or not a bundle)")
    fh.seek(0)
    try:
        with zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
            for info in infos:
                _safe_member_name(where, info)
            names = [i.filename for i in infos]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise BundleError(f"{where}: duplicate archive members "
                                  f"{', '.join(map(shown, dupes))}")
            missing = [m for m in MEMBERS if m not in names]
            if missing:
                raise BundleError(f"{where}: bundle is missing {', '.join(missing)}")
            total = sum(i.file_size for i in infos)
            if total > MAX_TOTAL_BYTES:
                raise BundleError(f"{where}: bundle unpacks to {total} bytes; "
                                  f"the limit is {MAX_TOTAL_BYTES}")
            data = {}
            for info in infos:
                limit = MEMBER_LIMITS[info.filename]
                with zf.open(info) as fh:     # bounded read: sizes in headers can lie
                    raw = fh.read(limit + 1)
                if len(raw) > limit:
                    raise BundleError(f"{where}: archive member {info.filename!r} "
                                      f"exceeds {limit} bytes when unpacked")
                data[info.filename] = raw
    except BundleError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError, RuntimeError) as exc:
        raise BundleError(f"{where}: damaged bundle archive ({' '.join(str(exc).split())[:200]})"
                          ) from None
    return data


def _read_folder(path):
    """An unpacked bundle: exactly the three member files, like a zip (anything else in the
    folder, hidden files included, is refused)."""
    where = shown(path)
    try:
        entries = sorted(os.listdir(path))
    except OSError as exc:
        raise BundleError(f"{where}: cannot list bundle folder ({exc.strerror or exc})") from None
    extra = [e for e in entries if e not in MEMBERS]
    if extra:
        raise BundleError(f"{where}: unexpected file {shown(extra[0])} in the bundle folder"
                          f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}; "
                          f"allowed: {', '.join(MEMBERS)}")
    data = {}
    for name in MEMBERS:
        member = path / name
        if member.is_symlink():
            raise BundleError(f"{where}: {name} is a symbolic link")
        if not member.exists():
            raise BundleError(f"{where}: bundle folder is missing {name}")
        try:
            data[name] = read_regular(member, MEMBER_LIMITS[name])
        except NotRegularFileError as exc:
            raise BundleError(f"{where}: {name} {exc.problem}; refused without reading it"
                              ) from None
        except ValueError as exc:
            raise BundleError(f"{where}: {name} {exc}") from None
        except OSError as exc:
            raise BundleError(f"{where}: cannot read {name} ({exc.strerror or exc})") from None
    return data


def _bare_tflite(path, overrides):
    where = shown(path)
    try:
        model_bytes = read_regular(path, MAX_MODEL_BYTES)
    except NotRegularFileError as exc:
        raise BundleError(f"{where}: {exc.problem}; refused without reading it") from None
    except ValueError as exc:
        raise BundleError(f"{where}: model {exc}") from None
    except PermissionError:
        raise
    except OSError as exc:
        raise BundleError(f"{where}: cannot read ({exc.strerror or exc})") from None
    _check_model_bytes(where, model_bytes)
    input_size = overrides.get("input_size")
    if input_size is None:  # read it from the model itself
        from edge_runtime.interpreter import input_shape, make_interpreter
        shape = input_shape(make_interpreter(model_bytes, threads=1, label=path))
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
            raise BundleError(f"{where}: model input shape {shape} is not (1, S, S, 1)")
        input_size = shape[1]
    spec = {"input_size": int(input_size)}
    for key in ("low_percentile", "high_percentile"):
        if overrides.get(key) is not None:
            spec[key] = overrides[key]
    try:
        spec = Preprocessing.from_dict(spec)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{where}: {exc}") from None
    manifest = make_manifest(
        overrides.get("name") or path.stem, overrides.get("format") or "fp32", spec,
        threshold=overrides.get("threshold") or DEFAULT_THRESHOLD,
        min_area_fraction=(DEFAULT_MIN_AREA_FRACTION if overrides.get("min_area_fraction") is None
                           else overrides["min_area_fraction"]),
        min_peak_probability=(DEFAULT_MIN_PEAK_PROBABILITY
                              if overrides.get("min_peak_probability") is None
                              else overrides["min_peak_probability"]),
        model_sha256=sha256_hex(model_bytes))
    validate_manifest(manifest, where)
    warning = (f"{where} is a bare .tflite, not a verified bundle: input size {spec.input_size}, "
               f"threshold {manifest['threshold']}, min_area_fraction "
               f"{manifest['min_area_fraction']}, min_peak_probability "
               f"{manifest['min_peak_probability']} come from flags/defaults, not from training")
    return Bundle(path, manifest, model_bytes, "", "tflite", [warning],
                  bundle_digest({MODEL_NAME: model_bytes}))


RUN_OVERRIDES = ("threshold", "min_area_fraction", "min_peak_probability")
BARE_OVERRIDES = ("input_size", "low_percentile", "high_percentile", "name", "format")


def load_bundle(path=None, **overrides):
    """Load and verify a bundle -> ``Bundle``; raises ``BundleError`` (one line) on any problem.

    ``path``: a bundle .zip, an unpacked bundle folder, or a bare ``.tflite`` (then
    ``input_size``, ``threshold``, ``min_area_fraction``, ``min_peak_probability``,
    ``low_percentile``,
    ``high_percentile``, ``name``, ``format`` may be given; the input size is read from the
    model when omitted). None means ``default_bundle_path()``. ``threshold``,
    ``min_area_fraction`` and ``min_peak_probability`` also override a real bundle's values (recorded in ``.warnings``).
    """
    unknown = sorted(set(overrides) - set(RUN_OVERRIDES) - set(BARE_OVERRIDES))
    if unknown:
        raise TypeError(f"unknown load_bundle overrides {unknown}; "
                        f"allowed: {sorted(RUN_OVERRIDES + BARE_OVERRIDES)}")
    if path is None:
        path = default_bundle_path()
        if not path.is_file():
            raise BundleError(f"no default model bundle is installed ({path} does not exist); "
                              "pass one with --bundle PATH")
    path = Path(path)
    where = shown(path)
    if not path.exists():
        raise BundleError(f"{where}: bundle not found")
    if path.is_symlink() and path.is_dir():
        raise BundleError(f"{where}: bundle folder is a symbolic link")
    try:
        if path.is_dir():
            data, kind = _read_folder(path), "folder"
        elif path.suffix.lower() == ".tflite":
            return _apply_run_overrides(_bare_tflite(path, overrides), overrides, bare=True)
        else:
            data, kind = _read_zip(path), "zip"
    except PermissionError:
        raise BundleError(f"{where}: cannot read bundle (permission denied)") from None
    bare_given = [k for k in BARE_OVERRIDES if overrides.get(k) is not None]
    manifest = _parse_manifest(where, data[MANIFEST_NAME])
    if bare_given:
        if overrides.get("input_size") not in (None, manifest["preprocessing"]["input_size"]):
            raise BundleError(
                f"{where}: input size {overrides['input_size']} given, but the bundle's model "
                f"takes {manifest['preprocessing']['input_size']}; --input-size and the other "
                "preprocessing flags apply only to a bare .tflite")
    _check_model_bytes(where, data[MODEL_NAME], manifest)
    try:
        card = data[CARD_NAME].decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{where}: {CARD_NAME} is not UTF-8 text") from None
    return _apply_run_overrides(Bundle(path, manifest, data[MODEL_NAME], card, kind,
                                       digest=bundle_digest(data)), overrides, bare=False)


def _apply_run_overrides(bundle, overrides, bare):
    changed = []
    for key in RUN_OVERRIDES:
        value = overrides.get(key)
        if value is None:
            continue
        current = getattr(bundle, key)
        if not bare and float(value) != current:
            changed.append(f"{key} {current} -> {value}")
        bundle.manifest[key] = float(value)
    if changed:
        validate_manifest(bundle.manifest, shown(bundle.path))
        bundle.warnings.append(f"{shown(bundle.path)}: overriding the bundle's verified "
                               f"{', '.join(changed)}")
    return bundle


# ---------------------------------------------------------------------- writing

def _zip_member(name, data):
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info, data


def write_bundle(path, model_bytes, manifest, model_card):
    """Write a bundle zip atomically -> its ``Path``.

    Sets ``model_sha256`` from ``model_bytes`` and fills ``schema_version``, ``input``/``output``
    (from the preprocessing), ``created`` and ``edge_seg_version`` when absent; the result is
    validated exactly as ``load_bundle`` would before anything is written. The zip is written
    to a temporary file in the target folder and moved into place with ``os.replace``, so a
    reader never sees a half-written bundle.
    """
    path = Path(path)
    model_bytes = bytes(model_bytes)
    manifest = dict(manifest)
    manifest.setdefault("schema_version", SCHEMA_VERSION)
    if isinstance(manifest.get("preprocessing"), Preprocessing):
        manifest["preprocessing"] = manifest["preprocessing"].to_dict()
    if isinstance(manifest.get("preprocessing"), dict):
        size = manifest["preprocessing"].get("input_size")
        if isinstance(size, int):
            inp, out = io_spec(size)
            manifest.setdefault("input", inp)
            manifest.setdefault("output", out)
    manifest["model_sha256"] = sha256_hex(model_bytes)
    manifest.setdefault("created", datetime.datetime.now(datetime.timezone.utc)
                        .replace(microsecond=0).isoformat())
    manifest.setdefault("edge_seg_version", __version__)
    validate_manifest(manifest, str(path))
    _check_model_bytes(str(path), model_bytes)
    if len(model_bytes) > MAX_MODEL_BYTES:
        raise BundleError(f"{path}: model is {len(model_bytes)} bytes; the limit is {MAX_MODEL_BYTES}")
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode("utf-8")
    card_bytes = (model_card or "").encode("utf-8")
    for name, data in ((MANIFEST_NAME, manifest_bytes), (CARD_NAME, card_bytes)):
        if len(data) > MAX_TEXT_BYTES:
            raise BundleError(f"{path}: {name} is {len(data)} bytes; the limit is {MAX_TEXT_BYTES}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in ((MANIFEST_NAME, manifest_bytes), (MODEL_NAME, model_bytes),
                           (CARD_NAME, card_bytes)):
            info, data = _zip_member(name, data)
            zf.writestr(info, data)
    atomic.write_bytes(path, buf.getvalue())
    return path
