"""Prove the device install on aarch64: edge-seg under an emulated Cortex-A72 (qemu-user).

Builds (once, cached) a Debian bookworm arm64 sysroot with debootstrap, downloads aarch64
wheels on the host, installs the DEVICE install of edge-seg (a wheel of this checkout) into
aarch64 venvs, one per TFLite interpreter package, and runs under
``qemu-aarch64-static -cpu cortex-a72 -L SYSROOT``:

    edge-seg --version
    edge-seg run SCANS --bundle BUNDLE --out OUT --threads 1 --json
    edge-seg bench BUNDLE --runs 1 --warmup 0 --threads 1
    edge-seg bench KIT --suite paper --runs 1 --warmup 0 --threads 1 --no-memory
    python -m pytest -m device tests/...    (litert venv; a chosen part of the device suite)

The masks are compared with the ones the same ``edge-seg run`` command writes on this x86
host with the same interpreter package (the host environment for ai-edge-litert, a cached x86
venv for tflite-runtime 2.14 + numpy<2): per scan "identical", "close" (Dice >= 0.999:
float rounding flipped a few boundary pixels) or "boundary" (a warning: Dice >= 0.995 and
every flipped pixel on the mask's boundary), else the run fails.

The kit run (``--kit``, default bench/paper_kit) proves the paper suite on aarch64 for
correctness, not timing: a copy of the kit without the paper-size references (about 100 GFLOP
per scan: minutes per inference emulated) must give exit 0 and a row per model, each ``ok`` or
``missing`` with a reason. With ``--kit-references`` (not in CI: it adds tens of minutes) the
copy holds the references' templates instead, so the suite regenerates them on aarch64 (their
pinned sha256 checked) and measures them too, and every row must be ``ok``: the whole table,
made on ARM from what a fresh clone holds.

The device tests (on by default, ``--no-device-tests`` skips them) install pytest into the
emulated ai-edge-litert venv and run ``DEVICE_TESTS`` (``-m device``) from a folder holding
only copies of tests/ and examples/, so they test the installed wheel; a failed test fails the
check and is named in its last line.

Exit codes: 0 all scans agree and bench ran; 1 a mask differs or an emulated command failed;
2 usage (bad arguments, no bundle, no scans); 3 setup failed (tools, sysroot, venv);
77 skipped: the Debian mirror or the package index cannot be reached (cold cache only).

Cache: ``--cache`` (default ``$EDGE_SEG_ARM_CACHE`` or ``~/.cache/edge-seg/arm64``) holds the
sysroot, the wheels and the venvs; a warm run needs no network. See docs/ARM.md.

No binfmt_misc is assumed: every aarch64 program is started through qemu-aarch64-static. A
venv's ``bin/python`` is a small host shell script that does that, so the Python processes
edge-seg starts itself (``edge-seg bench`` measures memory and the sgemm ceiling in fresh
processes) run emulated too.
"""

import argparse
import contextlib
import fcntl
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_SETUP, EXIT_NO_NETWORK = 0, 1, 2, 3, 77

RECIPE = 1                  # bump to rebuild every cached sysroot, wheel folder and venv
SUITE = "bookworm"
PYTHON = "3.11"             # bookworm's python3, as on Raspberry Pi OS bookworm
QEMU_CPU = "cortex-a72"     # the Raspberry Pi 4's core
DICE_TOLERANCE = 0.999
# Below the tolerance but every flipped pixel on the reference mask's boundary: reported as
# "boundary" (a warning, not a failure) down to this Dice; anything else is DIFFERENT.
BOUNDARY_FLOOR = 0.995
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SYSROOT_PACKAGES = ("python3", "python3-venv", "libstdc++6")
WHEEL_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64",
                   "manylinux_2_28_aarch64", "manylinux_2_31_aarch64", "manylinux_2_34_aarch64",
                   "manylinux_2_36_aarch64")   # bookworm: glibc 2.36
NETWORK_ERRORS = ("Temporary failure in name resolution", "Name or service not known",
                  "Network is unreachable", "Connection refused", "Max retries exceeded",
                  "NewConnectionError", "ConnectTimeout", "ReadTimeout", "timed out",
                  "No route to host", "Could not resolve host", "Failed to establish",
                  "ProxyError", "Cannot connect")

# One venv per interpreter package. ``deps``: install edge-seg with its own dependencies
# (the plain ``pip install edge-seg`` a Pi user runs) or --no-deps plus ``requirements``.
INTERPRETERS = {
    "litert": {
        "requirements": ("numpy", "pillow", "click", "psutil", "ai-edge-litert"),
        "edge_seg_deps": True,
        "package": "ai-edge-litert",
    },
    "tflite_runtime": {
        "requirements": ("numpy<2", "pillow", "click", "psutil", "tflite-runtime==2.14.0"),
        "edge_seg_deps": False,   # edge-seg's install_requires would pull ai-edge-litert
        "package": "tflite-runtime",
    },
}
# ``--dicom``: the litert device install plus the ``dicom`` extra (``pip install
# 'edge_seg-*.whl[dicom]'``), in a venv of its own; a synthetic JPEG 2000 MR series goes
# through ``edge-seg run SERIES/`` there and on x86 (docs/DICOM.md).
DICOM_VENV = {
    "requirements": INTERPRETERS["litert"]["requirements"] + (
        "pydicom>=3.0", "highdicom>=0.22", "pynetdicom>=2.0", "pylibjpeg>=2.0",
        "pylibjpeg-libjpeg>=2.1", "pylibjpeg-openjpeg>=2.1", "pylibjpeg-rle>=2.0"),
    "edge_seg_deps": True,
    "extra": "dicom",
    "package": "ai-edge-litert",
}
VENVS = {**INTERPRETERS, "dicom": DICOM_VENV}

# The device-tests stage (on by default; ``--no-device-tests`` skips it): pytest and its
# pure-Python dependencies (cached aarch64 wheels of their own) in the litert venv, then a
# chosen part of the device suite (``pytest -m device``) from a copy of tests/ and examples/,
# against the installed edge-seg wheel. Whole files, so that a new test in one of them runs
# here too. Chosen for what they cover at a few emulated seconds each (docs/ARM.md says why
# these): the whole device suite would cost several emulated minutes, and some of its files
# import bench/ or extras that the device install does not have.
TEST_REQUIREMENTS = ("pytest>=7",)
DEVICE_TESTS = (
    "tests/test_runtime_interpreter.py",   # the interpreter: load, threads, choice, no TF
    "tests/test_bundle.py",                # bundle loading and verification (checksums)
    "tests/test_imageio.py",               # reading scans (the preprocessing's input)
    "tests/test_runtime_postprocess.py",   # postprocessing: components, filters, findings
    "tests/test_cli_run.py",               # edge-seg run end to end on the tiny bundle
    "tests/test_shipped.py",               # the shipped bundle finds each example's tumour
    "tests/test_seeded_weights.py",        # the kit's seeded references: same bytes on aarch64
)
DEVICE_TESTS_TIMEOUT = 1200                # seconds; the chosen tests take ~1-2 min emulated

CPUINFO_ONE = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

