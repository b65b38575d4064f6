"""Write the device benchmark kit: everything ``edge-seg bench KIT --suite paper`` needs.

    python -m bench.kit --out bench/paper_kit [--runs-dir runs] [--archive kit.tar]
                        [--no-reference] [--work ~/.cache/edge-seg/reference]

Into ``--out``: ``kit.json`` (each model, its role, format, sha256 and where its accuracy
comes from; ``edge_runtime.kit``) and ``models/*.zip``, every one a verified bundle:

- ``shipped``: the default bundle (``edge_runtime/models/default.zip``);
- ``paper-reference``: the paper-size Res-UNet+AG (``resunet_ag`` preset ``paper``, 64..1024
  filters) with random weights (seed 0) in fp32 and DRQ, built with TensorFlow by
  ``bench.speed_vs_paper.build_reference``: speed and size only, no accuracy;
- ``variant``: the four paper variants (``PAPER_VARIANT_RUNS``) in every format, when their
  bundle exists under ``runs/RUN/export/``; otherwise a ``missing`` entry with the reason and
  the command that would make it.

What a fresh clone holds: the committed kit ``bench/paper_kit`` has the shipped bundle, the
variants' bundles that exist, the manifest, and for each paper-size reference a **template**
(``models/paper_resunet_ag_FMT.template.zip``: the bundle with every filter zeroed, ~0.1 MB).
The full references (31 MB and 124 MB) are too big to commit; ``edge-seg bench KIT`` fills
each template's filters from the seed (``edge_runtime.kit.materialize_seeded``, no
TensorFlow: the same bytes on every machine) and checks the bundle digest the kit pins. The
filter values are not the Keras initialiser's: speed and size do not depend on them.
"""

import argparse
import sys
from pathlib import Path

from edge_runtime.formats import FORMATS

# The four variants the paper compares, as the CPU recipe trained them (same recipe, seed and
# split for each; bench/train_variants.sh): docs/RESULTS.md "The four variants side by side".
PAPER_VARIANT_RUNS = (("resunet", "resunet_edge"), ("resunet_ag", "resunet_ag_edge"),
                      ("resunet_se", "resunet_se_edge"), ("resunet_cbam", "resunet_cbam_edge"))
REFERENCE_FORMATS = ("fp32", "drq")
REFERENCE_ARCH = {"variant": "resunet_ag", "preset": "paper", "filters": "64, 128, 256, 512, "
                  "1024 (4 levels + bridge, as Aprianto & Riana 2025)", "input_size": 256,
                  "weights": "random: every filter drawn from seed 0 by edge_runtime.bench."
                             "modelfile.seeded_weights (pcg64-raw-v1: He-uniform floats, "
                             "uniform int8); biases and quantization scales from the Keras "
                             "build (keras.utils.set_random_seed(0))"}
REFERENCE_SEED = 0
DEFAULT_OUT = "bench/paper_kit"
KIT_NOTE = ("Device benchmark kit for the paper's table (edge-seg bench KIT --suite paper). "
            "Accuracy comes from each bundle's own conversion gate; the paper-size references "
            "have random weights: speed and size only. Not a medical device.")


def log(msg):
    print(f"kit: {msg}", file=sys.stderr, flush=True)


def _regen_command(out):
    return f"python -m bench.kit --out {out}"


def find_variant_bundle(runs_dir, run, fmt):
    """The bundle of ``run`` in format ``fmt`` under ``runs_dir/run/export`` -> path or None."""
    from edge_runtime.bundle import load_bundle
    export = Path(runs_dir) / run / "export"
    if not export.is_dir():
        return None
    for path in sorted(export.glob("*.zip")):
        try:
            b = load_bundle(path)
        except Exception:  # noqa: BLE001 - not a bundle of this run
            continue
        src = b.manifest.get("source") if isinstance(b.manifest.get("source"), dict) else {}
        if b.format == fmt and src.get("run", run) == run:
            return path
    return None


def variant_entries(kit_dir, runs_dir):
    from edge_runtime.kit import add_bundle, missing_entry
    entries = []
    for variant, run in PAPER_VARIANT_RUNS:
        for fmt in (f.name for f in FORMATS):
            entry_id = f"{run}_{fmt}"
            path = find_variant_bundle(runs_dir, run, fmt)
            if path is not None:
                log(f"{entry_id}: {path}")
                entries.append(add_bundle(kit_dir, path, entry_id, "variant", run=run))
                continue
            has_ckpt = any((Path(runs_dir) / run / f).is_file()
                           for f in ("best.keras", "last.keras"))
            if has_ckpt:
                reason = (f"no {fmt} bundle under {runs_dir}/{run}/export/ (exports are "
                          "git-ignored; the checkpoint is here: convert it)")
                make = (f"edge-seg convert {runs_dir}/{run} --all --out {runs_dir}/{run}/export "
                        f"&& python -m bench.kit --out {kit_dir}")
            else:
                reason = (f"no {fmt} bundle: the run's checkpoint was never committed, so it "
                          "is trained again with the same recipe (runs/KIT.md)")
                make = (f"VARIANTS={variant} bench/train_variants.sh {runs_dir}/cpu22, move "
                        f"the finished run over {runs_dir}/{run} (runs/KIT.md), then python -m "
                        f"bench.kit --out {kit_dir}")
            entries.append(missing_entry(
                entry_id, "variant", variant=variant, format=fmt, run=run, weights="trained",
                accuracy_from="the bundle's conversion gate, once it exists",
                reason=reason, make=make))
            log(f"{entry_id}: missing")
    return entries


