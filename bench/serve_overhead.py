"""What ``edge-seg serve`` costs over ``edge-seg run``: idle memory and time per scan.

    python -m bench.serve_overhead [--bundle B] [--threads N] [--repeats R] [--out DIR]

Starts the real command (``python -m edge_runtime.cli serve``) on 127.0.0.1 and a free port
with a temporary data folder, and measures

- idle RSS of the server process (after start-up, before any upload) and after the scans,
  against the RSS of a process holding what ``edge-seg run`` holds (the bundle and one
  ``Segmenter``) after the same scans;
- per scan: the wall time from the start of the upload (one scan per upload) to the job
  being done (its ``job.json`` read from the data folder every 2 ms), against the time ``edge-seg run`` spends on the same
  scan in-process (``load_scan`` + ``segment`` + ``write_outputs``); the difference is the
  overhead of the web path (HTTP, multipart, job records, the two display layers, polling);
- the same for one upload holding every scan (a batch).

Scans: the shipped examples (``examples/*.png``), ``--repeats`` times each. Prints a table and
one JSON line; ``--out DIR`` also writes ``serve_overhead.md`` and ``.json`` there.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.png"))
POLL_S = 0.002
IDLE_SETTLE_S = 3.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """Cookies + multipart uploads with urllib, as the page's form sends them."""

    def __init__(self, url):
        self.url = url
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  _NoRedirect())

    def get(self, path):
        with self.opener.open(self.url + path, timeout=60) as resp:
            return resp.status, resp.read()

    def csrf(self):
        for cookie in self.jar:
            if cookie.name == "edge_seg_csrf":
                return cookie.value
        self.get("/")
        return self.csrf()

    def upload(self, paths):
        boundary = "----edgesegbench"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n'
                f"{self.csrf()}\r\n").encode()
        for p in paths:
            body += (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                     f'filename="{p.name}"\r\nContent-Type: image/png\r\n\r\n').encode()
            body += p.read_bytes() + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        req = urllib.request.Request(self.url + "/upload", body, method="POST", headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            self.opener.open(req, timeout=60)
        except urllib.error.HTTPError as exc:
            if exc.code != 303:
                raise RuntimeError(f"upload refused: {exc.code} {exc.read()[:300]!r}") from None
            return exc.headers["location"]
        raise RuntimeError("upload was not redirected to a job")

    def wait(self, job, data):
        """Until the job is done, reading its record from the data folder (asking the
        server every few ms would take CPU from the scan being timed)."""
        record = Path(data) / "jobs" / job.rsplit("/", 1)[1] / "job.json"
        while True:
            try:
                state = json.loads(record.read_bytes())["state"]
            except (OSError, ValueError):
                state = None
            if state in ("done", "interrupted"):
                return state
            time.sleep(POLL_S)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _rss_mb(pid):
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


def _start_server(bundle, threads, data):
    port = _free_port()
    cmd = [sys.executable, "-m", "edge_runtime.cli", "serve", "--port", str(port),
           "--data", str(data)]
    cmd += ["--bundle", str(bundle)] if bundle else []
    cmd += ["--threads", str(threads)] if threads else []
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edge-seg serve exited: {proc.stderr.read().decode()[-500:]}")
        try:
            Browser(url).get("/")
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("edge-seg serve did not answer within 120 s")


def _run_baseline(bundle, threads, scans, out):
    """What edge-seg run does per scan, in this process -> (seconds per scan, RSS in MB of
    this process at the end, the segmenter still alive)."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.imageio import load_scan
    from edge_runtime.outputs import write_outputs
    from edge_runtime.segment import Segmenter
    segmenter = Segmenter(load_bundle(bundle), threads=threads)
    times = []
    for i, path in enumerate(scans):
        t0 = time.perf_counter()
        scan = load_scan(path)
        result = segmenter.segment(scan)
        write_outputs(out, f"s{i}", scan.pixels, result.mask, result.findings)
        times.append(time.perf_counter() - t0)
    return times, _rss_mb(os.getpid())


def _run_holder_rss(bundle, threads, scans):
    """RSS of a fresh process that segments ``scans`` as edge-seg run does."""
    code = ("import sys,tempfile,time,psutil;from pathlib import Path;"
            "from bench.serve_overhead import _run_baseline;"
            "a=sys.argv[1:];b=a[0] or None;t=int(a[1]) or None;"
            "print(_run_baseline(b,t,[Path(p) for p in a[2:]],Path(tempfile.mkdtemp()))[1])")
    out = subprocess.run([sys.executable, "-c", code, str(bundle or ""), str(threads or 0),
                          *map(str, scans)], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(bundle=None, threads=None, repeats=5):
    scans = [p for p in EXAMPLES for _ in range(repeats)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "run").mkdir()
        run_times, _ = _run_baseline(bundle, threads, scans, tmp / "run")
        run_rss = _run_holder_rss(bundle, threads, scans)
        proc, url = _start_server(bundle, threads, tmp / "data")
        try:
            time.sleep(IDLE_SETTLE_S)
            idle_rss = _rss_mb(proc.pid)
            b = Browser(url)
            b.get("/")
            data = tmp / "data"
            b.wait(b.upload([EXAMPLES[0]]), data)          # warm-up (first inference)
            serve_times = []
            for path in scans:
                t0 = time.perf_counter()
                b.wait(b.upload([path]), data)
                serve_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b.wait(b.upload(scans), data)
            batch_per_scan = (time.perf_counter() - t0) / len(scans)
            busy_rss = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    run_med = statistics.median(run_times)
    serve_med = statistics.median(serve_times)
    return {
        "scans": len(scans), "threads": threads, "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0], "machine": os.uname().machine,
        "idle_rss_mb": round(idle_rss, 1), "after_scans_rss_mb": round(busy_rss, 1),
        "run_rss_mb": round(run_rss, 1),
        "run_ms_per_scan": round(1000 * run_med, 1),
        "serve_ms_per_scan": round(1000 * serve_med, 1),
        "overhead_ms_per_scan": round(1000 * (serve_med - run_med), 1),
        "serve_batch_ms_per_scan": round(1000 * batch_per_scan, 1),
        "overhead_batch_ms_per_scan": round(1000 * (batch_per_scan - run_med), 1),
    }


def render(r):
    return "\n".join([
        f"# edge-seg serve vs edge-seg run ({r['scans']} scans, {r['machine']}, "
        f"{r['cpu_count']} CPUs, threads {r['threads'] or 'default'})",
        "",
        "| | value |",
        "|---|---|",
        f"| serve idle RSS | {r['idle_rss_mb']} MB |",
        f"| serve RSS after the scans | {r['after_scans_rss_mb']} MB |",
        f"| run process RSS after the same scans | {r['run_rss_mb']} MB |",
        f"| run, per scan (median) | {r['run_ms_per_scan']} ms |",
        f"| serve, one scan per upload, upload to done (median) | {r['serve_ms_per_scan']} ms "
        f"(+{r['overhead_ms_per_scan']} ms) |",
        f"| serve, all scans in one upload, per scan | {r['serve_batch_ms_per_scan']} ms "
        f"(+{r['overhead_batch_ms_per_scan']} ms) |",
        "",
    ])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.serve_overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=None, help="default: the shipped bundle")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5, help="times each example is sent")
    ap.add_argument("--out", default=None, help="also write serve_overhead.md/.json here")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    result = measure(args.bundle, args.threads, args.repeats)
    md = render(result)
    print(md)
    print(json.dumps(result))
    if args.out:
        from bench.samples import write_results
        write_results(args.out, "serve_overhead", md, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
