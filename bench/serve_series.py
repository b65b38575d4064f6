"""What the web view adds to a DICOM series: ``edge-seg serve`` against ``process_series``.

    python -m bench.serve_series [--slices 20] [--repeats 3] [--bundle ZIP] [--threads N]

A synthetic MR series of 512 x 512 slices (``edge_runtime.dicom.synthetic`` from
``examples/``) is written to a temporary folder and zipped. Then, interleaved ``--repeats``
times (so both see the same load on a shared machine), in this one process:

- direct: ``scan_tree`` + ``process_series`` into a fresh folder, as ``edge-seg run SERIES/``;
- serve: the zip uploaded over HTTP to the serve app (``create_app`` on 127.0.0.1 in a
  thread, its own ``Segmenter`` with the same threads), from the start of the upload to the
  job being done (its ``job.json`` read every 2 ms); the same library call plus the upload,
  unzip, the two display layers per slice and the job record after each slice.

Prints one row per repeat, the medians, the overhead per slice and one JSON line. Both
paths give the same volume (checked).
"""

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.002


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _upload(url, opener, jar, name, data):
    opener.open(url + "/", timeout=60).read()
    csrf = next(c.value for c in jar if c.name == "edge_seg_csrf")
    boundary = "----edgesegbench"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"'
            f"\r\nContent-Type: application/zip\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/upload", body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        opener.open(req, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code != 303:
            raise RuntimeError(f"upload refused: {exc.code} {exc.read()[:300]!r}") from None
        return exc.headers["location"].rsplit("/", 1)[1]
    raise RuntimeError("upload was not redirected to a job")


def _serve_and_compare(app, tmp, data, direct_seg, repeats, rows):
    """The interleaved repeats (see the module text) -> ``rows`` filled in."""
    from edge_runtime.dicom.process import process_series
    from edge_runtime.dicom.series import scan_tree
    from edge_runtime.serve.app import ServerThread
    with ServerThread(app) as url:
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar),
                                             _NoRedirect())
        for r in range(repeats):
            t0 = time.perf_counter()
            (series,), _skipped, _failed = scan_tree(tmp / "series")
            report = process_series(series, direct_seg, tmp / f"direct_{r}")
            direct_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            job = _upload(url, opener, jar, "series.zip", data)
            record = tmp / "data" / "jobs" / job / "job.json"
            while True:
                try:
                    state = json.loads(record.read_bytes())
                except (OSError, ValueError):
                    state = {}
                if state.get("state") in ("done", "interrupted"):
                    break
                time.sleep(POLL_S)
            serve_s = time.perf_counter() - t0
            served = (state.get("series") or [{}])[0].get("result") or {}
            if served.get("volume_ml") != report["volume_ml"]:
                raise RuntimeError(f"volumes differ: serve {served.get('volume_ml')} vs "
                                   f"direct {report['volume_ml']}")
            rows.append({"direct_s": round(direct_s, 3), "serve_s": round(serve_s, 3),
                         "volume_ml": report["volume_ml"]})


def measure(slices=20, repeats=3, bundle=None, threads=None):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.dicom.synthetic import example_stack, write_series
    from edge_runtime.segment import Segmenter
    from edge_runtime.serve.app import create_app
    from edge_runtime.serve.settings import ServeConfig

    b = load_bundle(bundle)
    tmp = Path(tempfile.mkdtemp(prefix="edge_seg_serve_series_"))
    paths = write_series(tmp / "series", example_stack(ROOT / "examples", slices))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            zf.write(p, f"series/{p.name}")
    data = buf.getvalue()
    config = ServeConfig(tmp / "data", max_upload_bytes=max(200 * 2**20, 2 * len(data)),
                         max_files=max(500, slices + 1), keep_days=0)
    app = create_app(config, Segmenter(b, threads=threads), model_name=b.name)
    direct_seg = Segmenter(b, threads=threads)
    rows = []
    try:
        _serve_and_compare(app, tmp, data, direct_seg, repeats, rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    direct = statistics.median(r["direct_s"] for r in rows)
    serve = statistics.median(r["serve_s"] for r in rows)
    paired = statistics.median(r["serve_s"] - r["direct_s"] for r in rows)
    return {"slices": slices, "repeats": repeats, "bundle": b.name, "threads": threads,
            "rows": rows, "direct_s": round(direct, 3), "serve_s": round(serve, 3),
            "overhead_s": round(paired, 3),
            "overhead_ms_per_slice": round(1000 * paired / slices, 1),
            "direct_ms_per_slice": round(1000 * direct / slices, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.serve_series", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bundle", default=None, help="default: the shipped bundle")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.slices < 3 or args.repeats < 1:
        ap.error(f"--slices must be >= 3 and --repeats >= 1, got --slices {args.slices} "
                 f"--repeats {args.repeats}")
    r = measure(args.slices, args.repeats, args.bundle, args.threads)
    print(f"{'repeat':>6}  {'direct s':>9}  {'serve s':>8}")
    for i, row in enumerate(r["rows"], 1):
        print(f"{i:>6}  {row['direct_s']:>9.3f}  {row['serve_s']:>8.3f}")
    print(f"median: direct {r['direct_s']:.3f} s ({r['direct_ms_per_slice']:.1f} ms/slice), "
          f"serve {r['serve_s']:.3f} s; paired overhead {r['overhead_s']:+.3f} s = "
          f"{r['overhead_ms_per_slice']:+.1f} ms per slice ({r['slices']} slices)")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
