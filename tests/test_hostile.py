"""Hostile and unlucky input (issue 22): one test (or more) per defect class, each of which
failed on the code before the fix. Device-only: the shipped bundle, no TensorFlow."""

import io
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime import preprocess
from edge_runtime.batch import StopBatch, run_batch
from edge_runtime.bundle import (CARD_NAME, MANIFEST_NAME, bundle_digest, default_bundle_path,
                                 load_bundle)
from edge_runtime.cli import main
from edge_runtime.errors import (EXIT_BUNDLE, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK,
                                 EXIT_SOME_FAILED, BundleError, InputImageError)
from edge_runtime.imageio import load_scan
from edge_runtime.atomic import TEMP_SUFFIX, remove_stale_temporaries
from edge_runtime.segment import Segmenter
from edge_runtime.trust import (PACKAGE_TRUSTED, UntrustedBundleError, is_trusted,
                                load_trusted_bundle, read_trust_list, trust_bundle)

pytestmark = pytest.mark.device

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.png"))


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result):
    """The stderr of a refused command is one line (plus nothing) and no traceback."""
    err = result.stderr.strip("\n")
    assert "Traceback" not in result.output and "\n" not in err, result.output
    return err


def blob_scan(h=96, w=96, dtype=np.uint8, value=200):
    arr = np.zeros((h, w), dtype)
    arr[h // 3: h // 3 + h // 3, w // 3: w // 3 + w // 3] = value
    return arr


def members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rezip(path, data):
    with zipfile.ZipFile(path, "w") as zf:
        for name, raw in data.items():
            zf.writestr(name, raw)
    return path


@pytest.fixture(scope="module")
def shipped():
    return default_bundle_path()


@pytest.fixture
def tampered(shipped, tmp_path):
    """The shipped bundle with min_area_fraction raised so far that every tumour vanishes:
    the model and its sha256 are untouched, so only the trust check can notice."""
    data = members(shipped)
    manifest = json.loads(data[MANIFEST_NAME])
    manifest["min_area_fraction"] = 0.9
    data[MANIFEST_NAME] = json.dumps(manifest).encode()
    return rezip(tmp_path / "tampered.zip", data)


# ---------------------------------------------------------------- 1 non-finite pixels

@pytest.mark.parametrize("fill", ["one_nan", "all_nan", "all_inf"])
def test_non_finite_float_tiff_is_refused(tmp_path, fill):
    arr = blob_scan(dtype=np.float32, value=1000.0)
    if fill == "one_nan":
        arr[5, 5] = np.nan
    else:
        arr[:] = np.nan if fill == "all_nan" else np.inf
    p = tmp_path / "in" / "scan.tif"
    p.parent.mkdir()
    Image.fromarray(arr).save(p)
    with pytest.raises(InputImageError, match="not finite"):
        load_scan(p)
    r = cli("run", p, "--out", tmp_path / "out")
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    assert "no tumour found" not in r.output and "not finite" in r.output
    assert not (tmp_path / "out" / "scan_mask.png").exists()


# ---------------------------------------------------------------- 2 integrity and trust

def test_shipped_bundle_is_pinned_by_the_package(shipped):
    b = load_bundle(shipped)
    assert b.digest in PACKAGE_TRUSTED and is_trusted(b) and is_trusted(shipped)


def test_tampered_manifest_is_refused_in_one_line(tampered, tmp_path):
    scan = tmp_path / "in" / "scan.png"
    scan.parent.mkdir()
    scan.write_bytes(EXAMPLES[0].read_bytes())
    assert load_bundle(tampered).min_area_fraction == 0.9        # loads: sound but untrusted
    for args in (["run", scan, "--bundle", tampered, "--out", tmp_path / "o"],
                 ["eval", tampered, "--data", ROOT / "examples"],
                 ["bench", tampered, "--runs", "1", "--no-memory", "--no-sgemm"]):
        r = cli(*args)
        assert r.exit_code == EXIT_BUNDLE, (args[0], r.output)
        assert "not trusted" in one_line_error(r) and "--allow-untrusted" in r.stderr
    assert not (tmp_path / "o").exists()
    r = cli("run", scan, "--bundle", tampered, "--out", tmp_path / "o", "--allow-untrusted")
    assert r.exit_code == EXIT_OK and "UNTRUSTED" in r.stderr and "no tumour found" in r.stdout


def test_bundle_trust_cli_and_library(tampered, tmp_path, monkeypatch):
    trust_file = tmp_path / "cfg" / "trusted.json"
    monkeypatch.setenv("EDGE_SEG_TRUST", str(trust_file))
    assert not is_trusted(tampered)
    info = cli("bundle", "info", tampered)
    assert info.exit_code == 0 and "trusted: NO" in info.stdout
    r = cli("bundle", "trust", tampered)
    assert r.exit_code == 0, r.output
    digest = load_bundle(tampered).digest
    assert digest in read_trust_list(trust_file) and is_trusted(tampered)
    assert "trusted: yes" in cli("bundle", "info", tampered).stdout
    # the same bundle unpacked is the same bundle; one changed byte is another one
    folder = tmp_path / "unpacked"
    folder.mkdir()
    for name, raw in members(tampered).items():
        (folder / name).write_bytes(raw)
    assert load_trusted_bundle(folder).digest == digest
    (folder / CARD_NAME).write_bytes(b"# edited\n")
    with pytest.raises(UntrustedBundleError):
        load_trusted_bundle(folder)
    # an explicit trust file overrides the environment
    other = tmp_path / "other.json"
    trust_bundle(folder, other)
    assert is_trusted(folder, other) and not is_trusted(folder)


def test_digest_is_sha256sum_of_the_members(shipped):
    data = members(shipped)
    import hashlib
    lines = "".join(f"{hashlib.sha256(data[n]).hexdigest()}  {n}\n" for n in sorted(data))
    assert load_bundle(shipped).digest == hashlib.sha256(lines.encode()).hexdigest()
    assert bundle_digest(data) == load_bundle(shipped).digest


def test_broken_trust_list_is_exit_3(shipped, tmp_path, tampered):
    bad = tmp_path / "trusted.json"
    bad.write_text('{"version": 1, "bundles": [{"digest": "x"}]}')
    r = cli("run", EXAMPLES[0], "--bundle", tampered, "--trust-file", bad, "--out", tmp_path / "o")
    assert r.exit_code == EXIT_BUNDLE and "trust list" in one_line_error(r)


def test_duplicate_manifest_key_is_refused(shipped, tmp_path):
    data = members(shipped)
    text = data[MANIFEST_NAME].decode()
    data[MANIFEST_NAME] = text.replace('"threshold":', '"threshold": 0.99, "threshold":', 1).encode()
    with pytest.raises(BundleError, match="twice"):
        load_bundle(rezip(tmp_path / "dup.zip", data))


def test_unpacked_folder_with_an_extra_file_is_refused_like_the_zip(shipped, tmp_path):
    data = members(shipped)
    with pytest.raises(BundleError, match="unexpected archive member"):
        load_bundle(rezip(tmp_path / "extra.zip", {**data, "evil.py": b"import os"}))
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, raw in data.items():
        (folder / name).write_bytes(raw)
    assert load_bundle(folder).kind == "folder"
    (folder / "evil.py").write_text("import os\n")
    with pytest.raises(BundleError, match="unexpected file evil.py"):
        load_bundle(folder)


# ---------------------------------------------------------------- 3 FIFOs and other non-files

def _no_hang(fn, fifos, seconds=30):
    """Run ``fn`` in a thread; if it blocks on a FIFO, unblock it and fail."""
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for f in fifos:      # release the reader so that the thread can end
            try:
                fd = os.open(f, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass
        thread.join(5)
        pytest.fail(f"hung on a FIFO: {fifos}")
    return box["r"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_are_refused_without_hanging(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(blob_scan()).save(d / "good.png")
    os.mkfifo(d / "scan.png")                         # inside a folder
    arg = tmp_path / "arg.png"
    os.mkfifo(arg)                                     # as an argument
    target = tmp_path / "target"
    os.mkfifo(target)
    link = tmp_path / "link.png"
    link.symlink_to(target)                            # through a symbolic link
    fifos = [d / "scan.png", arg, target]
    r = _no_hang(lambda: cli("run", d, arg, link, "--out", tmp_path / "out"), fifos)
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    assert "1 done, 3 failed" in r.stderr and r.stderr.count("FIFO") == 3

    zfifo, tfifo = tmp_path / "model.zip", tmp_path / "model.tflite"
    os.mkfifo(zfifo)
    os.mkfifo(tfifo)
    for args in (["run", d / "good.png", "--bundle", zfifo, "--out", tmp_path / "o"],
                 ["run", d / "good.png", "--bundle", tfifo, "--out", tmp_path / "o"],
                 ["bundle", "info", zfifo], ["bundle", "info", tfifo], ["bundle", "trust", zfifo]):
        r = _no_hang(lambda args=args: cli(*args), [zfifo, tfifo])
        assert r.exit_code == EXIT_BUNDLE and "FIFO" in one_line_error(r), (args, r.output)
    r = _no_hang(lambda: cli("bench", zfifo, tfifo, "--runs", "1", "--no-memory",
                             "--no-sgemm", "-q"), [zfifo, tfifo])
    assert r.exit_code == EXIT_SOME_FAILED and r.output.count("FIFO") >= 2, r.output


# ---------------------------------------------------------------- 4 bounded memory

def _old_prepare(gray, spec):
    geo = preprocess.geometry_for(*gray.shape)
    x = gray.astype(np.float32, copy=False)
    x = preprocess._letterbox(x, geo, fill=float(x.min()))
    return preprocess.normalise(preprocess._resize(x, (spec.input_size,) * 2), spec), geo


def _old_restore(prob, geo):
    square = preprocess._resize(prob, (geo.side, geo.side))
    return square[geo.top:geo.top + geo.height, geo.left:geo.left + geo.width]


@pytest.mark.parametrize("chunk", [5000, 1 << 22])   # many blocks / the one-call fast path
@pytest.mark.parametrize("shape", [(300, 512), (512, 201), (517, 333), (40, 400), (257, 256),
                                   (1000, 999), (64, 64)])
def test_letterbox_without_the_square_is_byte_identical(shape, chunk, monkeypatch):
    rng = np.random.default_rng(sum(shape))
    spec = preprocess.Preprocessing(input_size=128)
    gray = (rng.random(shape) * 4000).astype(np.uint16)
    monkeypatch.setattr(preprocess, "CHUNK_PIXELS", chunk)   # still the same bytes
    a, ga = _old_prepare(gray, spec)
    b, gb = preprocess.prepare_image(gray, spec)
    assert ga == gb and a.tobytes() == b.tobytes()
    prob = rng.random((128, 128)).astype(np.float32)
    assert _old_restore(prob, ga).tobytes() == preprocess.restore(prob, gb).tobytes()
    mask = rng.random(shape) > 0.6
    old = (preprocess._resize(preprocess._letterbox(mask.astype(np.float32), ga, 0.0),
                              (128, 128)) >= 0.5).astype(np.uint8)
    assert old.tobytes() == preprocess.prepare_mask(mask, spec).tobytes()


def test_shipped_masks_of_non_square_scans_unchanged(shipped):
    """The real model, crops of an example: the same masks as pad-then-resize."""
    seg = Segmenter(load_bundle(shipped), threads=1)
    full = np.asarray(Image.open(EXAMPLES[0]).convert("L"))
    for crop in (full[:300], full[:, 100:301], full[40:100]):
        x, geo = preprocess.prepare_image(crop, seg.spec)
        old_x, _ = _old_prepare(crop, seg.spec)
        assert x.tobytes() == old_x.tobytes()
        from edge_runtime.interpreter import run_model
        small = run_model(seg.interpreter, x)
        assert preprocess.restore(small, geo).tobytes() == _old_restore(small, geo).tobytes()


def test_memory_is_bounded_by_the_model_not_the_long_side():
    spec = preprocess.Preprocessing(input_size=256)
    gray = np.zeros((6000, 600), np.uint8)                  # aspect 10: the limit
    tracemalloc.start()
    _x, geo = preprocess.prepare_image(gray, spec)
    preprocess.restore(np.zeros((256, 256), np.float32), geo)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the padded square alone is 6000 x 6000 x 4 bytes = 144 MB; the scan's own prob 14 MB
    assert peak < 50e6, peak


def test_extreme_aspect_ratio_is_refused(tmp_path):
    p = tmp_path / "strip.png"
    Image.fromarray(np.zeros((16, 12000), np.uint8)).save(p)
    with pytest.raises(InputImageError, match="aspect ratio"):
        load_scan(p)
    with pytest.raises(ValueError, match="aspect ratio"):
        preprocess.prepare_image(np.zeros((16, 400), np.uint8), preprocess.Preprocessing())


# ---------------------------------------------------------------- 5 malformed manifests

@pytest.mark.parametrize("text, fragment", [
    ('{"schema_version": 2, "x": ' + "9" * 5000 + "}", "digits"),
    ('{"training": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"training": ' + "[" * 40 + "]" * 40 + "}", "nested too deeply"),
    ('{"threshold": NaN}', "not JSON"),
], ids=["5000-digit-int", "100k-deep", "40-deep", "NaN"])
def test_malformed_manifest_is_exit_3_one_line(shipped, tmp_path, text, fragment):
    data = members(shipped)
    data[MANIFEST_NAME] = text.encode()
    bad = rezip(tmp_path / "bad.zip", data)
    with pytest.raises(BundleError, match=fragment):
        load_bundle(bad)
    r = cli("bundle", "info", bad)
    assert r.exit_code == EXIT_BUNDLE and fragment in one_line_error(r)
    r = cli("run", EXAMPLES[0], "--bundle", bad, "--allow-untrusted", "--out", tmp_path / "o")
    assert r.exit_code == EXIT_BUNDLE and fragment in one_line_error(r)


# ---------------------------------------------------------------- 6 closed or full stdout

def _scan_folder(root, n=6, size=48):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(blob_scan(size, size)).save(root / f"s{i:03d}.png")
    return root


def _subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_closed_stdout_reports_what_was_done(tmp_path):
    d = _scan_folder(tmp_path / "in", n=8)
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "run", str(d), "--json",
                             "--threads", "1", "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env=_subprocess_env())
    first = proc.stdout.readline()           # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(120) == EXIT_INCOMPLETE, err
    assert json.loads(first)["source"].endswith("s000.png")
    assert "Traceback" not in err and "the run did not finish" in err
    assert "stdout was closed" in err and "written: " in err and "not processed" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_stdout_is_not_a_traceback(tmp_path):
    d = _scan_folder(tmp_path / "in", n=3)
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "run", str(d),
                               "--threads", "1", "--out", str(tmp_path / "out")],
                              stdout=full, stderr=subprocess.PIPE, cwd=ROOT,
                              env=_subprocess_env(), timeout=120, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == EXIT_INCOMPLETE, err
    assert "Traceback" not in err and "No space left" in err and "written: " in err


# ---------------------------------------------------------------- 7 unreadable file, SIGINT

def test_unreadable_file_is_reported_with_the_rest(tmp_path, monkeypatch):
    from edge_runtime import imageio
    d = _scan_folder(tmp_path / "in", n=2)
    locked = d / "s001.png"
    real_access, real_open = os.access, imageio._open_binary

    def access(path, mode, *a, **k):       # as a non-root user would see a chmod 000 file
        return False if Path(path) == locked else real_access(path, mode, *a, **k)

    def open_binary(path):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real_open(path)
    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(imageio, "_open_binary", open_binary)
    r = cli("run", d / "s000.png", locked, "--out", tmp_path / "out")
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    assert "1 done, 1 failed" in r.stderr and "permission denied" in r.stderr


def test_interrupt_prints_what_was_done(tmp_path, monkeypatch):
    d = _scan_folder(tmp_path / "in", n=4)
    real = Segmenter.segment
    calls = []

    def segment(self, scan):
        calls.append(scan)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, scan)
    monkeypatch.setattr(Segmenter, "segment", segment)
    r = cli("run", d, "--out", tmp_path / "out")
    assert r.exit_code == EXIT_INTERRUPTED, r.output
    assert "2 done, 0 failed, 2 not processed" in r.stderr and "interrupted" in r.stderr
    assert r.stderr.count("written: ") == 2 and "Aborted" not in r.output


def test_run_batch_library_stops_and_reports(tmp_path, shipped):
    d = _scan_folder(tmp_path / "in", n=4)
    paths = sorted(d.iterdir())
    (tmp_path / "out").mkdir()
    seen = []

    def on_result(path, findings):
        seen.append(path)
        if len(seen) == 2:
            raise StopBatch("enough")
    s = run_batch(paths, Segmenter(load_bundle(shipped), threads=1), tmp_path / "out",
                  on_result=on_result)
    assert s.stopped == "enough" and not s.finished
    assert [p for p, _ in s.done] == paths[:2] and s.pending == paths[2:] and not s.failed


# ---------------------------------------------------------------- 8 names on a terminal

@pytest.mark.parametrize("name", ["a\nfake: tumour found.png", "b\rX.png", "c\x1b[31mred.png",
                                  b"d\xff\xfe.png"])
def test_odd_names_stay_on_one_escaped_line(tmp_path, name):
    d = tmp_path / "in"
    d.mkdir()
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    with open(os.path.join(os.fsencode(d), raw), "wb") as fh:
        fh.write(b"not an image")
    r = cli("run", d, "--out", tmp_path / "out")
    assert r.exit_code == EXIT_SOME_FAILED
    failed = [ln for ln in r.stderr.splitlines() if "failed:" in ln]
    assert len(failed) == 1 and "\x1b" not in r.output and "\r" not in r.output
    assert "\\" in failed[0] and "'" in failed[0]             # escaped and quoted
    assert all(0xD800 > ord(c) or ord(c) > 0xDFFF for c in r.output)


def test_bundle_name_cannot_forge_a_line(shipped, tmp_path):
    data = members(shipped)
    manifest = json.loads(data[MANIFEST_NAME])
    manifest["name"] = "ok\ntrusted: yes (pinned by the package)"
    data[MANIFEST_NAME] = json.dumps(manifest).encode()
    r = cli("bundle", "info", rezip(tmp_path / "n.zip", data))
    assert r.exit_code == 0
    assert "trusted: NO" in r.stdout
    assert not any(ln.startswith("trusted: yes") for ln in r.stdout.splitlines())


# ---------------------------------------------------------------- 9 long names, stale temps

def test_long_stem_that_fits_is_written(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    stem = "s" * 240                        # final names up to 254 bytes; temp names must fit
    Image.fromarray(blob_scan()).save(d / f"{stem}.png")
    r = cli("run", d, "--out", tmp_path / "out")
    assert r.exit_code == EXIT_OK, r.output
    assert (tmp_path / "out" / f"{stem}_findings.json").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ours = out / f".scan_mask.png.ab12cd_9{TEMP_SUFFIX}"
    young = out / f".scan_overlay.png.zz12cd_9{TEMP_SUFFIX}"
    keep = [out / ".scan_mask.png.ab12cd_9.tmp", out / "notes.tmp", out / "x.edge-seg.tmp"]
    for p in [ours, young, *keep]:
        p.write_bytes(b"partial")
    old = time.time() - 3600
    for p in [ours, *keep]:
        os.utime(p, (old, old))
    sub = out / "sub"
    sub.mkdir()
    deep = sub / ours.name
    deep.write_bytes(b"x")
    os.utime(deep, (old, old))
    d = _scan_folder(tmp_path / "in", n=1)
    r = cli("run", d, "--out", out)
    assert r.exit_code == EXIT_OK, r.output
    assert not ours.exists() and "stale temporary" in r.stderr
    assert young.exists() and deep.exists() and all(p.exists() for p in keep)
    assert remove_stale_temporaries(out, older_than=0) == [young]


# ---------------------------------------------------------------- 10 errors and warnings

def test_bare_tflite_load_error_names_the_file(tmp_path):
    bad = tmp_path / "broken_model.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    r = cli("run", EXAMPLES[0], "--bundle", bad, "--allow-untrusted", "--out", tmp_path / "o")
    assert r.exit_code == EXIT_BUNDLE and "broken_model.tflite" in one_line_error(r)


def _corrupt_exif_jpeg(path, orientation=6):
    img = Image.fromarray(blob_scan(64, 96))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    data = bytearray(buf.getvalue())
    start = data.find(b"Exif") + 6
    data[start + 8:start + 10] = b"\xff\x00"        # an IFD that claims 65280 entries
    path.write_bytes(bytes(data))


def test_library_warning_is_one_named_line(tmp_path):
    p = tmp_path / "in" / "corrupt_exif.jpg"
    p.parent.mkdir()
    _corrupt_exif_jpeg(p)
    r = cli("run", p, "--out", tmp_path / "out")
    assert r.exit_code == EXIT_OK, r.output
    warn = [ln for ln in r.stderr.splitlines() if "Corrupt EXIF" in ln]
    assert len(warn) == 1 and warn[0].startswith("warning: ") and "corrupt_exif.jpg" in warn[0]
    assert "warnings.warn" not in r.stderr


def test_exif_orientation_is_applied_and_said(tmp_path):
    img = Image.fromarray(blob_scan(64, 96))        # 96 wide, 64 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6                                # shown rotated: 64 wide, 96 high
    p = tmp_path / "in" / "phone.jpg"
    p.parent.mkdir()
    img.save(p, "JPEG", exif=exif.tobytes(), quality=95)
    assert load_scan(p).pixels.shape == (96, 64)
    r = cli("run", p, "--out", tmp_path / "out")
    assert r.exit_code == EXIT_OK and "EXIF orientation 6 applied" in r.stderr
    assert Image.open(tmp_path / "out" / "phone_mask.png").size == (64, 96)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_multi_frame_image_is_refused_in_one_line(tmp_path, fmt):
    frames = [Image.fromarray(blob_scan(value=v)) for v in (200, 100)]
    p = tmp_path / f"stack.{fmt.lower()}"
    frames[0].save(p, fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(InputImageError, match="multi-frame image \\(2 frames\\)"):
        load_scan(p)
