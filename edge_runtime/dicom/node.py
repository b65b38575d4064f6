"""``edge-seg listen``: a DICOM Storage SCP that segments each MR series it receives.

    node = Node(NodeConfig(folder=..., allowed=["SCANNER"], ...), make_segmenter)
    node.serve()          # blocks; node.start() / node.stop() for a background node

- Associations are accepted only from the calling AE titles in ``allowed`` (pynetdicom
  rejects the others), only for MR Image Storage, Enhanced MR Image Storage and
  Verification (C-ECHO). A dataset whose Modality is not MR is refused (status 0xA900).
- Each instance is written atomically to ``FOLDER/incoming/<study uid>/<series uid>/<sop
  uid>.dcm`` (UIDs checked: digits and dots only, so nothing is written outside FOLDER);
  an instance that would take ``incoming`` over ``max_bytes`` is refused (0xA700, out of
  resources).
- A series is complete when no instance of it came for ``quiet_s`` seconds; a worker
  thread then runs ``process.process_series`` on it (the same function as ``edge-seg
  run``) into ``FOLDER/results/<stem>/`` and, with ``send_to``, C-STOREs the SEG there.
- ``FOLDER/state.json`` (written atomically) records each series' state: ``done`` or
  ``failed`` series are never processed again (a late instance is stored and logged), a
  SEG not yet sent is sent after a restart, and a series received but not processed when
  the node stopped is processed after the next quiet period.
- One log line per event (association accepted/rejected/aborted/released, echo, instance
  stored/refused, series processed/failed, SEG sent/not sent). No handler lets an
  exception out: a bad association or object is answered with an error status and logged.
"""

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.dicom._deps import need

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
STATE_FILE = "state.json"
STATUS_OK = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_NOT_MR = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC210
MODEL_RETRY_S = 60


def parse_destination(text):
    """``AET@HOST:PORT`` -> (aet, host, port); ValueError naming what was received."""
    m = re.fullmatch(r"([^@\s]{1,16})@([^:\s]+):(\d{1,5})", text or "")
    if not m or not 0 < int(m.group(3)) < 65536:
        raise ValueError(f"--send-to {text!r}: expected AET@HOST:PORT, e.g. "
                         "PACS@127.0.0.1:4242")
    return m.group(1), m.group(2), int(m.group(3))


@dataclass
class NodeConfig:
    folder: Path
    allowed: list
    ae_title: str = "EDGESEG"
    port: int = 11112
    bind: str = "127.0.0.1"
    quiet_s: float = 10.0
    max_bytes: int = 2 * 1024 ** 3
    send_to: tuple = None                # (aet, host, port)
    consistency: str = None
    poll_s: float = 0.5
    extra: dict = field(default_factory=dict)

    def check(self):
        if not self.allowed:
            raise ValueError("give at least one calling AE title to accept (--allow AET)")
        for aet in [self.ae_title, *self.allowed]:
            if not 0 < len(aet) <= 16 or aet != aet.strip() or "\\" in aet:
                raise ValueError(f"AE title {aet!r}: 1 to 16 characters, no backslash, no "
                                 "leading or trailing spaces")
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"--port {self.port}: must be 1..65535")
        if self.quiet_s <= 0 or self.max_bytes <= 0:
            raise ValueError("--quiet-seconds and --max-storage-mb must be positive")


