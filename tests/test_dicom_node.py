"""`edge-seg listen`'s node on localhost with a real DICOM client (pynetdicom): allow-list,
MR only, storage cap, a dropped association, bad objects, restarts, C-ECHO."""

import json
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("pydicom")
pynetdicom = pytest.importorskip("pynetdicom")
pytest.importorskip("highdicom")
pytestmark = pytest.mark.device

import pydicom  # noqa: E402
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification  # noqa: E402

from edge_runtime.dicom.node import Node, NodeConfig, parse_destination  # noqa: E402
from edge_runtime.dicom.synthetic import example_stack, write_series  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def segmenter_factory():
    from edge_runtime.bundle import default_bundle_path, load_bundle
    from edge_runtime.segment import Segmenter
    bundle = load_bundle(default_bundle_path())
    return lambda: Segmenter(bundle, threads=1)


@pytest.fixture(scope="module")
def series_files(tmp_path_factory):
    return write_series(tmp_path_factory.mktemp("src"), example_stack(EXAMPLES, 5))


class Logged(list):
    def __call__(self, line):
        self.append(line)

    def has(self, text):
        return any(text in line for line in self)

    def wait_for(self, text, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.has(text):
                return True
            time.sleep(0.1)
        return False


def make_node(folder, factory, log, **kw):
    cfg = NodeConfig(folder=folder, allowed=["SCANNER"], port=free_port(), quiet_s=0.5,
                     poll_s=0.1, **kw)
    return Node(cfg, factory, log=log).start()


def client(node, aet="SCANNER", contexts=(MRImageStorage, Verification)):
    ae = pynetdicom.AE(ae_title=aet)
    for c in contexts:
        ae.add_requested_context(c)
    return ae.associate("127.0.0.1", node.cfg.port, ae_title=node.cfg.ae_title)


def test_destination_is_parsed_or_refused():
    assert parse_destination("PACS@127.0.0.1:4242") == ("PACS", "127.0.0.1", 4242)
    with pytest.raises(ValueError, match="expected AET@HOST:PORT"):
        parse_destination("PACS:4242")


def test_config_needs_an_allow_list(tmp_path, segmenter_factory):
    with pytest.raises(ValueError, match="--allow"):
        Node(NodeConfig(folder=tmp_path, allowed=[]), segmenter_factory)


def test_receive_process_restart_without_reprocessing(tmp_path, segmenter_factory,
                                                      series_files):
    log = Logged()
    node = make_node(tmp_path / "node", segmenter_factory, log)
    try:
        other = client(node, aet="STRANGER")
        assert not other.is_established                    # not on the allow-list
        assert log.wait_for("association rejected: STRANGER")
        assoc = client(node)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        statuses = [assoc.send_c_store(pydicom.dcmread(p)).Status for p in series_files]
        ct = pydicom.dcmread(series_files[0])
        ct.Modality, ct.SOPInstanceUID = "CT", pydicom.uid.generate_uid()
        assert assoc.send_c_store(ct).Status == 0xA900     # MR only
        bad = pydicom.dcmread(series_files[0])
        bad.SOPInstanceUID = "../../etc"
        assert assoc.send_c_store(bad).Status == 0xC210    # refused, nothing written
        assoc.release()
        assert statuses == [0] * 5
        assert log.wait_for("processed series 1")
        assert log.has("C-ECHO from SCANNER") and log.has("modality CT, only MR")
    finally:
        node.stop()
    state = json.loads((tmp_path / "node" / "state.json").read_text())
    (entry,) = state["series"].values()
    assert entry["status"] == "done" and Path(entry["seg"]).is_file()
    report = json.loads(next(Path(entry["results"]).glob("*_series.json")).read_text())
    assert report["slices"] == 5 and report["volume_ml"] > 0
    assert not list((tmp_path / "node").rglob("etc*"))
    files = {p for p in (tmp_path / "node").rglob("*") if p.is_file()}
    assert all(str(p).startswith(str(tmp_path / "node")) for p in files)

    # restart: the series is not processed again; a late instance is stored and named
    log2 = Logged()
    node = make_node(tmp_path / "node", segmenter_factory, log2)
    try:
        assoc = client(node)
        late = pydicom.dcmread(series_files[0])
        late.SOPInstanceUID = pydicom.uid.generate_uid()
        assert assoc.send_c_store(late).Status == 0
        assoc.release()
        assert log2.wait_for("late instance")
        time.sleep(1.5)
        assert not log2.has("processed series")
    finally:
        node.stop()


def test_dropped_association_and_pending_series_after_restart(tmp_path, segmenter_factory,
                                                             series_files):
    log = Logged()
    node = make_node(tmp_path / "n", segmenter_factory, log)
    node.cfg.quiet_s = 60                   # stopped before the series is complete
    try:
        assoc = client(node)
        for p in (series_files[0], series_files[1], series_files[3]):
            assert assoc.send_c_store(pydicom.dcmread(p)).Status == 0
        assoc.abort()                       # the sender drops the association midway
        assert log.wait_for("association aborted")
    finally:
        node.stop()
    assert not log.has("processed series")
    log2 = Logged()
    node = make_node(tmp_path / "n", segmenter_factory, log2)
    try:
        assert log2.wait_for("processed series 1")
    finally:
        node.stop()
    line = next(x for x in log2 if "processed" in x)
    assert "3 slices" in line and "no volume: 1 slice(s) missing" in line


def test_storage_cap_refuses_instances(tmp_path, segmenter_factory, series_files):
    size = series_files[0].stat().st_size
    log = Logged()
    node = make_node(tmp_path / "n", segmenter_factory, log, max_bytes=int(size * 1.5))
    try:
        assoc = client(node)
        first = assoc.send_c_store(pydicom.dcmread(series_files[0])).Status
        second = assoc.send_c_store(pydicom.dcmread(series_files[1])).Status
        assert assoc.send_c_echo().Status == 0              # the node is still fine
        assoc.release()
    finally:
        node.stop()
    assert (first, second) == (0, 0xA700)
    assert log.has("storage cap")


def test_non_mr_storage_class_is_not_offered(tmp_path, segmenter_factory):
    node = make_node(tmp_path / "n", segmenter_factory, Logged())
    try:
        assoc = client(node, contexts=(CTImageStorage,))
        assert not assoc.is_established or not assoc.accepted_contexts
        if assoc.is_established:
            assoc.release()
    finally:
        node.stop()


def listen_cli(*args):
    from click.testing import CliRunner

    from edge_runtime.cli import main
    return CliRunner().invoke(main, ["listen", *map(str, args)])


def test_listen_usage_errors_are_one_line(tmp_path):
    assert "--allow" in listen_cli("--help").output
    res = listen_cli("--folder", tmp_path / "n")                 # no --allow
    assert res.exit_code == 2
    res = listen_cli("--folder", tmp_path / "n", "--allow", "A", "--send-to", "nowhere")
    assert res.exit_code == 2 and "expected AET@HOST:PORT" in res.stderr
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "state.json").write_text("{not json")
    res = listen_cli("--folder", tmp_path / "n", "--allow", "A")
    assert res.exit_code == 2 and "cannot read the node's state" in res.stderr
    assert "Traceback" not in res.stderr


def test_listen_port_in_use_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = listen_cli("--folder", tmp_path / "n", "--allow", "A", "--port", port)
    assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.stderr


def test_model_that_cannot_load_is_logged_once_and_the_node_lives(tmp_path, series_files):
    def broken():
        raise RuntimeError("no interpreter")
    log = Logged()
    node = make_node(tmp_path / "n", broken, log)
    try:
        assoc = client(node)
        assert assoc.send_c_store(pydicom.dcmread(series_files[0])).Status == 0
        assert log.wait_for("cannot load the model (no interpreter)")
        time.sleep(1.0)
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        node.stop()
    assert sum("cannot load the model" in line for line in log) == 1
    state = json.loads((tmp_path / "n" / "state.json").read_text())
    assert [s["status"] for s in state["series"].values()] == ["receiving"]  # kept for later
