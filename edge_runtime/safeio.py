"""Opening untrusted paths without hanging, and showing untrusted text on a terminal.

``open_regular`` is the one way the runtime opens a file it was handed (a scan, a bundle, a
bare ``.tflite``, a trust list): anything that is not a regular file (a FIFO, a device, a
socket, a folder), whether named directly, found in a folder or reached through a symbolic
link, is refused *before* it is opened for reading, so a FIFO named ``scan.png`` cannot hang a
run. The check is made on the path (``os.stat``) and again on the open descriptor
(``os.fstat``), and the open itself uses ``O_NONBLOCK`` so that even a file swapped for a FIFO
between the two cannot block.

``shown`` makes an untrusted string (a file name, a bundle's name, a decoder's message) safe
for a one-line terminal message: control characters (newline, carriage return, ESC...),
undecodable bytes of a non-UTF-8 file name and other non-printable characters are escaped and
the string is quoted, so a name can neither split, rewrite nor colour a line.
"""

import os
import stat

__all__ = ["NotRegularFileError", "check_regular", "open_regular", "read_regular", "shown",
           "one_line"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class NotRegularFileError(OSError):
    """The path exists but is not a regular file; ``problem`` says what it is."""

    def __init__(self, path, problem):
        super().__init__(problem)
        self.path = path
        self.problem = problem


def _kind(mode):
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path):
    """``os.stat`` result of ``path`` (symbolic links followed); raises
    ``NotRegularFileError`` for anything but a regular file, ``OSError`` (e.g.
    ``FileNotFoundError``, ``PermissionError``) when it cannot be examined."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(path, f"is {_kind(st.st_mode)}, not a regular file")
    return st


def open_regular(path):
    """Open a regular file for reading in binary mode -> file object; never blocks.

    Raises ``NotRegularFileError`` (without reading) for FIFOs, devices, sockets and folders,
    and the usual ``OSError`` subclasses otherwise.
    """
    check_regular(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):   # swapped between stat and open
            raise NotRegularFileError(path, f"is {_kind(st.st_mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, limit):
    """All bytes of a regular file of at most ``limit`` bytes -> bytes; ``ValueError`` (with
    the size) when it is larger, checked before and while reading."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise ValueError(f"is {size} bytes; the limit is {limit}")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is over {limit} bytes")
    return data


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", "'": "\\'"}


def _escape_char(ch):
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:          # an undecodable byte (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(value):
    """An untrusted string or path, safe for one terminal line.

    A plain printable name comes back unchanged; anything else (control characters,
    non-printable or undecodable characters, a quote or backslash next to them) is returned
    quoted, ``'like\\nthis'``, with each such character escaped.
    """
    text = os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else str(value)
    if text.isprintable() and not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return text
    return "'" + "".join(c if c.isprintable() and c not in "\\'" and
                         not 0xD800 <= ord(c) <= 0xDFFF else _escape_char(c)
                         for c in text) + "'"


def one_line(text, limit=300):
    """A message (e.g. a library's exception text) as one printable line of at most
    ``limit`` characters: whitespace runs become one space, other control characters are
    escaped (without quoting)."""
    text = " ".join(str(text).split())
    text = "".join(c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF
                   else _escape_char(c) for c in text)
    return text[:limit]