"""
CPUINFO_TAIL = """Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4 (emulated: qemu-user -cpu cortex-a72)
"""


class ArmError(Exception):
    """One-line failure with an exit code."""

    exit_code = EXIT_SETUP


class NoNetwork(ArmError):
    exit_code = EXIT_NO_NETWORK


class UsageError(ArmError):
    exit_code = EXIT_USAGE


class Mismatch(ArmError):
    exit_code = EXIT_MISMATCH


# ----------------------------------------------------------------------------- arguments

def repo_root():
    return Path(__file__).resolve().parent.parent.parent


def default_cache():
    env = os.environ.get("EDGE_SEG_ARM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edge-seg" / "arm64"


def build_parser():
    root = repo_root()
    p = argparse.ArgumentParser(
        prog="bench/arm/emulate.sh",
        description="Run the device install of edge-seg on an emulated Cortex-A72 (aarch64) "
                    "and compare its masks with this host's.",
        epilog="Exit codes: 0 ok, 1 masks differ or a command failed, 2 usage, 3 setup failed, "
               "77 skipped (no network on a cold cache).")
    p.add_argument("--bundle", type=Path, default=root / "edge_runtime" / "models" / "default.zip",
                   help="bundle to run (default: the shipped edge_runtime/models/default.zip)")
    p.add_argument("--scans", type=Path, nargs="+", default=[root / "examples"],
                   help="scan files or folders (default: examples/)")
    p.add_argument("--cache", type=Path, default=None,
                   help="cache folder for sysroot, wheels, venvs "
                        "(default: $EDGE_SEG_ARM_CACHE or ~/.cache/edge-seg/arm64)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default: CACHE/out; replaced on each run)")
    p.add_argument("--interpreters", default="litert,tflite_runtime",
                   help="comma-separated: " + ", ".join(INTERPRETERS) + " (default: both)")
    p.add_argument("--mirror", default=os.environ.get("EDGE_SEG_ARM_MIRROR"),
                   help="Debian mirror (default: $EDGE_SEG_ARM_MIRROR, else the host's apt "
                        "sources, else " + DEFAULT_MIRROR + ")")
    p.add_argument("--tolerance", type=float, default=DICE_TOLERANCE,
                   help=f"smallest Dice accepted when masks are not identical (default {DICE_TOLERANCE})")
    p.add_argument("--no-bench", action="store_true", help="skip edge-seg bench under emulation")
    p.add_argument("--kit", type=Path, default=root / "bench" / "paper_kit",
                   help="benchmark kit for the emulated `edge-seg bench KIT --suite paper` "
                        "(default: the committed bench/paper_kit; its paper-size references "
                        "are left out: too slow to emulate)")
    p.add_argument("--no-kit", action="store_true", help="skip the kit suite under emulation")
    p.add_argument("--kit-references", action="store_true",
                   help="keep the paper-size references in the emulated kit (regenerated from "
                        "their templates on aarch64, then measured: tens of minutes) and "
                        "require every row of the table to be measured")
    p.add_argument("--dicom", action="store_true",
                   help="also install the dicom extra (its own venv) and run a synthetic "
                        "JPEG 2000 MR series through edge-seg run on both sides")
    p.add_argument("--no-device-tests", action="store_true",
                   help="skip the device tests (pytest -m device on a chosen part of tests/, "
                        "see docs/ARM.md) in the aarch64 ai-edge-litert venv")
    p.add_argument("--refresh", action="store_true",
                   help="rebuild the sysroot and venvs and download the wheels again")
    return p


def parse_args(argv=None):
    """-> argparse.Namespace with checked paths; raises UsageError (exit 2)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:           # argparse already printed its one-line error/help
        if exc.code in (0, None):
            raise
        raise UsageError("bad arguments (see --help)") from None
    names = [n.strip() for n in args.interpreters.split(",") if n.strip()]
    unknown = [n for n in names if n not in INTERPRETERS]
    if not names or unknown:
        raise UsageError(f"--interpreters {args.interpreters!r}: allowed "
                         f"{', '.join(INTERPRETERS)}")
    args.interpreters = list(dict.fromkeys(names))
    if not 0.0 < args.tolerance <= 1.0:
        raise UsageError(f"--tolerance {args.tolerance}: must be in (0, 1]")
    if not args.bundle.exists():
        hint = " (the shipped default bundle is not built yet; pass --bundle)" \
            if args.bundle == parser.get_default("bundle") else ""
        raise UsageError(f"bundle not found: {args.bundle}{hint}")
    args.bundle = args.bundle.resolve()
    scans = []
    for path in args.scans:
        if not path.exists():
            raise UsageError(f"scans not found: {path}")
        scans.append(path.resolve())
    args.scans = scans
    if not args.no_kit and not (args.kit / "kit.json").is_file():
        raise UsageError(f"--kit {args.kit}: no kit.json there (python -m bench.kit, or "
                         "--no-kit)")
    args.kit = args.kit.resolve()
    args.cache = (args.cache or default_cache()).expanduser().resolve()
    args.out = (args.out or args.cache / "out").expanduser().resolve()
    for path in scans:
        if args.out == path or path in args.out.parents or args.out in path.parents:
            raise UsageError(f"--out {args.out} overlaps the scans in {path}")
    return args


# ----------------------------------------------------------------------------- the kit

# Left out of the emulated kit: ~100 GFLOP per scan is minutes per inference under qemu.
SLOW_ROLES = ("paper-reference",)


def emulation_kit(kit_dir, dest, references=False):
    """Copy the kit at ``kit_dir`` to ``dest`` -> dest. Its paper-size references are left
    out (their rows then say ``missing``: not in this copy), or with ``references`` only their
    templates go in, as in a fresh clone, so the suite regenerates them where it runs."""
    kit_dir, dest = Path(kit_dir), Path(dest)
    manifest = json.loads((kit_dir / "kit.json").read_text(encoding="utf-8"))
    (dest / "models").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kit_dir / "kit.json", dest / "kit.json")
    for e in manifest.get("entries", []):
        rel = e.get("file")
        if e.get("role") in SLOW_ROLES:
            if not references:
                continue
            rel = (e.get("seeded_from") or {}).get("template", rel)
        if rel and (kit_dir / rel).is_file():
            shutil.copyfile(kit_dir / rel, dest / rel)
    return dest


def check_kit_table(path, complete=False):
    """The suite's JSON -> (summary dict, problems list): every row ok or missing with a
    reason (with ``complete``: every row ok), at least one measured."""
    table = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = table.get("rows") or []
    allowed = ("ok",) if complete else ("ok", "missing")
    problems = [f"{r.get('id')}: {r.get('status')} ({r.get('reason')})" for r in rows
                if r.get("status") not in allowed
                or (r.get("status") == "missing" and not r.get("reason"))]
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        problems.append("no model measured")
    problems += [f"{r['id']}: no p50" for r in ok if not r.get("p50_ms_t1")]
    host = table.get("host") or {}
    return ({"measured": len(ok), "missing": sum(r.get("status") == "missing" for r in rows),
             "rows": len(rows), "arch": host.get("arch"), "cpu": host.get("cpu"),
             "isa": host.get("isa"), "interpreter": host.get("interpreter")}, problems)


# ----------------------------------------------------------------------------- comparing

def load_mask(path):
    import numpy as np
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 0


