"""train.soup: average two runs' weights into a new run folder, refusing what cannot be."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")


def _run(root, name, seed, variant="resunet", split=None):
    import keras

    from edge_seg.train.models import build_model
    run = root / name
    run.mkdir()
    keras.utils.set_random_seed(seed)
    build_model(variant, "tiny", input_size=32).save(run / "best.keras")
    (run / "config.json").write_text(json.dumps({"variant": variant, "preset": "tiny",
                                                 "epochs": 3, "patch_size": 32}))
    (run / "split.json").write_text(json.dumps(split or {"val_families": ["1", "2"]}))
    return run


def test_soup_averages_every_weight_and_writes_a_run_the_report_can_read(tmp_path):
    import keras

    from edge_seg.train.recipe import training_recipe
    from edge_seg.train.soup import main

    a, b = _run(tmp_path, "a", 1), _run(tmp_path, "b", 2)
    out = tmp_path / "soup"
    assert main([str(a), str(b), "--weight", "0.25", "--out", str(out)]) == 0
    wa = keras.models.load_model(a / "best.keras", compile=False).get_weights()
    wb = keras.models.load_model(b / "best.keras", compile=False).get_weights()
    ws = keras.models.load_model(out / "best.keras", compile=False).get_weights()
    assert any(not np.allclose(x, y) for x, y in zip(wa, wb))
    for x, y, s in zip(wa, wb, ws):
        np.testing.assert_allclose(s, 0.75 * x + 0.25 * y, rtol=1e-6, atol=1e-7)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["variant"] == "resunet" and cfg["soup"]["weight"] == 0.25
    assert json.loads((out / "split.json").read_text()) == {"val_families": ["1", "2"]}
    assert training_recipe(cfg) == "weights averaged: 0.75 x a + 0.25 x b"


def test_soup_takes_runs_that_differ_only_on_the_training_side(tmp_path):
    """One parent left the tumour-free twins out of training: the validation scans, which the
    report scores, are the same, so the two can be averaged; the soup keeps A's split."""
    from edge_seg.train.soup import main

    a = _run(tmp_path, "a", 1)
    b = _run(tmp_path, "b", 2, split={"val_families": ["1", "2"],
                                       "train_negatives_left_out": ["notumor/x.jpg"]})
    out = tmp_path / "soup"
    assert main([str(a), str(b), "--out", str(out)]) == 0
    assert json.loads((out / "split.json").read_text()) == {"val_families": ["1", "2"]}


def test_soup_refuses_runs_that_cannot_be_averaged(tmp_path, capsys):
    from edge_seg.train.soup import main

    a = _run(tmp_path, "a", 1)
    other_split = _run(tmp_path, "s", 2, split={"val_families": ["3"]})
    other_net = _run(tmp_path, "n", 3, variant="resunet_se")
    cases = [
        ([str(a), str(other_split)], "split differently"),
        ([str(a), str(other_net)], "differ in variant ('resunet' against 'resunet_se')"),
        ([str(a), str(tmp_path / "missing")], "missing: no config.json"),
        ([str(a), str(other_split), "--weight", "1"], "--weight must be strictly between"),
        ([str(a), str(other_split), "--out", str(a)], "already exists"),
    ]
    for args, problem in cases:
        if "--out" not in args:
            args = args + ["--out", str(tmp_path / "new")]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("soup: ") and problem in err and "\n" not in err
    assert not (tmp_path / "new").exists()
