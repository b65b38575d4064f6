"""Finding labelled and tumour-free scans on disk, and splitting them by patient family.

Four layouts are understood (``discover``):

- **figshare**: ``metadata.csv`` with columns ``image``, ``mask``, ``label``, ``label_name``,
  ``pid``, ``pid_family`` (paths relative to the folder), as in ``../shared/data/figshare``.
- **images/ + masks/**: files matched by stem (``images/a.png`` <-> ``masks/a.png``); each
  scan is its own patient family.
- **scans with a truth/ (or masks/) subfolder**: the image files directly in the folder, each
  matched by stem to its mask in the subfolder, as in ``examples/`` (``glioma_718.png`` <->
  ``truth/glioma_718.png``). Without this, the masks would be read as tumour-free scans.
- **a folder of scans without a tumour**: every image file in it (recursively), with an
  empty mask as the right answer.
"""

import csv
import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm"}


@dataclass(frozen=True)
class Sample:
    key: str                  # unique id inside its dataset
    image: Path
    mask: Path = None         # None: a tumour-free scan (empty mask is the truth)
    label: int = 0            # 0 none, 1 meningioma, 2 glioma, 3 pituitary
    label_name: str = "none"
    patient: str = ""
    family: str = ""          # the unit of splitting
    source: str = ""          # where it came from: the name of the folder ``discover`` read

    @property
    def has_tumour(self):
        return self.mask is not None


def _is_image(p):
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def read_figshare(root):
    root = Path(root)
    samples = []
    with open(root / "metadata.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            samples.append(Sample(
                key=str(row.get("index") or Path(row["image"]).stem),
                image=root / row["image"], mask=root / row["mask"],
                label=int(row.get("label") or 0), label_name=row.get("label_name") or "tumour",
                patient=row.get("pid") or "", family=row.get("pid_family") or row.get("pid") or ""))
    return samples


TRUTH_FOLDERS = ("truth", "masks")


def read_image_mask_folders(root, images="images", masks="masks"):
    """Images in ``root/images`` matched by stem to masks in ``root/masks`` (other folder
    names can be given: ``images="."`` reads the image files directly in ``root``)."""
    root = Path(root)
    mask_dir = root / masks
    mask_of = {p.stem: p for p in sorted(mask_dir.iterdir()) if _is_image(p)}
    samples = []
    for img in sorted((root / images).iterdir()):
        if not _is_image(img):
            continue
        if img.stem not in mask_of:
            raise ValueError(f"{img}: no mask with the same stem in {mask_dir}")
        samples.append(Sample(key=img.stem, image=img, mask=mask_of[img.stem],
                              label_name="tumour", patient=img.stem, family=img.stem))
    return samples


def read_negatives(root):
    root = Path(root)
    return [Sample(key=str(p.relative_to(root)), image=p, patient=p.stem, family="neg:" + p.stem)
            for p in sorted(root.rglob("*")) if _is_image(p)]


def source_name(root):
    """The source a folder's scans are reported under: its own name (``figshare``,
    ``brisc``, ``notumor``, ...; the resolved name for ``.``)."""
    root = Path(root)
    return root.name or root.resolve().name


def discover(root):
    """Return (layout name, samples) for a folder in one of the four layouts; every sample
    carries the folder's ``source_name``."""
    layout, samples = _discover(root)
    name = source_name(root)
    return layout, [replace(s, source=name) for s in samples]


def _discover(root):
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    if (root / "metadata.csv").is_file() and (root / "images").is_dir():
        return "figshare", read_figshare(root)
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "images+masks", read_image_mask_folders(root)
    for sub in TRUTH_FOLDERS:
        if (root / sub).is_dir() and any(_is_image(p) for p in (root / sub).iterdir()):
            if not any(_is_image(p) for p in root.iterdir()):
                raise ValueError(f"{root}: masks in {sub}/ but no scans next to it")
            return f"scans+{sub}", read_image_mask_folders(root, images=".", masks=sub)
    samples = read_negatives(root)
    if not samples:
        raise ValueError(f"{root}: no images found (expected metadata.csv, images/+masks/, "
                         f"or image files with suffixes {sorted(IMAGE_SUFFIXES)})")
    return "negatives", samples


def slice_neighbours(samples, offset):
    """-> list, one entry per sample: the position in ``samples`` of the slice ``offset``
    away in the same series, or -1. A figshare patient's slices are neighbours in one
    series: the sample whose integer key is ``key + offset`` and whose (non-empty) patient is
    the same. Scans without a patient or a numeric key (tumour-free folders) have none."""
    where = {s.key: i for i, s in enumerate(samples)}
    out = []
    for s in samples:
        j = -1
        if s.patient and str(s.key).isdigit():
            j = where.get(str(int(s.key) + offset), -1)
            if j >= 0 and samples[j].patient != s.patient:
                j = -1
        out.append(j)
    return out


def split_by_family(samples, val_fraction=0.2, seed=0):
    """Deterministic family-level split, stratified by each family's majority tumour class.

    Returns (train, val). No family is on both sides. The same inputs and seed always give
    the same split (families are ordered by a hash, not by file order).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    families = defaultdict(list)
    for s in samples:
        families[s.family or s.key].append(s)
    by_class = defaultdict(list)
    for fam, members in families.items():
        labels = [m.label for m in members]
        by_class[max(set(labels), key=labels.count)].append(fam)
    rng = random.Random(seed)
    val_fams = set()
    for label in sorted(by_class):
        fams = sorted(by_class[label],
                      key=lambda f: hashlib.sha256(f"{seed}:{f}".encode()).hexdigest())
        rng.shuffle(fams)
        # Fill validation by slice count so each class gets ~val_fraction of its scans.
        target = val_fraction * sum(len(families[f]) for f in fams)
        taken = 0
        for fam in fams:
            if taken >= target:
                break
            val_fams.add(fam)
            taken += len(families[fam])
    train = [s for s in samples if (s.family or s.key) not in val_fams]
    val = [s for s in samples if (s.family or s.key) in val_fams]
    return train, val


def split_by_source(samples, val_fraction=0.2, seed=0, fractions=None):
    """``split_by_family`` applied to each source (``Sample.source``) on its own, with that
    source's validation share (``fractions`` {source: fraction}, else ``val_fraction``).

    Returns (train, val), each in the samples' order. A source split alone is split exactly
    as ``split_by_family`` splits it when it is the only one, so adding a source never moves
    another source's scans across the split (the shipped run's figshare validation patients
    stay the validation patients of a run that adds BRISC)."""
    fractions = dict(fractions or {})
    by_source = defaultdict(list)
    for s in samples:
        by_source[s.source].append(s)
    unknown = sorted(set(fractions) - set(by_source))
    if unknown:
        raise ValueError(f"validation fractions given for {unknown}, which are not among the "
                         f"sources {sorted(by_source)}")
    val_ids = set()
    for name, members in by_source.items():
        _tr, va = split_by_family(members, float(fractions.get(name, val_fraction)), seed)
        val_ids.update(id(s) for s in va)
    return ([s for s in samples if id(s) not in val_ids],
            [s for s in samples if id(s) in val_ids])
