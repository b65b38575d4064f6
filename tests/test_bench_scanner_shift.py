"""``python -m bench.lab.scanner_shift``: scanner differences applied to raw scans, measured
per source through the device runtime."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.lab import scanner_shift

pytestmark = pytest.mark.lab  # the lab archive (bench/lab): pytest --lab -m lab

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEFAULT = ROOT / "edge_runtime" / "models" / "default.zip"


@pytest.fixture(scope="module")
def scan():
    from edge_runtime.imageio import load_scan
    return load_scan(EXAMPLES / "glioma_718.png").pixels


def _scans(scan):
    """The example scan as uint8, as a 12-bit scan in uint16 and as float32."""
    return {"uint8": scan, "uint16": (scan.astype(np.uint16) * 16 + 7),
            "float32": scan.astype(np.float32) / 3.0 - 20.0}


def test_clean_is_the_scan_itself_and_every_shift_keeps_shape_and_dtype(scan):
    conds = scanner_shift.conditions()
    assert conds[0] == "clean" and len(conds) == 1 + 2 * len(scanner_shift.SHIFTS)
    for kind, x in _scans(scan).items():
        clean = scanner_shift.apply_shift(x, "clean", "k")
        assert clean is not x and clean.dtype == x.dtype and np.array_equal(clean, x)
        for c in conds[1:]:
            y = scanner_shift.apply_shift(x, c, "k")
            assert y.shape == x.shape and y.dtype == x.dtype, (kind, c)
            assert not np.array_equal(y, x), (kind, c)
            # stored within the scan's own range, as the same scanner's bit depth would
            assert y.min() >= x.min() and y.max() <= x.max(), (kind, c)


def test_shifts_are_deterministic_per_scan_and_random_ones_differ_between_scans(scan):
    for c in scanner_shift.conditions()[1:]:
        a = scanner_shift.apply_shift(scan, c, "figshare/1")
        assert np.array_equal(a, scanner_shift.apply_shift(scan, c, "figshare/1")), c
        b = scanner_shift.apply_shift(scan, c, "figshare/2")
        random = c.split(":")[0] in ("noise", "bias")
        assert np.array_equal(a, b) != random, c


def test_the_strong_level_changes_the_scan_more_than_the_mild_one(scan):
    x = scan.astype(np.float64)
    for name in scanner_shift.SHIFTS:
        mild, strong = (np.abs(scanner_shift.apply_shift(scan, f"{name}:{lv}", "k") - x).mean()
                        for lv in scanner_shift.LEVELS)
        assert 0 < mild < strong, (name, mild, strong)


def test_linear_contrast_is_undone_by_the_runtime_normalisation_but_gamma_is_not(scan):
    """Why contrast and brightness are not among the shifts: the runtime's per-scan
    percentile normalisation maps a linear change back (up to 8-bit rounding)."""
    from edge_runtime.preprocess import Preprocessing, prepare_image
    spec = Preprocessing()
    base = prepare_image(scan, spec)[0]
    washed = np.round(scan.astype(np.float64) * 0.75 + 40).astype(np.uint8)
    assert np.abs(prepare_image(washed, spec)[0] - base).max() < 0.02
    darker = scanner_shift.apply_shift(scan, "gamma_up:mild", "k")
    assert np.abs(prepare_image(darker, spec)[0] - base).max() > 0.1


def test_unknown_shifts_are_refused_with_what_is_allowed(scan):
    with pytest.raises(ValueError, match="unknown shift nois; allowed: gamma_up, gamma_down"):
        scanner_shift.conditions(["noise", "nois"])
    with pytest.raises(ValueError, match="unknown condition 'noise:huge'; allowed: clean"):
        scanner_shift.apply_shift(scan, "noise:huge", "k")
    assert scanner_shift.conditions(["jpeg", "noise"]) == [
        "clean", "noise:mild", "noise:strong", "jpeg:mild", "jpeg:strong"]


def test_group_bootstrap_draws_whole_groups():
    values = [1.0, 1.0, 0.0, 0.0, 0.5]
    gidx, draws = scanner_shift.group_draws(["a", "a", "b", "b", "c"])
    mean, (lo, hi) = scanner_shift.boot_mean(values, gidx, draws)
    assert mean == pytest.approx(0.5) and 0.0 <= lo < mean < hi <= 1.0
    # a constant change has a zero-width interval; one group has none
    assert scanner_shift.boot_mean([0.2] * 5, gidx, draws)[1] == pytest.approx([0.2, 0.2])
    one = scanner_shift.group_draws(["a", "a"])
    assert np.isnan(scanner_shift.boot_mean([1.0, 0.0], *one)[1]).all()


@pytest.fixture
def data(tmp_path):
    """examples/ (three tumour scans with masks) and a folder of two scans without masks."""
    free = tmp_path / "free"
    free.mkdir()
    shutil.copy(EXAMPLES / "meningioma_1.png", free / "a.png")
    shutil.copy(EXAMPLES / "pituitary_1078.png", free / "b.png")
    return free


def test_end_to_end_on_the_shipped_bundle_and_the_tiny_one(tmp_path, data, tiny_bundle,
                                                          capsys):
    out = tmp_path / "res"
    args = [str(DEFAULT), str(tiny_bundle), "--data", str(EXAMPLES), "--data", str(data),
            "--shifts", "noise,jpeg", "--out", str(out), "--threads", "1"]
    assert scanner_shift.main(args + ["--save-scans", str(tmp_path / "s.csv")]) == 0
    result = json.loads((out / "scanner_shift.json").read_text())
    assert result["conditions"] == ["clean", "noise:mild", "noise:strong", "jpeg:mild",
                                    "jpeg:strong"]
    assert result["reference"] == "resunet_se_gpu_p192_soup50_drq"
    src = result["by_source"]
    assert (src["examples"]["kind"], src["examples"]["n"]) == ("tumour", 3)
    assert (src["free"]["kind"], src["free"]["n"]) == ("tumour_free", 2)

    # clean through the runtime = the one evaluation loop's numbers for the same bundle
    from edge_runtime.bundle import load_bundle
    from edge_runtime.datasets import discover
    from edge_runtime.evaluate import evaluate_bundle
    samples = discover(EXAMPLES)[1] + discover(data)[1]
    ev = evaluate_bundle(load_bundle(DEFAULT), samples, threads=1).summary["by_source"]
    shipped_clean = src["examples"]["conditions"]["clean"][0]
    assert shipped_clean["dice_mean"] == pytest.approx(ev["examples"]["tumour"]["dice_mean"])
    assert shipped_clean["dice_mean"] > 0.6
    assert src["free"]["conditions"]["clean"][0]["flagged"] == ev["free"]["tumour_free"][
        "fp_scans"]
    for name, e in src.items():
        clean = e["conditions"]["clean"]
        assert all(d["change"] == 0 for d in clean), name
        assert "vs_reference" not in clean[0] and "vs_reference" in clean[1]
        for c in result["conditions"][1:]:
            a, b = e["conditions"][c]
            value = "dice_mean" if e["kind"] == "tumour" else "rate"
            assert a["change"] == pytest.approx(a[value] - clean[0][value])
            assert b["vs_reference"] == pytest.approx(b["change"] - a["change"])
    # the noise really reached the model: the shipped model's Dice moved under it
    assert src["examples"]["conditions"]["noise:strong"][0]["change"] != 0
    assert set(result["worst_source"]) == set(result["conditions"][1:])
    assert result["worst_source"]["jpeg:strong"][0]["dice"]["source"] == "examples"
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 5 * 5 * 2

    md = (out / "scanner_shift.md").read_text()
    assert "not a medical device" in md and "## examples (3 tumour scans" in md
    assert "## free (2 tumour-free scans)" in md and "| noise | strong | 0.04 |" in md
    assert "Host: " in md and "--shifts noise,jpeg" in md
    assert "## Summary: B's change minus A's, strong level" in md
    assert scanner_shift.render(result) == md       # the report re-renders from its JSON

    # deterministic end to end
    assert scanner_shift.main(args + ["--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "scanner_shift.json").read_text())
    assert again["by_source"] == result["by_source"]


def test_bad_inputs_are_one_line_and_a_bad_scan_does_not_stop_the_rest(tmp_path, data,
                                                                       tiny_bundle, capsys):
    assert scanner_shift.main([str(tmp_path / "nope.zip"), "--data", str(EXAMPLES)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench.lab.scanner_shift: ") and "nope.zip" in err and "\n" not in err

    untrusted = tmp_path / "copy.zip"
    from edge_runtime.bundle import load_bundle, write_bundle
    b = load_bundle(tiny_bundle)
    write_bundle(untrusted, b.model_bytes, {**b.manifest, "name": "copy"}, "# copy\n")
    assert scanner_shift.main([str(untrusted), "--data", str(EXAMPLES)]) == 3
    assert "--allow-untrusted" in capsys.readouterr().err

    assert scanner_shift.main([str(tiny_bundle), str(tiny_bundle), "--data",
                               str(EXAMPLES)]) == 2
    assert "share a name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        scanner_shift.main([str(tiny_bundle), "--data", str(EXAMPLES), "--shifts", "fog"])
    assert e.value.code == 2 and "unknown shift fog" in capsys.readouterr().err

    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "res"
    assert scanner_shift.main([str(untrusted), "--allow-untrusted", "--data", str(data),
                               "--shifts", "blur", "--out", str(out)]) == 1
    result = json.loads((out / "scanner_shift.json").read_text())
    assert result["by_source"]["free"]["n"] == 2
    assert [Path(p).name for p, _ in result["failures"]] == ["broken.png"]
    assert "1 scans failed" in (out / "scanner_shift.md").read_text()