def mask_agreement(a, b, tolerance=DICE_TOLERANCE):
    """Compare two masks (any non-zero pixel is tumour) -> dict.

    ``status``: "identical" (every pixel equal), "close" (Dice >= tolerance: float rounding
    flipped boundary pixels), "boundary" (below the tolerance, Dice >= BOUNDARY_FLOOR, and
    every flipped pixel on the reference mask's boundary: a warning), "DIFFERENT" (anything
    else, or another shape). Dice of two empty masks is 1.0.
    """
    import numpy as np
    a = np.asarray(a) != 0
    b = np.asarray(b) != 0
    if a.shape != b.shape:
        return {"status": "DIFFERENT", "dice": None, "differing_px": None,
                "pixels_a": int(a.sum()), "pixels_b": int(b.sum()),
                "detail": f"shape {a.shape} vs {b.shape}"}
    inter = int(np.logical_and(a, b).sum())
    na, nb = int(a.sum()), int(b.sum())
    xor = np.logical_xor(a, b)
    differing = int(xor.sum())
    dice = 1.0 if na + nb == 0 else 2.0 * inter / (na + nb)
    # A flipped pixel "on the boundary" has a pixel of the other class among its 8 neighbours
    # in the reference mask: what float rounding near the threshold does. Off-boundary flips
    # (a new blob, a hole) mean the models compute different things.
    off_boundary = int((xor & _interior(a)).sum()) if differing else 0
    if differing == 0:
        status = "identical"
    elif dice >= tolerance:
        status = "close"
    elif off_boundary == 0 and dice >= min(tolerance, BOUNDARY_FLOOR):
        status = "boundary"
    else:
        status = "DIFFERENT"
    detail = "" if not differing else (
        "every differing pixel on the reference mask's boundary" if off_boundary == 0
        else f"{off_boundary} differing px off the reference mask's boundary")
    return {"status": status, "dice": dice, "differing_px": differing,
            "off_boundary_px": off_boundary, "pixels_a": na, "pixels_b": nb, "detail": detail}


def _interior(mask):
    """Pixels whose 3x3 neighbourhood (edge-replicated) is all one class in ``mask``."""
    import numpy as np
    p = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    same = np.ones((h, w), dtype=bool)
    for dy in range(3):
        for dx in range(3):
            same &= p[dy:dy + h, dx:dx + w] == mask
    return same


def compare_runs(ref_dir, arm_dir, tolerance=DICE_TOLERANCE):
    """Compare every ``*_mask.png`` of the reference run with the emulated run's -> rows.

    A mask missing on either side is a row with status "MISSING".
    """
    ref_dir, arm_dir = Path(ref_dir), Path(arm_dir)
    ref = {p.name for p in ref_dir.glob("*_mask.png")}
    arm = {p.name for p in arm_dir.glob("*_mask.png")} if arm_dir.is_dir() else set()
    rows = []
    for name in sorted(ref | arm):
        scan = name[: -len("_mask.png")]
        if name not in ref or name not in arm:
            side = "aarch64" if name not in arm else "x86"
            rows.append({"scan": scan, "status": "MISSING", "dice": None, "differing_px": None,
                         "pixels_a": None, "pixels_b": None, "detail": f"no mask from {side}"})
            continue
        row = mask_agreement(load_mask(ref_dir / name), load_mask(arm_dir / name), tolerance)
        rows.append({"scan": scan, **row})
    return rows


PASSING = ("identical", "close", "boundary")


def rows_ok(rows):
    return bool(rows) and all(r["status"] in PASSING for r in rows)


def format_row(row):
    dice = "-" if row["dice"] is None else f"{row['dice']:.6f}"
    diff = "-" if row["differing_px"] is None else str(row["differing_px"])
    px = "-" if row["pixels_a"] is None else f"{row['pixels_a']}/{row['pixels_b']}"
    text = f"  {row['scan']:<28} {row['status']:<10} dice {dice:<9} differing px {diff:<6} " \
           f"tumour px x86/arm {px}"
    return text + (f"  ({row['detail']})" if row.get("detail") else "")


# ----------------------------------------------------------------------------- helpers

def log(msg):
    print(f"[arm] {msg}", file=sys.stderr, flush=True)


def _tail(text, n=1):
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[:400] if lines else "no output"


def _looks_offline(text):
    return any(key.lower() in (text or "").lower() for key in NETWORK_ERRORS)


def run(cmd, *, what, env=None, cwd=None, timeout=None, check=True, capture=True, quiet=False):
    """Run ``cmd``; on failure raise ArmError(one line) (NoNetwork when it smells offline)."""
    if not quiet:
        log("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    try:
        proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None, text=True)
    except FileNotFoundError as exc:
        raise ArmError(f"{what}: {exc.filename} not found") from None
    except subprocess.TimeoutExpired:
        raise ArmError(f"{what}: timed out after {timeout} s") from None
    if check and proc.returncode != 0:
        text = (proc.stdout or "") + "\n" + (proc.stderr or "")
        cls = NoNetwork if _looks_offline(text) else ArmError
        raise cls(f"{what} failed (exit {proc.returncode}): {_tail(text)}")
    return proc


def probe(url, timeout=15):
    """True when ``url`` answers (any HTTP status counts: the host is reachable)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def host_mirror():
    """The Debian mirror in the host's apt sources (not the security one), if any."""
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")) \
        + sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    for name in files:
        try:
            text = Path(name).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            for url in re.findall(r"(https?://\S+)", line):
                url = url.rstrip("/")
                if "security" not in url and url.endswith("/debian"):
                    return url
    return None


def nice_prefix():
    """Run heavy work at the lowest priority: CI shares the machine with other jobs."""
    return ["nice", "-n", "19"] if shutil.which("nice") else []


def _stamp_ok(path, key):
    try:
        return json.loads(Path(path).read_text()).get("key") == key
    except (OSError, ValueError, AttributeError):
        return False


