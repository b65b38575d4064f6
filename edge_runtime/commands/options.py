"""Options shared by more than one command (defined once, so their help never drifts)."""

from pathlib import Path

import click


def postprocess_overrides(command):
    """--threshold, --min-area-fraction, --min-peak-probability: override the bundle's
    post-processing (``load_bundle`` records each override as a warning)."""
    options = [
        click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     default=None, help="Override the bundle's probability threshold (warns)."),
        click.option("--min-area-fraction", type=click.FloatRange(0, 1, max_open=True),
                     default=None, help="Override the bundle's smallest tumour, as a fraction "
                                        "of the image (warns)."),
        click.option("--min-peak-probability", type=click.FloatRange(0, 1, max_open=True),
                     default=None, help="Override the bundle's peak filter: drop regions whose "
                                        "highest probability is below this (0: off; warns)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def trust_options(command):
    """--allow-untrusted, --trust-file: how ``run``, ``eval`` and ``bench`` check that the
    bundle is trusted (``edge_runtime.trust``)."""
    options = [
        click.option("--allow-untrusted", is_flag=True,
                     help="Use a bundle that is neither the shipped one nor in the trust list "
                          "(warns: its manifest and model are unverified). Default: refuse "
                          "it (exit 3); trust it with 'edge-seg bundle trust'."),
        click.option("--trust-file", type=click.Path(dir_okay=False, path_type=Path,
                                                     readable=False),
                     default=None, help="Trust list to check (default: $EDGE_SEG_TRUST, else "
                                        "~/.config/edge-seg/trusted.json)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