def reference_entries(kit_dir, work, build=True):
    """The paper-size fp32 and DRQ references (built with TensorFlow, cached in ``work``)."""
    from edge_runtime.bench.modelfile import SEEDED_SCHEME
    from edge_runtime.kit import (MODELS_DIR, add_bundle, materialize_seeded, missing_entry,
                                  write_seeded_template)
    entries = []
    for fmt in REFERENCE_FORMATS:
        entry_id = f"paper_resunet_ag_{fmt}"
        common = dict(architecture=REFERENCE_ARCH, weights="random",
                      accuracy_from="none: random weights, speed and size only")
        path = Path(work) / f"paper_resunet_ag_{fmt}.zip"
        why = None
        if build and not path.is_file():
            try:
                from bench.speed_vs_paper import build_reference
                log(f"building the paper-size Res-UNet+AG ({fmt}; TensorFlow, minutes)")
                path = build_reference(work, fmt=fmt)
            except ImportError as exc:
                why = (f"cannot be built here ({exc}): the reference needs TensorFlow "
                       "(pip install '.[train]')")
        if why is None and not path.is_file():
            why = "not built (--no-reference)"
        if why is not None:
            entries.append(missing_entry(entry_id, "paper-reference", format=fmt, reason=why,
                                         make=_regen_command(kit_dir), **common))
            continue
        # Commit a template (filters zeroed: ~0.1 MB) and let the device fill the filters
        # from the seed; the full bundle is made here the same way, so both hold one digest.
        template_rel = f"{MODELS_DIR}/{entry_id}.template.zip"
        write_seeded_template(Path(kit_dir) / template_rel, path)
        full = materialize_seeded(Path(kit_dir) / template_rel, REFERENCE_SEED,
                                  Path(work) / f"{entry_id}.seeded.zip")
        mb = full.stat().st_size / 1e6
        entries.append(add_bundle(
            kit_dir, full, entry_id, "paper-reference",
            absent_note=(f"too big to commit ({mb:.0f} MB, git-ignored): edge-seg bench KIT "
                         f"regenerates it from {template_rel}"),
            seeded_from={"template": template_rel, "seed": REFERENCE_SEED,
                         "scheme": SEEDED_SCHEME},
            make=_regen_command(kit_dir), **common))
        log(f"{entry_id}: {mb:.1f} MB")
    return entries


def build_kit(out, runs_dir="runs", work=None, reference=True, shipped=None):
    """Write the kit into ``out`` -> path of its kit.json."""
    from edge_runtime.bundle import default_bundle_path
    from edge_runtime.kit import add_bundle, write_kit
    work = work or str(Path.home() / ".cache" / "edge-seg" / "reference")
    shipped = Path(shipped) if shipped else default_bundle_path()
    entries = [add_bundle(out, shipped, "shipped", "shipped")]
    log(f"shipped: {shipped}")
    entries += reference_entries(out, work, build=reference)
    entries += variant_entries(out, runs_dir)
    return write_kit(out, entries, suite="paper", note=KIT_NOTE,
                     variant_runs=[run for _v, run in PAPER_VARIANT_RUNS])


def write_archive(kit_dir, archive):
    """One .tar or .zip of the kit folder (written via a temporary file, then renamed)."""
    import tarfile
    import zipfile

    from edge_runtime import atomic
    kit_dir, archive = Path(kit_dir), Path(archive)
    if archive.suffix not in (".tar", ".zip"):
        raise ValueError(f"--archive must end in .tar or .zip, got {archive.name!r}")
    archive.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in kit_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    with atomic.replacing(archive) as tmp:
        if archive.suffix == ".tar":
            with tarfile.open(tmp, "w") as tar:
                for f in files:
                    tar.add(f, arcname=str(Path(kit_dir.name) / f.relative_to(kit_dir)))
        else:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
                for f in files:
                    zf.write(f, arcname=str(Path(kit_dir.name) / f.relative_to(kit_dir)))
    return archive


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.kit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="the kit folder (default %(default)s)")
    p.add_argument("--runs-dir", default="runs", help="where the variants' runs are")
    p.add_argument("--work", default=None, help="cache of the built references "
                   "(default ~/.cache/edge-seg/reference)")
    p.add_argument("--no-reference", action="store_true",
                   help="do not build the paper-size references (no TensorFlow needed)")
    p.add_argument("--shipped", default=None, help="the shipped bundle (default: the "
                   "installed edge_runtime/models/default.zip)")
    p.add_argument("--archive", default=None, help="also write the kit as one .tar or .zip")
    a = p.parse_args(argv)
    from edge_runtime.errors import EdgeSegError
    try:
        path = build_kit(a.out, a.runs_dir, a.work, not a.no_reference, a.shipped)
        print(path)
        if a.archive:
            print(write_archive(a.out, a.archive))
    except EdgeSegError as exc:
        print(f"kit: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, ValueError) as exc:
        print(f"kit: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
