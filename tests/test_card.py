"""``python -m edge_seg.convert.card``: a bundle's card rewritten from its manifest, nothing else moved."""

import json
import zipfile

from edge_seg.convert.card import main, model_card
from edge_runtime.bundle import load_bundle


def test_recard_keeps_model_and_manifest_and_writes_the_card_from_them(tiny_bundle, tmp_path):
    report = {"run": "r", "dice_mean": 0.5}
    (tmp_path / "report.json").write_text(json.dumps(report))
    out = tmp_path / "new.zip"
    assert main([str(tiny_bundle), "--report", str(tmp_path / "report.json"),
                 "--out", str(out)]) == 0
    old, new = load_bundle(tiny_bundle), load_bundle(out)
    assert new.model_bytes == old.model_bytes and new.manifest == old.manifest
    with zipfile.ZipFile(tiny_bundle) as a, zipfile.ZipFile(out) as b:
        assert a.read("manifest.json") == b.read("manifest.json")
        assert a.read("MODEL_CARD.md") == b"# tiny-test\n\nA test model.\n"
        card = b.read("MODEL_CARD.md").decode()
    assert card == model_card(old.manifest, report)
    assert "Not a medical device" in card and '"dice_mean": 0.5' in card
    assert "- ai-edge-litert: verified" in card


def test_recard_never_overwrites_and_names_a_bad_bundle(tiny_bundle, tmp_path, capsys):
    before = tiny_bundle.read_bytes()
    assert main([str(tiny_bundle), "--out", str(tiny_bundle)]) == 2
    assert "already exists" in capsys.readouterr().err and tiny_bundle.read_bytes() == before
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    assert main([str(bad), "--out", str(tmp_path / "x.zip")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("card: ") and str(bad) in err and "\n" not in err
    assert not (tmp_path / "x.zip").exists()
