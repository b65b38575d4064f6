"""``edge-seg bundle``: inspect model bundles."""

import json
from pathlib import Path

import click

from edge_runtime.errors import EdgeSegError
from edge_runtime.safeio import one_line, shown


@click.group("bundle")
def bundle():
    """Inspect model bundles (.zip or unpacked folder) and trust them."""


def _format_value(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if value is None:
        return "-"
    return shown(str(value))


def format_manifest(manifest, indent=0):
    """A manifest as aligned ``key: value`` lines, nested objects indented."""
    lines = []
    width = max((len(k) for k in manifest), default=0)
    for key, value in manifest.items():
        if isinstance(value, dict) and value:
            lines.append(" " * indent + f"{shown(key)}:")
            lines.extend(format_manifest(value, indent + 2))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(" " * indent + f"{shown(key)}:")
            for item in value:
                sub = format_manifest(item, indent + 4)
                if sub:
                    sub[0] = " " * (indent + 2) + "- " + sub[0].lstrip()
                lines.extend(sub)
        else:
            lines.append(" " * indent + f"{shown(key) + ':':<{width + 1}} {_format_value(value)}")
    return lines


def summary_lines(manifest):
    """The dozen lines a person needs from a manifest: what the model is, how it decides,
    what it scored on validation and after conversion. ``--full`` prints everything. Every
    value from the manifest goes through ``_format_value`` (escaped for the terminal)."""
    m, v = manifest, (lambda x: _format_value(x))
    pre = m.get("preprocessing") or {}
    lines = [f"name:        {v(m.get('name'))}",
             f"model:       {v(m.get('variant'))} / {v(m.get('preset'))}, format "
             f"{v(m.get('format'))}, input {v(pre.get('input_size'))} px "
             f"({v(pre.get('resize'))}, {v(pre.get('normalisation'))})",
             f"decision:    threshold {v(m.get('threshold'))}, smallest region "
             f"{v(m.get('min_area_fraction'))} of the scan, peak probability >= "
             f"{v(m.get('min_peak_probability'))}"]
    capped = m.get("setting_capped")
    if isinstance(capped, dict):
        lowered = [f"{v(k)} {v(c.get('asked'))} -> {v(c.get('used'))}" for k, c in capped.items()
                   if isinstance(c, dict)]
        lines.append(f"lowered:     {', '.join(lowered)} for this format "
                     f"({v(capped.get('reason'))})")
    metrics = m.get("metrics") or {}
    for key, label in (("float", "validation:"), ("converted", "converted:")):
        r = metrics.get(key)
        if isinstance(r, dict) and isinstance(r.get("dice"), (int, float)):
            fp, miou = r.get("fp_scan_rate"), r.get("miou_2class")
            lines.append(f"{label:<12} Dice {r['dice']:.4f}, 2-class mIoU "
                         + (f"{miou:.3f}" if isinstance(miou, (int, float)) else "-")
                         + f" on {v(r.get('scans'))} scans; tumour-free flagged "
                         + (f"{100 * fp:.1f} %" if isinstance(fp, (int, float)) else "-"))
    drop = (metrics.get("drop") or {}).get("dice")
    if isinstance(drop, (int, float)):
        gate = metrics.get("gate") or {}
        lines.append(f"gate:        Dice drop {drop:+.4f} after conversion"
                     + (f" (allowed {v(gate.get('max_drop'))})"
                        if gate.get("max_drop") is not None else ""))
    training = m.get("training") or {}
    if training.get("dataset"):
        lines.append(f"trained on:  {v(training['dataset'])}")
    if m.get("calibration"):
        lines.append("calibrated:  for a site (see --full: calibration)")
    lines.append(f"created:     {v(m.get('created'))} with edge-seg "
                 f"{v(m.get('edge_seg_version'))}")
    return lines


@bundle.command("info")
@click.argument("bundle_path", metavar="BUNDLE",
                type=click.Path(path_type=Path, readable=False), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.option("--full", is_flag=True, help="Print every field of the manifest, not a summary.")
@click.option("--trust-file", type=click.Path(dir_okay=False, path_type=Path, readable=False),
              default=None, help="Trust list to check (default: $EDGE_SEG_TRUST, else "
                                 "~/.config/edge-seg/trusted.json).")
@click.pass_context
def info(ctx, bundle_path, as_json, full, trust_file):
    """Verify a bundle (schema, archive safety, model sha256), say whether it is trusted and
    print a summary of its manifest (--full: every field; --json: the manifest as JSON). An
    untrusted bundle is shown (exit 0), never run.

    BUNDLE defaults to the bundle installed with edge-seg. Exit code 3 when the bundle
    cannot be loaded (or the trust list cannot be read).
    """
    from edge_runtime.bundle import load_bundle
    from edge_runtime.trust import trust_source
    try:
        b = load_bundle(bundle_path)
        source = trust_source(b, trust_file)
    except EdgeSegError as exc:
        click.echo(f"edge-seg bundle info: {exc}", err=True)
        ctx.exit(exc.exit_code)
    for warning in b.warnings:
        click.echo(f"warning: {one_line(warning)}", err=True)
    if as_json:
        click.echo(json.dumps({**b.manifest, "bundle_digest": b.digest,
                               "trusted": source is not None, "trusted_by": source},
                              indent=2))
        return
    size = len(b.model_bytes)
    size_text = f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
    click.echo(f"bundle: {shown(b.path)} ({b.kind}, model {size_text}, sha256 verified)")
    click.echo(f"digest: {b.digest}")
    click.echo(f"trusted: yes ({source})" if source else
               "trusted: NO: run, eval and bench refuse it; if it comes from a source you "
               f"trust: edge-seg bundle trust {shown(b.path)}")
    for line in (format_manifest(b.manifest) if full else summary_lines(b.manifest)):
        click.echo(line)
    if b.model_card:
        first = next((ln.strip("# ").strip() for ln in b.model_card.splitlines() if ln.strip()),
                     "")
        click.echo(f"model card: {len(b.model_card.splitlines())} lines"
                   + (f" ({one_line(first, 120)})" if first else ""))


@bundle.command("trust")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(path_type=Path, readable=False))
@click.option("--trust-file", type=click.Path(dir_okay=False, path_type=Path, readable=False),
              default=None, help="Trust list to write (default: $EDGE_SEG_TRUST, else "
                                 "~/.config/edge-seg/trusted.json).")
@click.pass_context
def trust(ctx, bundle_path, trust_file):
    """Verify BUNDLE and add its digest (a sha256 over all its files) to the trust list, so
    that run, eval and bench accept it. Do this only for a bundle from a source you trust
    (e.g. your own 'edge-seg convert', or a checksum published by its maker): anyone who
    can change the bundle later changes its digest, and it is refused again.

    Exit code 3 when the bundle cannot be loaded or the trust list cannot be written.
    """
    from edge_runtime.bundle import load_bundle
    from edge_runtime.trust import trust_bundle
    try:
        b = load_bundle(bundle_path)
        digest, target = trust_bundle(bundle_path, trust_file)
    except EdgeSegError as exc:
        click.echo(f"edge-seg bundle trust: {exc}", err=True)
        ctx.exit(exc.exit_code)
    click.echo(f"trusted {shown(bundle_path)} (name {shown(b.name)}, digest {digest}) "
               f"in {shown(target)}")
