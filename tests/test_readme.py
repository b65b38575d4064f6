"""The README's promises that a file can check: the quick start, CI's command, its links."""

import re
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
