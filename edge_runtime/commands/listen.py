"""``edge-seg listen``: a DICOM node that segments each MR series it receives."""

from pathlib import Path

import click

from edge_runtime.commands.options import trust_options
from edge_runtime.errors import EXIT_USAGE, EdgeSegError


@click.command("listen")
@click.option("--folder", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The node's own folder: incoming/ (received instances), results/ (one "
                   "folder per series) and state.json. Nothing is written outside it.")
@click.option("--allow", "allowed", multiple=True, required=True, metavar="AET",
              help="Calling AE title to accept (repeat for several); others are rejected.")
@click.option("--ae-title", default="EDGESEG", show_default=True, help="This node's AE title.")
@click.option("--port", type=click.IntRange(1, 65535), default=11112, show_default=True)
@click.option("--bind", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but 127.0.0.1 exposes the node to the "
                   "network: the AE allow-list is its only check, use a firewall or VPN.")
@click.option("--quiet-seconds", type=click.FloatRange(min=0.1), default=10.0,
              show_default=True,
              help="A series is complete when no instance of it came for this long.")
@click.option("--max-storage-mb", type=click.FloatRange(min=1), default=2048.0,
              show_default=True, help="Refuse instances beyond this much in incoming/.")
@click.option("--send-to", default=None, metavar="AET@HOST:PORT",
              help="C-STORE each series' SEG to this DICOM node (e.g. the PACS).")
@click.option("--bundle", "bundle_path", type=click.Path(path_type=Path), default=None,
              help="Model bundle (default: the bundle installed with edge-seg).")
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--series-consistency", type=click.Choice(["off", "overlap", "any"]),
              default=None, help="The consistency rule (default: as edge-seg run).")
@trust_options
@click.pass_context
def listen(ctx, folder, allowed, ae_title, port, bind, quiet_seconds, max_storage_mb, send_to,
           bundle_path, threads, series_consistency, allow_untrusted, trust_file):
    """A DICOM Storage SCP (C-STORE, C-ECHO) that segments each MR series it receives
    and writes per-series results (and a DICOM SEG) under --folder; needs the 'dicom'
    extra. Runs until Ctrl-C or SIGTERM. One log line per event on stderr.

    Exit codes: 2 usage (bad option, unreadable state), 3 bundle problem, 4 the 'dicom'
    extra is not installed.
    """
    from edge_runtime.dicom._deps import need
    from edge_runtime.dicom.node import Node, NodeConfig, parse_destination

    def fail(exc, code=EXIT_USAGE):
        click.echo(f"edge-seg listen: {exc}", err=True)
        ctx.exit(getattr(exc, "exit_code", code))

    try:
        for module in ("pydicom", "pynetdicom", "highdicom"):
            need(module)
        dest = parse_destination(send_to) if send_to else None
        from edge_runtime.safeio import one_line
        from edge_runtime.trust import load_trusted_bundle
        bundle = load_trusted_bundle(bundle_path, allow_untrusted=allow_untrusted,
                                     trust_file=trust_file)   # now, not at the first series
        for warning in bundle.warnings:
            click.echo(f"warning: {one_line(warning)}", err=True)

        def make_segmenter():
            from edge_runtime.segment import Segmenter
            return Segmenter(bundle, threads=threads)

        cfg = NodeConfig(folder=folder, allowed=list(allowed), ae_title=ae_title, port=port,
                         bind=bind, quiet_s=quiet_seconds,
                         max_bytes=int(max_storage_mb * 1024 * 1024), send_to=dest,
                         consistency=series_consistency)
        node = Node(cfg, make_segmenter, log=lambda line: click.echo(line, err=True))
    except (EdgeSegError, ValueError) as exc:
        fail(exc)
    except OSError as exc:
        fail(EdgeSegError(f"{folder}: cannot use this folder ({exc.strerror or exc})"))
    try:
        node.serve()
    except OSError as exc:   # e.g. the port is taken
        fail(EdgeSegError(f"cannot listen on {bind}:{port} ({exc.strerror or exc})"))
