"""DICOM series in, per-series answers and DICOM SEG out (the ``dicom`` extra).

The unit is a series: ``series.scan_tree`` finds, groups and orders the slices of the MR
series under a folder; ``process.process_series`` segments one series slice by slice and
writes the per-slice results, ``<stem>_series.json``, a montage and a DICOM SEG. The CLI
(``edge-seg run`` on a DICOM folder), the DICOM node (``edge-seg listen``) and the web view
(``edge-seg serve``) call the same ``process_series``. Modules:

- ``series``: finding, grouping, ordering (``Series``, ``Slice``, ``scan_tree``,
  ``scan_files``);
- ``pixels``: decoding one slice (compressed syntaxes through pydicom's plugins);
- ``geometry``: slice spacing, volume, cross-section, diameter (numpy only);
- ``consistency``: the series-level rule for detections without neighbouring support;
- ``seg``: the DICOM Segmentation object (highdicom);
- ``process``: ``process_series`` and ``process_tree``;
- ``node``: the Storage SCP behind ``edge-seg listen`` (pynetdicom);
- ``synthetic``: synthetic MR series for tests and benchmarks.

Nothing is imported at package import; pydicom, highdicom and pynetdicom are imported
when used, and a missing one raises ``MissingExtraError`` naming the extra.
"""


def process_series(*args, **kwargs):
    """See ``edge_runtime.dicom.process.process_series``."""
    from edge_runtime.dicom.process import process_series as _process_series
    return _process_series(*args, **kwargs)


def scan_tree(*args, **kwargs):
    """See ``edge_runtime.dicom.series.scan_tree``."""
    from edge_runtime.dicom.series import scan_tree as _scan_tree
    return _scan_tree(*args, **kwargs)
