"""Neighbouring slices as input channels (``--context``): stacking, patches, widening a
trained network, and the runs that use them (refused by the report and export, scored by
``python -m bench.lab.context_probe``)."""

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_runtime.datasets import Sample, slice_neighbours  # noqa: E402
from edge_seg.train.data import context_order, make_dataset, with_context  # noqa: E402
from edge_seg.train.models import build_model  # noqa: E402
from edge_seg.train.models.surgery import widen_input  # noqa: E402


def _s(key, patient):
    return Sample(key=str(key), image=Path(f"{key}.png"), mask=Path(f"m{key}.png"),
                  patient=patient, family=patient)


SERIES = [_s(1, "A"), _s(2, "A"), _s(3, "A"), _s(4, "B"),
          Sample(key="neg/x.jpg", image=Path("x.jpg"), patient="x", family="neg:x")]


def test_slice_neighbours_stay_inside_a_patient():
    assert slice_neighbours(SERIES, -1) == [-1, 0, 1, -1, -1]
    assert slice_neighbours(SERIES, 1) == [1, 2, -1, -1, -1]    # 4 is another patient's
    assert slice_neighbours(SERIES, 2) == [2, -1, -1, -1, -1]


def test_with_context_stacks_neighbours_and_stands_in_the_nearer_slice_for_a_missing_one():
    images = np.stack([np.full((2, 2), v, np.float16) for v in (1, 2, 3, 4, 9)])
    assert context_order(2) == [0, -1, 1, -2, 2]
    got = with_context(images, SERIES, 1)[:, 0, 0].tolist()
    assert got == [[1, 1, 2], [2, 1, 3], [3, 2, 3], [4, 4, 4], [9, 9, 9]]
    got = with_context(images, SERIES, 2)[:, 0, 0].tolist()
    assert got[0] == [1, 1, 2, 1, 3] and got[2] == [3, 2, 3, 1, 3]
    assert with_context(images, SERIES, 0).shape == (5, 2, 2, 1)
    with pytest.raises(ValueError, match="context must be >= 0, got -1"):
        with_context(images, SERIES, -1)
    with pytest.raises(ValueError, match="4 arrays for 5 samples"):
        with_context(images[:4], SERIES, 1)


def test_context_patches_are_the_scan_patches_with_the_neighbours_cropped_alike():
    rng = np.random.default_rng(0)
    x = rng.random((16, 64, 64)).astype(np.float32)
    y = (x > 0.8).astype(np.uint8)
    x3 = np.stack([x, x[::-1], 1 - x], axis=-1)
    one, steps = make_dataset(x, y, 32, 4, seed=1)
    three, steps3 = make_dataset(x3, y, 32, 4, seed=1)
    assert steps == steps3
    for (a, ma), (b, mb) in zip(one(2), three(2)):
        assert tuple(b.shape) == (4, 32, 32, 3)
        np.testing.assert_allclose(b.numpy()[..., :1], a.numpy(), atol=1e-6)
        np.testing.assert_array_equal(mb.numpy(), ma.numpy())
        # the other channels are transformed too, not passed through
        assert not np.allclose(b.numpy()[..., 1], b.numpy()[..., 0])


def test_widen_input_computes_what_the_network_did_until_training_moves_it():
    net = build_model("resunet_se", "tiny", dynamic_size=True)
    rng = np.random.default_rng(1)
    for w in net.weights:                 # away from the initialisation: batch norms too
        w.assign(rng.normal(0, 0.3, w.shape).astype(np.float32) + (
            1.0 if "variance" in w.path else 0.0))
    wide = widen_input(net, "resunet_se", "tiny", 3, dynamic_size=True)
    assert wide.input_shape[-1] == 3
    x = rng.random((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(wide.predict(x, verbose=0), net.predict(x[..., :1], verbose=0),
                               atol=1e-5)
    first = wide.get_layer("enc0_1_conv").get_weights()[0]
    assert first.shape[2] == 3 and not first[:, :, 1:].any() and first[:, :, 0].any()
    with pytest.raises(ValueError, match="no layer 'enc0_1_conv' to copy; is it a resunet_se"):
        widen_input(keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)]),
                    "resunet_se", "tiny", 3)


