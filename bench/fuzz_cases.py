"""A seeded generator of malformed inputs for edge-seg: images, DICOM, special files, bundles.

Stdlib, numpy and Pillow (pydicom for the DICOM category when installed). Case ``i`` of a
category depends only on (seed, category, i), so any failure is reproduced by its name.
Used by ``tests/test_fuzz.py`` (a few hundred cases, in process) and ``python -m bench.fuzz``
(10,000+, in subprocess batches with a timeout).

Each case says what a correct runtime must do with it (``expect``):

- ``"fail"``: refused in one line (exit 1 for a scan, 3 for a bundle); accepting it is a
  silent wrong answer (a NaN scan reported as "no tumour", a tampered bundle run);
- ``"ok"``: segmented, and the mask has the scan's own size;
- ``"same"``: segmented, and the mask is byte-identical to the rest of its ``group`` (one scan
  in several lossless encodings: 8-bit PNG, BMP, TIFF, float TIFF, RGB, RGBA, WebP lossless);
- ``"any"``: either, but in one line, without a traceback or a hang.
"""

import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.png"))

IMAGE_CATEGORIES = ("variants", "nonfinite", "truncated", "bitflip", "header_lies", "shapes",
                    "modes", "multiframe", "garbage", "names", "dicom", "special")
BUNDLE_CATEGORIES = ("bundle_manifest", "bundle_zip", "bundle_folder", "bundle_tflite")


@dataclass
class Case:
    category: str
    name: str                        # file name (str, or bytes for a non-UTF-8 name)
    data: bytes = b""
    kind: str = "file"               # file, fifo, symlink, folder (an unpacked bundle)
    target: str = ""                 # symlink target
    members: dict = field(default_factory=dict)   # folder: {name: bytes or "fifo"/"dir"}
    expect: str = "any"              # fail, ok, same, any
    shape: tuple = None              # (height, width) the mask must have when "ok"
    group: str = ""                  # "same": the cases that must agree
    helper: bool = False             # created for another case (a link's target), not an input

    def write(self, folder):
        """Create the case in ``folder`` -> its path (bytes when the name is bytes)."""
        import os
        folder = os.fsencode(folder)
        path = os.path.join(folder, self.name if isinstance(self.name, bytes)
                            else os.fsencode(self.name))
        if self.kind == "file":
            with open(path, "wb") as fh:
                fh.write(self.data)
        elif self.kind == "fifo":
            os.mkfifo(path)
        elif self.kind == "symlink":
            os.symlink(self.target, path)
        elif self.kind == "folder":
            os.mkdir(path)
            for name, raw in self.members.items():
                member = os.path.join(path, os.fsencode(name))
                if raw == "fifo":
                    os.mkfifo(member)
                elif raw == "dir":
                    os.mkdir(member)
                elif isinstance(raw, tuple):      # ("symlink", target)
                    os.symlink(raw[1], member)
                else:
                    with open(member, "wb") as fh:
                        fh.write(raw)
        return path if isinstance(self.name, bytes) else os.fsdecode(path)


def _rng(seed, category, i):
    return np.random.default_rng([seed, IMAGE_CATEGORIES.index(category) if category in
                                  IMAGE_CATEGORIES else 100 + BUNDLE_CATEGORIES.index(category),
                                  i])


_EXAMPLE_CACHE = {}


def base_scan(rng, max_side=160):
    """A crop of a real example scan (8-bit gray), random size and aspect (at most 3:1)."""
    if not _EXAMPLE_CACHE:
        for p in EXAMPLES:
            _EXAMPLE_CACHE[p.name] = np.asarray(Image.open(p).convert("L"))
    if not _EXAMPLE_CACHE:
        return (rng.random((64, 64)) * 255).astype(np.uint8)
    full = _EXAMPLE_CACHE[sorted(_EXAMPLE_CACHE)[int(rng.integers(len(_EXAMPLE_CACHE)))]]
    h = int(rng.integers(160, full.shape[0] + 1))
    w = int(np.clip(h * rng.uniform(0.4, 2.5), 120, full.shape[1]))
    y = int(rng.integers(0, full.shape[0] - h + 1))
    x = int(rng.integers(0, full.shape[1] - w + 1))
    crop = Image.fromarray(full[y:y + h, x:x + w])
    scale = max_side / max(h, w)
    crop = crop.resize((max(16, round(w * scale)), max(16, round(h * scale))), Image.BILINEAR)
    return np.asarray(crop)


