"""``python -m bench.lab.failures``: where the Dice is lost, and the worst scans as a figure."""

import json

import numpy as np
import pytest
from PIL import Image

from bench.lab import failures

pytestmark = pytest.mark.lab  # the lab archive (bench/lab): pytest --lab -m lab


def _row(key, cls, dice, family=None, truth=100, pred=None):
    pred = (0 if dice == 0 else 100) if pred is None else pred
    return {"key": key, "class": cls, "family": family or key, "truth_px": truth,
            "pred_px": pred, "tp": 0, "dice": dice if truth else None}


def test_the_loss_budget_splits_the_gap_to_one_by_kind_of_scan():
    rows = [_row("a", "glioma", 0.0), _row("b", "glioma", 0.0, pred=50),
            _row("c", "glioma", 0.3), _row("d", "meningioma", 0.9),
            _row("free", "tumour-free", None, truth=0, pred=0)]
    budget = {b["class"]: b for b in failures.loss_budget(rows)}
    assert set(budget) == {"glioma", "meningioma", "all"}       # tumour-free has no Dice
    every = budget["all"]
    assert every["n"] == 4 and every["dice_mean"] == pytest.approx(0.3)
    assert every["scans"] == [1, 1, 1, 1]
    assert list(every["lost"].values()) == pytest.approx([0.25, 0.25, 0.7 / 4, 0.1 / 4])
    assert sum(every["lost"].values()) == pytest.approx(1 - every["dice_mean"])
    # Per class, the points are of the overall mean: the classes add up to the whole.
    for column in failures.LOSS_COLUMNS:
        assert budget["glioma"]["lost"][column] + budget["meningioma"]["lost"][column] == \
            pytest.approx(every["lost"][column])


def test_the_worst_scans_are_one_per_family_and_reproducible():
    rows = [_row("g1", "glioma", 0.1, "F1"), _row("g2", "glioma", 0.05, "F1"),
            _row("g3", "glioma", 0.2, "F2"), _row("g4", "glioma", 0.2, "F3"),
            _row("g5", "glioma", 0.9, "F4"),
            _row("n1", "tumour-free", None, "N1", truth=0, pred=30),
            _row("n2", "tumour-free", None, "N2", truth=0, pred=0),
            _row("n3", "tumour-free", None, "N3", truth=0, pred=90)]
    picked = failures.worst(rows, 3)
    assert [r["key"] for r in picked["glioma"]] == ["g2", "g3", "g4"]   # g1: F1 already in
    assert [r["key"] for r in picked["tumour-free"]] == ["n3", "n1"]    # unflagged: not shown
    assert failures.worst(list(reversed(rows)), 3) == picked


def _write_scans(root, n=4, size=64):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        disc = (yy - 20 - 4 * i) ** 2 + (xx - 30) ** 2 < (6 + 2 * i) ** 2
        img = np.where(disc, 220, 60).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"s{i}.png")
        Image.fromarray(disc.astype(np.uint8) * 255).save(root / "masks" / f"s{i}.png")


def test_the_command_writes_the_table_the_figure_and_the_json(tiny_bundle, tmp_path, capsys):
    _write_scans(tmp_path / "data")
    out = tmp_path / "out"
    code = failures.main([str(tiny_bundle), "--data", str(tmp_path / "data"), "--per-class",
                          "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "failures.json").read_text())
    assert result["budget"][-1]["class"] == "all" and result["budget"][-1]["n"] == 4
    shown = [r for rows in result["worst"].values() for r in rows]
    assert len(shown) == 2 and shown[0]["dice"] <= shown[1]["dice"]
    fig = Image.open(out / "failures.png")
    assert fig.size == (2 * 2 * failures.PANEL, len(result["worst"]) * failures.PANEL)
    md = (out / "failures.md").read_text()
    assert "| all | 4 |" in md and "CC BY 4.0" in md and "](failures.png)" in md


def test_the_command_refuses_what_it_cannot_score(tiny_bundle, tmp_path, capsys):
    assert failures.main([str(tiny_bundle), "--out", str(tmp_path / "o")]) == 2
    assert "give --run RUN" in capsys.readouterr().err
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"nope")
    assert failures.main([str(bad), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("failures: ") and str(bad) in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_tumour_free_scans_are_listed_but_never_pictured(tiny_bundle):
    from edge_runtime.bundle import load_bundle
    rows = [_row("n1", "tumour-free", None, "N1", truth=0, pred=30)]
    picked = failures.worst(rows, 2)
    assert failures.render(load_bundle(tiny_bundle), [], picked) is None
    md = failures.to_markdown(failures.loss_budget([_row("g", "glioma", 0.5)]), picked,
                              "b", "s", None)
    assert "| tumour-free | n1 |" in md and "![" not in md