def _write_stamp(path, key, **extra):
    Path(path).write_text(json.dumps({"key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                      **extra}, indent=1) + "\n")


def _rmtree(path):
    if Path(path).is_symlink() or Path(path).is_file():
        Path(path).unlink()
    elif Path(path).exists():
        shutil.rmtree(path)


# ----------------------------------------------------------------------------- setup

def ensure_tools():
    """qemu-aarch64-static and debootstrap, installed with apt-get when missing (root)."""
    missing = [t for t in ("qemu-aarch64-static", "debootstrap", "dpkg-deb")
               if not shutil.which(t) and not Path("/usr/sbin", t).exists()]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ArmError(f"missing {', '.join(missing)}: run as root with apt-get, or "
                       "apt-get install qemu-user-static debootstrap")
    log(f"installing qemu-user-static debootstrap (missing: {', '.join(missing)})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = run(["apt-get", "update"], what="apt-get update", env=env, check=False)
    text = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0 or re.search(r"^(W|E): (Failed to fetch|Some index files)", text, re.M):
        if _looks_offline(text) or "Failed to fetch" in text:
            raise NoNetwork(f"apt-get update cannot reach the Debian mirror: {_tail(text)}")
        raise ArmError(f"apt-get update failed: {_tail(text)}")
    run(["apt-get", "install", "-y", "--no-install-recommends", "qemu-user-static",
         "debootstrap"], what="apt-get install qemu-user-static debootstrap", env=env)


def qemu_binary():
    path = shutil.which("qemu-aarch64-static")
    if not path:
        raise ArmError("qemu-aarch64-static not found (apt-get install qemu-user-static)")
    return path


def write_cpuinfo(sysroot):
    """qemu-user reads /proc/cpuinfo from the sysroot: LiteRT's cpuinfo library segfaults in
    allocate_tensors() on the host's x86 one, so give it a Cortex-A72's (one entry per host
    CPU: the core count seen through sched_getaffinity is the host's)."""
    n = os.cpu_count() or 1
    proc = Path(sysroot) / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "cpuinfo").write_text("".join(CPUINFO_ONE.format(n=i) for i in range(n)) + CPUINFO_TAIL)


def build_sysroot(cache, mirror, refresh=False):
    """-> path of a Debian bookworm arm64 sysroot with python3 + venv (cached)."""
    sysroot = cache / "sysroot"
    key = f"recipe{RECIPE}:{SUITE}:{','.join(SYSROOT_PACKAGES)}"
    stamp = sysroot / ".edge-seg-arm.json"
    if not refresh and _stamp_ok(stamp, key):
        write_cpuinfo(sysroot)
        return sysroot, False
    mirror = mirror or host_mirror() or DEFAULT_MIRROR
    if not probe(f"{mirror}/dists/{SUITE}/Release"):
        raise NoNetwork(f"cannot reach the Debian mirror {mirror}")
    tmp = cache / "sysroot.tmp"
    _rmtree(tmp)
    log(f"building the arm64 {SUITE} sysroot from {mirror} (debootstrap --foreign)")
    run(nice_prefix() + ["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
                         "--include=" + ",".join(SYSROOT_PACKAGES), SUITE, tmp, mirror],
        what="debootstrap", timeout=1800)
    debs = sorted((tmp / "var/cache/apt/archives").glob("*.deb"))
    if not debs:
        raise ArmError("debootstrap left no .deb files to unpack")
    log(f"unpacking {len(debs)} packages with dpkg-deb -x (no chroot, no second stage)")
    for deb in debs:
        run(["dpkg-deb", "-x", deb, tmp], what=f"dpkg-deb -x {deb.name}", timeout=600, quiet=True)
    for deb in debs:
        deb.unlink()
    if not (tmp / f"usr/bin/python{PYTHON}").exists():
        raise ArmError(f"the sysroot has no usr/bin/python{PYTHON}")
    if not list((tmp / "usr/share/python-wheels").glob("pip-*.whl")):
        raise ArmError("the sysroot has no pip wheel in usr/share/python-wheels")
    write_cpuinfo(tmp)
    _write_stamp(tmp / ".edge-seg-arm.json", key, mirror=mirror, debs=len(debs))
    _rmtree(sysroot)
    tmp.rename(sysroot)
    return sysroot, True


def pip_download(dest, requirements):
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-cache-dir",
           "--python-version", PYTHON, "--implementation", "cp", "--abi", "cp" + PYTHON.replace(".", "")]
    for plat in WHEEL_PLATFORMS:
        cmd += ["--platform", plat]
    return run(nice_prefix() + cmd + ["-d", dest, *requirements], what="pip download", timeout=1800)


def download_wheels(cache, name, refresh=False, requirements=None):
    """-> folder ``wheels-NAME`` of aarch64 cp311 wheels for venv ``name`` (``VENVS``), or
    for ``requirements`` when given (cached; the key is the requirements, not their
    versions: a warm cache needs no network)."""
    reqs = tuple(requirements or VENVS[name]["requirements"])
    folder = cache / f"wheels-{name}"
    key = f"recipe{RECIPE}:{PYTHON}:{','.join(WHEEL_PLATFORMS)}:{','.join(reqs)}"
    stamp = folder / ".edge-seg-arm.json"
    if not refresh and _stamp_ok(stamp, key):
        return folder, False
    tmp = cache / f"wheels-{name}.tmp"
    _rmtree(tmp)
    tmp.mkdir(parents=True)
    log(f"downloading aarch64 wheels for {name}: {' '.join(reqs)}")
    pip_download(tmp, reqs)
    if not list(tmp.glob("*.whl")):
        raise ArmError(f"pip download left no wheels for {name}")
    _write_stamp(tmp / ".edge-seg-arm.json", key, wheels=sorted(p.name for p in tmp.glob("*.whl")))
    _rmtree(folder)
    tmp.rename(folder)
    return folder, True


COPY_IGNORE = (".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".venv*", "runs",
               ".pytest_cache", "out")


def build_project_wheel(dest):
    """``pip wheel --no-deps .`` of this checkout on the host -> the wheel's path.

    Built from a copy of the working tree (without build/, runs/, .git): setuptools' build/
    folder would otherwise carry deleted files into the wheel, and the checkout stays clean.
    """
    _rmtree(dest)
    dest.mkdir(parents=True)
    src = dest / "src"
    shutil.copytree(repo_root(), src, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    base = nice_prefix() + [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
                            "-w", dest]
    try:   # no network needed when setuptools and wheel are on the host
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
        cmd = base + ["--no-build-isolation", "."]
    except ImportError:
        cmd = base + ["."]
    run(cmd, what="pip wheel --no-deps .", cwd=src, timeout=900)
    shutil.rmtree(src)
    wheels = sorted(dest.glob("edge_seg-*.whl"))
    if len(wheels) != 1:
        raise ArmError(f"pip wheel made {len(wheels)} edge-seg wheels in {dest}")
    return wheels[0]


class ArmVenv:
    """An aarch64 venv in the cache whose ``bin/python`` is a host script running the real
    ``bin/python3.11`` under qemu (so child processes of edge-seg are emulated too)."""

    def __init__(self, cache, sysroot, name):
        self.name = name
        self.path = cache / f"venv-{name}"
        self.sysroot = sysroot
        self.qemu = qemu_binary()
        self.real = self.path / "bin" / f"python{PYTHON}"
        self.python = self.path / "bin" / "python"

    def qemu_prefix(self):
        return [self.qemu, "-cpu", QEMU_CPU, "-L", str(self.sysroot), "-0", str(self.python),
                str(self.real)]

    def env(self, **extra):
        # the host's EDGE_SEG_* settings stay out, except the trust list: a bundle trusted
        # for the x86 run must be trusted for the emulated run of the same check
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "EDGE_SEG_", "LD_"))
               or k == "EDGE_SEG_TRUST"}
        env.update({"PYTHONNOUSERSITE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1",
                    "PIP_NO_INPUT": "1"})
        env.update(extra)
        return env

    def write_wrapper(self):
        text = ("#!/bin/sh\n"
                "# edge-seg ARM emulation: this venv's aarch64 Python under qemu-user (no binfmt_misc)\n"
                "exec " + " ".join(shlex.quote(str(c)) for c in self.qemu_prefix()) + ' "$@"\n')
        if self.python.is_symlink() or not self.python.exists() or self.python.read_text(errors="replace") != text:
            if self.python.exists() or self.python.is_symlink():
                self.python.unlink()
            self.python.write_text(text)
            self.python.chmod(0o755)
        for alias in ("python3",):
            link = self.path / "bin" / alias
            if link.exists() or link.is_symlink():
                link.unlink()
            link.symlink_to("python")

    def pip(self, *args, what):
        pip_whl = sorted((self.sysroot / "usr/share/python-wheels").glob("pip-*.whl"))[-1]
        # No byte-compiling of every installed file under emulation (minutes); Python writes
        # the .pyc of what is imported on first use, into the cached venv.
        compile_flag = ["--no-compile"] if args and args[0] == "install" else []
        # Debian's bundled pip wheel is runnable as a zip; --isolated ignores the host's pip.conf
        return run(nice_prefix() + [self.python, f"/usr/share/python-wheels/{pip_whl.name}/pip",
                                    "--isolated", "--no-cache-dir",
                                    "--disable-pip-version-check", *args, *compile_flag],
                   what=what, env=self.env(), timeout=1800)

    def create(self, wheels, edge_wheel, refresh=False):
        """The device install of ``edge_wheel`` in this venv -> True when the venv was built.

        Cold (no venv, or other wheels, or edge-seg's dependencies changed): a new venv, and
        for litert ``pip install edge_seg-*.whl`` resolving edge-seg's own dependencies
        exactly as ``pip install edge-seg`` does on aarch64 (from the cached wheels); for
        tflite_runtime its requirements, then edge-seg with --no-deps (its dependencies would
        pull ai-edge-litert). Warm: only edge-seg is reinstalled (forced: the version string
        does not change between commits).
        """
        spec = VENVS[self.name]
        key = (f"recipe{RECIPE}:" + ",".join(sorted(p.name for p in wheels.glob("*.whl")))
               + ":" + ";".join(wheel_requirements(edge_wheel)))
        stamp = self.path / ".edge-seg-arm.json"
        if not refresh and _stamp_ok(stamp, key) and self.real.exists():
            self.write_wrapper()
            self.pip("install", "--no-index", "--no-deps", "--force-reinstall",
                     str(edge_wheel), what=f"pip install edge-seg (aarch64, {self.name})")
            return False
        _rmtree(self.path)
        log(f"creating the aarch64 venv {self.path.name}")
        # qemu opens the program itself on the host path: name the sysroot's python3.11
        run(nice_prefix() + [self.qemu, "-cpu", QEMU_CPU, "-L", self.sysroot,
                             self.sysroot / f"usr/bin/python{PYTHON}", "-m", "venv",
                             "--without-pip", "--copies", self.path],
            what=f"venv {self.name}", env=self.env(), timeout=900)
        if not self.real.exists() or self.real.is_symlink():
            raise ArmError(f"venv {self.name}: no copied bin/python{PYTHON}")
        self.write_wrapper()
        if spec["edge_seg_deps"]:
            target = f"{edge_wheel}[{spec['extra']}]" if spec.get("extra") else str(edge_wheel)
            self.pip("install", "--no-index", "--find-links", wheels, target,
                     what=f"pip install edge-seg with its dependencies (aarch64, {self.name})")
        else:
            self.pip("install", "--no-index", "--find-links", wheels, *spec["requirements"],
                     what=f"pip install (aarch64, {self.name}) {' '.join(spec['requirements'])}")
            self.pip("install", "--no-index", "--no-deps", str(edge_wheel),
                     what=f"pip install --no-deps edge-seg (aarch64, {self.name})")
        _write_stamp(stamp, key)
        return True

    def add_packages(self, wheels, requirements, tag):
        """Install ``requirements`` from the wheel folder ``wheels`` into this venv, once: a
        stamp of their own (``.edge-seg-arm-TAG.json``, keyed on the wheels' names) keeps a
        warm venv warm and does not touch the venv's own key; a rebuilt venv (its folder is
        replaced) gets them again. -> True when pip ran."""
        key = f"recipe{RECIPE}:" + ",".join(sorted(p.name for p in Path(wheels).glob("*.whl")))
        stamp = self.path / f".edge-seg-arm-{tag}.json"
        if _stamp_ok(stamp, key):
            return False
        self.pip("install", "--no-index", "--find-links", wheels, *requirements,
                 what=f"pip install (aarch64, {self.name}) {' '.join(requirements)}")
        _write_stamp(stamp, key)
        return True

    def run_python(self, *args, cwd=None, env_extra=None, check=True, what, timeout=3600):
        """This venv's python under emulation with ``args`` (``-c CODE ...``)."""
        cmd = nice_prefix() + self.qemu_prefix() + list(args)
        return run(cmd, what=what, env=self.env(**(env_extra or {})), cwd=cwd,
                   timeout=timeout, check=check)

    def edge_seg(self, *args, env_extra=None, check=True, what=None, timeout=3600):
        cmd = nice_prefix() + self.qemu_prefix() + [self.path / "bin" / "edge-seg", *args]
        return run(cmd, what=what or f"edge-seg {args[0]} (aarch64, {self.name})",
                   env=self.env(**(env_extra or {})), timeout=timeout, check=check)


