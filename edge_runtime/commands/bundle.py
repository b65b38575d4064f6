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


@bundle.command("info")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(path_type=Path),
                required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_context
def info(ctx, bundle_path, as_json):
    """Verify a bundle (schema, archive safety, model sha256) and print its manifest.

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
    for line in format_manifest(b.manifest):
        click.echo(line)
    if b.model_card:
        first = next((ln.strip("# ").strip() for ln in b.model_card.splitlines() if ln.strip()),
                     "")
        click.echo(f"model card: {len(b.model_card.splitlines())} lines"
                   + (f" ({first})" if first else ""))
