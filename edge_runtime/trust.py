"""Which bundles this device trusts: the trust anchor that an edited zip cannot forge.

A bundle's ``model_sha256`` only catches accidents: whoever edits ``manifest.json`` (raising
``min_area_fraction`` until every tumour disappears) can recompute it. Trust is therefore
pinned outside the bundle, by its digest (``bundle.bundle_digest``: a sha256 over every
member, the manifest and the model card included):

- the bundle shipped with the package (``edge_runtime/models/default.zip``) is trusted by
  the digest in ``PACKAGE_TRUSTED``, in the installed code itself;
- any other bundle is trusted once its digest is in the *trust list*, a JSON file written by
  ``edge-seg bundle trust BUNDLE`` (or ``trust_bundle``). Its place: ``--trust-file``, else
  the environment variable ``EDGE_SEG_TRUST``, else ``$XDG_CONFIG_HOME/edge-seg/trusted.json``
  (``~/.config/edge-seg/trusted.json``).

``run``, ``eval`` and ``bench`` refuse an untrusted bundle (exit 3) unless
``--allow-untrusted`` is given. A bundle is trusted by content, wherever it lies: a copy, or
the same bundle unpacked into a folder, is still trusted; one changed byte is not.

What this protects against, and what it does not (docs/RUNTIME.md, "Trust"): a bundle edited
in transit or on a shared disk is refused; an attacker who can write the trust list or the
installed package can trust anything, so both must be writable only by the device's user.

For a tool that writes a new site bundle (e.g. a future ``edge-seg calibrate``): write it with
``bundle.write_bundle``, then ``trust_bundle(path)``; the device then runs it like the default.
"""

import datetime
import os
from pathlib import Path

from edge_runtime.errors import BundleError
from edge_runtime.safeio import NotRegularFileError, read_regular, shown

__all__ = ["ENV_VAR", "PACKAGE_TRUSTED", "UntrustedBundleError", "default_trust_file",
           "read_trust_list", "trust_source", "is_trusted", "trust_bundle",
           "load_trusted_bundle"]

ENV_VAR = "EDGE_SEG_TRUST"
TRUST_FILE_NAME = "trusted.json"
TRUST_FILE_VERSION = 1
MAX_TRUST_FILE_BYTES = 4 * 1024 * 1024

# digest -> what it is. Update together with edge_runtime/models/default.zip (a test checks).
PACKAGE_TRUSTED = {
    "e5a0c17224fefedfac1381e379f6fb0d75cd57fa63e00d896fb475d8f0d4f494":
        "edge_runtime/models/default.zip, shipped with the package",
}


class UntrustedBundleError(BundleError):
    """The bundle is sound but its digest is neither pinned by the package nor in the trust
    list (exit 3)."""


