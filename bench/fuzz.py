"""python -m bench.fuzz: edge-seg against 10,000+ malformed inputs (seeded, reproducible).

Image, DICOM and special-file cases (``bench.fuzz_cases``) are run through the real command,
``edge-seg run FILES... --json`` (``python -m bench.fuzz --cli run ...``: the CLI in a fresh
process that reports its own peak RSS at exit), in subprocess batches: each file must
answer with exactly one JSON line (its findings or its one-line error); a batch that prints
nothing for ``--timeout`` seconds is a hang (the file it was on is recorded, the batch goes on
after it), a batch that dies from a signal is a crash. Bundle cases are run by a worker
subprocess that invokes the CLI in process (``run`` without and with ``--allow-untrusted``,
``bundle info``) and reports each case as it goes, under the same timeout.

Per category the table gives: files, accepted (segmented), refused, the exit codes seen,
tracebacks (a "Traceback" on stderr, or a scan failed by the runtime's "unexpected error"
catch-all), hangs, crashes, silent wrong answers (a case accepted that must be refused, a mask
of the wrong size, masks that differ between lossless encodings of one scan, an input without
an answer line), and the peak RSS of the subprocesses (their own VmHWM; the bundle worker checks
every bundle of a category in one process, so its peak is that of the whole category).

    nice -n 10 python -m bench.fuzz --n 10000 --out bench/results
"""

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# share of --n per image category (generator calls; "variants" gives 7 files a call)
IMAGE_SHARE = {"variants": 0.05, "nonfinite": 0.06, "truncated": 0.14, "bitflip": 0.25,
               "header_lies": 0.04, "shapes": 0.11, "modes": 0.1, "multiframe": 0.03,
               "garbage": 0.07, "names": 0.04, "dicom": 0.08, "special": 0.02}
BUNDLE_SHARE = {"bundle_manifest": 0.012, "bundle_zip": 0.01, "bundle_folder": 0.005,
                "bundle_tflite": 0.004}


# ----------------------------------------------------------------------------- judging

def _mask_of(row):
    import numpy as np
    from PIL import Image
    with Image.open(row["outputs"]["mask"]) as im:
        return np.asarray(im)


def judge_images(cases, paths, rows):
    """Check each image case's answer (``rows``: {path as str: JSON line}) against what it
    expects -> (per-category Counter, [problem lines])."""
    import numpy as np
    stats, problems = defaultdict(Counter), []
    groups = defaultdict(list)
    for case, path in zip(cases, paths):
        key = os.fsdecode(path)
        c = stats[case.category]
        c["files"] += 1
        row = rows.get(key)
        if row is None:
            c["silent_wrong"] += 1
            problems.append(f"{case.category} {case.name!r}: no answer line")
            continue
        if "error" in row:
            c["refused"] += 1
            if row["error"].startswith("unexpected error"):
                c["tracebacks"] += 1
                problems.append(f"{case.category} {case.name!r}: {row['error']}")
            continue
        c["accepted"] += 1
        if case.expect == "fail":
            c["silent_wrong"] += 1
            problems.append(f"{case.category} {case.name!r}: accepted, must be refused")
        elif case.expect in ("ok", "same") and case.shape is not None:
            mask = _mask_of(row)
            if mask.shape != tuple(case.shape):
                c["silent_wrong"] += 1
                problems.append(f"{case.category} {case.name!r}: mask {mask.shape}, "
                                f"scan {tuple(case.shape)}")
            if case.expect == "same":
                groups[case.group].append((case, mask))
    for members in groups.values():
        ref = members[0][1]
        for case, mask in members[1:]:
            if mask.shape != ref.shape or not np.array_equal(mask, ref):
                stats[case.category]["silent_wrong"] += 1
                problems.append(f"{case.category} {case.name!r}: mask differs from "
                                f"{members[0][0].name!r} (the same scan, another encoding)")
    return stats, problems


