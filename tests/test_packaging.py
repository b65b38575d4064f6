"""What `pip install .` puts into site-packages, and the direction of imports between layers."""

import ast
import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"edge_seg.train": "train", "edge_seg.convert": "convert"}


def _cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _listed(cfg, key):
    return [v.strip() for v in cfg["options"][key].strip().splitlines() if v.strip()]


def _source_dir(package):
    for name, folder in MAPPED.items():
        if package == name or package.startswith(name + "."):
            return ROOT / folder / package[len(name):].lstrip(".").replace(".", "/")
    return ROOT / package.replace(".", "/")


@pytest.mark.device
def test_setup_cfg_lists_every_package_folder_under_its_namespaced_name():
    if not (ROOT / "setup.cfg").is_file():
        pytest.skip("needs setup.cfg, a source checkout")
    cfg = _cfg()
    packages = _listed(cfg, "packages")
    mapping = dict(line.split("=") for line in _listed(cfg, "package_dir"))
    assert {k.strip(): v.strip() for k, v in mapping.items()} == MAPPED
    assert not any(p.split(".")[0] in ("train", "convert", "bench") for p in packages)
    found = set()
    for top, installed in (("edge_runtime", "edge_runtime"), ("train", "edge_seg.train"),
                           ("convert", "edge_seg.convert")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((installed,) + rel))
    assert set(packages) == found, "setup.cfg [options] packages must list every package folder"
    for p in packages:
        assert (_source_dir(p) / "__init__.py").is_file(), p


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.device
@pytest.mark.parametrize("folder,forbidden", [
    ("edge_runtime", ("edge_seg", "train", "convert", "bench", "tensorflow", "keras")),
    ("train", ("train", "convert", "bench")),
    ("convert", ("train", "convert", "bench")),
])
def test_imports_only_point_down(folder, forbidden):
    if not (ROOT / folder).is_dir():
        pytest.skip(f"needs {folder}/, a source checkout")
    bad = []
    for path in (ROOT / folder).rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[0] in forbidden:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad


def test_wheel_holds_edge_runtime_and_edge_seg_only(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, timeout=300)
    wheel, = tmp_path.glob("edge_seg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info"))}
    assert tops == {"edge_runtime", "edge_seg"}, tops
    assert "edge_runtime/models/default.zip" in names
    assert "edge_seg/train/models/registry.py" in names
    assert "edge_seg/convert/export.py" in names
    assert not any(n.startswith("edge_seg/__init__") for n in names)   # a namespace