def wheel_requirements(wheel):
    """The Requires-Dist lines of a wheel's METADATA (a change rebuilds the cached venvs)."""
    import zipfile
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(name).decode("utf-8", "replace")
    return sorted(line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("Requires-Dist:"))


def host_edge_seg(*args, what, check=True, venv=None, env_extra=None):
    """The same command on this host (x86): the current environment's edge-seg, or the
    edge-seg of an x86 venv."""
    env = dict(os.environ, **(env_extra or {}))
    if venv is None:
        code = "import sys; from edge_runtime.cli import main; sys.argv[0] = 'edge-seg'; main()"
        cmd = [sys.executable, "-c", code, *args]
    else:
        env.pop("PYTHONPATH", None)
        cmd = [venv / "bin" / "python", venv / "bin" / "edge-seg", *args]
    return run(nice_prefix() + cmd, what=what, env=env, check=check, timeout=3600)


def x86_venv(cache, name, edge_wheel, refresh=False):
    """An x86 venv with interpreter ``name``'s requirements and this checkout's wheel: the
    reference for interpreters the host environment does not have (tflite_runtime needs
    numpy<2). -> (venv path, built)."""
    reqs = INTERPRETERS[name]["requirements"]
    path = cache / f"x86-venv-{name}"
    key = f"recipe{RECIPE}:{sys.version.split()[0]}:{','.join(reqs)}"
    built = refresh or not _stamp_ok(path / ".edge-seg-arm.json", key)
    pip = [path / "bin" / "python", "-m", "pip", "--disable-pip-version-check"]
    if built:
        _rmtree(path)
        log(f"creating the x86 reference venv {path.name}")
        run([sys.executable, "-m", "venv", path], what=f"x86 venv {name}", timeout=900)
        run(nice_prefix() + pip + ["install", "--no-compile", "--only-binary=:all:", *reqs],
            what=f"pip install (x86, {name}) {' '.join(reqs)}", timeout=1800)
        _write_stamp(path / ".edge-seg-arm.json", key)
    run(nice_prefix() + pip + ["install", "--no-deps", "--force-reinstall", "--no-compile",
                               str(edge_wheel)],
        what=f"pip install edge-seg (x86, {name})", timeout=900)
    return path, built


def x86_reference(args, name, edge_wheel):
    """``edge-seg run`` on x86 with interpreter ``name`` -> dict (dir, exit, findings, version)."""
    venv = None
    if name != "litert":
        venv, _ = x86_venv(args.cache, name, edge_wheel, args.refresh)
    extra = {"EDGE_SEG_INTERPRETER": name}
    ref_dir = args.out / f"x86-{name}"
    proc = host_edge_seg(*_run_args(args.scans, args.bundle, ref_dir), venv=venv,
                         env_extra=extra, what=f"edge-seg run (x86, {name})", check=False)
    if proc.returncode not in (0, 1) or not list(ref_dir.glob("*_mask.png")):
        raise ArmError(f"edge-seg run on the host ({name}) failed (exit {proc.returncode}): "
                       f"{_tail(proc.stderr)}")
    version = _version_line(host_edge_seg("--version", venv=venv, env_extra=extra,
                                          what=f"edge-seg --version (x86, {name})").stdout)
    return {"dir": ref_dir, "exit": proc.returncode, "findings": _findings(proc.stdout),
            "version": version}


# ----------------------------------------------------------------------------- device tests

