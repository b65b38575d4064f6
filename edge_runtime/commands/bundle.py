"""``edge-seg bundle``: inspect model bundles."""

import json
from pathlib import Path

import click

from edge_runtime.errors import EdgeSegError


@click.group("bundle")
def bundle():
    """Inspect model bundles (.zip or unpacked folder)."""


def _format_value(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if value is None:
        return "-"
    return str(value)


def format_manifest(manifest, indent=0):
    """A manifest as aligned ``key: value`` lines, nested objects indented."""
    lines = []
    width = max((len(k) for k in manifest), default=0)
    for key, value in manifest.items():
        if isinstance(value, dict) and value:
            lines.append(" " * indent + f"{key}:")
            lines.extend(format_manifest(value, indent + 2))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(" " * indent + f"{key}:")
            for item in value:
                sub = format_manifest(item, indent + 4)
                if sub:
                    sub[0] = " " * (indent + 2) + "- " + sub[0].lstrip()
                lines.extend(sub)
        else:
            lines.append(" " * indent + f"{key + ':':<{width + 1}} {_format_value(value)}")
    return lines


def summary_lines(manifest):
    """The dozen lines a person needs from a manifest: what the model is, how it decides,
    what it scored on validation and after conversion. ``--full`` prints everything."""
    m = manifest
    pre = m.get("preprocessing") or {}
    lines = [f"name:        {m.get('name', '-')}",
             f"model:       {m.get('variant', '-')} / {m.get('preset', '-')}, "
             f"format {m.get('format', '-')}, input {pre.get('input_size', '-')} px "
             f"({pre.get('resize', '-')}, {pre.get('normalisation', '-')})",
             f"decision:    threshold {_format_value(m.get('threshold'))}, smallest region "
             f"{_format_value(m.get('min_area_fraction'))} of the scan, peak probability >= "
             f"{_format_value(m.get('min_peak_probability'))}"]
    metrics = m.get("metrics") or {}
    for key, label in (("float", "validation:"), ("converted", "converted:")):
        r = metrics.get(key)
        if isinstance(r, dict) and "dice" in r:
            fp = r.get("fp_scan_rate")
            lines.append(f"{label:<12} Dice {r['dice']:.4f}, 2-class mIoU "
                         f"{r.get('miou_2class', float('nan')):.3f} on {r.get('scans', '?')} "
                         f"scans; tumour-free flagged "
                         + (f"{100 * fp:.1f} %" if isinstance(fp, (int, float)) else "-"))
    drop = (metrics.get("drop") or {}).get("dice")
    if isinstance(drop, (int, float)):
        gate = metrics.get("gate") or {}
        lines.append(f"gate:        Dice drop {drop:+.4f} after conversion"
                     + (f" (allowed {_format_value(gate.get('max_drop'))})"
                        if gate.get("max_drop") is not None else ""))
    training = m.get("training") or {}
    if training.get("dataset"):
        lines.append(f"trained on:  {training['dataset']}")
    lines.append(f"created:     {m.get('created', '-')} with edge-seg "
                 f"{m.get('edge_seg_version', '-')}")
    return lines


@bundle.command("info")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(path_type=Path),
                required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.option("--full", is_flag=True, help="Print every field of the manifest, not a summary.")
@click.pass_context
def info(ctx, bundle_path, as_json, full):
    """Verify a bundle (schema, archive safety, model sha256) and print a summary of its
    manifest (--full: every field; --json: the manifest as JSON).

    BUNDLE defaults to the bundle installed with edge-seg. Exit code 3 when the bundle
    cannot be trusted or loaded.
    """
    from edge_runtime.bundle import load_bundle
    try:
        b = load_bundle(bundle_path)
    except EdgeSegError as exc:
        click.echo(f"edge-seg bundle info: {exc}", err=True)
        ctx.exit(exc.exit_code)
    for warning in b.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(b.manifest, indent=2))
        return
    size = len(b.model_bytes)
    size_text = f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
    click.echo(f"bundle: {b.path} ({b.kind}, model {size_text}, sha256 verified)")
    for line in (format_manifest(b.manifest) if full else summary_lines(b.manifest)):
        click.echo(line)
    if b.model_card:
        first = next((ln.strip("# ").strip() for ln in b.model_card.splitlines() if ln.strip()),
                     "")
        click.echo(f"model card: {len(b.model_card.splitlines())} lines"
                   + (f" ({first})" if first else ""))