def encode(arr_or_img, fmt, **kw):
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


FORMATS = (("png", "PNG", {}), ("jpg", "JPEG", {"quality": 90}), ("tif", "TIFF", {}),
           ("bmp", "BMP", {}), ("gif", "GIF", {}), ("webp", "WEBP", {"lossless": True}))


def _valid_file(rng):
    arr = base_scan(rng)
    suffix, fmt, kw = FORMATS[int(rng.integers(len(FORMATS)))]
    return suffix, encode(arr, fmt, **kw)


# ----------------------------------------------------------------------- image categories

def gen_variants(rng, i):
    arr = base_scan(rng)
    rgb = np.repeat(arr[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full(arr.shape + (1,), 255, np.uint8)], axis=2)
    group = f"v{i:05d}"
    encodings = {
        "png": encode(arr, "PNG"), "bmp": encode(arr, "BMP"), "tif": encode(arr, "TIFF"),
        "f.tif": encode(arr.astype(np.float32), "TIFF"), "rgb.png": encode(rgb, "PNG"),
        "rgba.png": encode(rgba, "PNG"), "webp": encode(rgb, "WEBP", lossless=True),
    }
    return [Case("variants", f"{group}_{k.replace('.', '_')}.{k.split('.')[-1]}", raw,
                 expect="same", group=group, shape=arr.shape) for k, raw in encodings.items()]