# Run by the emulated python with -P (the current folder is not put on sys.path): prints where
# edge_runtime comes from (it must be the installed wheel in the venv), then runs pytest.
PYTEST_MAIN = ("import sys, edge_runtime, pytest; "
               "print('edge_runtime imported from', edge_runtime.__file__, flush=True); "
               "sys.exit(pytest.main())")
_EDGE_RUNTIME_LINE = re.compile(r"^edge_runtime imported from (\S+)", re.M)
_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed|"
                           r"warnings?)\b")
_PYTEST_COUNT_NAMES = {"error": "errors", "warning": "warnings"}


def device_tests_folder(dest, root=None):
    """A folder that holds only copies of ``tests/`` and ``examples/`` and a ``pytest.ini``
    with the project's ``[tool:pytest]`` settings (markers, filterwarnings) -> dest.

    No edge_runtime, bench or setup.cfg in it: the tests can import only the installed wheel.
    """
    import configparser
    root = Path(root or repo_root())
    dest = Path(dest)
    _rmtree(dest)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for sub in ("tests", "examples"):
        shutil.copytree(root / sub, dest / sub, ignore=ignore)
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(root / "setup.cfg", encoding="utf-8")
    ini = configparser.ConfigParser(interpolation=None)
    ini["pytest"] = dict(cfg["tool:pytest"]) if cfg.has_section("tool:pytest") else {}
    with open(dest / "pytest.ini", "w", encoding="utf-8") as fh:
        ini.write(fh)
    return dest


def pytest_args(folder, tests=DEVICE_TESTS):
    """The emulated python's arguments for the device tests in ``folder``.

    Default (prepend) import mode: some tests import a sibling (``from test_imageio import
    ...``), which --import-mode=importlib breaks; prepend puts only ``folder/tests`` on
    sys.path, and that holds no package of the project.
    """
    return ["-P", "-c", PYTEST_MAIN, "-p", "no:cacheprovider", "-q", "-rfEs", "--durations=5",
            "-m", "device", "--basetemp", str(Path(folder) / "tmp"), *tests]


def parse_pytest_summary(text):
    """pytest's output (``-q -rfE``) -> dict: the counts of its last summary line (passed,
    failed, skipped, errors, deselected, ...; ``None`` when there is no such line), ``seconds``,
    ``failed_tests`` (the node ids of its FAILED and ERROR lines, in order) and
    ``edge_runtime`` (the path PYTEST_MAIN printed, or None)."""
    counts, seconds = None, None
    lines = (text or "").splitlines()
    for line in reversed(lines):
        body = line.strip().strip("=").strip()
        timed = re.search(r"\bin ([\d.]+)s\b", body)
        if timed and (_PYTEST_COUNT.search(body) or body.startswith("no tests ran")):
            counts = {}
            for n, word in _PYTEST_COUNT.findall(body[:timed.start()]):
                word = _PYTEST_COUNT_NAMES.get(word, word)
                counts[word] = counts.get(word, 0) + int(n)
            seconds = float(timed.group(1))
            break
    failed = []
    for line in lines:
        for tag in ("FAILED ", "ERROR "):
            if line.startswith(tag):
                node = line[len(tag):].split(" - ", 1)[0].strip()
                if node and node not in failed:
                    failed.append(node)
    where = _EDGE_RUNTIME_LINE.search(text or "")
    return {"counts": counts, "seconds": seconds, "failed_tests": failed,
            "edge_runtime": where.group(1) if where else None}


def check_device_tests(text, returncode, venv_path):
    """pytest's output and exit code (None: it timed out) -> (summary dict, problems list).

    Problems: a failed or erroring test (named), edge_runtime not imported from the venv
    (the tests would not be testing the installed wheel), no test passed, or a non-zero
    exit without a failed test (a usage or internal error)."""
    parsed = parse_pytest_summary(text)
    counts = parsed["counts"] or {}
    summary = {"exit": returncode, "passed": counts.get("passed", 0),
               "failed": counts.get("failed", 0), "errors": counts.get("errors", 0),
               "skipped": counts.get("skipped", 0), "deselected": counts.get("deselected", 0),
               "seconds": parsed["seconds"], "failed_tests": parsed["failed_tests"],
               "edge_runtime": parsed["edge_runtime"]}
    problems = []
    names = parsed["failed_tests"]
    bad = summary["failed"] + summary["errors"]
    if bad or names:
        shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
        problems.append(f"{bad or len(names)} failed: {shown or 'see the log'}")
    site = parsed["edge_runtime"]
    if site is None:
        problems.append("edge_runtime was not imported")
    elif Path(venv_path).resolve() not in Path(site).resolve().parents:
        problems.append(f"edge_runtime imported from {site}, not from the venv {venv_path}")
    if returncode is None:
        problems.append(f"timed out: {_tail(text)}")
    elif parsed["counts"] is None:
        problems.append(f"pytest exit {returncode}, no summary: {_tail(text)}")
    elif not bad and returncode != 0:
        problems.append(f"pytest exit {returncode}: {_tail(text)}")
    if parsed["counts"] is not None and not summary["passed"] and not bad:
        problems.append("no test passed")
    return summary, problems


def device_tests_stage(args, venv, wheels, result, lap):
    """pytest (from ``wheels``) into the venv, then the chosen device tests under emulation
    against the installed wheel -> list of failures (``result["device_tests"]`` filled)."""
    t0 = time.monotonic()
    added = venv.add_packages(wheels, TEST_REQUIREMENTS, "tests")
    lap(f"install pytest {venv.name}" + (" (new)" if added else " (cached)"), t0)
    t0 = time.monotonic()
    folder = device_tests_folder(args.out / "device-tests")
    try:
        proc = venv.run_python(*pytest_args(folder), cwd=folder, check=False,
                               timeout=DEVICE_TESTS_TIMEOUT,
                               what=f"pytest -m device (aarch64, {venv.name})")
        text, code = (proc.stdout or "") + "\n" + (proc.stderr or ""), proc.returncode
    except ArmError as exc:          # timed out
        text, code = str(exc), None
    lap(f"aarch64 device tests {venv.name}", t0)
    (args.out / f"device-tests-{venv.name}.log").write_text(text)
    summary, problems = check_device_tests(text, code, venv.path)
    summary["log"] = str(args.out / f"device-tests-{venv.name}.log")
    result["device_tests"] = summary
    if problems:
        return [f"{venv.name}: device tests: {'; '.join(problems)}"]
    return []


# ----------------------------------------------------------------------------- main

def _run_args(scans, bundle, out):
    return ["run", *map(str, scans), "--bundle", str(bundle), "--out", str(out),
            "--threads", "1", "--json"]


def _findings(stdout):
    rows = []
    for line in (stdout or "").splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    return rows


def _max_prob_delta(ref_rows, arm_rows):
    ref = {Path(r.get("source", "")).name: r for r in ref_rows if "error" not in r}
    deltas = []
    for row in arm_rows:
        other = ref.get(Path(row.get("source", "")).name)
        if other is not None and row.get("max_probability") is not None \
                and other.get("max_probability") is not None:
            deltas.append(abs(row["max_probability"] - other["max_probability"]))
    return max(deltas) if deltas else None


def _version_line(stdout):
    return " ".join((stdout or "").split())[:200]


