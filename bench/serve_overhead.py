"""What ``edge-seg serve`` costs over ``edge-seg run``: idle memory and time per scan.

    python -m bench.serve_overhead [--bundle B] [--threads N] [--repeats R] [--out DIR]

Starts the real command (``python -m edge_runtime.cli serve``) on 127.0.0.1 and a free port
with a temporary data folder, and measures

- idle RSS of the server process (after start-up, before any upload) and after the scans,
  against the RSS of a process holding what ``edge-seg run`` holds (the bundle and one
  ``Segmenter``) after the same scans;
- per scan, interleaved (so both see the same load on a shared machine): the wall time
  from the start of the upload (one scan per upload) to the job being done (its ``job.json``
  read from the data folder every 2 ms) and the server's CPU time, against the wall and CPU
  time ``edge-seg run`` spends on the same scan in-process (``load_scan`` + ``segment`` +
  ``write_outputs``); the paired difference is the overhead of the web path (HTTP,
  multipart, job records, the two display layers);
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


class RunBaseline:
    """What ``edge-seg run`` does per scan (``load_scan`` + ``segment`` + ``write_outputs``),
    in this process."""

    def __init__(self, bundle, threads, out):
        from edge_runtime.bundle import load_bundle
        from edge_runtime.segment import Segmenter
        self.segmenter = Segmenter(load_bundle(bundle), threads=threads)
        self.out, self.n = Path(out), 0

    def __call__(self, path):
        """-> (wall s, CPU s of this process) for one scan."""
        from edge_runtime.imageio import load_scan
        from edge_runtime.outputs import write_outputs
        t0, c0 = time.perf_counter(), time.process_time()
        scan = load_scan(path)
        result = self.segmenter.segment(scan)
        write_outputs(self.out, f"s{self.n}", scan.pixels, result.mask, result.findings)
        self.n += 1
        return time.perf_counter() - t0, time.process_time() - c0


def _run_holder_rss(bundle, threads, scans):
    """RSS (MB) of a fresh process that segments ``scans`` as edge-seg run does."""
    code = ("import os,sys,tempfile;from pathlib import Path;"
            "from bench.serve_overhead import RunBaseline,_rss_mb;"
            "a=sys.argv[1:];r=RunBaseline(a[0] or None,int(a[1]) or None,tempfile.mkdtemp());"
            "[r(Path(p)) for p in a[2:]];print(_rss_mb(os.getpid()))")
    out = subprocess.run([sys.executable, "-c", code, str(bundle or ""), str(threads or 0),
                          *map(str, scans)], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _cpu_s(proc):
    import psutil
    t = psutil.Process(proc.pid).cpu_times()
    return t.user + t.system


def measure(bundle=None, threads=None, repeats=5):
    """Interleaved: each scan through edge-seg run's path here, then through the server, so
    both see the same load on a shared machine; medians of the paired differences."""
    scans = [p for p in EXAMPLES for _ in range(repeats)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "run").mkdir()
        run_rss = _run_holder_rss(bundle, threads, scans)
        run = RunBaseline(bundle, threads, tmp / "run")
        data = tmp / "data"
        proc, url = _start_server(bundle, threads, data)
        try:
            time.sleep(IDLE_SETTLE_S)
            idle_rss = _rss_mb(proc.pid)
            b = Browser(url)
            b.get("/")
            run(EXAMPLES[0])
            b.wait(b.upload([EXAMPLES[0]]), data)          # warm-up (first inference)
            rows = []
            for path in scans:
                run_wall, run_cpu = run(path)
                c0, t0 = _cpu_s(proc), time.perf_counter()
                b.wait(b.upload([path]), data)
                rows.append((run_wall, run_cpu, time.perf_counter() - t0, _cpu_s(proc) - c0))
            run_batch = sum(run(p)[0] for p in scans)
            c0, t0 = _cpu_s(proc), time.perf_counter()
            b.wait(b.upload(scans), data)
            batch_wall, batch_cpu = time.perf_counter() - t0, _cpu_s(proc) - c0
            busy_rss = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    med = statistics.median
    n = len(scans)

    def ms(x):
        return round(1000 * x, 1)

    return {
        "scans": n, "threads": threads, "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0], "machine": os.uname().machine,
        "idle_rss_mb": round(idle_rss, 1), "after_scans_rss_mb": round(busy_rss, 1),
        "run_rss_mb": round(run_rss, 1),
        "run_ms_per_scan": ms(med(r[0] for r in rows)),
        "run_cpu_ms_per_scan": ms(med(r[1] for r in rows)),
        "serve_ms_per_scan": ms(med(r[2] for r in rows)),
        "serve_cpu_ms_per_scan": ms(med(r[3] for r in rows)),
        "overhead_ms_per_scan": ms(med(r[2] - r[0] for r in rows)),
        "overhead_cpu_ms_per_scan": ms(med(r[3] - r[1] for r in rows)),
        "batch_run_ms_per_scan": ms(run_batch / n),
        "batch_serve_ms_per_scan": ms(batch_wall / n),
        "batch_serve_cpu_ms_per_scan": ms(batch_cpu / n),
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
        f"| run, per scan: wall / CPU (median) | {r['run_ms_per_scan']} / "
        f"{r['run_cpu_ms_per_scan']} ms |",
        f"| serve, one scan per upload, upload to done: wall / server CPU (median) | "
        f"{r['serve_ms_per_scan']} / {r['serve_cpu_ms_per_scan']} ms |",
        f"| serve overhead per scan, paired: wall / CPU (median) | "
        f"+{r['overhead_ms_per_scan']} / +{r['overhead_cpu_ms_per_scan']} ms |",
        f"| all scans in one upload, per scan: run wall / serve wall / serve CPU | "
        f"{r['batch_run_ms_per_scan']} / {r['batch_serve_ms_per_scan']} / "
        f"{r['batch_serve_cpu_ms_per_scan']} ms |",
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
