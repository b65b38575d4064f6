"""The DICOM extra's packages, imported only when needed; a missing one names the extra."""

import importlib

from edge_runtime.errors import MissingExtraError

INSTALL = "pip install 'edge-seg[dicom]'"


def need(module):
    """Import ``module`` (pydicom, highdicom, pynetdicom) or raise ``MissingExtraError``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"DICOM series need {module}, which is not installed; "
                                f"install the extra with: {INSTALL}") from None