def check_bundle(path, scan, out):
    """Run one bundle case through the CLI in process -> dict (exit codes, traceback,
    one-line refusal, digest unchanged)."""
    from click.testing import CliRunner

    from edge_runtime.cli import main
    runner = CliRunner()
    res = {}
    tb = False
    for label, args in (("strict", ["run", scan, "--bundle", path, "--out", out, "--json",
                                    "--threads", "1"]),
                        ("allow", ["run", scan, "--bundle", path, "--out", out, "--json",
                                   "--threads", "1", "--allow-untrusted"]),
                        ("info", ["bundle", "info", path])):
        r = runner.invoke(main, [os.fsdecode(a) for a in args])
        res[label] = r.exit_code
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            tb = True
        if "Traceback" in r.output:
            tb = True
        if label == "strict" and r.exit_code == 3:
            res["one_line"] = r.stderr.strip("\n").count("\n") == 0
    res["traceback"] = tb
    if res["strict"] == 0:
        from edge_runtime.bundle import load_bundle
        from edge_runtime.trust import PACKAGE_TRUSTED
        try:
            res["digest_same"] = load_bundle(path).digest in PACKAGE_TRUSTED
        except Exception:  # noqa: BLE001
            res["digest_same"] = False
    return res


def judge_bundle(case, res, stats, problems):
    c = stats[case.category]
    c["files"] += 1
    c[f"exit_strict_{res['strict']}"] += 0   # keep the key order stable
    if res.get("traceback"):
        c["tracebacks"] += 1
        problems.append(f"{case.category} {case.name}: traceback")
    if res["strict"] == 3:
        c["refused"] += 1
        if not res.get("one_line", True):
            problems.append(f"{case.category} {case.name}: refusal is not one line")
    elif res["strict"] == 0 and res.get("digest_same"):
        c["accepted"] += 1                    # a change that left every member intact
    else:
        c["accepted"] += 1
        c["silent_wrong"] += 1
        problems.append(f"{case.category} {case.name}: run accepted it (exit {res['strict']})")


# ----------------------------------------------------------------------------- subprocesses

def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


PEAK_TAG = "FUZZ-PEAK-KB"


def _print_peak():
    """At exit: this process's own peak RSS (VmHWM) on stderr. (``wait4``'s ru_maxrss would
    include the parent's RSS at fork time, which survives the exec on Linux.)"""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    sys.stderr.write(f"{PEAK_TAG} {line.split()[1]}\n")
                    sys.stderr.flush()
    except OSError:
        pass


def run_cli(argv):
    """``--cli ARGS``: ``edge-seg ARGS`` in this process, reporting its peak RSS at exit."""
    import atexit
    atexit.register(_print_peak)
    from edge_runtime.cli import main as cli_main
    cli_main(argv, prog_name="edge-seg")


def _peak_mb(err, fallback):
    for line in reversed(err.splitlines()):
        if line.startswith(PEAK_TAG):
            return int(line.split()[1]) / 1024
    return fallback


