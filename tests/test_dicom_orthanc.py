"""A real PACS round trip: Orthanc (started here on localhost, free ports, its own temporary
config and storage) sends a synthetic MR series to `edge-seg listen` (a subprocess), the
node sends the SEG back, and the test reads it through Orthanc's REST API. No mocks."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("pydicom")
pytest.importorskip("pynetdicom")
highdicom = pytest.importorskip("highdicom")
pytestmark = pytest.mark.device

from edge_runtime.dicom.synthetic import example_stack, write_series  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ORTHANC = shutil.which("Orthanc")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, method, path, body=None, timeout=60):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def wait_until(check, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got = check()
        except (OSError, urllib.error.URLError):
            got = None
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def orthanc(tmp_path):
    if ORTHANC is None:
        pytest.skip("Orthanc is not installed (Debian package 'orthanc'; .ci/run installs "
                    "it with apt-get): the real-PACS round trip is skipped")
    http_port, dicom_port, node_port = free_port(), free_port(), free_port()
    cfg = {"Name": "edge-seg-test", "StorageDirectory": str(tmp_path / "orthanc-db"),
           "IndexDirectory": str(tmp_path / "orthanc-db"), "HttpPort": http_port,
           "DicomPort": dicom_port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
           "AuthenticationEnabled": False, "Plugins": [], "DicomCheckCalledAet": False,
           # Orthanc 1.10 has no bind address for DICOM: it accepts only the node, by AE
           # title and address (its HTTP API answers localhost only)
           "DicomAlwaysAllowStore": False, "DicomCheckModalityHost": True,
           "HttpCompressionEnabled": False,
           "DicomModalities": {"edgeseg": ["EDGESEG", "127.0.0.1", node_port]}}
    (tmp_path / "orthanc.json").write_text(json.dumps(cfg))
    log = open(tmp_path / "orthanc.log", "w")
    proc = subprocess.Popen([ORTHANC, str(tmp_path / "orthanc.json")], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: http(http_port, "GET", "/system"), 30, "Orthanc to start")
        yield {"http": http_port, "dicom": dicom_port, "node": node_port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_orthanc_to_node_and_seg_back(orthanc, tmp_path):
    import pydicom
    files = write_series(tmp_path / "src", example_stack(ROOT / "examples", 6, which=2))
    source_uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    node_dir = tmp_path / "node"
    node_log = open(tmp_path / "node.log", "w")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    node = subprocess.Popen(
        [sys.executable, "-c", "from edge_runtime.cli import main; main()", "listen",
         "--folder", str(node_dir), "--allow", "ORTHANC", "--port", str(orthanc["node"]),
         "--quiet-seconds", "1", "--threads", "1",
         "--send-to", f"ORTHANC@127.0.0.1:{orthanc['dicom']}"],
        cwd=ROOT, env=env, stdout=node_log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "listening as EDGESEG" in (tmp_path / "node.log").read_text(),
                   60, "edge-seg listen to start")
        uploaded = [http(orthanc["http"], "POST", "/instances", p.read_bytes()) for p in files]
        series_id = uploaded[0]["ParentSeries"]
        assert http(orthanc["http"], "POST", "/modalities/edgeseg/echo", {}) == {}
        http(orthanc["http"], "POST", "/modalities/edgeseg/store",
             {"Resources": [series_id], "Synchronous": True})

        def seg_in_orthanc():
            found = http(orthanc["http"], "POST", "/tools/find",
                         {"Level": "Instance", "Query": {"Modality": "SEG"}})
            return found[0] if found else None
        seg_id = wait_until(seg_in_orthanc, 120, "the SEG to reach Orthanc")
        blob = http(orthanc["http"], "GET", f"/instances/{seg_id}/file")
    finally:
        node.terminate()
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
        node_log.close()
    log = (tmp_path / "node.log").read_text()
    assert "association accepted: ORTHANC" in log and "C-ECHO from ORTHANC" in log
    assert "processed series" in log and "sent to ORTHANC@127.0.0.1" in log
    assert "Traceback" not in log
    seg = highdicom.seg.segread(io.BytesIO(blob))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source_uid
    (report_path,) = node_dir.glob("results/*/*_series.json")
    report = json.loads(report_path.read_text())
    assert report["slices"] == 6 and report["volume_ml"] > 0
    assert int(seg.NumberOfFrames) == len(report["slices_with_tumour"])
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in files}
    refs = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in seg.PerFrameFunctionalGroupsSequence}
    assert refs <= uids and len(refs) == len(report["slices_with_tumour"])
    state = json.loads((node_dir / "state.json").read_text())
    assert [s["sent"] for s in state["series"].values()] == [True]
