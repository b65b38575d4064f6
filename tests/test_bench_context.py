"""``python -m bench.lab.slice_context``: a bundle's maps fused across neighbouring slices."""

import json
from pathlib import Path

import numpy as np
import pytest

from bench.lab import slice_context
from edge_runtime.datasets import Sample

pytestmark = pytest.mark.lab  # the lab archive (bench/lab): pytest --lab -m lab

SIZE = 64
BLOB = (slice(20, 44), slice(20, 44))


def _sample(key, patient):
    return Sample(key=str(key), image=Path(f"{key}.png"), mask=Path(f"m{key}.png"),
                  patient=patient, family=patient)


def test_neighbours_are_the_adjacent_indices_of_the_same_patient():
    samples = [_sample(1, "A"), _sample(2, "A"), _sample(3, "A"), _sample(4, "B"),
               _sample(6, "B"),
               Sample(key="notumor/7.jpg", image=Path("7.jpg"), patient="7", family="neg:7")]
    got = slice_context.neighbours(samples)
    assert got["1"] == ["2"] and got["2"] == ["1", "3"] and got["3"] == ["2"]
    assert got["4"] == []          # 3 is another patient's, 5 is not there
    assert got["6"] == []
    assert got["notumor/7.jpg"] == []


def test_fusion_rules():
    own = np.zeros((4, 4), np.float32)
    a, b = np.ones((4, 4), np.float32), np.full((4, 4), 0.5, np.float32)
    np.testing.assert_allclose(slice_context.fuse("as shipped", own, [a, b]), own)
    np.testing.assert_allclose(slice_context.fuse("mean of 3", own, [a, b]), 0.5)
    np.testing.assert_allclose(slice_context.fuse("mean of 3", own, [a]), 0.5)
    np.testing.assert_allclose(slice_context.fuse("half own", own, [a, b]), 0.375)
    for rule in slice_context.RULES:     # no neighbour: the slice's own map
        np.testing.assert_allclose(slice_context.fuse(rule, own + 0.2, []), own + 0.2)
    with pytest.raises(ValueError, match="unknown rule 'max'; allowed: as shipped"):
        slice_context.fuse("max", own, [a])


def _series():
    """Patient P1: five slices with the same bright square as truth; on slice 3 only its
    left half is bright (a single-slice model sees half the tumour). Patient P2: one slice,
    index 6, with no neighbour."""
    for index, pid in [(1, "P1"), (2, "P1"), (3, "P1"), (4, "P1"), (5, "P1"), (6, "P2")]:
        img = np.full((SIZE, SIZE), 10, np.uint8)
        img[BLOB] = 250
        if index == 3:
            img[20:44, 32:44] = 10
        mask = np.zeros((SIZE, SIZE), bool)
        mask[BLOB] = True
        yield {"index": index, "pid": pid, "label": 2, "label_name": "glioma",
               "image": img, "mask": mask}


def test_slice_context_end_to_end_on_a_series(tmp_path, tiny_bundle, write_figshare):
    from edge_runtime.datasets import discover
    from edge_runtime.evaluate import evaluate_bundle

    data = write_figshare(tmp_path / "series", _series())
    out = tmp_path / "res"
    assert slice_context.main([str(tiny_bundle), "--data", str(data), "--out", str(out)]) == 0
    result = json.loads((out / "slice_context.json").read_text())
    assert result["scans_with_tumour"] == 6
    assert result["with_neighbours"] == 5 and result["with_two_neighbours"] == 3

    # "as shipped" is exactly what the bundle scores on its own
    shipped = evaluate_bundle(str(tiny_bundle), discover(data)[1])
    want = float(np.mean([r["dice"] for r in shipped.rows]))
    mean3 = result["comparisons"]["mean of 3"]["tumour"]
    assert mean3["dice_a"] == pytest.approx(want, abs=1e-9)
    assert want < 0.99                          # slice 3 is half missed on its own
    # its neighbours fill the missing half in; the other slices keep their tumour
    assert mean3["dice_b"] > want + 0.03
    assert set(result["comparisons"]) == {"mean of 3", "half own"}
    # neighbour truth: identical squares on every slice
    assert result["neighbour_truth_dice"]["glioma"] == pytest.approx(1.0)
    md = (out / "slice_context.md").read_text()
    assert "| mean of 3 |" in md and "glioma" in md


def test_slice_context_bad_arguments_are_one_line(tmp_path, capsys, tiny_bundle):
    with pytest.raises(SystemExit) as e:
        slice_context.main([str(tiny_bundle)])
    assert e.value.code == 2 and "give --run RUN" in capsys.readouterr().err
    rc = slice_context.main([str(tiny_bundle), "--data", str(tmp_path / "nope"),
                             "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("slice_context: ") and "nope" in err
    assert len(err.splitlines()) == 1
