"""edge_runtime.atomic: the project's one atomic writer."""

import json
import os
import stat

import pytest

from edge_runtime import atomic

pytestmark = pytest.mark.device


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _expected_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_write_json_text_and_parents(tmp_path):
    target = tmp_path / "a" / "b" / "x.json"
    with pytest.raises(FileNotFoundError):
        atomic.write_json(target, {"k": 1})                  # no folder made unless asked
    assert atomic.write_json(target, {"k": [1, "é"]}, parents=True) == target
    assert target.read_text(encoding="utf-8") == json.dumps({"k": [1, "é"]}, indent=2) + "\n"
    assert _mode(target) == _expected_mode()
    atomic.write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]


def test_replacing_moves_into_place_with_suffix(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with atomic.replacing(target, ".keras") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".keras") and tmp != target
        assert target.read_bytes() == b"old"                  # untouched until the block ends
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and _mode(target) == _expected_mode()
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_replacing_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "a.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.replacing(target, ".npz") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_long_names_keep_temporaries_within_255_bytes(tmp_path, monkeypatch):
    name = "é" * 120 + ".keras"                                # 246 bytes: fits
    seen = []
    real = atomic._new_temp

    def spy(path, extra=""):
        fd, tmp = real(path, extra)
        seen.append(os.path.basename(tmp))
        return fd, tmp
    monkeypatch.setattr(atomic, "_new_temp", spy)
    atomic.write_bytes(tmp_path / name, b"x")
    with atomic.replacing(tmp_path / name, ".keras") as tmp:
        tmp.write_bytes(b"y")
    assert (tmp_path / name).read_bytes() == b"y"
    assert len(seen) == 2 and all(len(os.fsencode(n)) <= 255 for n in seen)
    assert seen[1].endswith(".keras")
    assert [p.name for p in tmp_path.iterdir()] == [name]
