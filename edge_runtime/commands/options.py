"""Options shared by more than one command (defined once, so their help never drifts)."""

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
