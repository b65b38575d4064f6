"""``edge-seg``: a thin click shell over library functions.

Subcommands are imported lazily, so ``edge-seg run`` never imports what ``edge-seg train``
needs (TensorFlow). Each command lives in its own module; this file only maps names to them.
"""

import importlib
import sys

import click

from edge_runtime import __version__
from edge_runtime.errors import EXIT_MISSING_EXTRA

# name -> ("module:attribute", one-line help, extra needed or None)
COMMANDS = {
    "run": ("edge_runtime.commands.run:run", "Segment scans: mask, overlay and findings.", None),
    "bench": ("edge_runtime.commands.bench:bench", "Measure latency, memory and size.", None),
    "eval": ("edge_runtime.commands.evaluate:evaluate",
             "Score a bundle on labelled scans or tumour-free scans.", None),
    "bundle": ("edge_runtime.commands.bundle:bundle", "Inspect and trust model bundles.", None),
    "calibrate": ("edge_runtime.commands.calibrate:calibrate", "Check a bundle on a site's tumour-free scans and write a site bundle.", None),
    "serve": ("edge_runtime.commands.serve:serve",
              "A browser page for clinic staff: drop in scans, see the result "
              "(needs edge-seg[serve]).", None),
    "listen": ("edge_runtime.commands.listen:listen",
               "DICOM node: segment each MR series received (needs edge-seg[dicom]).", None),
    "train": ("edge_seg.train.cli:train", "Train a segmentation variant (needs edge-seg[train]).", "train"),
    "convert": ("edge_seg.convert.cli:convert",
                "Convert a trained model to TFLite and package a verified bundle "
                "(needs edge-seg[train]).", "train"),
}

HEAVY_MODULES = ("tensorflow", "keras")


class MissingExtraCommand(click.Command):
    """Stands in for a command whose optional dependencies are not installed."""

    def __init__(self, name, extra, missing):
        super().__init__(name, help=f"Unavailable: needs the '{extra}' extra.",
                         context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True})
        self.extra, self.missing = extra, missing

    def invoke(self, ctx):
        click.echo(f"edge-seg {self.name}: needs {self.missing}, which is not installed; "
                   f"install it with: pip install 'edge-seg[{self.extra}]'", err=True)
        ctx.exit(EXIT_MISSING_EXTRA)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target, _help, extra = COMMANDS[name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            top = (exc.name or "").split(".")[0]
            if extra and top in HEAVY_MODULES:
                return MissingExtraCommand(name, extra, top)
            raise
        return getattr(module, attr)

    def format_commands(self, ctx, formatter):
        # Short help without importing every command module.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _version_message():
    from edge_runtime.interpreter import interpreter_info
    try:
        info = interpreter_info()
        interp = f"{info['package']} {info['version']}"
    except Exception as exc:  # no interpreter installed: still print our version
        interp = f"no TFLite interpreter ({exc})"
    return f"edge-seg {__version__} (interpreter: {interp}; Python {sys.version.split()[0]})"


def _print_version(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    click.echo(_version_message())
    ctx.exit(0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show the version and the interpreter package.")
def main():
    """edge-seg: brain tumour segmentation that runs on a Raspberry Pi.

    Research software: not a medical device, not for diagnosis.
    """


if __name__ == "__main__":  # python -m edge_runtime.cli ...
    main()
