"""Bundles: round trip, unpacked folders, bare .tflite, and refusal of anything untrustworthy."""

import json
import os
import shutil
import stat
import zipfile

import pytest
from click.testing import CliRunner

from edge_runtime import bundle as bundle_mod
from edge_runtime.bundle import (CARD_NAME, MANIFEST_NAME, MODEL_NAME, default_bundle_path,
                                 load_bundle, make_manifest, write_bundle)
from edge_runtime.cli import main
from edge_runtime.errors import EXIT_BUNDLE, BundleError
from edge_runtime.preprocess import Preprocessing

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _rezip(path, members, extra=()):
    """Write members {name: bytes} (+ extra ZipInfo/bytes pairs) to a new zip at path."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for info, data in extra:
            zf.writestr(info, data)
    return path


def _expect_refused(path, fragment):
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg, msg
    return msg


def test_round_trip(tiny_bundle, tiny_tflite_bytes):
    b = load_bundle(tiny_bundle)
    assert b.kind == "zip" and b.warnings == []
    assert b.model_bytes == tiny_tflite_bytes
    assert b.name == "tiny-test" and b.format == "fp32"
    assert b.preprocessing == Preprocessing(input_size=64)
    assert b.threshold == 0.5 and b.min_area_fraction == 0.002
    assert b.manifest["schema_version"] == 2 and b.min_peak_probability == 0.0
    assert b.manifest["input"] == {"shape": [1, 64, 64, 1], "dtype": "float32"}
    assert len(b.sha256) == 64 and b.model_card.startswith("# tiny-test")
    assert sorted(_members(tiny_bundle)) == sorted([MODEL_NAME, MANIFEST_NAME, CARD_NAME])


def test_unpacked_folder(tiny_bundle, tmp_path):
    folder = tmp_path / "unpacked"
    folder.mkdir()
    for name, data in _members(tiny_bundle).items():
        (folder / name).write_bytes(data)
    b = load_bundle(folder)
    assert b.kind == "folder" and b.name == "tiny-test"
    (folder / MODEL_NAME).write_bytes(b.model_bytes + b"\x00")
    _expect_refused(folder, "does not match")


def test_bare_tflite_warns_and_reads_input_size(tiny_tflite_bytes, tmp_path):
    p = tmp_path / "m.tflite"
    p.write_bytes(tiny_tflite_bytes)
    b = load_bundle(p, threshold=0.3)
    assert b.kind == "tflite" and b.preprocessing.input_size == 64 and b.threshold == 0.3
    assert b.warnings and "bare .tflite" in b.warnings[0]


def test_threshold_override_on_bundle_warns(tiny_bundle):
    b = load_bundle(tiny_bundle, threshold=0.7)
    assert b.threshold == 0.7 and "overriding" in b.warnings[0]
    with pytest.raises(BundleError, match="input size 128"):
        load_bundle(tiny_bundle, input_size=128)


def test_tampered_model(tiny_bundle, tmp_path):
    m = _members(tiny_bundle)
    m[MODEL_NAME] = m[MODEL_NAME][:-1] + bytes([m[MODEL_NAME][-1] ^ 1])
    _expect_refused(_rezip(tmp_path / "t.zip", m), "tampered")


def test_truncated_and_non_zip(tiny_bundle, tmp_path):
    data = tiny_bundle.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    _expect_refused(cut, "not a zip")
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip at all")
    _expect_refused(junk, "not a zip")
    _expect_refused(tmp_path / "missing.zip", "not found")


def test_unknown_schema_version(tiny_bundle, tmp_path):
    m = _members(tiny_bundle)
    manifest = json.loads(m[MANIFEST_NAME])
    manifest["schema_version"] = 3
    m[MANIFEST_NAME] = json.dumps(manifest).encode()
    msg = _expect_refused(_rezip(tmp_path / "v3.zip", m), "schema_version 3")
    assert "reads schema_version 1 or 2" in msg


def test_schema_1_bundle_still_loads_without_peak_filter(tiny_bundle, tmp_path):
    """Bundles written before min_peak_probability existed run as they always did."""
    m = _members(tiny_bundle)
    manifest = json.loads(m[MANIFEST_NAME])
    manifest["schema_version"] = 1
    del manifest["min_peak_probability"]
    m[MANIFEST_NAME] = json.dumps(manifest).encode()
    b = load_bundle(_rezip(tmp_path / "v1.zip", m))
    assert b.manifest["schema_version"] == 1 and b.min_peak_probability == 0.0


def test_peak_probability_override_warns(tiny_bundle):
    b = load_bundle(tiny_bundle, min_peak_probability=0.9)
    assert b.min_peak_probability == 0.9
    assert any("min_peak_probability 0.0 -> 0.9" in w for w in b.warnings)


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m.pop("threshold"), "missing required keys ['threshold']"),
    (lambda m: m.update(threshold="high"), "'threshold' must be"),
    (lambda m: m.update(min_peak_probability=1.0), "min_peak_probability must be in [0, 1)"),
    (lambda m: m.update(min_peak_probability="0.9"), "'min_peak_probability' must be"),
    (lambda m: m.update(format="int4"), "unknown export format 'int4'"),
    (lambda m: m["preprocessing"].update(resize="stretch"), "resize must be one of"),
    (lambda m: m.update(min_area_fraction=1.5), "min_area_fraction must be in"),
    (lambda m: m["input"].update(shape=[1, 32, 32, 1]), "does not match preprocessing"),
])
def test_manifest_validation(tiny_bundle, tmp_path, change, fragment):
    m = _members(tiny_bundle)
    manifest = json.loads(m[MANIFEST_NAME])
    change(manifest)
    m[MANIFEST_NAME] = json.dumps(manifest).encode()
    _expect_refused(_rezip(tmp_path / "bad.zip", m), fragment)


def test_manifest_not_json(tiny_bundle, tmp_path):
    m = _members(tiny_bundle)
    m[MANIFEST_NAME] = b"\x80\x04pickle?"
    _expect_refused(_rezip(tmp_path / "p.zip", m), "not valid JSON")


@pytest.mark.parametrize("name,fragment", [
    ("/etc/evil", "absolute path"),
    ("../evil", "escapes the archive"),
    ("sub/../../evil", "escapes the archive"),
    ("weights.pkl", "unexpected archive member"),
])
def test_bad_member_names(tiny_bundle, tmp_path, name, fragment):
    info = zipfile.ZipInfo(name)
    _expect_refused(_rezip(tmp_path / "n.zip", _members(tiny_bundle), [(info, b"x")]), fragment)


def test_symlink_member(tiny_bundle, tmp_path):
    m = _members(tiny_bundle)
    card = m.pop(CARD_NAME)
    info = zipfile.ZipInfo(CARD_NAME)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    _expect_refused(_rezip(tmp_path / "l.zip", m, [(info, b"/etc/passwd")]), "symbolic link")
    assert card


def test_absurd_size(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setitem(bundle_mod.MEMBER_LIMITS, MODEL_NAME, 100)
    _expect_refused(tiny_bundle, "the limit is 100")


def test_missing_member(tiny_bundle, tmp_path):
    m = _members(tiny_bundle)
    del m[CARD_NAME]
    _expect_refused(_rezip(tmp_path / "nocard.zip", m), "missing MODEL_CARD.md")


def test_write_bundle_validates_and_is_atomic(tiny_bundle, tiny_tflite_bytes, tmp_path,
                                              monkeypatch):
    target = tmp_path / "b.zip"
    shutil.copy(tiny_bundle, target)
    before = target.read_bytes()
    bad = make_manifest("x", "fp32", Preprocessing(input_size=64))
    bad["format"] = "nope"
    with pytest.raises(BundleError, match="unknown export format"):
        write_bundle(target, tiny_tflite_bytes, bad, "card")
    with pytest.raises(BundleError, match="not a TFLite model"):
        write_bundle(target, b"garbage!", make_manifest("x", "fp32", Preprocessing(64)), "card")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_bundle(target, tiny_tflite_bytes, make_manifest("y", "fp32", Preprocessing(64)), "c")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zip"]


def test_write_bundle_is_deterministic_apart_from_created(tiny_tflite_bytes, tmp_path):
    manifest = make_manifest("d", "fp32", Preprocessing(64), created="2026-01-01T00:00:00+00:00")
    a = write_bundle(tmp_path / "a.zip", tiny_tflite_bytes, manifest, "card").read_bytes()
    b = write_bundle(tmp_path / "b.zip", tiny_tflite_bytes, manifest, "card").read_bytes()
    assert a == b


def test_default_bundle_path_is_package_data():
    p = default_bundle_path()
    assert p.name == "default.zip" and p.parent.name == "models"


def test_cli_bundle_info(tiny_bundle, tmp_path):
    runner = CliRunner()
    text = runner.invoke(main, ["bundle", "info", str(tiny_bundle)])
    assert text.exit_code == 0, text.output
    assert "tiny-test" in text.output and "sha256 verified" in text.output
    js = runner.invoke(main, ["bundle", "info", str(tiny_bundle), "--json"])
    assert js.exit_code == 0 and json.loads(js.output)["name"] == "tiny-test"
    junk = tmp_path / "junk.zip"
    junk.write_text("nope")
    bad = runner.invoke(main, ["bundle", "info", str(junk)])
    assert bad.exit_code == EXIT_BUNDLE and "not a zip" in bad.output
    assert "Traceback" not in bad.output


@pytest.mark.parametrize("args", [["bundle", "--help"], ["bundle", "info", "--help"],
                                  ["bundle", "trust", "--help"]])
def test_help(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "Usage" in result.output
