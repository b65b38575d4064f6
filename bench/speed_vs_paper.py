"""The shipped model against a paper-size Res-UNet+AG, measured side by side in one run.

    python -m bench.speed_vs_paper [--bundle B] [--threads 1,2] [--runs 20] [--out bench/results]

Builds the ``paper`` preset of ``resunet_ag`` (64..1024 filters, as Aprianto & Riana 2025;
random weights with a fixed seed: speed and size do not depend on the values), converts it to
DRQ with the same exporter as every shipped bundle, and runs ``edge_runtime.bench`` on the
shipped bundle and the paper-size model in turns, so their latency ratio is fair on a shared
machine. Writes ``speed_vs_paper.md`` and ``speed_vs_paper.json``. Needs the ``train`` extra
(TensorFlow) to build the reference; the reference bundle is cached in ``--work``.
"""

import argparse
import json
import sys
from pathlib import Path

from edge_runtime.bench.suite import shown_path


def build_reference(work, seed=0, fmt="drq"):
    """Paper-size Res-UNet+AG (random weights, ``seed``) exported as ``fmt``, as a bundle in
    ``work`` (built once; ``python -m bench.kit`` puts the fp32 and DRQ ones in the kit)."""
    path = Path(work) / f"paper_resunet_ag_{fmt}.zip"
    if path.is_file():
        return path
    import keras

    from edge_seg.convert.export import export_tflite
    from edge_runtime.bundle import make_manifest, write_bundle
    from edge_runtime.preprocess import Preprocessing
    from edge_seg.train.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("resunet_ag", "paper")
    blob = export_tflite(model, fmt)
    manifest = make_manifest(
        f"paper_resunet_ag_{fmt}", fmt, Preprocessing(input_size=256), variant="resunet_ag",
        preset="paper", parameters=int(model.count_params()),
        note="random weights: a size and speed reference only, not a segmentation model")
    Path(work).mkdir(parents=True, exist_ok=True)
    card = "# Paper-size Res-UNet+AG (random weights)\n\nSpeed and size reference only.\n"
    return write_bundle(path, blob, manifest, card)


def main(argv=None):
    from edge_runtime.bench import format_table, run_benchmark
    from edge_runtime.bundle import default_bundle_path

    p = argparse.ArgumentParser(prog="python -m bench.speed_vs_paper", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=None, help="the edge model (default: the shipped one)")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--image", default="examples/glioma_718.png")
    p.add_argument("--work", default=str(Path.home() / ".cache" / "edge-seg" / "reference"))
    p.add_argument("--out", default="bench/results")
    a = p.parse_args(argv)
    edge = Path(a.bundle) if a.bundle else default_bundle_path()
    ref = build_reference(a.work)
    threads = [int(t) for t in a.threads.split(",")]
    image = a.image if a.image and Path(a.image).is_file() else None
    report = run_benchmark([str(edge), str(ref)], threads=threads, runs=a.runs,
                           warmup=a.warmup, image=image,
                           log=lambda m: print(f"speed_vs_paper: {m}", file=sys.stderr))
    table = format_table(report)
    print(table)
    ratios = []
    for t in threads:
        e = next((r for r in report["results"] if r["threads"] == t and r["status"] == "ok"
                  and Path(r["model"]).resolve() == edge.resolve()), None)
        f = next((r for r in report["results"] if r["threads"] == t and r["status"] == "ok"
                  and Path(r["model"]).resolve() == Path(ref).resolve()), None)
        if e and f:
            ratios.append({"threads": t, "edge_ms_p50": e["p50_ms"], "paper_ms_p50": f["p50_ms"],
                           "speedup": f["p50_ms"] / e["p50_ms"],
                           "edge_mb": e["size_mb"], "paper_mb": f["size_mb"],
                           "size_ratio": f["size_mb"] / e["size_mb"]})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# The shipped model vs a paper-size Res-UNet+AG (DRQ), one run", "",
             "Command: `python -m bench.speed_vs_paper " + " ".join(argv or sys.argv[1:]) + "`",
             "", "The same measurement by hand (both models timed in turns in one run): "
             f"`edge-seg bench {shown_path(edge)} {shown_path(ref)} --threads {a.threads} "
             f"--runs {a.runs} "
             f"--warmup {a.warmup}" + (f" --image {image}`" if image else "`"), "",
             "| threads | edge p50 ms | paper-size p50 ms | speed-up | edge MB | paper MB | "
             "size ratio |", "|---|---|---|---|---|---|---|"]
    for r in ratios:
        lines.append(f"| {r['threads']} | {r['edge_ms_p50']:.1f} | {r['paper_ms_p50']:.1f} | "
                     f"{r['speedup']:.1f}x | {r['edge_mb']:.2f} | {r['paper_mb']:.1f} | "
                     f"{r['size_ratio']:.1f}x |")
    summary = list(lines)
    lines += ["", "```", table, "```", ""]
    from edge_runtime import atomic
    atomic.write_text(out / "speed_vs_paper.md", "\n".join(lines))
    atomic.write_text(out / "speed_vs_paper.json", json.dumps(
        {"ratios": ratios, "report": report}, indent=2, default=str))
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