def execute(args):
    t_start = time.monotonic()
    timings = {}
    report = {"bundle": str(args.bundle), "scans": [str(s) for s in args.scans],
              "cache": str(args.cache), "qemu_cpu": QEMU_CPU, "tolerance": args.tolerance,
              "interpreters": {}}

    cpu = {}

    def children_cpu():
        import resource
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    cpu_mark = [children_cpu()]

    def lap(name, t0):
        """Wall seconds of a phase, and the CPU seconds its commands used (the machine may
        be shared: CPU seconds are what the phase costs on an idle one)."""
        timings[name] = round(time.monotonic() - t0, 1)
        now = children_cpu()
        cpu[name] = round(now - cpu_mark[0], 1)
        cpu_mark[0] = now

    args.cache.mkdir(parents=True, exist_ok=True)
    lock = open(args.cache / ".lock", "w")                     # noqa: SIM115 - held till exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log(f"waiting for another run that holds {args.cache / '.lock'}")
        fcntl.flock(lock, fcntl.LOCK_EX)

    t0 = time.monotonic()
    ensure_tools()
    sysroot, built = build_sysroot(args.cache, args.mirror, args.refresh)
    lap("sysroot" + (" (built)" if built else " (cached)"), t0)
    wheel_dirs = {}
    for name in args.interpreters:
        t0 = time.monotonic()
        wheel_dirs[name], fetched = download_wheels(args.cache, name, args.refresh)
        lap(f"wheels {name}" + (" (downloaded)" if fetched else " (cached)"), t0)

    device_tests = not args.no_device_tests and "litert" in args.interpreters
    if device_tests:
        t0 = time.monotonic()
        wheel_dirs["tests"], fetched = download_wheels(args.cache, "tests", args.refresh,
                                                       requirements=TEST_REQUIREMENTS)
        lap("wheels tests" + (" (downloaded)" if fetched else " (cached)"), t0)
    elif not args.no_device_tests:
        log("device tests skipped: they run in the litert venv (--interpreters litert)")

    _rmtree(args.out)
    args.out.mkdir(parents=True)
    t0 = time.monotonic()
    wheel = build_project_wheel(args.out / "dist")
    lap("pip wheel edge-seg", t0)
    report["wheel"] = wheel.name

    report["x86"] = {}
    failures = []
    for name in args.interpreters:
        result = report["interpreters"][name] = {}
        t0 = time.monotonic()
        ref = x86_reference(args, name, wheel)
        report["x86"][name] = {"exit": ref["exit"], "version": ref["version"]}
        lap(f"x86 run {name}", t0)
        venv = ArmVenv(args.cache, sysroot, name)
        t0 = time.monotonic()
        made = venv.create(wheel_dirs[name], wheel, args.refresh)
        lap(f"install {name}" + (" (new venv)" if made else " (cached venv)"), t0)
        result["wheels"] = sorted(p.name for p in wheel_dirs[name].glob("*.whl"))
        extra = {"EDGE_SEG_INTERPRETER": name}
        version = _version_line(venv.edge_seg("--version", env_extra=extra).stdout)
        result["version"] = version
        log(f"aarch64 {name}: {version}")
        if INTERPRETERS[name]["package"] not in version:
            failures.append(f"{name}: edge-seg --version names another interpreter ({version})")

        t0 = time.monotonic()
        arm_dir = args.out / f"aarch64-{name}"
        proc = venv.edge_seg(*_run_args(args.scans, args.bundle, arm_dir), env_extra=extra,
                             check=False)
        lap(f"aarch64 run {name}", t0)
        result["run_exit"] = proc.returncode
        if proc.returncode != ref["exit"]:
            failures.append(f"{name}: edge-seg run exit {proc.returncode} (x86: {ref['exit']}): "
                            f"{_tail(proc.stderr)}")
        rows = compare_runs(ref["dir"], arm_dir, args.tolerance)
        result["masks"] = rows
        result["max_probability_delta"] = _max_prob_delta(ref["findings"], _findings(proc.stdout))
        litert_dir = args.out / "x86-litert"
        if name != "litert" and litert_dir.is_dir():
            # Informational: the same scans, another interpreter (not an aarch64 question).
            result["masks_vs_x86_litert"] = compare_runs(litert_dir, arm_dir, args.tolerance)
        if not rows_ok(rows):
            bad = [r["scan"] for r in rows if r["status"] not in PASSING]
            failures.append(f"{name}: masks differ from x86 for {', '.join(bad) or 'every scan'}")

        if not args.no_bench:
            t0 = time.monotonic()
            bench_json = args.out / f"bench-{name}.json"
            proc = venv.edge_seg("bench", str(args.bundle), "--runs", "1", "--warmup", "0",
                                 "--threads", "1", "--json", str(bench_json), env_extra=extra,
                                 check=False)
            lap(f"aarch64 bench {name}", t0)
            result["bench_exit"] = proc.returncode
            try:
                bench = json.loads(bench_json.read_text())
                res = bench["results"][0]
                result["bench"] = {k: res.get(k) for k in (
                    "status", "error", "interpreter", "interpreter_version", "load_ms",
                    "p50_ms", "gflop", "rss_peak_mb", "sgemm_gflops_1t")}
                result["bench"]["machine"] = {k: bench.get("machine", {}).get(k)
                                              for k in ("cpu", "arch", "cores_usable")}
            except (OSError, ValueError, KeyError, IndexError):
                result["bench"] = None
            if proc.returncode != 0 or not result["bench"] or result["bench"]["status"] != "ok":
                failures.append(f"{name}: edge-seg bench failed (exit {proc.returncode}): "
                                f"{_tail(proc.stderr + proc.stdout)}")

        if not args.no_kit:
            t0 = time.monotonic()
            kit_copy = emulation_kit(args.kit, args.out / "kit", references=args.kit_references)
            kit_out = args.out / f"kit-{name}"
            proc = venv.edge_seg("bench", str(kit_copy), "--suite", "paper", "--runs", "1",
                                 "--warmup", "0", "--threads", "1", "--no-memory",
                                 "--no-sgemm", "--no-plot", "--out", str(kit_out), "-q",
                                 env_extra=extra, check=False)
            lap(f"aarch64 kit suite {name}", t0)
            try:
                summary, problems = check_kit_table(kit_out / "kit_paper.json",
                                                    complete=args.kit_references)
            except (OSError, ValueError) as exc:
                summary, problems = None, [f"no suite results ({exc})"]
            result["kit"] = dict(summary or {}, exit=proc.returncode)
            if proc.returncode != 0 or problems:
                failures.append(f"{name}: edge-seg bench KIT --suite paper failed (exit "
                                f"{proc.returncode}): {'; '.join(problems) or _tail(proc.stderr)}")

        if device_tests and name == "litert":
            failures += device_tests_stage(args, venv, wheel_dirs["tests"], result, lap)
    if args.dicom:
        failures += dicom_stage(args, sysroot, wheel, report, lap)

    timings["total"] = round(time.monotonic() - t_start, 1)
    cpu["total"] = round(sum(cpu.values()), 1)
    report["timings_s"] = timings
    report["cpu_s"] = cpu
    report["failures"] = failures
    report["ok"] = not failures
    (args.out / "arm_report.json").write_text(json.dumps(report, indent=1) + "\n")
    print_report(report)
    if failures:
        raise Mismatch("; ".join(failures))
    return report


def _series_reports(stdout):
    return [r for r in _findings(stdout) if "series_instance_uid" in r]