def _stream(cmd, on_line, timeout):
    """Run ``cmd``; call ``on_line`` per stdout line; kill it when no line comes for
    ``timeout`` s -> (exit status or "hang", stderr text, peak RSS in MB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env=_env())
    lines, errs = queue.Queue(), []

    def read_out():
        for raw in proc.stdout:
            lines.put(raw)
        lines.put(None)

    def read_err():
        errs.append(proc.stderr.read())
    threads = [threading.Thread(target=read_out, daemon=True),
               threading.Thread(target=read_err, daemon=True)]
    for t in threads:
        t.start()
    status = None
    while True:
        try:
            raw = lines.get(timeout=timeout)
        except queue.Empty:
            proc.kill()
            status = "hang"
            break
        if raw is None:
            break
        on_line(raw)
    _pid, wstatus, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(wstatus)
    proc.returncode = code
    for t in threads:
        t.join(10)
    err = errs[0].decode("utf-8", "replace") if errs else ""
    return (status or code), err, _peak_mb(err, usage.ru_maxrss / 1024)


def run_image_batch(paths, out, timeout, threads=1):
    """-> (rows {path: JSON}, [(exit, stderr, rss, hung_on)])."""
    rows, runs = {}, []
    todo = [os.fsdecode(p) for p in paths]
    while todo:
        seen = []

        def on_line(raw, seen=seen):
            try:
                row = json.loads(raw)
            except ValueError:
                return
            rows[row["source"]] = row
            seen.append(row["source"])
        cmd = [sys.executable, "-m", "bench.fuzz", "--cli", "run", *todo, "--json", "--out",
               str(out), "--threads", str(threads)]
        status, err, rss = _stream(cmd, on_line, timeout)
        done = set(seen)
        rest = [p for p in todo if p not in done]
        culprit = rest[0] if (status == "hang" or (isinstance(status, int) and status < 0)) \
            and rest else None
        runs.append((status, err, rss, culprit))
        if culprit is None:
            break
        rows[culprit] = {"source": culprit, "error": f"__{'hang' if status == 'hang' else 'crash'}"}
        todo = rest[1:]
    return rows, runs


def bundle_worker(case_file):
    """``--worker CASES.jsonl``: check each bundle case, one JSON line each, flushed."""
    import atexit
    import warnings
    atexit.register(_print_peak)
    warnings.simplefilter("ignore")
    for line in Path(case_file).read_text().splitlines():
        job = json.loads(line)
        print(json.dumps({"start": job["id"]}), flush=True)
        res = check_bundle(job["path"], job["scan"], job["out"])
        print(json.dumps({"id": job["id"], **res}), flush=True)


def run_bundle_batch(jobs, work, timeout):
    """-> ({id: result}, [(exit, stderr, rss, hung_on)])."""
    results, runs = {}, []
    todo = list(jobs)
    while todo:
        case_file = Path(work) / f"bundle_jobs_{len(runs)}.jsonl"
        case_file.write_text("".join(json.dumps(j) + "\n" for j in todo))
        current = {}

        def on_line(raw, current=current):
            row = json.loads(raw)
            if "start" in row:
                current["id"] = row["start"]
            else:
                results[row["id"]] = row
                current.pop("id", None)
        status, err, rss = _stream([sys.executable, "-m", "bench.fuzz", "--worker",
                                    str(case_file)], on_line, timeout)
        culprit = current.get("id")
        runs.append((status, err, rss, culprit))
        if culprit is None:
            break
        results[culprit] = {"id": culprit, "strict": "hang" if status == "hang" else "crash",
                            "traceback": False}
        todo = [j for j in todo if j["id"] not in results]
    return results, runs


# ----------------------------------------------------------------------------- the table

COLUMNS = ("category", "files", "accepted", "refused", "exit codes", "tracebacks", "hangs",
           "crashes", "silent wrong", "RSS peak MB")


def format_table(table):
    rows = [COLUMNS] + [tuple(str(r[k]) for k in COLUMNS) for r in table]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    out = []
    for n, r in enumerate(rows):
        out.append("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _row(category, c, codes, rss):
    return {"category": category, "files": c["files"], "accepted": c["accepted"],
            "refused": c["refused"],
            "exit codes": " ".join(f"{k}:{v}" for k, v in sorted(codes.items(), key=str)),
            "tracebacks": c["tracebacks"], "hangs": c["hangs"], "crashes": c["crashes"],
            "silent wrong": c["silent_wrong"], "RSS peak MB": f"{rss:.0f}"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--cli"]:
        return run_cli(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000, help="inputs in all (about)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="write fuzz.md and fuzz.json here (default: print only)")
    parser.add_argument("--work", default=None, help="case folder (default: a temporary one)")
    parser.add_argument("--batch", type=int, default=400, help="files per subprocess")
    parser.add_argument("--timeout", type=float, default=90,
                        help="seconds without an answer that count as a hang")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        bundle_worker(args.worker)
        return 0

    from bench import fuzz_cases as fc
    work = Path(args.work or tempfile.mkdtemp(prefix="edge-seg-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    trust = work / "trusted.json"              # never the user's trust list
    os.environ["EDGE_SEG_TRUST"] = str(trust)
    started = time.time()
    table, problems, total = [], [], 0
    try:
        for category, share in IMAGE_SHARE.items():
            calls = max(1, round(args.n * share / (7 if category == "variants" else 1)))
            cases = fc.image_cases(category, calls, seed=args.seed)
            folder = work / category
            folder.mkdir()
            paths = [c.write(folder) for c in cases]
            inputs = [p for c, p in zip(cases, paths) if not c.helper]
            cases = [c for c in cases if not c.helper]
            rows, codes, rss, tb, hangs, crashes = {}, Counter(), 0.0, 0, 0, 0
            for b in range(0, len(inputs), args.batch):
                r, runs = run_image_batch(inputs[b:b + args.batch], work / "out" / category,
                                          args.timeout)
                rows.update(r)
                for status, err, peak, culprit in runs:
                    codes[status] += 1
                    rss = max(rss, peak)
                    tb += err.count("Traceback")
                    hangs += status == "hang"
                    crashes += isinstance(status, int) and status < 0
                    if culprit:
                        problems.append(f"{category} {culprit}: {status}")
            stats, probs = judge_images(cases, inputs, rows)
            c = stats[category]
            c["tracebacks"] += tb
            c["hangs"], c["crashes"] = hangs, crashes
            problems.extend(probs)
            table.append(_row(category, c, codes, rss))
            total += c["files"]
            print(format_table(table[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        base = fc.shipped_members()
        scan = str(fc.EXAMPLES[0]) if fc.EXAMPLES else None
        for category, share in BUNDLE_SHARE.items():
            calls = max(1, round(args.n * share))
            cases = fc.bundle_cases(category, calls, seed=args.seed, base=base)
            folder = work / category
            folder.mkdir()
            jobs = [{"id": i, "path": os.fsdecode(c.write(folder)), "scan": scan,
                     "out": str(work / "out" / category)} for i, c in enumerate(cases)]
            results, runs = run_bundle_batch(jobs, work, args.timeout)
            stats = defaultdict(Counter)
            codes = Counter()
            for i, case in enumerate(cases):
                res = results.get(i, {"strict": "no answer", "traceback": False})
                codes[res["strict"]] += 1
                if res["strict"] in ("hang", "crash"):
                    stats[category]["files"] += 1
                    stats[category][res["strict"] + "s"] += 1
                    problems.append(f"{category} {case.name}: {res['strict']}")
                    continue
                judge_bundle(case, res, stats, problems)
            c = stats[category]
            for status, err, peak, _culprit in runs:
                c["tracebacks"] += err.count("Traceback")
            rss = max(peak for _s, _e, peak, _c in runs)
            table.append(_row(category, c, codes, rss))
            total += c["files"]
            print(format_table(table[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    sums = {k: sum(int(r[k]) for r in table) for k in ("files", "accepted", "refused",
                                                       "tracebacks", "hangs", "crashes",
                                                       "silent wrong")}
    table.append({"category": "all", **sums, "exit codes": "",
                  "RSS peak MB": f"{max(float(r['RSS peak MB']) for r in table):.0f}"})
    text = format_table(table)
    minutes = (time.time() - started) / 60
    head = (f"edge-seg fuzz: {total} inputs, seed {args.seed}, {minutes:.1f} min; exit codes "
            "are per subprocess (images: one run per batch of files; bundles: the exit of "
            "`run` without --allow-untrusted, per bundle)")
    print(head)
    print(text)
    for p in problems[:50]:
        print("  problem:", p)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from edge_runtime import atomic
        cmd = f"nice -n 10 python -m bench.fuzz --n {args.n} --seed {args.seed}"
        md = (f"# Fuzz run\n\n`{cmd}`\n\n{head}.\n\n{text}\n\n"
              + ("Problems:\n\n" + "\n".join(f"- {p}" for p in problems) + "\n"
                 if problems else "No problems.\n"))
        atomic.write_text(out / "fuzz.md", md)
        atomic.write_json(out / "fuzz.json", {
            "command": cmd, "inputs": total, "minutes": round(minutes, 1), "table": table,
            "problems": problems})
        print(f"wrote {out / 'fuzz.md'} and {out / 'fuzz.json'}", file=sys.stderr)
    bad = sums["tracebacks"] + sums["hangs"] + sums["crashes"] + sums["silent wrong"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