def gen_nonfinite(rng, i):
    arr = base_scan(rng).astype(np.float32) * float(rng.choice([1.0, 1e-3, 1e4]))
    k = int(rng.choice([1, 2, 10, arr.size // 2, arr.size]))
    flat = arr.reshape(-1)
    idx = rng.choice(arr.size, size=min(k, arr.size), replace=False)
    flat[idx] = rng.choice([np.nan, np.inf, -np.inf], size=idx.size)
    return [Case("nonfinite", f"nf{i:05d}.tif", encode(arr, "TIFF"), expect="fail")]


def gen_truncated(rng, i):
    suffix, raw = _valid_file(rng)
    cut = int(rng.integers(0, len(raw)))
    return [Case("truncated", f"tr{i:05d}.{suffix}", raw[:cut])]


def gen_bitflip(rng, i):
    suffix, raw = _valid_file(rng)
    data = bytearray(raw)
    for _ in range(int(rng.integers(1, 24))):
        pos = int(rng.integers(0, len(data)))
        if rng.random() < 0.5:
            data[pos] ^= 1 << int(rng.integers(8))
        else:
            data[pos] = int(rng.integers(256))
    return [Case("bitflip", f"bf{i:05d}.{suffix}", bytes(data))]


def _png_with_header(width, height, depth=8, color=0, body=b""):
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(body)) \
        + chunk(b"IEND", b"")


def gen_header_lies(rng, i):
    w, h = [int(v) for v in rng.choice([0, 1, 70000, 2**31 - 1, 2**32 - 1, 400000], size=2)]
    if rng.random() < 0.5:
        body = bytes(int(rng.integers(0, 4096)))
        return [Case("header_lies", f"hl{i:05d}.png", _png_with_header(w, h, body=body),
                     expect="fail")]
    bmp = bytearray(encode(base_scan(rng), "BMP"))
    struct.pack_into("<ii", bmp, 18, w % 2**31, -(h % 2**31) if rng.random() < 0.5 else h % 2**31)
    return [Case("header_lies", f"hl{i:05d}.bmp", bytes(bmp), expect="fail")]


def gen_shapes(rng, i):
    pick = int(rng.integers(5))
    if pick == 0:
        h, w = int(rng.integers(1, 16)), int(rng.integers(1, 64))     # too small
    elif pick == 1:
        h = int(rng.integers(16, 24))
        w = int(h * rng.uniform(10.2, 300))                           # a strip
    elif pick == 2:
        h = int(rng.integers(16, 40))
        w = h * 10                                                     # exactly the limit
    elif pick == 3:
        h, w = int(rng.integers(16, 300)), int(rng.integers(16, 300))
        if max(h, w) > 10 * min(h, w):
            w = h
    else:
        h, w = (int(rng.integers(600, 1300)),) * 2                     # larger than usual
    if pick == 4:   # smooth: PNG-encoding a large noise overlay would dominate the run time
        arr = (np.add.outer(np.arange(h), np.arange(w)) // 8 % 200).astype(np.uint8)
    else:
        arr = (rng.random((h, w)) * 255).astype(np.uint8)
    if rng.random() < 0.5:
        arr[h // 3: 2 * h // 3, w // 3: 2 * w // 3] = 230
    if rng.random() < 0.5:
        arr, h, w = arr.T.copy(), w, h
    ok = min(h, w) >= 16 and max(h, w) <= 10 * min(h, w)
    return [Case("shapes", f"sh{i:05d}.png", encode(arr, "PNG"),
                 expect="ok" if ok else "fail", shape=(h, w))]


def gen_modes(rng, i):
    arr = base_scan(rng)
    pick = int(rng.integers(11))
    expect, suffix = "ok", "png"
    if pick == 0:
        data, expect = encode(Image.fromarray(arr).convert("1"), "PNG"), "fail"
    elif pick == 1:
        data = encode(Image.fromarray(arr).convert("LA"), "PNG")
    elif pick == 2:
        p = Image.fromarray(arr).convert("P")
        data = encode(p, "PNG", transparency=int(rng.integers(256)))
    elif pick == 3:
        data = encode(arr.astype(np.uint16) * 257, "PNG")
    elif pick == 4:
        data, suffix = encode(arr.astype(np.int32) * 1000 - 500000, "TIFF"), "tif"
    elif pick == 5:
        scale = float(rng.choice([3e38, -3e38, 1e-38, 1e30]))
        data, suffix = encode(arr.astype(np.float32) / 255 * scale, "TIFF"), "tif"
    elif pick == 6:
        data, suffix = encode(Image.fromarray(arr).convert("CMYK"), "JPEG"), "jpg"
    elif pick == 7:
        data, suffix = encode(np.full(arr.shape, int(rng.integers(256)), np.uint8),
                              "PNG"), "png"                            # a flat scan
    elif pick == 8:
        data, suffix = encode(Image.fromarray(arr).convert("RGB"), "JPEG", quality=30), "jpg"
    elif pick == 9:
        data, suffix = encode(arr.astype(">u2"), "TIFF"), "tif"
    else:
        exif = Image.Exif()
        exif[0x0112] = int(rng.integers(1, 9))
        data, suffix = encode(arr, "JPEG", exif=exif.tobytes()), "jpg"
        expect = "any"      # oriented: the mask follows the shown orientation
    return [Case("modes", f"md{i:05d}.{suffix}", data, expect=expect,
                 shape=arr.shape if expect == "ok" else None)]


def gen_multiframe(rng, i):
    n = int(rng.integers(2, 5))
    frames = [Image.fromarray(base_scan(np.random.default_rng([i, k]), 96)) for k in range(n)]
    frames = [f.resize(frames[0].size) for f in frames]
    suffix, fmt = [("gif", "GIF"), ("tif", "TIFF"), ("png", "PNG"), ("webp", "WEBP")][i % 4]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    return [Case("multiframe", f"mf{i:05d}.{suffix}", data, expect="fail")]


def gen_garbage(rng, i):
    suffix = ["png", "jpg", "tif", "bmp", "dcm", "gif", "webp", "txt", "zip"][i % 9]
    pick = int(rng.integers(5))
    if pick == 0:
        data = b""
    elif pick == 1:
        data = rng.bytes(int(rng.integers(1, 4000)))
    elif pick == 2:
        data = b"<html><body>not a scan</body></html>\n" * int(rng.integers(1, 50))
    elif pick == 3:
        data = b"\x89PNG\r\n\x1a\n" + rng.bytes(int(rng.integers(0, 500)))
    else:
        data = b"\x00" * 128 + b"DICM" + rng.bytes(int(rng.integers(0, 500)))
    return [Case("garbage", f"gb{i:05d}.{suffix}", data, expect="fail")]


ODD_NAMES = ("a\nb", "c\rd", "e\x1b[31mred\x1b[0m", "tab\there", "sp ace", "-dash",
             "rtl\u202egnp", "quote'\"", "back\\slash", "x" * 228, "ünïcödé", "emoji😀")


def gen_names(rng, i):
    arr = base_scan(rng)
    stem = ODD_NAMES[i % len(ODD_NAMES)] + f"_{i:05d}"
    if i % (len(ODD_NAMES) + 1) == len(ODD_NAMES):
        name = b"latin1-\xe9\xff_" + str(i).encode() + b".png"      # not UTF-8
    else:
        name = stem + ".png"
    return [Case("names", name, encode(arr, "PNG"), expect="ok", shape=arr.shape)]


def _dicom_bytes(rng, **change):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    arr = (base_scan(rng, 96).astype(np.uint16) * 16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.SOPClassUID = "MR", meta.MediaStorageSOPClassUID
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = arr.tobytes()
    for key, value in change.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), arr.shape


def gen_dicom(rng, i):
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return gen_garbage(rng, i)
    pick = int(rng.integers(9))
    change, expect = {}, "any"
    if pick == 1:
        change = {"NumberOfFrames": 2}
        expect = "fail"
    elif pick == 2:
        change = {"PixelData": None}
        expect = "fail"
    elif pick == 3:
        change = {"RescaleSlope": str(rng.choice(["NaN", "inf", "-inf"])), "RescaleIntercept": "0"}
        expect = "fail"
    elif pick == 4:
        change = {"Rows": int(rng.integers(1, 65536))}
    elif pick == 5:
        change = {"PixelSpacing": [str(rng.choice(["-1", "0", "nan", "1.2345"])), "0.5"]}
    elif pick == 6:
        change = {"PhotometricInterpretation": str(rng.choice(["MONOCHROME1", "RGB", "XYZ"]))}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # pydicom: "Invalid value for VR DS"
        data, shape = _dicom_bytes(rng, **change)
    if pick == 5:
        data = data.replace(b"1.2345", b"abc   ")         # not a number at all
    if pick == 7:
        data = data[:int(rng.integers(0, len(data)))]
    elif pick == 8:
        buf = bytearray(data)
        for _ in range(int(rng.integers(1, 16))):
            buf[int(rng.integers(128, len(buf)))] = int(rng.integers(256))
        data = bytes(buf)
    if pick == 0:
        expect = "ok"
    suffix = "dcm" if rng.random() < 0.7 else "img"       # preamble detection without suffix
    return [Case("dicom", f"dc{i:05d}.{suffix}", data, expect=expect,
                 shape=shape if expect == "ok" else None)]


def gen_special(rng, i):
    pick = i % 6
    if pick in (3, 4) and i >= 6:
        pick = 0     # one link to /dev/zero and one to /dev/null: more would be the same file,
        #              which `run` (by design) processes once
    if pick == 0:
        return [Case("special", f"sp{i:05d}.png", kind="fifo", expect="fail")]
    if pick == 1:
        return [Case("special", f"sp{i:05d}.png", kind="symlink", target=f"missing{i}.png",
                     expect="fail")]
    if pick == 2:
        return [Case("special", f"sp{i:05d}.png", kind="symlink", target=f"sp{i:05d}.png",
                     expect="fail")]                                  # a loop
    if pick == 3:
        return [Case("special", f"sp{i:05d}.dcm", kind="symlink", target="/dev/zero",
                     expect="fail")]
    if pick == 4:
        return [Case("special", f"sp{i:05d}.jpg", kind="symlink", target="/dev/null",
                     expect="fail")]
    return [Case("special", f"sp{i:05d}_t.png", kind="fifo", helper=True),   # FIFO via a link
            Case("special", f"sp{i:05d}.png", kind="symlink", target=f"sp{i:05d}_t.png",
                 expect="fail")]


# ----------------------------------------------------------------------- bundle categories

def shipped_members():
    from edge_runtime.bundle import default_bundle_path
    with zipfile.ZipFile(default_bundle_path()) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def zip_bytes(members, infos=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in members.items():
            if infos and name in infos:
                zf.writestr(infos[name], raw)
            else:
                zf.writestr(name, raw)
    return buf.getvalue()


_MANIFEST_EDITS = ("threshold", "min_area_fraction", "min_peak_probability", "name",
                   "dup_key", "big_int", "deep", "nan", "drop_key", "wrong_type", "schema",
                   "preprocessing", "model_sha256", "input_size", "unicode_name")


def gen_bundle_manifest(rng, i, base):
    m = json.loads(base["manifest.json"])
    edit = _MANIFEST_EDITS[i % len(_MANIFEST_EDITS)]
    text = None
    if edit in ("threshold", "min_area_fraction", "min_peak_probability"):
        m[edit] = float(rng.choice([0.0, 0.01, 0.3, 0.9, 0.999, -1.0, 2.0]))
    elif edit == "name":
        m["name"] = "ok\n" + "trusted: yes" + "\x1b[2J" + "\r"
    elif edit == "unicode_name":
        m["name"] = "\u202e" + "x" * int(rng.integers(1, 5000))
    elif edit == "dup_key":
        text = json.dumps(m).replace('"threshold":', '"threshold": 0.999, "threshold":', 1)
    elif edit == "big_int":
        text = json.dumps(m)[:-1] + ', "x": ' + "7" * int(rng.integers(100, 20000)) + "}"
    elif edit == "deep":
        d = int(rng.integers(33, 200000))
        text = json.dumps(m)[:-1] + ', "x": ' + "[" * d + "]" * d + "}"
    elif edit == "nan":
        text = json.dumps(m).replace('"threshold": 0.', '"threshold": NaN, "y": 0.', 1)
    elif edit == "drop_key":
        m.pop(["threshold", "format", "preprocessing", "model_sha256"][i % 4], None)
    elif edit == "wrong_type":
        m["threshold"] = ["0.5", True, None, {"a": 1}][i % 4]
    elif edit == "schema":
        m["schema_version"] = [0, 3, 99, "2", 2.0][i % 5]
    elif edit == "preprocessing":
        m["preprocessing"]["low_percentile"] = float(rng.choice([-5, 50, 99.9, 100]))
    elif edit == "model_sha256":
        m["model_sha256"] = "0" * 64
    else:
        m["preprocessing"]["input_size"] = int(rng.choice([8, 128, 512]))
    raw = (text if text is not None else json.dumps(m)).encode("utf-8")
    return [Case("bundle_manifest", f"bm{i:05d}_{edit}.zip",
                 zip_bytes({**base, "manifest.json": raw}), expect="fail")]


def gen_bundle_zip(rng, i, base):
    pick = i % 9
    members = dict(base)
    if pick == 0:                                   # random bytes changed in the archive
        data = bytearray(zip_bytes(members))
        for _ in range(int(rng.integers(1, 8))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        return [Case("bundle_zip", f"bz{i:05d}.zip", bytes(data), expect="fail")]
    if pick == 1:
        data = zip_bytes(members)
        return [Case("bundle_zip", f"bz{i:05d}.zip", data[:int(rng.integers(len(data)))],
                     expect="fail")]
    if pick == 2:
        members[str(rng.choice(["evil.py", "../x", "/etc/passwd", "sub/", "model.tflite.bak"]))] = b"x"
        return [Case("bundle_zip", f"bz{i:05d}.zip", zip_bytes(members), expect="fail")]
    if pick == 3:
        link = zipfile.ZipInfo("MODEL_CARD.md")
        link.external_attr = (0o120777 << 16)
        return [Case("bundle_zip", f"bz{i:05d}.zip", zip_bytes(members, {"MODEL_CARD.md": link}),
                     expect="fail")]
    if pick == 4:
        model = bytearray(members["model.tflite"])
        for _ in range(int(rng.integers(1, 50))):
            model[int(rng.integers(len(model)))] = int(rng.integers(256))
        m = json.loads(members["manifest.json"])
        from hashlib import sha256
        m["model_sha256"] = sha256(bytes(model)).hexdigest()    # a consistent forgery
        members.update({"model.tflite": bytes(model), "manifest.json": json.dumps(m).encode()})
        return [Case("bundle_zip", f"bz{i:05d}.zip", zip_bytes(members), expect="fail")]
    if pick == 5:
        members["MODEL_CARD.md"] = b"\xff\xfe not utf-8 " + rng.bytes(20)
        return [Case("bundle_zip", f"bz{i:05d}.zip", zip_bytes(members), expect="fail")]
    if pick == 6:
        members.pop(str(rng.choice(sorted(members))))
        return [Case("bundle_zip", f"bz{i:05d}.zip", zip_bytes(members), expect="fail")]
    if pick == 7:
        return [Case("bundle_zip", f"bz{i:05d}.zip", kind="fifo", expect="fail")]
    members["MODEL_CARD.md"] = members["MODEL_CARD.md"] + b"\nedited by someone\n"
    return [Case("bundle_zip", f"bz{i:05d}.zip", zip_bytes(members), expect="fail")]


def gen_bundle_folder(rng, i, base):
    members = dict(base)
    pick = i % 6
    if pick == 0:
        members[str(rng.choice(["evil.py", ".hidden", "__init__.py", "notes.txt"]))] = b"x = 1\n"
    elif pick == 1:
        members.pop(str(rng.choice(sorted(members))))
    elif pick == 2:
        members["MODEL_CARD.md"] = "fifo"
    elif pick == 3:
        members["extra"] = "dir"
    elif pick == 4:
        members["model.tflite"] = ("symlink", "/dev/zero")
    else:
        m = json.loads(members["manifest.json"])
        m["min_area_fraction"] = 0.5
        members["manifest.json"] = json.dumps(m).encode()
    return [Case("bundle_folder", f"bf{i:05d}", kind="folder", members=members, expect="fail")]


def gen_bundle_tflite(rng, i, base):
    model = bytearray(base["model.tflite"])
    pick = i % 4
    if pick == 0:
        model = model[:int(rng.integers(0, len(model)))]
    elif pick == 1:
        for _ in range(int(rng.integers(1, 30))):
            model[int(rng.integers(len(model)))] = int(rng.integers(256))
    elif pick == 2:
        model = bytearray(b"\x1c\x00\x00\x00TFL3" + rng.bytes(int(rng.integers(0, 2000))))
    # pick 3: the shipped model itself, bare: untrusted as a bare file too
    return [Case("bundle_tflite", f"bt{i:05d}.tflite", bytes(model), expect="fail")]


IMAGE_GENERATORS = {name: globals()[f"gen_{name}"] for name in IMAGE_CATEGORIES}
BUNDLE_GENERATORS = {name: globals()[f"gen_{name}"] for name in BUNDLE_CATEGORIES}


def image_cases(category, n, seed=0, start=0):
    """``n`` generator calls of an image category (a "variants" call gives 7 cases)."""
    out = []
    for i in range(start, start + n):
        out.extend(IMAGE_GENERATORS[category](_rng(seed, category, i), i))
    return out


def bundle_cases(category, n, seed=0, start=0, base=None):
    base = base or shipped_members()
    out = []
    for i in range(start, start + n):
        out.extend(BUNDLE_GENERATORS[category](_rng(seed, category, i), i, base))
    return out