def dicom_stage(args, sysroot, wheel, report, lap):
    """``--dicom``: the dicom extra on aarch64 -> list of failures (report["dicom"] filled).

    A 4-slice synthetic MR series (JPEG 2000 lossless: a compiled decoder must work) goes
    through ``edge-seg run SERIES/ --json`` on x86 (this host's environment) and on aarch64;
    the per-slice masks are compared as the scans' are, the series volume and SEG too."""
    if str(repo_root()) not in sys.path:      # this checkout's edge_runtime, as host_edge_seg
        sys.path.insert(0, str(repo_root()))
    from edge_runtime.dicom.synthetic import example_stack, write_series
    t0 = time.monotonic()
    wheels, fetched = download_wheels(args.cache, "dicom", args.refresh)
    lap("wheels dicom" + (" (downloaded)" if fetched else " (cached)"), t0)
    series_dir = args.out / "dicom-series" / "SERIES"
    write_series(series_dir, example_stack(repo_root() / "examples", 4), compression="jpeg2000")
    run_args = ["run", str(series_dir), "--bundle", str(args.bundle), "--threads", "1", "--json"]
    ref_dir, arm_dir = args.out / "x86-dicom", args.out / "aarch64-dicom"
    t0 = time.monotonic()
    ref = host_edge_seg(*run_args, "--out", str(ref_dir), what="edge-seg run SERIES (x86)",
                        check=False)
    lap("x86 run dicom", t0)
    venv = ArmVenv(args.cache, sysroot, "dicom")
    t0 = time.monotonic()
    made = venv.create(wheels, wheel, args.refresh)
    lap("install dicom" + (" (new venv)" if made else " (cached venv)"), t0)
    t0 = time.monotonic()
    arm = venv.edge_seg(*run_args, "--out", str(arm_dir), env_extra={
        "EDGE_SEG_INTERPRETER": "litert"}, check=False, what="edge-seg run SERIES (aarch64)")
    lap("aarch64 run dicom", t0)
    rows = compare_runs(ref_dir, arm_dir, args.tolerance)
    ref_series, arm_series = _series_reports(ref.stdout), _series_reports(arm.stdout)
    result = report["dicom"] = {
        "wheels": sorted(p.name for p in wheels.glob("*.whl")), "masks": rows,
        "exit": {"x86": ref.returncode, "aarch64": arm.returncode},
        "volume_ml": {"x86": [r.get("volume_ml") for r in ref_series],
                      "aarch64": [r.get("volume_ml") for r in arm_series]},
        "seg": {"x86": [bool(r.get("outputs", {}).get("seg")) for r in ref_series],
                "aarch64": [bool(r.get("outputs", {}).get("seg")) for r in arm_series]}}
    failures = []
    if arm.returncode != 0 or ref.returncode != 0:
        failures.append(f"dicom: edge-seg run SERIES exit x86 {ref.returncode}, aarch64 "
                        f"{arm.returncode}: {_tail(arm.stderr)}")
    if not rows_ok(rows):
        failures.append("dicom: per-slice masks differ from x86")
    if len(arm_series) != 1 or result["seg"]["aarch64"] != [True]:
        failures.append("dicom: aarch64 gave no series report with a SEG")
    else:
        a, b = result["volume_ml"]["x86"][0], result["volume_ml"]["aarch64"][0]
        if a is None or b is None or abs(a - b) > 0.01 * max(abs(a), 1e-6):
            failures.append(f"dicom: volume x86 {a} mL, aarch64 {b} mL")
    return failures


def print_report(report):
    print(f"edge-seg on emulated aarch64 ({report['qemu_cpu']}), bundle {Path(report['bundle']).name}")
    for name, res in report["interpreters"].items():
        print(f"aarch64 {name}: {res.get('version', '?')}")
        print(f"  vs x86 {report['x86'].get(name, {}).get('version', '?')}:")
        for row in res.get("masks", []):
            print(format_row(row))
        if res.get("masks_vs_x86_litert"):
            print("  for information, vs x86 with ai-edge-litert (another interpreter; not checked):")
            for row in res["masks_vs_x86_litert"]:
                print(format_row(row))
        if res.get("max_probability_delta") is not None:
            print(f"  max |max_probability x86 - aarch64| = {res['max_probability_delta']:.2e}")
        bench = res.get("bench")
        if bench:
            rss = bench.get("rss_peak_mb")
            print(f"  bench: {bench['status']}, {bench.get('interpreter')} "
                  f"{bench.get('interpreter_version')}, p50 {bench.get('p50_ms'):.0f} ms emulated "
                  f"(not a Pi timing), peak RSS {'-' if rss is None else f'{rss:.0f} MB'}, "
                  f"machine {bench['machine'].get('arch')} {bench['machine'].get('cpu')}")
        kit = res.get("kit")
        if kit:
            print(f"  kit suite: exit {kit.get('exit')}, {kit.get('measured')} measured, "
                  f"{kit.get('missing')} missing of {kit.get('rows')} rows; host "
                  f"{kit.get('arch')} {kit.get('cpu')}, ISA {', '.join(kit.get('isa') or [])}")
        tests = res.get("device_tests")
        if tests:
            print(f"  device tests (pytest -m device, {len(DEVICE_TESTS)} files, installed "
                  f"wheel): {format_device_tests(tests)}, exit {tests.get('exit')}")
            for node in tests.get("failed_tests") or []:
                print(f"    FAILED {node}")
    if report.get("dicom"):
        d = report["dicom"]
        print(f"aarch64 dicom extra: edge-seg run SERIES exit {d['exit']['aarch64']} "
              f"(x86 {d['exit']['x86']}), volume mL aarch64 {d['volume_ml']['aarch64']} "
              f"vs x86 {d['volume_ml']['x86']}, SEG written {d['seg']['aarch64']}")
        for row in d["masks"]:
            print(format_row(row))
    print("wall s: " + ", ".join(f"{k} {v}" for k, v in report["timings_s"].items()))
    print("cpu s:  " + ", ".join(f"{k} {v}" for k, v in report["cpu_s"].items()))


def format_device_tests(tests):
    text = f"{tests.get('passed', 0)} passed"
    for key in ("failed", "errors", "skipped"):
        if tests.get(key):
            text += f", {tests[key]} {key}"
    return text


def summary_line(report):
    parts = []
    for name, res in report["interpreters"].items():
        rows = res.get("masks", [])
        counts = {s: sum(r["status"] == s for r in rows) for s in PASSING}
        bad = len(rows) - sum(counts.values())
        min_dice = min((r["dice"] for r in rows if r["dice"] is not None), default=None)
        text = f"{name}: {counts['identical']} identical, {counts['close']} close"
        if counts["boundary"]:
            text += (f", {counts['boundary']} WARNING boundary-only (Dice below "
                     f"{report.get('tolerance', DICE_TOLERANCE)}, every flipped pixel on the "
                     f"mask boundary)")
        if bad:
            text += f", {bad} DIFFERENT"
        if min_dice is not None and (counts["close"] or counts["boundary"]):
            text += f" (min Dice {min_dice:.5f})"
        if res.get("device_tests"):
            text += f", device tests {format_device_tests(res['device_tests'])}"
        parts.append(text)
    return "; ".join(parts)


def main(argv=None):
    try:
        args = parse_args(argv)
        report = execute(args)
    except ArmError as exc:
        tag = {EXIT_NO_NETWORK: "SKIPPED (no network)", EXIT_USAGE: "usage",
               EXIT_MISMATCH: "FAILED"}.get(exc.exit_code, "setup failed")
        print(f"arm: {tag}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("arm: interrupted", file=sys.stderr)
        return 130
    print(f"arm: OK: {summary_line(report)}; {report['timings_s']['total']} s wall, "
          f"{report['cpu_s']['total']} s CPU; "
          f"results in {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