def test_rescale_input_convs_brings_the_input_layer_to_its_initial_size_same_function(
        tmp_path, capsys):
    from edge_seg.train import rescale
    from edge_seg.train.models.surgery import he_mean_abs, rescale_input_convs

    net = build_model("resunet_se", "tiny", dynamic_size=True)
    rng = np.random.default_rng(2)
    for w in net.weights:
        w.assign(rng.normal(0, 0.3, w.shape).astype(np.float32) + (
            1.0 if "variance" in w.path else 0.0))
    k = net.get_layer("enc0_1_conv")
    k.set_weights([k.get_weights()[0] * 20])      # as large as a folded kernel
    x = rng.random((2, 32, 32, 1)).astype(np.float32)
    before = net.predict(x, verbose=0)
    done = dict(rescale_input_convs(net))
    assert set(done) == {"enc0_1_conv", "enc0_shortcut_conv"}      # what reads the input
    assert done["enc0_1_conv"] > 10
    kernel = net.get_layer("enc0_1_conv").get_weights()[0]
    assert np.abs(kernel).mean() == pytest.approx(he_mean_abs(kernel.shape), rel=1e-5)
    np.testing.assert_allclose(net.predict(x, verbose=0), before, atol=1e-5)
    # a second pass finds them at their initial size already
    assert rescale_input_convs(net)[0][1] == pytest.approx(1.0, rel=1e-5)

    src = tmp_path / "m.keras"
    net.save(src)
    out = tmp_path / "r.keras"
    assert rescale.main([str(src), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_output_change"] < 1e-4 and out.is_file()
    assert rescale.main([str(src), "--out", str(out)]) == 2       # never overwritten
    assert "exists" in capsys.readouterr().err


def _series(patients=8, slices=5, size=64):
    """Each patient a series of discs drifting from slice to slice, so a neighbour shows
    where the tumour is."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:size, :size]
    index = 0
    for p in range(patients):
        cy, cx = rng.integers(20, 44, 2)
        for k in range(slices):
            index += 1
            m = (yy - cy - k) ** 2 + (xx - cx) ** 2 <= (6 + k) ** 2
            img = rng.random((size, size)) * 0.3 + 0.6 * m
            yield {"index": index, "pid": f"P{p}", "label": 1 + p % 3,
                   "label_name": ("meningioma", "glioma", "pituitary")[p % 3],
                   "image": (img * 255).astype(np.uint8), "mask": m}


@pytest.mark.lab
def test_a_context_run_trains_from_a_single_slice_run_and_is_scored_against_it(
        tmp_path, monkeypatch, capsys, write_figshare):
    from click.testing import CliRunner

    from edge_seg.convert.source import SourceError, open_source
    from edge_runtime.cli import main as cli_main
    from edge_runtime.errors import EdgeSegError
    from bench.lab import context_probe
    from edge_seg.train.report import final_report

    monkeypatch.setenv("EDGE_SEG_CACHE", str(tmp_path / "cache"))
    data = write_figshare(tmp_path / "series", _series())
    common = ["train", "--variant", "resunet_se", "--preset", "tiny", "--data", str(data),
              "--epochs", "2", "--batch-size", "8", "--patch-size", "32", "--lr", "1e-2",
              "--warmup-epochs", "0", "--no-jit"]
    control, ctx = tmp_path / "control", tmp_path / "ctx"
    out = CliRunner().invoke(cli_main, common + ["--out", str(control)])
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(cli_main, common + [
        "--out", str(ctx), "--context", "1", "--init-from", str(control / "best.keras")])
    assert out.exit_code == 0, out.output
    assert "input widened to 3 channels" in out.output
    assert "score it with python -m bench.lab.context_probe" in out.output
    assert not (ctx / "report.json").exists()        # the report takes one slice
    assert json.loads((ctx / "config.json").read_text())["context"] == 1
    assert keras.models.load_model(ctx / "last.keras", compile=False).input_shape[-1] == 3

    with pytest.raises(EdgeSegError, match=r"trained with --context 1 .* takes one slice"):
        final_report(ctx, log=lambda m: None)
    with pytest.raises(SourceError, match="--context 1 .* a bundle takes one slice"):
        open_source(ctx)
    out = CliRunner().invoke(cli_main, ["train", "--out", str(ctx), "--report"])
    assert out.exit_code != 0 and "trained with --context 1" in out.output
    assert "Traceback" not in out.output

    res = tmp_path / "res"
    assert context_probe.main([str(control), str(ctx), "--out", str(res)]) == 0
    result = json.loads((res / "context_probe_control_vs_ctx.json").read_text())
    t = result["tumour"]
    # each run scored as training scored its last epoch: the proxy of log.csv
    last = {run: float((run / "log.csv").read_text().splitlines()[-1].split(",")[3])
            for run in (control, ctx)}
    assert t["dice_a"] == pytest.approx(last[control], abs=1e-4)
    assert t["dice_b"] == pytest.approx(last[ctx], abs=1e-4)
    assert t["n_scans"] == len(json.loads((ctx / "split.json").read_text())["val_keys"])
    md = (res / "context_probe_control_vs_ctx.md").read_text()
    assert "python -m bench.lab.context_probe" in md and "model resolution" in md

    capsys.readouterr()
    assert context_probe.main([str(control), str(tmp_path / "nope"), "--out", str(res)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("context_probe: ") and "nope" in err and len(err.splitlines()) == 1