def default_trust_file():
    """The trust list used when none is given: ``$EDGE_SEG_TRUST``, else
    ``$XDG_CONFIG_HOME/edge-seg/trusted.json`` (``~/.config`` when unset)."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.join("~", ".config")
    return Path(base).expanduser() / "edge-seg" / TRUST_FILE_NAME


def _resolve(trust_file):
    return Path(trust_file).expanduser() if trust_file is not None else default_trust_file()


def read_trust_list(trust_file=None):
    """The trust list -> {digest: entry}; {} when the file does not exist.

    A trust list that exists but cannot be read, is not strict JSON or has the wrong shape
    is a ``BundleError`` naming the file (never silently treated as empty)."""
    from edge_runtime.bundle import parse_json_strict
    path = _resolve(trust_file)
    where = shown(path)
    if not os.path.lexists(path):
        return {}
    try:
        raw = read_regular(path, MAX_TRUST_FILE_BYTES)
    except NotRegularFileError as exc:
        raise BundleError(f"trust list {where} {exc.problem}") from None
    except ValueError as exc:
        raise BundleError(f"trust list {where} {exc}") from None
    except OSError as exc:
        raise BundleError(f"trust list {where}: cannot read ({exc.strerror or exc})") from None
    doc = parse_json_strict(raw, f"trust list {where}", "(the file)")
    bundles = doc.get("bundles") if isinstance(doc, dict) else None
    if not isinstance(bundles, list) or doc.get("version") != TRUST_FILE_VERSION:
        raise BundleError(f"trust list {where}: expected {{\"version\": {TRUST_FILE_VERSION}, "
                          "\"bundles\": [...]}; fix or remove the file")
    out = {}
    for entry in bundles:
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not (isinstance(digest, str) and len(digest) == 64
                and all(c in "0123456789abcdef" for c in digest)):
            raise BundleError(f"trust list {where}: an entry without a valid \"digest\" "
                              "(64 lowercase hex digits); fix or remove the file")
        out[digest] = entry
    return out


def _digest_of(bundle):
    from edge_runtime.bundle import Bundle, load_bundle
    if isinstance(bundle, Bundle):
        return bundle.digest
    if isinstance(bundle, str) and len(bundle) == 64 and not os.path.exists(bundle):
        return bundle
    return load_bundle(bundle).digest


def trust_source(bundle, trust_file=None):
    """Why ``bundle`` is trusted -> a short text ("pinned by the package", "trust list
    PATH"), or None when it is not. ``bundle``: a ``Bundle``, a path, or a digest."""
    digest = _digest_of(bundle)
    if digest in PACKAGE_TRUSTED:
        return "pinned by the package"
    if digest in read_trust_list(trust_file):
        return f"trust list {shown(_resolve(trust_file))}"
    return None


def is_trusted(bundle, trust_file=None):
    """True when ``bundle`` (a ``Bundle``, a path, or a digest) is pinned by the package or
    listed in the trust list."""
    return trust_source(bundle, trust_file) is not None


def trust_bundle(path, trust_file=None):
    """Verify the bundle at ``path`` (as ``load_bundle`` does) and add its digest to the
    trust list (created if needed, written atomically) -> (digest, trust list path).

    Trusting an already trusted bundle changes nothing. Raises ``BundleError`` when the
    bundle cannot be loaded or the trust list cannot be read or written."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime import atomic
    bundle = load_bundle(path)
    target = _resolve(trust_file)
    current = read_trust_list(target)
    if bundle.digest in current:
        return bundle.digest, target
    entries = list(current.values())
    entries.append({
        "digest": bundle.digest,
        "name": bundle.name,
        "kind": bundle.kind,
        "path": os.path.abspath(path),
        "model_sha256": bundle.sha256,
        "added": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
                                                                 .isoformat(),
    })
    doc = {"version": TRUST_FILE_VERSION, "bundles": entries}
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic.write_json(target, doc)
    except OSError as exc:
        raise BundleError(f"trust list {shown(target)}: cannot write "
                          f"({exc.strerror or exc})") from None
    return bundle.digest, target


def load_trusted_bundle(path=None, allow_untrusted=False, trust_file=None, **overrides):
    """``load_bundle`` plus the trust check -> ``Bundle``.

    The digest checked is the one of the bytes that were loaded (no second read). An
    untrusted bundle raises ``UntrustedBundleError`` (exit 3), or with ``allow_untrusted``
    loads with a warning in ``Bundle.warnings``. ``overrides`` go to ``load_bundle``."""
    from edge_runtime.bundle import load_bundle
    bundle = load_bundle(path, **overrides)
    source = trust_source(bundle, trust_file)
    if source is None:
        where = shown(bundle.path)
        if not allow_untrusted:
            raise UntrustedBundleError(
                f"{where}: bundle is not trusted (digest {bundle.digest[:16]}...): its manifest "
                "and model may have been changed; if it comes from a source you trust, run "
                f"'edge-seg bundle trust {where}', or pass --allow-untrusted")
        bundle.warnings.insert(0, f"{where}: UNTRUSTED bundle (digest {bundle.digest[:16]}...) "
                                  "used because of --allow-untrusted: its threshold and filters "
                                  "are unverified")
    return bundle
