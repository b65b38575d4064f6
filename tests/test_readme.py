"""The README's promises that a file can check: the quick start, CI's command, its links, its
headline numbers."""

import re
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title):
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def _bash_blocks(text):
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_quick_start_is_two_commands_run_then_test():
    blocks = _bash_blocks(_section("Quick start"))
    assert len(blocks) == 2 and all("\n" not in b for b in blocks), blocks
    run, test = blocks
    assert run.startswith("pip install . && edge-seg run "), run
    scan = re.search(r"edge-seg run (\S+)", run).group(1)
    assert (ROOT / scan).is_file(), f"the quick start's scan {scan} is not shipped"
    assert (ROOT / "edge_runtime" / "models" / "default.zip").is_file()
    assert test.startswith("pip install '.[test]' && python -m pytest"), test
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines(), "CI must run the README's test command verbatim"


def test_relative_links_point_at_files():
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (ROOT / target).exists(), f"README links to a missing file: {target}"


def _row(text, starts):
    rows = [line for line in text.splitlines() if line.startswith(starts)]
    assert len(rows) == 1, f"README: expected one table row starting {starts!r}, got {rows}"
    return rows[0]


def test_headline_numbers_are_the_committed_results():
    """The targets table and the per-class table quote the shipped bundle's manifest, its
    run's report.json and bench/results/speed_vs_paper.json: re-running those commands and
    committing their files without updating the README (or the reverse) fails here."""
    import json
    results = _section("Results (honest status: accuracy targets NOT reached)")
    run = re.search(r"\*\*shipped\*\* \(`([^`]+)`", results).group(1)
    bundle = ROOT / "edge_runtime" / "models" / "default.zip"
    with zipfile.ZipFile(bundle) as z:
        manifest = json.loads(z.read("manifest.json"))
        model_bytes = z.getinfo("model.tflite").file_size
    assert manifest["name"] == f"{run}_drq", "the README names another run than the bundle"
    summary = json.loads((ROOT / "runs" / run / "report.json").read_text())["summary"]
    boot = summary["by_patient"]["bootstrap"]

    dice = _row(results, "| mean per-scan Dice ≥ 0.82")
    lo, hi = boot["dice_mean_ci95"]
    assert f"**{summary['dice_mean']:.3f}**" in dice and f"{lo:.3f}–{hi:.3f}" in dice
    miou = _row(results, "| 2-class mIoU")
    lo, hi = boot["miou_2class_pooled_ci95"]
    assert f"**{summary['miou_2class_pooled']:.3f}**" in miou and f"{lo:.3f}–{hi:.3f}" in miou

    m = manifest["metrics"]
    drq = _row(results, "| Dice drop after DRQ")
    assert f"**{m['drop']['dice']:+.4f}**" in drq
    assert f"({m['float']['dice']:.4f} → {m['converted']['dice']:.4f})" in drq
    free = summary["tumour_free"]
    flagged = _row(results, "| tumour-free scans flagged ≤ 5 %")
    lo, hi = free["fp_scan_rate_ci95"]
    assert (f"**{100 * free['fp_scan_rate']:.1f} %** ({free['fp_scans']} of {free['n']}, "
            f"Wilson interval {100 * lo:.1f}–{100 * hi:.1f} %") in flagged
    assert m["converted"]["fp_scan_rate"] == free["fp_scan_rate"]   # "the same after DRQ"
    size = _row(results, "| bundle ≤ 2.5 MB")
    assert f"**{bundle.stat().st_size / 1e6:.2f} MB**" in size

    speed = json.loads((ROOT / "bench" / "results" / "speed_vs_paper.json").read_text())
    timed = [r for r in speed["report"]["results"] if r["model"].endswith("default.zip")]
    # the model timed is the one shipped (its card may have been re-worded since)
    assert timed and {(r["name"], r["model_bytes"]) for r in timed} == {(manifest["name"],
                                                                         model_bytes)}
    times = _row(results, "| ≥ 15× faster")
    for r in speed["ratios"]:
        label = "1 thread" if r["threads"] == 1 else f"{r['threads']} threads"
        assert f"**{r['speedup']:.1f}×** ({label})" in times
        assert _row(results, f"| {r['threads']} | {r['edge_ms_p50']:.1f} | "
                             f"{r['paper_ms_p50']:.1f} | {r['speedup']:.1f}× |")

    # The per-source table quotes bench/results/per_source.json, made from the shipped bundle.
    per_source = json.loads((ROOT / "bench" / "results" / "per_source.json").read_text())
    assert per_source["bundle"]["sha256"] == manifest_sha(bundle)
    by_source = per_source["by_source"]
    for source, label in (("figshare", "| figshare: "), ("brisc", "| BRISC: ")):
        v = by_source[source]
        t, c = v["tumour"], v["by_class"]
        lo, hi = v["by_patient"]["bootstrap"]["dice_mean_ci95"]
        row = _row(results, label)
        assert (f"| {t['n']} | {t['dice_mean']:.3f} ({lo:.3f}–{hi:.3f}) | "
                f"{c['glioma']['dice_mean']:.3f} | {c['meningioma']['dice_mean']:.3f} | "
                f"{c['pituitary']['dice_mean']:.3f} | {t['missed_scans']} |") in row, row
    for source, label in (("notumor", "| notumor "), ("brisc_notumor", "| brisc_notumor: ")):
        f = by_source[source]["tumour_free"]
        lo, hi = f["fp_scan_rate_ci95"]
        row = _row(results, label)
        assert (f"**{100 * f['fp_scan_rate']:.1f} %** ({f['fp_scans']} of {f['n']}, "
                f"{100 * lo:.1f}–{100 * hi:.1f} %)") in row, row


def manifest_sha(bundle):
    """sha256 of the model inside a bundle, as its manifest records it."""
    import json
    with zipfile.ZipFile(bundle) as z:
        return json.loads(z.read("manifest.json"))["model_sha256"]


def test_readme_is_a_users_readme():
    assert len(README.splitlines()) <= 150, "README: at most 150 lines; details go to docs/"