class Node:
    """The Storage SCP, its state and its worker. ``make_segmenter()`` is called once, in
    the worker thread (an interpreter is used by one thread only)."""

    def __init__(self, config, make_segmenter, log=print):
        config.check()
        self.cfg = config
        self.make_segmenter = make_segmenter
        self._log = log
        self.folder = Path(config.folder)
        self.incoming = self.folder / "incoming"
        self.results = self.folder / "results"
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.state = self._load_state()
        self.last_seen = {}          # series uid -> monotonic time of its last instance
        self.used = self._disk_usage()
        self.stopping = threading.Event()
        self.server = None
        self.worker = None
        for uid, s in self.state["series"].items():       # restart: pending series
            if s.get("status") == "receiving":
                self.last_seen[uid] = time.monotonic()
        for study in sorted(self.incoming.iterdir()):
            for series in sorted(study.iterdir()) if study.is_dir() else []:
                uid = series.name
                if uid not in self.state["series"]:
                    self.state["series"][uid] = {"status": "receiving",
                                                 "folder": str(series)}
                    self.last_seen[uid] = time.monotonic()

    # ------------------------------------------------------------------ state and logging
    def log(self, line):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._log(f"{stamp} {line}")

    def _load_state(self):
        path = self.folder / STATE_FILE
        if not path.exists():
            return {"version": 1, "series": {}}
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(state.get("series"), dict):
                raise ValueError("no 'series' object")
            return state
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read the node's state ({exc}); move it away "
                             "to start afresh (every stored series is then processed "
                             "again)") from None

    def _save_state(self):
        from edge_runtime import atomic
        with self.lock:
            data = atomic.json_text(self.state).encode("utf-8")
        atomic.write_bytes(self.folder / STATE_FILE, data)

    def _disk_usage(self):
        total = 0
        for dirpath, _dirs, files in os.walk(self.incoming):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(dirpath, f))
                except OSError:
                    pass
        return total

    # ------------------------------------------------------------------ handlers
    def _on_store(self, event):
        try:
            return self._store(event)
        except Exception as exc:  # noqa: BLE001 - never let a bad object stop the node
            self.log(f"refused instance: {type(exc).__name__}: {' '.join(str(exc).split())}"
                     [:300])
            return STATUS_CANNOT_UNDERSTAND

    def _store(self, event):
        from edge_runtime import atomic
        calling = event.assoc.requestor.ae_title
        ds = event.dataset
        ds.file_meta = event.file_meta
        sop, study, series = (str(ds.get("SOPInstanceUID", "")),
                              str(ds.get("StudyInstanceUID", "")),
                              str(ds.get("SeriesInstanceUID", "")))
        if not all(UID_RE.match(u) and len(u) <= 64 for u in (sop, study, series)):
            self.log(f"refused instance from {calling}: malformed UIDs")
            return STATUS_CANNOT_UNDERSTAND
        if str(ds.get("Modality", "")).upper() != "MR":
            self.log(f"refused instance {sop} from {calling}: modality "
                     f"{ds.get('Modality', 'missing')}, only MR is accepted")
            return STATUS_NOT_MR
        data = event.encoded_dataset()
        with self.lock:
            if self.used + len(data) > self.cfg.max_bytes:
                self.log(f"refused instance {sop} from {calling}: storage cap "
                         f"{self.cfg.max_bytes} bytes reached ({self.used} used)")
                return STATUS_OUT_OF_RESOURCES
            self.used += len(data)
        target = self.incoming / study / series / f"{sop}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(target, data)
        with self.lock:
            entry = self.state["series"].get(series)
            new = entry is None
            if new:
                entry = self.state["series"][series] = {"status": "receiving",
                                                        "folder": str(target.parent)}
            status = entry["status"]
            if status == "receiving":
                self.last_seen[series] = time.monotonic()
        if new:
            self._save_state()
        if status != "receiving":
            self.log(f"late instance {sop} for series {series} ({status}): stored, the "
                     "series is not processed again")
        else:
            self.log(f"stored {sop} of series {series} from {calling}")
        return STATUS_OK

    def _on_echo(self, event):
        self.log(f"C-ECHO from {event.assoc.requestor.ae_title}")
        return STATUS_OK

    def _on_assoc(self, kind):
        def handler(event):
            try:
                req = event.assoc.requestor
                self.log(f"association {kind}: {req.ae_title} {req.address}:{req.port}")
            except Exception:  # noqa: BLE001
                self.log(f"association {kind}")
        return handler

    # ------------------------------------------------------------------ worker
    def _due(self):
        now = time.monotonic()
        with self.lock:
            return [uid for uid, t in self.last_seen.items()
                    if now - t >= self.cfg.quiet_s
                    and self.state["series"].get(uid, {}).get("status") == "receiving"]

    def _work(self):
        segmenter, retry_at = None, 0.0
        for uid, s in list(self.state["series"].items()):      # SEGs not sent before
            if s.get("status") == "done" and self.cfg.send_to and s.get("seg") and \
                    not s.get("sent"):
                self._send(uid)
        while not self.stopping.is_set():
            for uid in self._due():
                if segmenter is None:
                    if time.monotonic() < retry_at:
                        break
                    try:
                        segmenter = self.make_segmenter()
                    except Exception as exc:  # noqa: BLE001 - logged; tried again in a minute
                        self.log(f"cannot load the model ({exc}); trying again in "
                                 f"{MODEL_RETRY_S} s")
                        retry_at = time.monotonic() + MODEL_RETRY_S
                        break
                self._process(uid, segmenter)
            self.stopping.wait(self.cfg.poll_s)

    def _process(self, uid, segmenter):
        from edge_runtime.dicom.process import process_series, series_stem
        from edge_runtime.dicom.series import scan_tree
        entry = self.state["series"][uid]
        folder = Path(entry["folder"])
        try:
            found, skipped, failed = scan_tree(folder)
            for path, problem in failed + skipped:
                self.log(f"series {uid}: left out {path.name}: {problem}")
            match = [s for s in found if s.series_uid == uid]
            if not match:
                raise ValueError("no readable MR image in the series")
            series = match[0]
            stem = series_stem(series)
            out = self.results / f"{stem}_{uid[-12:]}"
            out.mkdir(parents=True, exist_ok=True)
            report = process_series(
                series, segmenter, out, stem=stem,
                consistency=self.cfg.consistency or _default_rule(),
                protected=[str(s.path) for s in series.slices],
                log=lambda line: self.log(f"series {uid}: failed slice {line}"))
        except Exception as exc:  # noqa: BLE001 - one bad series must not stop the node
            with self.lock:
                entry.update(status="failed", error=" ".join(str(exc).split())[:300])
                self.last_seen.pop(uid, None)
            self._save_state()
            self.log(f"series {uid} failed: {entry['error']}")
            return
        from edge_runtime.dicom.process import summary_line
        with self.lock:
            entry.update(status="failed" if report.get("error") else "done",
                         results=str(out), seg=report["outputs"].get("seg"), sent=False)
            self.last_seen.pop(uid, None)
        self._save_state()
        self.log(f"processed {summary_line(report)}")
        if self.cfg.send_to and entry.get("seg"):
            self._send(uid)

    def _send(self, uid):
        pydicom = need("pydicom")
        pynetdicom = need("pynetdicom")
        from pynetdicom.sop_class import SegmentationStorage
        entry = self.state["series"][uid]
        aet, host, port = self.cfg.send_to
        try:
            ds = pydicom.dcmread(entry["seg"])
            ae = pynetdicom.AE(ae_title=self.cfg.ae_title)
            ae.add_requested_context(SegmentationStorage, ds.file_meta.TransferSyntaxUID)
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
            assoc = ae.associate(host, port, ae_title=aet)
            if not assoc.is_established:
                raise ConnectionError(f"association with {aet}@{host}:{port} not established")
            try:
                status = assoc.send_c_store(ds)
            finally:
                assoc.release()
            code = getattr(status, "Status", None)
            if code != 0:
                raise ConnectionError(f"C-STORE status {code!r}")
        except Exception as exc:  # noqa: BLE001 - logged; retried after a restart
            with self.lock:
                entry["send_error"] = " ".join(str(exc).split())[:300]
            self._save_state()
            self.log(f"SEG of series {uid} not sent: {entry['send_error']}")
            return
        with self.lock:
            entry["sent"] = True
            entry.pop("send_error", None)
        self._save_state()
        self.log(f"SEG of series {uid} sent to {aet}@{host}:{port}")

    # ------------------------------------------------------------------ running
    def _ae(self):
        pynetdicom = need("pynetdicom")
        from pydicom.uid import (
            JPEG2000,
            DeflatedExplicitVRLittleEndian,
            ExplicitVRBigEndian,
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
            JPEG2000Lossless,
            JPEGBaseline8Bit,
            JPEGExtended12Bit,
            JPEGLosslessSV1,
            JPEGLSLossless,
            JPEGLSNearLossless,
            RLELossless,
        )
        from pynetdicom.sop_class import (
            EnhancedMRImageStorage,
            MRImageStorage,
            Verification,
        )
        syntaxes = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                    DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit,
                    JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless,
                    JPEG2000, RLELossless]
        ae = pynetdicom.AE(ae_title=self.cfg.ae_title)
        ae.add_supported_context(Verification)
        for cls in (MRImageStorage, EnhancedMRImageStorage):
            ae.add_supported_context(cls, syntaxes)
        ae.require_calling_aet = list(self.cfg.allowed)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 60
        return ae

    def _handlers(self):
        from pynetdicom import evt
        return [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo),
                (evt.EVT_ACCEPTED, self._on_assoc("accepted")),
                (evt.EVT_REJECTED, self._on_assoc("rejected")),
                (evt.EVT_ABORTED, self._on_assoc("aborted")),
                (evt.EVT_RELEASED, self._on_assoc("released"))]

    def start(self):
        """Start listening and the worker in the background -> self."""
        self.server = self._ae().start_server((self.cfg.bind, int(self.cfg.port)),
                                              block=False, evt_handlers=self._handlers())
        self.worker = threading.Thread(target=self._work, name="edge-seg-worker",
                                       daemon=True)
        self.worker.start()
        self.log(f"listening as {self.cfg.ae_title} on {self.cfg.bind}:{self.cfg.port}; "
                 f"accepting MR from {', '.join(self.cfg.allowed)}; storing under "
                 f"{self.folder}")
        return self

    def stop(self):
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
        if self.worker is not None:
            self.worker.join(timeout=120)
        self.log("stopped")

    def serve(self):
        """Run until interrupted (Ctrl-C, SIGTERM)."""
        import signal
        self.start()
        stop = threading.Event()
        prev = signal.signal(signal.SIGTERM, lambda *_a: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, prev)
            self.stop()


def _default_rule():
    from edge_runtime.dicom.consistency import DEFAULT_RULE
    return DEFAULT_RULE
