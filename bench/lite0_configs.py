"""Trimmed EfficientNet-Lite0 U-Nets as DRQ bundles, for one interleaved ``edge-seg bench``.

    python -m bench.lite0_configs [--work ~/.cache/edge-seg/lite0] [--encoder-weights NPZ]
                                  [--only NAME,...]

Builds every candidate of ``CANDIDATES`` (``lite0_unet`` at 256x256; random weights with a
fixed seed, or the ImageNet encoder with ``--encoder-weights``: speed and size do not depend
on the values), exports it as DRQ with the exporter of every shipped bundle, writes a bundle
per candidate in ``--work`` and prints a table: parameters, GFLOP at 256x256 (counted from
the .tflite), bundle MB, XNNPACK partitions. Then time them in ONE run beside the shipped
bundle and the paper-size reference (``bench.speed_vs_paper.build_reference``), e.g.

    edge-seg bench --threads 1 --runs 30 --allow-untrusted edge_runtime/models/default.zip \\
        ~/.cache/edge-seg/reference/paper_resunet_ag_drq.zip ~/.cache/edge-seg/lite0/*.zip

docs/LITE0.md holds the measured table. Needs the ``train`` extra (TensorFlow).
"""

import argparse
import sys
from pathlib import Path

# name: lite0_unet arguments (see train.models.nets.lite0_unet). "edge" is the registry's
# chosen preset; the others are the trims it was chosen from.
CANDIDATES = {
    "s32_d96": dict(stop_after=6, decoder_filters=(96, 64, 32, 24)),
    "s16_d64": dict(stop_after=5, decoder_filters=(64, 32, 24)),
    "s16_d48": dict(stop_after=5, decoder_filters=(48, 24, 16)),
    "s8_d32": dict(stop_after=3, decoder_filters=(32, 24)),
    "s4_d24": dict(stop_after=2, decoder_filters=(24,)),
}


def build_candidate(name, work, encoder_weights=None, seed=0, fmt="drq"):
    """-> (bundle path, row dict) for candidate ``name`` (rebuilt every call)."""
    import keras

    from edge_runtime.bench.modelfile import model_gflop
    from edge_runtime.bundle import make_manifest, write_bundle
    from edge_runtime.preprocess import Preprocessing
    from edge_seg.convert.export import export_tflite
    from edge_seg.convert.verify import xnnpack_partitions
    from edge_seg.train.models.nets import lite0_unet

    keras.utils.set_random_seed(seed)
    args = CANDIDATES[name]
    model = lite0_unet(input_size=256, encoder_weights=encoder_weights,
                       name=f"lite0_unet_{name}", **args)
    blob = export_tflite(model, fmt)
    weights = "ImageNet encoder" if encoder_weights else "random"
    manifest = make_manifest(
        f"lite0_{name}_{fmt}", fmt, Preprocessing(input_size=256), variant="lite0_unet",
        preset=name, parameters=int(model.count_params()), candidate=dict(args),
        note=f"{weights} weights: a size and speed candidate only, not a segmentation model")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    card = (f"# lite0_unet candidate {name} ({weights} weights)\n\n"
            "Speed and size only; not a segmentation model, not a medical device.\n")
    path = write_bundle(work / f"lite0_{name}_{fmt}.zip", blob, manifest, card)
    xnn = xnnpack_partitions(blob)
    row = {"name": name, "stop_after": args["stop_after"],
           "decoder": "/".join(map(str, args["decoder_filters"])),
           "params": int(model.count_params()), "gflop": model_gflop(blob),
           "mb": path.stat().st_size / 1e6, "partitions": xnn.get("partitions"),
           "whole_graph": xnn.get("whole_graph"), "bundle": str(path)}
    return path, row


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.lite0_configs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(Path.home() / ".cache" / "edge-seg" / "lite0"))
    p.add_argument("--encoder-weights", default=None,
                   help="EfficientNet-Lite0 npz (default: random weights)")
    p.add_argument("--formats", default="drq",
                   help="comma-separated export formats (drq, fp16, fp32; int8 needs scans)")
    p.add_argument("--only", default=",".join(CANDIDATES),
                   help=f"comma-separated candidates of: {', '.join(CANDIDATES)}")
    a = p.parse_args(argv)
    names = [n for n in a.only.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        p.error(f"unknown candidate {unknown[0]!r}; allowed: {', '.join(CANDIDATES)}")
    print(f"{'candidate':10s} {'format':6s} {'stage':>5s} {'decoder':>10s} {'params':>9s} "
          f"{'GFLOP':>6s} {'MB':>5s} {'XNNPACK partitions':>8s}")
    for name, fmt in ((n, f) for n in names for f in a.formats.split(",")):
        _path, r = build_candidate(name, a.work, a.encoder_weights, fmt=fmt)
        print(f"{name:10s} {fmt:6s} {r['stop_after']:5d} {r['decoder']:>10s} {r['params']:9,d} "
              f"{r['gflop']:6.2f} {r['mb']:5.2f} {r['partitions']!s:>3s}"
              f"{' whole' if r['whole_graph'] else ' split'}", flush=True)
        print(f"  {r['bundle']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
