"""What ``edge-seg serve`` is allowed to do: addresses, limits, where it keeps its data."""

import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_KEEP_DAYS = 30                     # results older than this are deleted (0: never)
DEFAULT_MAX_UPLOAD_MB = 200                # one upload (all its files together)
DEFAULT_MAX_FILES = 500                    # scans in one upload (zip members included)
DEFAULT_MAX_PIXELS = 16_000_000            # one scan (4000 x 4000): a Pi has little memory
ZIP_EXPANSION = 4                          # a zip may unpack to at most this x the upload limit
LOOPBACK_NAMES = ("localhost",)


def default_data_dir():
    """``$XDG_DATA_HOME/edge-seg/serve`` (``~/.local/share/edge-seg/serve`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")
    return Path(base) / "edge-seg" / "serve"


def is_loopback(host):
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = str(host).strip().strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost, or "": may resolve anywhere


@dataclass
class ServeConfig:
    data_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    keep_days: float = DEFAULT_KEEP_DAYS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    max_files: int = DEFAULT_MAX_FILES
    max_pixels: int = DEFAULT_MAX_PIXELS
    auth_required: bool = None             # None: required unless ``host`` is loopback
    tls_cert: Path = None                  # PEM certificate (chain) and key: serve HTTPS
    tls_key: Path = None

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        if self.auth_required is None:
            self.auth_required = not is_loopback(self.host)
        for name in ("max_upload_bytes", "max_files", "max_pixels"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both a TLS certificate and its key, or neither; got "
                             f"certificate={self.tls_cert}, key={self.tls_key}")
        if not self.keep_days >= 0:
            raise ValueError(f"keep_days must be >= 0 (0 keeps results forever), "
                             f"got {self.keep_days!r}")

    @property
    def tls(self):
        return self.tls_cert is not None

    @property
    def max_unpacked_bytes(self):
        return ZIP_EXPANSION * self.max_upload_bytes


def check_tls(config):
    """Load the certificate and key once, so a bad pair is a one-line ``ValueError`` at start
    rather than a traceback from the server."""
    if not config.tls:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            str(config.tls_cert), str(config.tls_key))
    except (ssl.SSLError, OSError) as exc:
        detail = " ".join(str(getattr(exc, "strerror", None) or exc).split())[:160]
        raise ValueError(f"cannot use --tls-cert {config.tls_cert} with --tls-key "
                         f"{config.tls_key} ({detail})") from None
