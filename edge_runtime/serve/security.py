"""Who may use ``edge-seg serve``, and the checks every request passes (no web stack needed).

- Loopback binds (127.0.0.1, ::1, localhost) need no login, but the ``Host`` header must be a
  loopback name too (a web page elsewhere cannot reach the server by DNS rebinding).
- Any other bind needs the access token: generated at the first such start (printed once)
  and stored only as a salted PBKDF2-SHA256 hash in ``DATA/auth.json``. Logging in with it
  gives a session cookie (random, HttpOnly, SameSite=Strict, kept in memory: a restart logs
  everyone out).
- CSRF: every state-changing form carries a token equal to a SameSite=Strict cookie
  (double submit, compared in constant time), and a cross-site ``Origin`` is refused.
- Every response carries ``SECURITY_HEADERS``: a Content-Security-Policy that allows only
  this server's own scripts, styles and images (no external source, no inline script).
"""

import hashlib
import hmac
import json
import secrets
import time

from edge_runtime import atomic
from edge_runtime.serve.settings import is_loopback

AUTH_FILE = "auth.json"
PBKDF2_ITERATIONS = 200_000
SESSION_COOKIE = "edge_seg_session"
CSRF_COOKIE = "edge_seg_csrf"
CSRF_FIELD = "csrf"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 200
TOKEN_RE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",    # no-referrer would make Origin "null"
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    "cache-control": "no-store",
}


def _hash(token, salt, iterations):
    return hashlib.pbkdf2_hmac("sha256", token.encode("utf-8"), bytes.fromhex(salt),
                               iterations).hex()


def ensure_token(data_dir, reset=False):
    """Make sure ``DATA/auth.json`` holds a token hash -> the new token (to print once), or
    None when one was already set (it cannot be shown again: it is stored hashed)."""
    path = data_dir / AUTH_FILE
    if path.exists() and not reset:
        load_token_record(data_dir)   # refuse a damaged record now, not at the first login
        return None
    token = secrets.token_urlsafe(18)
    salt = secrets.token_hex(16)
    record = {"scheme": "pbkdf2_sha256", "iterations": PBKDF2_ITERATIONS, "salt": salt,
              "hash": _hash(token, salt, PBKDF2_ITERATIONS), "created": time.time()}
    atomic.write_json(path, record)
    path.chmod(0o600)
    return token


def load_token_record(data_dir):
    path = data_dir / AUTH_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        ok = (record.get("scheme") == "pbkdf2_sha256" and int(record["iterations"]) > 0
              and bytes.fromhex(record["salt"]) and bytes.fromhex(record["hash"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a valid token record ({exc}); start with "
                         "--reset-token to make a new token") from None
    if not ok:
        raise ValueError(f"{path}: not a valid token record; start with --reset-token")
    return record


def verify_token(record, token):
    if not isinstance(token, str) or not 0 < len(token) <= 200:
        return False
    return hmac.compare_digest(_hash(token, record["salt"], int(record["iterations"])),
                               record["hash"])


class Sessions:
    """Logged-in browsers: the SHA-256 of each session id -> its expiry (in memory only)."""

    def __init__(self, seconds=SESSION_SECONDS):
        self.seconds = seconds
        self._expiry = {}

    @staticmethod
    def _key(session_id):
        return hashlib.sha256(session_id.encode("utf-8")).hexdigest()

    def create(self):
        now = time.time()
        self._expiry = {k: t for k, t in self._expiry.items() if t > now}
        while len(self._expiry) >= MAX_SESSIONS:
            self._expiry.pop(min(self._expiry, key=self._expiry.get))
        session_id = secrets.token_urlsafe(32)
        self._expiry[self._key(session_id)] = now + self.seconds
        return session_id

    def valid(self, session_id):
        if not session_id or len(session_id) > 100:
            return False
        expiry = self._expiry.get(self._key(session_id))
        return expiry is not None and expiry > time.time()

    def drop(self, session_id):
        if session_id:
            self._expiry.pop(self._key(session_id), None)


def new_csrf_token():
    return secrets.token_urlsafe(32)


def csrf_ok(cookie_value, submitted):
    """The form's token equals the browser's CSRF cookie (both present, well formed)."""
    if not cookie_value or not submitted or len(cookie_value) > 100:
        return False
    if not set(cookie_value) <= TOKEN_RE_CHARS:
        return False
    return hmac.compare_digest(cookie_value.encode("ascii"), str(submitted).encode("utf-8"))


def host_name(host_header):
    """``Host`` header -> the name without the port (``[::1]:8000`` -> ``::1``)."""
    host = (host_header or "").strip()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def origin_ok(origin, host_header):
    """A state-changing request's ``Origin`` (when the browser sends one) is this server."""
    if not origin:
        return True
    if origin == "null":
        return False
    scheme_sep = origin.find("://")
    return scheme_sep > 0 and origin[scheme_sep + 3:].lower() == (host_header or "").lower()


def host_ok(host_header, loopback_only):
    """On a loopback bind the ``Host`` must be a loopback name (DNS rebinding)."""
    return not loopback_only or is_loopback(host_name(host_header))
