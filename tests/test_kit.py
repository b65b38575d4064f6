"""The device benchmark kit and ``edge-seg bench KIT --suite paper`` (tiny + shipped bundles,
--runs 2: fast; no TensorFlow)."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.bench.machine import cpu_flags, has_int8_dot, isa_features
from edge_runtime.bundle import default_bundle_path, load_bundle
from edge_runtime.cli import main
from edge_runtime.kit import add_bundle, load_kit, missing_entry, write_kit

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)

ROOT = Path(__file__).resolve().parents[1]
MAKE = "edge-seg convert runs/resunet_edge --all --out runs/resunet_edge/export"


@pytest.fixture()
def kit(tmp_path, tiny_bundle):
    """shipped + the tiny model standing in for the paper-size DRQ reference, one variant
    missing, one entry whose file this copy of the kit does not hold."""
    d = tmp_path / "kit"
    entries = [
        add_bundle(d, default_bundle_path(), "shipped", "shipped"),
        add_bundle(d, tiny_bundle, "paper_ref_drq", "paper-reference", format="drq",
                   absent_note="too big to commit"),
        add_bundle(d, tiny_bundle, "paper_ref_fp32", "paper-reference",
                   absent_note="too big to commit (124 MB)", make="python -m bench.kit"),
        missing_entry("resunet_edge_fp32", "variant", variant="resunet", format="fp32",
                      reason="no fp32 bundle under runs/resunet_edge/export/", make=MAKE),
    ]
    write_kit(d, entries, note="test kit")
    (d / "models" / "paper_ref_fp32.zip").unlink()        # listed, not in this copy
    return d


def _bench(kit, out, *extra):
    return CliRunner().invoke(main, ["bench", str(kit), "--suite", "paper", "--runs", "2",
                                     "--warmup", "0", "--threads", "1,2", "--out", str(out),
                                     "--no-sgemm", "-q", *extra])


def test_suite_paper_measures_every_present_model_and_says_why_others_are_missing(kit,
                                                                                  tmp_path):
    out = tmp_path / "out"
    r = _bench(kit, out)
    assert r.exit_code == 0, r.output
    md, csv_path, js = (out / f"kit_paper.{s}" for s in ("md", "csv", "json"))
    assert md.is_file() and csv_path.is_file() and js.is_file()
    table = json.loads(js.read_text())

    host = table["host"]
    for key in ("cpu", "arch", "isa", "int8_dot", "interpreter", "interpreter_version",
                "python", "cores_usable"):
        assert key in host, key
    assert table["settings"]["threads"] == [1, 2] and table["settings"]["runs"] == 2
    rows = {row["id"]: row for row in table["rows"]}
    assert list(rows) == ["shipped", "paper_ref_drq", "paper_ref_fp32", "resunet_edge_fp32"]

    shipped, ref = rows["shipped"], rows["paper_ref_drq"]
    gate = load_bundle(default_bundle_path()).manifest["metrics"]
    assert shipped["status"] == "ok" and shipped["role"] == "shipped"
    assert shipped["dice"] == pytest.approx(gate["converted"]["dice"])
    assert shipped["dice_drop"] == pytest.approx(gate["gate"]["drop"])
    assert shipped["accuracy_from"] == "gate (783 validation scans)"
    assert table["reference"] == "paper_ref_drq"
    assert ref["accuracy_from"].startswith("none: random weights")
    for row in (shipped, ref):
        for t in (1, 2):
            assert 0 < row[f"p50_ms_t{t}"] <= row[f"p90_ms_t{t}"]
            assert row[f"rss_peak_mb_t{t}"] > 0
            assert row[f"speedup_vs_ref_t{t}"] == pytest.approx(
                ref[f"p50_ms_t{t}"] / row[f"p50_ms_t{t}"])
        assert row["gflop"] > 0 and row["size_mb"] > 0
    assert ref["speedup_vs_ref_t1"] == pytest.approx(1.0)
    assert shipped["size_ratio_vs_ref"] == pytest.approx(ref["size_mb"] / shipped["size_mb"])

    absent, missing = rows["paper_ref_fp32"], rows["resunet_edge_fp32"]
    assert absent["status"] == "missing" and "not in this copy of the kit" in absent["reason"]
    assert "too big to commit (124 MB)" in absent["reason"]
    assert missing["status"] == "missing" and missing["make"] == MAKE
    assert "runs/resunet_edge/export" in missing["reason"]

    text = md.read_text()
    assert "not a medical device" in text
    assert "ISA features:" in text and host["interpreter"] in text and "threads: 1, 2" in text
    for h in ("p50 ms @1T", "p90 ms @2T", "× faster @2T", "× smaller", "Dice drop",
              "peak RSS MB @1T"):
        assert h in text, h
    assert text.count("| missing |") == 2 and MAKE in text and "ok (random weights)" in text
    assert "2 missing" in text and r.output.count("| missing |") == 2   # printed too

    with open(csv_path, newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [c["id"] for c in csv_rows] == list(rows)
    assert csv_rows[3]["status"] == "missing" and csv_rows[3]["make"] == MAKE
    assert csv_rows[0]["host_isa"] == " ".join(s.replace(" ", "-") for s in host["isa"])
    assert float(csv_rows[0]["p50_ms_t2"]) == pytest.approx(shipped["p50_ms_t2"])

    try:
        import matplotlib  # noqa: F401
        assert (out / "kit_paper.png").stat().st_size > 1000
    except ImportError:
        assert not (out / "kit_paper.png").exists()
        assert "matplotlib is not installed" in text


def test_a_tampered_model_is_a_failed_row_and_exit_1_the_others_are_measured(kit, tmp_path):
    path = kit / "models" / "paper_ref_drq.zip"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    r = _bench(kit, tmp_path / "out", "--no-memory", "--no-plot")
    assert r.exit_code == 1, r.output
    rows = {row["id"]: row for row in
            json.loads((tmp_path / "out" / "kit_paper.json").read_text())["rows"]}
    assert rows["paper_ref_drq"]["status"] == "FAILED"
    assert "sha256 differs" in rows["paper_ref_drq"]["reason"]
    assert rows["shipped"]["status"] == "ok" and rows["shipped"]["p50_ms_t1"] > 0
    assert "speedup_vs_ref_t1" not in rows["shipped"]           # no reference measured
    assert "no paper-size reference measured" in (tmp_path / "out" / "kit_paper.md").read_text()


def test_suite_usage_errors_are_one_line_exit_2(kit, tmp_path):
    for args in ([str(tmp_path)], [str(kit), str(kit)], [str(kit), "--json", "x.json"]):
        r = CliRunner().invoke(main, ["bench", *args, "--suite", "paper", "--runs", "1",
                                      "--out", str(tmp_path / "o")])
        assert r.exit_code == 2, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
    r = CliRunner().invoke(main, ["bench", str(kit), "--runs", "1"])     # no --suite
    assert r.exit_code == 2 and "--suite paper" in r.output
    assert len(r.output.strip().splitlines()) == 1
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "kit.json").write_text("{not json")
    r = CliRunner().invoke(main, ["bench", str(tmp_path / "bad"), "--suite", "paper"])
    assert r.exit_code == 2 and "kit.json" in r.output and "unreadable" in r.output


def test_a_kit_entry_cannot_point_outside_the_kit(kit):
    manifest = json.loads((kit / "kit.json").read_text())
    manifest["entries"][0]["file"] = "../elsewhere.zip"
    (kit / "kit.json").write_text(json.dumps(manifest))
    first = load_kit(kit).models[0]
    assert first.status == "FAILED" and "outside the kit" in first.reason


def test_the_committed_kit_lists_every_model_of_the_paper_table():
    """The kit a fresh clone has: the shipped bundle present; every other model present or
    missing with a reason and a command (never silently absent)."""
    if not (ROOT / "bench" / "paper_kit" / "kit.json").is_file():
        pytest.skip("needs the committed kit (bench/paper_kit), a source checkout")
    kit = load_kit(ROOT / "bench" / "paper_kit")
    by_id = {m.id: m for m in kit.models}
    assert by_id["shipped"].status == "ok"
    roles = [m.role for m in kit.models]
    assert roles.count("paper-reference") == 2 and roles.count("variant") == 16
    for m in kit.models:
        assert m.status in ("ok", "missing"), (m.id, m.reason)
        if m.status == "missing":
            assert m.reason and m.make, m.id
    for fmt in ("fp32", "drq"):
        ref = by_id[f"paper_resunet_ag_{fmt}"].entry
        assert ref["weights"] == "random" and ref["architecture"]["preset"] == "paper"
        # a fresh clone holds its template: edge-seg bench KIT makes the reference from it
        template = ROOT / "bench" / "paper_kit" / ref["seeded_from"]["template"]
        assert template.is_file() and template.stat().st_size < 1_000_000
        assert load_bundle(template).manifest["name"] == ref["name"]


@pytest.mark.parametrize("cpuinfo,isa,dot", [
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16\n",
     ["AVX2", "FMA", "AVX-512F", "AVX-512 VNNI", "AVX-512 BF16"], True),
    ("processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU part\t: 0xd08\n",   # Pi 4
     ["NEON"], False),
    ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
     "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU part\t: 0xd0b\n",                   # Pi 5
     ["NEON", "NEON fp16", "NEON dotprod"], True),
    ("", [], None),
])
def test_isa_features_from_cpuinfo(cpuinfo, isa, dot):
    flags = cpu_flags(cpuinfo)
    assert isa_features(flags) == isa
    assert has_int8_dot(flags) is dot


def test_kit_folder_copies_verbatim(kit, tmp_path):
    """A kit is a plain folder: copied elsewhere (to a device) it still verifies."""
    copy = tmp_path / "elsewhere" / "kit"
    shutil.copytree(kit, copy)
    statuses = [m.status for m in load_kit(copy).models]
    assert statuses == ["ok", "ok", "missing", "missing"]


# ----------------------------------------------------------------------------- seeded references

@pytest.fixture()
def seeded_kit(tmp_path, tiny_bundle):
    """A kit whose paper-size reference (the tiny model standing in) is committed only as a
    template plus a seed, as bench/paper_kit is."""
    from edge_runtime.kit import materialize_seeded, write_seeded_template
    d = tmp_path / "kit"
    template = write_seeded_template(d / "models" / "ref_drq.template.zip", tiny_bundle)
    full = materialize_seeded(template, 0, tmp_path / "work" / "ref_drq.zip")
    entries = [add_bundle(d, default_bundle_path(), "shipped", "shipped"),
               add_bundle(d, full, "ref_drq", "paper-reference", format="drq",
                          seeded_from={"template": "models/ref_drq.template.zip", "seed": 0,
                                       "scheme": "pcg64-raw-v1"},
                          absent_note="too big to commit", make="python -m bench.kit")]
    write_kit(d, entries, note="test kit")
    (d / "models" / "ref_drq.zip").unlink()                 # what a fresh clone has
    return d


def test_a_seeded_reference_is_regenerated_from_its_template_and_verified(seeded_kit):
    plain = {m.id: m for m in load_kit(seeded_kit).models}["ref_drq"]
    assert plain.status == "missing" and "regenerates it from its template" in plain.reason
    assert not (seeded_kit / "models" / "ref_drq.zip").exists()     # reading writes nothing

    said = []
    ref = {m.id: m for m in load_kit(seeded_kit, materialize=True, log=said.append).models}
    assert ref["ref_drq"].status == "ok", ref["ref_drq"].reason
    assert ref["ref_drq"].path == seeded_kit / "models" / "ref_drq.zip"
    assert any("regenerating from models/ref_drq.template.zip" in s for s in said)
    entry = ref["ref_drq"].entry
    assert load_bundle(ref["ref_drq"].path).sha256 == entry["model_sha256"]
    # the filled model is not the template's: its filters were drawn again
    assert (load_bundle(ref["ref_drq"].path).model_bytes
            != load_bundle(seeded_kit / "models" / "ref_drq.template.zip").model_bytes)
    said.clear()
    assert load_kit(seeded_kit, materialize=True, log=said.append).models[1].status == "ok"
    assert not said                                                  # made once


def test_a_seeded_reference_from_another_seed_or_template_fails_its_digest(seeded_kit,
                                                                           tiny_bundle):
    manifest = json.loads((seeded_kit / "kit.json").read_text())
    manifest["entries"][1]["seeded_from"]["seed"] = 1
    (seeded_kit / "kit.json").write_text(json.dumps(manifest))
    ref = load_kit(seeded_kit, materialize=True).models[1]
    assert ref.status == "FAILED" and "model sha256 differs" in ref.reason


def test_a_seeded_reference_without_its_template_or_room_is_missing_with_the_reason(
        seeded_kit):
    manifest = json.loads((seeded_kit / "kit.json").read_text())
    manifest["entries"][1]["file"] = "models/taken/ref_drq.zip"
    (seeded_kit / "models" / "taken").write_text("a file where a folder would go")
    (seeded_kit / "kit.json").write_text(json.dumps(manifest))
    ref = load_kit(seeded_kit, materialize=True).models[1]
    assert ref.status == "missing" and "cannot write it" in ref.reason

    (seeded_kit / "models" / "ref_drq.template.zip").unlink()
    manifest["entries"][1]["file"] = "models/ref_drq.zip"
    (seeded_kit / "kit.json").write_text(json.dumps(manifest))
    ref = load_kit(seeded_kit, materialize=True).models[1]
    assert ref.status == "missing" and "neither it nor its template" in ref.reason


def test_the_paper_suite_measures_a_seeded_reference(seeded_kit, tmp_path):
    out = tmp_path / "out"
    r = _bench(seeded_kit, out)
    assert r.exit_code == 0, r.output
    rows = {row["id"]: row for row in json.loads((out / "kit_paper.json").read_text())["rows"]}
    assert rows["ref_drq"]["status"] == "ok" and rows["ref_drq"]["p50_ms_t1"] > 0
