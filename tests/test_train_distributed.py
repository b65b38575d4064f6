"""tf.distribute in ``edge-seg train``: mirrored on the one CPU device, and two
MultiWorkerMirroredStrategy workers talking over localhost (TF_CONFIG), synchronously."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow")

# Per worker process, wall clock. Each worker needs ~25 s of CPU (TensorFlow start, tracing,
# 2 tiny epochs, saves); on a busy 2-core machine the run took ~3 minutes.
WORKER_TIMEOUT_S = 480


def _write_discs(root, n=12, size=64, seed=5):
    """Tiny labelled set on disk (images/ + masks/): noisy background, a bright disc = tumour."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = rng.random((size, size)) * 0.3
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        r = rng.integers(size // 10, size // 5)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[m] += 0.6
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(
            root / "images" / f"s{i}.png")
        Image.fromarray(m.astype(np.uint8) * 255).save(root / "masks" / f"s{i}.png")


def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env(tmp_path, **extra):
    env = dict(os.environ, EDGE_SEG_CACHE=str(tmp_path / "cache"), CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _train_cmd(data, out, *extra):
    return [sys.executable, "-c", "from edge_runtime.cli import main; main()", "train",
            "--variant", "resunet", "--preset", "tiny", "--data", str(data), "--out", str(out),
            "--epochs", "2", "--batch-size", "4", "--patch-size", "32", "--no-jit",
            "--val-fraction", "0.25", *extra]


def test_mirrored_strategy_trains_on_the_single_cpu_device(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edge_runtime.cli import main

    monkeypatch.setenv("EDGE_SEG_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    _write_discs(data)
    run = tmp_path / "run"
    r = CliRunner().invoke(main, _train_cmd(data, run, "--strategy", "mirrored",
                                            "--max-epochs-now", "1")[3:])
    assert r.exit_code == 0, r.output[-3000:]
    assert len((run / "log.csv").read_text().splitlines()) == 2
    assert (run / "best.keras").is_file() and (run / "last.keras").is_file()
    assert json.loads((run / "config.json").read_text())["strategy"] == "mirrored"
    assert json.loads((run / "state.json").read_text())["epoch"] == 1


def test_only_the_chief_task_writes_the_run_folder(monkeypatch):
    from edge_seg.train.trainer import is_chief_process

    def task(cluster, kind, index):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                    "task": {"type": kind, "index": index}}))
        return is_chief_process("multiworker")

    two = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert task(two, "worker", 0) and not task(two, "worker", 1)
    with_chief = dict(two, chief=["127.0.0.1:3"])
    assert task(with_chief, "chief", 0) and not task(with_chief, "worker", 0)
    assert is_chief_process("default") and is_chief_process("mirrored")
    monkeypatch.delenv("TF_CONFIG")
    assert is_chief_process("multiworker")


@pytest.mark.slow  # two TensorFlow processes + gRPC: ~25 s CPU each, minutes on a busy machine
def test_two_workers_on_localhost_train_in_sync_and_only_the_chief_writes(tmp_path):
    data = tmp_path / "data"
    _write_discs(data)
    run = tmp_path / "run"  # the same --out for both, as on a shared file system
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                 "index": index}})
            err = open(tmp_path / f"worker{index}.log", "w+")
            logs.append(err)
            procs.append(subprocess.Popen(
                _train_cmd(data, run, "--strategy", "multiworker"),
                env=_env(tmp_path, TF_CONFIG=tf_config), stdout=err, stderr=subprocess.STDOUT,
                text=True))
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for f in logs:
            f.close()
    out = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    for i in range(2):
        assert codes[i] == 0, f"worker {i} exited {codes[i]}:\n{out[i][-4000:]}"

    # The chief (worker 0) wrote the run folder, once.
    rows = (run / "log.csv").read_text().splitlines()
    assert len(rows) == 3, rows  # header + 2 epochs: the other worker did not append here
    assert (run / "best.keras").is_file() and (run / "last.keras").is_file()
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
    assert not any(p.name.startswith("edge-seg-worker") for p in run.iterdir())
    # Worker 1 wrote to its own temporary folder and removed it.
    m = re.search(r"not the chief, writing to (\S+)", out[1])
    assert m, out[1][-3000:]
    assert not os.path.exists(m.group(1))
    assert "not the chief" not in out[0]
    assert "report:" in out[0] and "report:" not in out[1]  # the chief reports, once
    assert (run / "report.json").is_file()
    # Synchronous training: both workers end with the same weights.
    # (BatchNormalization moving statistics are per replica by design: trainable weights only.)
    prints = [re.findall(r"worker \d: final trainable weights ([0-9a-f]+)", o) for o in out]
    assert prints[0] and prints[0] == prints[1], prints
