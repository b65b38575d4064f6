"""The project's one atomic file writer.

Every file is written to a temporary file in its own folder and moved into place with
``os.replace``: a crash or a full disk leaves either the old file or the new one, never a
partial file, and no temporary file is left behind. Temporary names are
``.<name, cut to fit>.<8 random characters>.edge-seg.tmp`` and never longer than 255 bytes
when the final name fits; a run killed with SIGKILL can still leave one, and
``remove_stale_temporaries`` (called by ``batch.run_batch`` on its output folder) removes
files of exactly that pattern, in that folder only, once they are ``STALE_SECONDS`` old.

- ``write_bytes``, ``write_text``, ``write_json``: one file;
- ``write_many``: several files, all or none;
- ``replacing``: for a writer that needs a path (a Keras model, ``np.savez``, a plot, a tar
  archive): a temporary path ending in the given suffix, moved into place when the block ends
  without an error, removed otherwise.
"""

import contextlib
import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path

TEMP_SUFFIX = ".edge-seg.tmp"
MAX_NAME_BYTES = 255                 # a file name on ext4, btrfs, xfs, tmpfs, FAT (in UTF-16)
_TEMP_RANDOM = 8                     # characters tempfile.mkstemp adds
_TEMP_PATTERN = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + r"\Z", re.DOTALL)
STALE_SECONDS = 60                   # a temporary file this old belongs to no live write

_UMASK = None


def _file_mode():
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def temp_prefix(name, extra=""):
    """The temporary-name prefix for a final file ``name``: ``.<name>.``, the name cut (by
    bytes) so that the whole temporary name (with ``extra`` after ``TEMP_SUFFIX``) stays
    within ``MAX_NAME_BYTES``."""
    room = (MAX_NAME_BYTES - _TEMP_RANDOM - len(TEMP_SUFFIX) - len(os.fsencode(extra)) - 2)
    raw = os.fsencode(name)[:max(room, 0)]
    return "." + os.fsdecode(raw) + "."


def remove_stale_temporaries(folder, older_than=STALE_SECONDS):
    """Remove this module's temporary files (the ``.*.XXXXXXXX.edge-seg.tmp`` pattern only)
    left in ``folder`` itself (not its sub-folders) by a killed run -> the removed paths.

    Only regular files at least ``older_than`` seconds old are touched, so a write in
    progress in another run is left alone; anything else in the folder is never touched."""
    removed = []
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not _TEMP_PATTERN.match(name):
            continue
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime >= older_than:
                os.unlink(path)
                removed.append(Path(path))
        except OSError:
            continue
    return removed


def _new_temp(path, extra=""):
    """A new, empty temporary file next to ``path`` -> (fd, its name)."""
    path = Path(path)
    return tempfile.mkstemp(prefix=temp_prefix(path.name, extra), suffix=TEMP_SUFFIX + extra,
                            dir=path.parent)


def _stage(path, data):
    """Write ``data`` to a new temporary file next to ``path`` -> the temporary file's name."""
    fd, tmp = _new_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())
    except BaseException:
        _remove_quietly(tmp)
        raise
    return tmp


def _make_parents(paths, parents):
    if parents:
        for p in paths:
            Path(p).parent.mkdir(parents=True, exist_ok=True)


def write_many(files, parents=False):
    """Write {path: bytes} so that either every file is complete or none was touched -> the
    paths (``Path``), in order.

    All data is staged in temporary files in the target folders first (a failure there
    removes them and leaves existing files untouched); then each is moved into place with
    ``os.replace``. ``parents``: create missing folders first.
    """
    _make_parents(files, parents)
    staged = []
    try:
        for path, data in files.items():
            staged.append((_stage(path, data), Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _path in staged:
            _remove_quietly(tmp)
        raise
    return [p for _t, p in staged]


def write_bytes(path, data, parents=False):
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``
    -> ``Path(path)``. On any failure the temporary file is removed and an existing ``path``
    is left untouched. ``parents``: create missing folders first."""
    write_many({Path(path): data}, parents)
    return Path(path)


def write_text(path, text, parents=False):
    """``write_bytes`` of ``text`` in UTF-8."""
    return write_bytes(path, text.encode("utf-8"), parents)


def json_text(obj, default=None):
    """``obj`` as the project writes JSON files: indented by 2, one final newline."""
    return json.dumps(obj, indent=2, default=default) + "\n"


def write_json(path, obj, parents=False, default=None):
    """``write_text`` of ``json_text(obj, default)``."""
    return write_text(path, json_text(obj, default), parents)


@contextlib.contextmanager
def replacing(path, suffix="", parents=False):
    """``with replacing(path, ".keras") as tmp: model.save(tmp)``: for a writer that needs a
    path. ``tmp`` is a new temporary file next to ``path`` whose name ends in ``suffix`` (for
    writers that choose the format by it); when the block ends without an error it gets the
    usual file mode and is moved onto ``path`` with ``os.replace``, otherwise it is removed
    and an existing ``path`` is left untouched."""
    path = Path(path)
    _make_parents([path], parents)
    fd, tmp = _new_temp(path, suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())            # mkstemp's 0600 is not for sharing
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def ensure_writable_dir(folder):
    """Create ``folder`` if needed and prove a file can be written there (a temporary file,
    removed at once); raises ``OSError`` with the reason otherwise."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
