"""``edge-seg serve``: the browser view; a thin shell over ``edge_runtime.serve``."""

from pathlib import Path

import click

from edge_runtime.commands.options import trust_options
from edge_runtime.errors import EdgeSegError
from edge_runtime.serve.settings import (DEFAULT_HOST, DEFAULT_KEEP_DAYS, DEFAULT_MAX_FILES,
                                         DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_MB,
                                         DEFAULT_PORT, ServeConfig, check_tls,
                                         default_data_dir)


@click.command("serve")
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on. Anything but 127.0.0.1/::1/localhost requires the "
                   "access token (made at the first such start and printed once).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--bundle", "bundle_path", type=click.Path(path_type=Path), default=None,
              help="Model bundle (.zip or folder). Default: the bundle installed with edge-seg.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Folder for uploads, results and the token hash "
                                 "(created). Default: ~/.local/share/edge-seg/serve.")
@click.option("--keep-days", type=click.FloatRange(min=0), default=DEFAULT_KEEP_DAYS,
              show_default=True, help="Delete results older than this (0: keep forever).")
@click.option("--max-upload-mb", type=click.IntRange(min=1), default=DEFAULT_MAX_UPLOAD_MB,
              show_default=True, help="Largest upload (all its files together).")
@click.option("--max-files", type=click.IntRange(min=1), default=DEFAULT_MAX_FILES,
              show_default=True, help="Most scans in one upload (zip members included).")
@click.option("--max-pixels", type=click.IntRange(min=256), default=DEFAULT_MAX_PIXELS,
              show_default=True, help="Largest scan, in pixels.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Interpreter threads (default: CPU count, at most 4).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="PEM certificate: serve HTTPS (with --tls-key), so the token "
                                 "and the scans do not cross the network in the clear.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="PEM private key of --tls-cert.")
@click.option("--reset-token", is_flag=True,
              help="Make and print a new access token (non-local --host); the old one stops "
                   "working.")
@trust_options
@click.pass_context
def serve(ctx, host, port, bundle_path, data_dir, keep_days, max_upload_mb, max_files,
          max_pixels, threads, tls_cert, tls_key, reset_token, allow_untrusted, trust_file):
    """Serve a page where staff drop in scans and see the tumour outlined, the findings in
    words, and the files to keep. Binds to 127.0.0.1 unless --host says otherwise.

    Research software: not a medical device. Exit codes: 0 stopped, 2 usage (address in
    use, data folder not writable), 3 bundle problem, 4 the 'serve' extra is missing.
    """
    from edge_runtime.serve.app import bind_socket, create_app, require_web_stack, run_server

    def fail(exc):
        click.echo(f"edge-seg serve: {exc}", err=True)
        ctx.exit(exc.exit_code)

    try:
        require_web_stack()
        try:
            config = ServeConfig(data_dir or default_data_dir(), host=host, port=port,
                                 keep_days=keep_days,
                                 max_upload_bytes=max_upload_mb * 1024 * 1024,
                                 max_files=max_files, max_pixels=max_pixels,
                                 tls_cert=tls_cert, tls_key=tls_key)
            check_tls(config)
        except ValueError as exc:
            raise EdgeSegError(str(exc)) from None
        token = prepare_data(config, reset_token)
        segmenter, name = load_segmenter(bundle_path, threads, allow_untrusted, trust_file)
        try:
            sock = bind_socket(host, port)
        except OSError as exc:
            raise EdgeSegError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        app = create_app(config, segmenter, model_name=name)
    except EdgeSegError as exc:
        fail(exc)
    shown = f"[{host}]" if ":" in host else host
    if config.auth_required:
        click.echo(f"Listening on the network ({host}): the access token is required.")
        if token:
            click.echo(f"Access token (shown once; only its hash is kept in "
                       f"{config.data_dir / 'auth.json'}): {token}")
        else:
            click.echo("Access token: set at an earlier start (--reset-token makes a new one).")
    scheme = "https" if config.tls else "http"
    click.echo(f"edge-seg serve: open {scheme}://{shown}:{port}/  (model {name}; data "
               f"{config.data_dir}; results kept "
               f"{f'{keep_days:g} days' if keep_days else 'forever'}). Ctrl-C stops.")
    click.echo("Research software: not a medical device, not for diagnosis.")
    run_server(app, sock)


def prepare_data(config, reset_token):
    """Create the data folder; on a non-local bind make sure a token is set -> a new token
    to print, or None."""
    from edge_runtime.serve.security import ensure_token
    from edge_runtime.serve.store import Store
    try:
        Store(config.data_dir, config.keep_days).prepare()
        if config.auth_required:
            return ensure_token(config.data_dir, reset=reset_token)
    except (OSError, ValueError) as exc:
        raise EdgeSegError(f"--data {config.data_dir}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    return None


def load_segmenter(bundle_path, threads, allow_untrusted=False, trust_file=None):
    from edge_runtime.safeio import one_line
    from edge_runtime.segment import Segmenter
    from edge_runtime.trust import load_trusted_bundle
    bundle = load_trusted_bundle(bundle_path, allow_untrusted=allow_untrusted,
                                 trust_file=trust_file)
    for warning in bundle.warnings:
        click.echo(f"warning: {one_line(warning)}", err=True)
    return Segmenter(bundle, threads=threads), bundle.name
