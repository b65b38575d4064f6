"""A device benchmark kit: a folder of verified bundles and a manifest that says what each is.

A kit is what a machine with only the device install needs to rebuild the paper's table
(``edge-seg bench KIT --suite paper``): ``kit.json`` plus ``models/*.zip``. Each entry of
``kit.json`` names one model, its role, where its accuracy comes from, and either its file
(with the sha256 of the zip) or why it is missing and the command that would make it::

    {"kit_schema": 1, "suite": "paper", "created": ..., "edge_seg_version": ...,
     "note": ..., "entries": [
       {"id": "shipped", "role": "shipped", "name": ..., "variant": ..., "format": "drq",
        "weights": "trained", "accuracy_from": "...", "file": "models/shipped.zip",
        "sha256": "...", "bytes": 1031234, "parameters": ..., "gflop": 3.47, ...},
       {"id": "resunet_edge_fp32", "role": "variant", "format": "fp32", "status": "missing",
        "reason": "...", "make": "edge-seg convert runs/resunet_edge --all --out ..."}]}

Roles: ``shipped`` (the default bundle), ``variant`` (a paper variant, trained), and
``paper-reference`` (the paper-size Res-UNet+AG, random weights: speed and size only).
An entry may name a file that this copy of the kit does not hold (a reference too big to
commit): ``absent_note`` then says where it comes from. A random-weight entry may instead be
**seeded**: ``seeded_from`` names a committed template (the same bundle with every filter set
to zero: a few hundred KB) and a seed, and ``load_kit(..., materialize=True)`` (what
``edge-seg bench KIT`` does) regenerates the full bundle from them
(``edge_runtime.bench.modelfile.seeded_weights``: the same bytes on every machine) and
checks its model's sha256 against ``model_sha256``. ``load_kit`` resolves every entry to ``ok`` (file
present, sha256 matches, bundle loads), ``missing`` (with the reason) or ``FAILED`` (why);
nothing is dropped silently.

``add_bundle`` / ``missing_entry`` / ``write_kit`` assemble a kit from bundles that exist
(no TensorFlow needed); ``python -m bench.kit`` is the workstation command that also builds
the paper-size references.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edge_runtime.bundle import sha256_file
from edge_runtime.errors import EXIT_USAGE, EdgeSegError

KIT_MANIFEST = "kit.json"
KIT_SCHEMA = 1
MODELS_DIR = "models"
ROLES = ("shipped", "variant", "paper-reference")
SUITES = ("paper",)


class KitError(EdgeSegError):
    """A kit folder that cannot be read (no kit.json, bad JSON, bad entries): a usage error."""

    exit_code = EXIT_USAGE



def _one_line(exc):
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]


def accuracy_from_manifest(manifest, which="converted"):
    """The accuracy a bundle's conversion gate recorded -> dict (``dice``, ``miou_2class``,
    ``fp_scan_rate``, ``dice_drop`` (float Dice - converted Dice, the gate's metric),
    ``accuracy_from``) or None when the manifest records none (a random-weight reference)."""
    metrics = (manifest or {}).get("metrics") or {}
    m = metrics.get(which) or {}
    if not isinstance(m, dict) or not m:
        return None
    miou = m.get("miou_2class_tumour_scans")
    if miou is None:
        miou = m.get("miou_2class")
    scans = metrics.get("scans")
    out = {"dice": m.get("dice"), "miou_2class": miou, "fp_scan_rate": m.get("fp_scan_rate"),
           "accuracy_from": (f"gate ({scans} {metrics.get('split') or 'validation'} scans)"
                             if scans else "gate")}
    gate = metrics.get("gate")
    if which == "converted" and isinstance(gate, dict) and gate.get("metric") == "dice_mean":
        out["dice_drop"] = gate.get("drop")
    return out


# ----------------------------------------------------------------------------- writing

def add_bundle(kit_dir, source, entry_id, role, *, accuracy_from=None, absent_note=None,
               **extra):
    """Copy the bundle ``source`` into ``kit_dir/models/<entry_id>.zip`` after verifying it
    (``load_bundle``: checksums, manifest) -> its kit entry (dict). Raises KitError naming the
    file when it is not a valid bundle zip."""
    from edge_runtime import atomic
    from edge_runtime.bench.modelfile import model_gflop
    from edge_runtime.bundle import load_bundle
    if role not in ROLES:
        raise KitError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    source = Path(source)
    try:
        if not source.is_file() or source.suffix != ".zip":
            raise ValueError("not a bundle .zip file")
        bundle = load_bundle(source)
    except Exception as exc:  # noqa: BLE001 - one line naming the file
        raise KitError(f"{source}: cannot add to the kit ({_one_line(exc)})") from None
    data = source.read_bytes()
    rel = f"{MODELS_DIR}/{entry_id}.zip"
    dest = Path(kit_dir) / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not (dest.is_file() and sha256_file(dest) == hashlib.sha256(data).hexdigest()):
        atomic.write_bytes(dest, data)
    m = bundle.manifest
    if accuracy_from is None:
        metrics = m.get("metrics") or {}
        accuracy_from = ((f"the bundle's conversion gate ({metrics['scans']} "
                          f"{metrics.get('split') or 'validation'} scans)"
                          if metrics.get("scans") else "the bundle's conversion gate")
                         if accuracy_from_manifest(m) else "none recorded in the bundle")
    entry = {
        "id": entry_id, "role": role, "status": "present", "name": m.get("name"),
        "variant": m.get("variant"), "preset": m.get("preset"), "format": m.get("format"),
        "run": (m.get("source") or {}).get("run") if isinstance(m.get("source"), dict) else None,
        "weights": "trained" if role != "paper-reference" else "random",
        "accuracy_from": accuracy_from, "file": rel,
        "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "model_sha256": bundle.sha256, "input_size": bundle.preprocessing.input_size,
        "parameters": m.get("parameters"),
        "gflop": model_gflop(bundle.model_bytes, m),
    }
    if absent_note:
        entry["absent_note"] = absent_note
    entry.update(extra)
    return entry


def write_seeded_template(path, bundle_path):
    """The template of the random-weight bundle at ``bundle_path`` (every filter zero, the
    rest kept) written to ``path`` -> its Path. ``materialize_seeded`` turns it back into a
    full bundle."""
    from edge_runtime.bench.modelfile import seeded_weights
    from edge_runtime.bundle import load_bundle, write_bundle
    b = load_bundle(bundle_path)
    manifest = {k: v for k, v in b.manifest.items() if k != "model_sha256"}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_bundle(path, seeded_weights(b.model_bytes, zero=True), manifest, b.model_card)


def materialize_seeded(template, seed, out, scheme=None):
    """The full random-weight bundle from a ``write_seeded_template`` template: every filter
    filled from ``seed`` (``scheme``), written atomically to ``out`` -> its Path. The same
    template and seed give the same model bytes (the sha256 a kit pins) on every machine."""
    from edge_runtime.bench.modelfile import SEEDED_SCHEME, seeded_weights
    from edge_runtime.bundle import load_bundle, write_bundle
    if scheme not in (None, SEEDED_SCHEME):
        raise KitError(f"{template}: seeded scheme {scheme!r} is not known here; allowed: "
                       f"{SEEDED_SCHEME} (a newer edge-seg made this kit?)")
    b = load_bundle(template)
    manifest = {k: v for k, v in b.manifest.items() if k != "model_sha256"}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return write_bundle(out, seeded_weights(b.model_bytes, int(seed)), manifest, b.model_card)


def missing_entry(entry_id, role, *, reason, make, **extra):
    """A kit entry for a model the kit should hold but does not: why, and the command that
    would make it."""
    if role not in ROLES:
        raise KitError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return {"id": entry_id, "role": role, "status": "missing", "reason": reason, "make": make,
            **extra}


def write_kit(kit_dir, entries, suite="paper", note=None, **extra):
    """Write ``kit_dir/kit.json`` (atomically) -> its path. Entry ids must be unique."""
    from edge_runtime import __version__, atomic
    if suite not in SUITES:
        raise KitError(f"suite must be one of {', '.join(SUITES)}, got {suite!r}")
    ids = [e["id"] for e in entries]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise KitError(f"kit entry ids must be unique, got {', '.join(dupes)} twice")
    manifest = {"kit_schema": KIT_SCHEMA, "suite": suite,
                "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
                "edge_seg_version": __version__, "note": note, **extra,
                "entries": list(entries)}
    path = Path(kit_dir) / KIT_MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, manifest)
    return path


# ----------------------------------------------------------------------------- reading

@dataclass
class KitModel:
    """One kit entry resolved on this machine: ``status`` is ``ok``, ``missing`` or
    ``FAILED``; ``path`` is the bundle file when it is present; ``reason`` says why not ok."""

    entry: dict
    status: str
    path: Path = None
    reason: str = ""
    make: str = ""

    @property
    def id(self):
        return self.entry["id"]

    @property
    def role(self):
        return self.entry["role"]


@dataclass
class Kit:
    path: Path
    manifest: dict
    models: list = field(default_factory=list)

    @property
    def suite(self):
        return self.manifest.get("suite")


REQUIRED_ENTRY_KEYS = ("id", "role")


def is_kit(path):
    """True when ``path`` is a folder with a kit.json."""
    return Path(path).is_dir() and (Path(path) / KIT_MANIFEST).is_file()


def load_kit(kit_dir, verify=True, materialize=False, log=None):
    """Read ``kit_dir/kit.json`` and resolve every entry (see ``KitModel``) -> Kit.

    Raises KitError (one line naming the folder) when there is no readable kit manifest.
    ``verify``: check each present file's sha256 against the manifest and load it as a bundle
    (a mismatch or a bundle that does not load makes that entry FAILED, not the kit).
    ``materialize``: regenerate the absent file of a seeded entry from its template into the
    kit folder (``materialize_seeded``; said through ``log``)."""
    kit_dir = Path(kit_dir)
    if not kit_dir.is_dir():
        raise KitError(f"{kit_dir}: not a kit folder (not a directory)")
    mpath = kit_dir / KIT_MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KitError(f"{kit_dir}: not a kit folder (no {KIT_MANIFEST}; make one with "
                       "python -m bench.kit --out DIR)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KitError(f"{mpath}: unreadable kit manifest ({_one_line(exc)})") from None
    if not isinstance(manifest, dict) or manifest.get("kit_schema") != KIT_SCHEMA:
        got = manifest.get("kit_schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise KitError(f"{mpath}: kit_schema must be {KIT_SCHEMA}, got {got!r}")
    entries = manifest.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise KitError(f"{mpath}: 'entries' must be a list of objects")
    for i, e in enumerate(entries):
        for key in REQUIRED_ENTRY_KEYS:
            if not isinstance(e.get(key), str) or not e.get(key):
                raise KitError(f"{mpath}: entry {i} has no {key!r}")
        if e["role"] not in ROLES:
            raise KitError(f"{mpath}: entry {e['id']!r} has role {e['role']!r}; allowed: "
                           f"{', '.join(ROLES)}")
    kit = Kit(kit_dir, manifest)
    for e in entries:
        kit.models.append(_resolve(kit_dir, e, verify, materialize, log or (lambda _m: None)))
    return kit


def _inside(rel):
    rel = Path(rel)
    return not (rel.is_absolute() or ".." in rel.parts)


def _regenerate(kit_dir, e, path, log):
    """Make the absent ``path`` of seeded entry ``e`` from its template -> None, or (status,
    why not): ``missing`` when this copy cannot make it, ``FAILED`` when the entry is bad."""
    seeded = e["seeded_from"]
    if not isinstance(seeded, dict) or not isinstance(seeded.get("template"), str):
        return "FAILED", "its seeded_from has no template"
    if not _inside(seeded["template"]):
        return "FAILED", f"template {seeded['template']!r} is outside the kit folder"
    template = kit_dir / seeded["template"]
    if not template.is_file():
        return "missing", (f"neither it nor its template {seeded['template']} is in this copy "
                           "of the kit")
    log(f"{e['file']}: regenerating from {seeded['template']} (random weights, seed "
        f"{seeded.get('seed')}); once, about {e.get('bytes', 0) / 1e6:.0f} MB")
    try:
        materialize_seeded(template, seeded.get("seed"), path, seeded.get("scheme"))
    except OSError as exc:
        return "missing", (f"cannot write it into {path.parent} ({_one_line(exc)}): copy the "
                           "kit to a writable folder")
    except Exception as exc:  # noqa: BLE001 - this entry fails, the others go on
        return "FAILED", f"cannot regenerate it from {seeded['template']} ({_one_line(exc)})"
    return None


def _resolve(kit_dir, e, verify, materialize=False, log=None):
    make = e.get("make") or ""
    if e.get("status") == "missing" or not e.get("file"):
        return KitModel(e, "missing", reason=e.get("reason") or "not in the kit", make=make)
    if not _inside(e["file"]):
        return KitModel(e, "FAILED", reason=f"file {e['file']!r} is outside the kit folder")
    path = kit_dir / e["file"]
    seeded = e.get("seeded_from")
    if not path.is_file() and seeded is not None:
        if not materialize:
            return KitModel(e, "missing", make=make, reason=(
                f"{e['file']} not in this copy of the kit: edge-seg bench KIT regenerates it "
                "from its template"))
        failed = _regenerate(kit_dir, e, path, log or (lambda _m: None))
        if failed is not None:
            status, why = failed
            return KitModel(e, status, reason=f"{e['file']}: {why}", make=make)
    if not path.is_file():
        note = e.get("absent_note") or "the kit manifest lists it but the file is not here"
        return KitModel(e, "missing", reason=f"{e['file']} not in this copy of the kit: {note}",
                        make=make)
    if verify and seeded is not None:
        # A regenerated zip may deflate differently on another machine: the sha256 of its
        # model (checked against the bundle's manifest by load_bundle) is what the kit pins.
        try:
            from edge_runtime.bundle import load_bundle
            digest = load_bundle(path).sha256
        except Exception as exc:  # noqa: BLE001 - this entry fails, the others go on
            return KitModel(e, "FAILED", path=path, reason=_one_line(exc))
        if digest != e.get("model_sha256"):
            return KitModel(e, "FAILED", path=path,
                            reason=f"{e['file']}: model sha256 differs from the kit manifest "
                                   "(changed, damaged, or regenerated from another template "
                                   "or seed)")
        return KitModel(e, "ok", path=path)
    if verify:
        want = e.get("sha256")
        if want and sha256_file(path) != want:
            return KitModel(e, "FAILED", path=path,
                            reason=f"{e['file']}: sha256 differs from the kit manifest "
                                   "(changed or damaged)")
        try:
            from edge_runtime.bundle import load_bundle
            load_bundle(path)
        except Exception as exc:  # noqa: BLE001 - this entry fails, the others go on
            return KitModel(e, "FAILED", path=path, reason=_one_line(exc))
    return KitModel(e, "ok", path=path)
