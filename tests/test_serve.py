"""edge-seg serve over real HTTP: a real uvicorn server on 127.0.0.1 (a free port) running the
shipped bundle, every route, and the refusals (traversal, oversize, CSRF, Host, sign-in)."""

import http.client
import io
import json
import os
import re
import time
import zipfile
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="needs the 'serve' extra: pip install 'edge-seg[serve]'")
pytest.importorskip("uvicorn", reason="needs the 'serve' extra")
pytest.importorskip("python_multipart", reason="needs the 'serve' extra")

from edge_runtime.serve.app import ServerThread, create_app  # noqa: E402
from edge_runtime.serve.security import AUTH_FILE, ensure_token, host_name, origin_ok  # noqa: E402
from edge_runtime.serve.settings import ServeConfig, is_loopback  # noqa: E402
from edge_runtime.serve.store import JobNotFound, Store, check_job_id  # noqa: E402

pytestmark = pytest.mark.device

ROOT = Path(__file__).resolve().parents[1]
GLIOMA = ROOT / "examples" / "glioma_718.png"
MENINGIOMA = ROOT / "examples" / "meningioma_1.png"
MAX_UPLOAD = 3 * 1024 * 1024
MAX_PIXELS = 300_000          # the 512 x 512 examples pass, 600 x 600 does not


class Client:
    """A tiny HTTP client with a cookie jar (http.client: nothing between us and the server)."""

    def __init__(self, url):
        self.host, port = url.split("//", 1)[1].split(":")
        self.port = int(port)
        self.cookies = {}

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        hdrs = {"Host": f"{self.host}:{self.port}"}
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        hdrs.update(headers or {})
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        if body is not None and not isinstance(body, (bytes, bytearray)):   # an iterator
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            try:
                for chunk in body:
                    conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie":
                key, val = value.split(";", 1)[0].split("=", 1)
                if "max-age=0" in value.lower() or 'expires=thu, 01 jan 1970' in value.lower():
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = val
        resp.body = data
        resp.text = data.decode("utf-8", "replace")
        conn.close()
        return resp

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def csrf(self):
        if "edge_seg_csrf" not in self.cookies:
            self.get("/")
        return self.cookies["edge_seg_csrf"]

    def post_form(self, path, fields, headers=None):
        h = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return self.request("POST", path, urlencode(fields).encode(), h)

    def upload(self, files, csrf=True, headers=None, fields=None):
        """files: [(name, bytes)]; csrf True: the cookie's token first, as the page sends it."""
        boundary = "----edgesegtest7MA4YWxkTrZu0gW"
        parts = []
        form = dict(fields or {})
        if csrf is True:
            form = {"csrf": self.csrf(), **form}
        elif csrf:
            form = {"csrf": csrf, **form}
        for k, v in form.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                         f"{v}\r\n".encode())
        for name, data in files:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                         f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                         .encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        h = {"Content-Type": f"multipart/form-data; boundary={boundary}", **(headers or {})}
        return self.request("POST", "/upload", body, h)


def wait_done(client, job_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = json.loads(client.get(job_path + "/status").text)
        if status["state"] in ("done", "interrupted"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{job_path} not done after {timeout} s")


def png_bytes(shape=(600, 600)):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)).save(
        buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def segmenter():
    from edge_runtime.bundle import load_bundle
    from edge_runtime.segment import Segmenter
    return Segmenter(load_bundle(None), threads=1)


@pytest.fixture(scope="module")
def server(segmenter, tmp_path_factory):
    data = tmp_path_factory.mktemp("serve") / "data"
    config = ServeConfig(data, max_upload_bytes=MAX_UPLOAD, max_files=5, max_pixels=MAX_PIXELS,
                         keep_days=30)
    app = create_app(config, segmenter, model_name="shipped")
    with ServerThread(app) as url:
        yield url, data


@pytest.fixture
def client(server):
    return Client(server[0])


def job_ids(data):
    return sorted(p.name for p in (data / "jobs").iterdir())


def upload_and_wait(client, files):
    resp = client.upload(files)
    assert resp.status == 303, resp.text[:300]
    job_path = resp.getheader("location")
    assert re.fullmatch(r"/jobs/[0-9a-f]{32}", job_path)
    wait_done(client, job_path)
    return job_path


# -- pages and headers ---------------------------------------------------------------------

def test_home_page_headers_and_static(client):
    resp = client.get("/")
    assert resp.status == 200
    assert 'id="upload-form"' in resp.text and 'name="csrf"' in resp.text
    assert resp.text.index('name="csrf"') < resp.text.index('type="file"')  # token before files
    csp = resp.getheader("content-security-policy")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "http" not in csp
    assert resp.getheader("x-content-type-options") == "nosniff"
    assert resp.getheader("x-frame-options") == "DENY"
    assert "httponly" in resp.getheader("set-cookie").lower()
    assert "samesite=strict" in resp.getheader("set-cookie").lower()
    # nothing is fetched from another site: every src/href is local
    for ref in re.findall(r'(?:src|href)="([^"]+)"', resp.text):
        assert ref.startswith("/"), ref
    css = client.get("/static/style.css")
    js = client.get("/static/app.js")
    assert css.status == 200 and css.getheader("content-type").startswith("text/css")
    assert js.status == 200 and "javascript" in js.getheader("content-type")
    assert "http" not in css.text and "http:" not in js.text and "https:" not in js.text
    assert client.get("/static/missing.js").status == 404
    assert client.get("/nowhere").status == 404


def test_upload_example_shows_findings_and_downloads_match_edge_seg_run(client, server,
                                                                       tmp_path):
    job = upload_and_wait(client, [("glioma_718.png", GLIOMA.read_bytes())])
    folder = server[1] / "jobs" / job.rsplit("/", 1)[1]
    assert list((folder / "uploads").iterdir()) == []        # the upload is not kept
    assert len(list((folder / "results").iterdir())) == 5
    page = client.get(job)
    assert page.status == 200
    assert "Not a medical device." in page.text
    assert "Tumour found" in page.text
    assert "x 300–357, y 321–381 (58 × 61 pixels)" in page.text
    assert "no mm²: the file has no pixel spacing" in page.text
    assert "97\u00a0% mean model probability inside the outline (highest 100\u00a0%)" \
        in page.text
    assert f'{job}/scans/0/view.png' in page.text and f'{job}/scans/0/layer.png' in page.text
    assert 'id="opacity"' in page.text and 'id="show-mask"' in page.text
    assert 'id="slice"' not in page.text            # one scan: no scroller

    findings = client.get(f"{job}/scans/0/findings.json")
    assert findings.status == 200 and findings.getheader("content-type") == "application/json"
    f = json.loads(findings.text)
    assert f["source"] == "glioma_718.png" and f["tumour_found"] is True
    mask = client.get(f"{job}/scans/0/mask.png")
    overlay = client.get(f"{job}/scans/0/overlay.png")
    layer = client.get(f"{job}/scans/0/layer.png")
    assert mask.getheader("content-type") == "image/png"
    served = np.asarray(Image.open(io.BytesIO(mask.body)))
    assert Image.open(io.BytesIO(overlay.body)).size == (512, 512)
    alpha = np.asarray(Image.open(io.BytesIO(layer.body)).convert("RGBA"))[..., 3]
    assert ((alpha > 0) == (served > 0)).all()       # the layer covers the mask, only it

    # the same library path as edge-seg run: identical mask and area
    from click.testing import CliRunner

    from edge_runtime.cli import main
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(GLIOMA), "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    ran = np.asarray(Image.open(out / "glioma_718_mask.png"))
    assert (ran == served).all()
    assert json.loads((out / "glioma_718_findings.json").read_text())["area_px"] == f["area_px"]


def test_several_scans_and_a_bad_file_give_a_scroller_and_one_line_errors(client):
    job = upload_and_wait(client, [("glioma_718.png", GLIOMA.read_bytes()),
                                   ("notes.txt", b"not a scan\n"),
                                   ("meningioma_1.png", MENINGIOMA.read_bytes()),
                                   ("big.png", png_bytes((600, 600)))])
    page = client.get(job).text
    assert 'id="slice"' in page and 'max="2"' in page and "Scan 1 of 2" in page
    errors = re.findall(r'<li class="error" role="alert">([^<]*)</li>', page)
    assert errors[0] == "notes.txt: not an image file (or an unsupported format)"
    assert errors[1].startswith("big.png: image too large: 600x600 px = 360000 pixels; "
                                "the limit is 300000")
    assert len(errors) == 2
    assert client.get(f"{job}/scans/1/mask.png").status == 404      # the failed one
    assert client.get(f"{job}/scans/2/mask.png").status == 200
    assert client.get("/").status == 200                             # still serving


def test_only_a_non_image_shows_the_error_and_the_form_again(client):
    job = upload_and_wait(client, [("report.pdf", b"%PDF-1.4 not an image")])
    page = client.get(job).text
    assert "report.pdf: not an image file (or an unsupported format)" in page
    assert "Nothing to show" in page and 'id="upload-form"' in page


def test_status_json_and_results_list(client):
    job = upload_and_wait(client, [("glioma_718.png", GLIOMA.read_bytes())])
    status = json.loads(client.get(job + "/status").text)
    assert status == {"state": "done", "done": 1, "total": 1}
    assert client.get("/jobs/" + "0" * 32 + "/status").status == 404
    results = client.get("/results")
    assert results.status == 200 and job in results.text and "tumour found" in results.text
    assert "kept for 30 days" in results.text and "Not a medical device." in results.text


def test_zip_of_scans_unpacks_in_name_order_with_generated_names(client, server):
    _url, data = server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("series/b_meningioma.png", MENINGIOMA.read_bytes())
        zf.writestr("series/a_glioma.png", GLIOMA.read_bytes())
        zf.writestr("../../escape.png", GLIOMA.read_bytes())
        zf.writestr("__MACOSX/._a_glioma.png", b"junk")
        zf.writestr("series/.hidden", b"junk")
    job = upload_and_wait(client, [("series.zip", buf.getvalue())])
    record = json.loads((data / "jobs" / job.rsplit("/", 1)[1] / "job.json").read_text())
    # "../" members are skipped like hidden ones; the rest get generated names
    assert [s["name"] for s in record["scans"]] == ["a_glioma.png", "b_meningioma.png"]
    assert [s["upload"] for s in record["scans"]] == ["scan_000.png", "scan_001.png"]
    assert all(s["state"] == "ok" for s in record["scans"])
    assert not list(data.parent.rglob("escape.png"))
    assert "Scan 1 of 2" in client.get(job).text


def test_zip_bomb_and_bad_zip_are_refused_with_one_line(client, server):
    _url, data = server
    before = job_ids(data)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\0" * (4 * MAX_UPLOAD + 1))
    resp = client.upload([("bomb.zip", buf.getvalue())])
    assert resp.status == 413
    assert re.search(r'role="alert" id="error">bomb.zip: unpacks to 12 MB; the limit is 12 MB<',
                     resp.text)
    bad = client.upload([("broken.zip", b"PK\x03\x04" + b"\0" * 50)])
    assert bad.status == 400 and "broken.zip: not a readable zip archive" in bad.text
    assert job_ids(data) == before


# -- refusals ------------------------------------------------------------------------------

def test_upload_without_or_with_a_wrong_csrf_token_is_refused_before_any_file_is_kept(client,
                                                                                    server):
    url, data = server
    before = job_ids(data)
    client.csrf()
    none = client.upload([("glioma_718.png", GLIOMA.read_bytes())], csrf=False)
    wrong = client.upload([("glioma_718.png", GLIOMA.read_bytes())], csrf="x" * 43)
    assert none.status == 403 and wrong.status == 403
    assert "the form has expired or did not come from this page" in none.text
    fresh = Client(url)                      # no cookie at all, but a token in the form
    assert fresh.upload([("a.png", GLIOMA.read_bytes())], csrf="y" * 43).status == 403
    assert job_ids(data) == before


def test_cross_site_post_and_foreign_host_are_refused(client):
    token = client.csrf()
    cross = client.upload([("glioma_718.png", GLIOMA.read_bytes())],
                          headers={"Origin": "http://evil.example"})
    assert cross.status == 403
    same = client.post_form("/jobs/" + "0" * 32 + "/delete", {"csrf": token},
                            headers={"Origin": f"http://{client.host}:{client.port}"})
    assert same.status == 404                                      # passed the check
    rebinding = client.get("/", headers={"Host": "evil.example:8000"})
    assert rebinding.status == 400 and "Host not allowed" in rebinding.text


def test_oversize_upload_is_refused_by_length_and_while_streaming(client, server):
    _url, data = server
    before = job_ids(data)
    big = b"\0" * (MAX_UPLOAD + 1)
    resp = client.upload([("huge.png", big)])
    assert resp.status == 413 and "upload too large" in resp.text and "the limit is 3 MB" in resp.text
    token = client.csrf()
    boundary = "b0undary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="s.png"'
            f"\r\n\r\n").encode()
    chunks = iter([head] + [b"\0" * 65536] * (MAX_UPLOAD // 65536 + 2))
    streamed = client.request("POST", "/upload", chunks,
                              {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert streamed.status == 413 and "upload too large: more than 3 MB" in streamed.text
    assert job_ids(data) == before
    assert client.get("/").status == 200


def test_too_many_files_no_file_and_not_a_form_are_refused(client, server):
    _url, data = server
    before = job_ids(data)
    many = client.upload([(f"{i}.png", b"x") for i in range(6)])
    assert many.status == 413 and "too many files in one upload: more than 5" in many.text
    empty = client.upload([])
    assert empty.status == 400 and "no file was chosen" in empty.text
    raw = client.request("POST", "/upload", b"{}", {"Content-Type": "application/json"})
    assert raw.status == 415 and "expected a form upload" in raw.text
    assert job_ids(data) == before


@pytest.mark.parametrize("path", [
    "/jobs/../../etc/passwd",
    "/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/jobs/..%2fjob.json",
    "/jobs/NOTANID",
    "/jobs/" + "0" * 32,
    "/jobs/" + "A" * 32,
    "/static/..%2fapp.py",
    "/static/%2e%2e/app.py",
])
def test_paths_that_are_not_ours_are_404(client, path):
    resp = client.get(path)
    assert resp.status == 404
    assert "root:" not in resp.text and "import" not in resp.text


def test_result_files_only_by_fixed_names(client):
    job = upload_and_wait(client, [("glioma_718.png", GLIOMA.read_bytes())])
    for bad in ["job.json", "..%2fjob.json", "..%2F..%2Fjob.json", "scan_000.png",
                "mask.png%00.json", "MASK.PNG"]:
        assert client.get(f"{job}/scans/0/{bad}").status == 404, bad
    assert client.get(f"{job}/scans/1/mask.png").status == 404
    assert client.get(f"{job}/scans/-1/mask.png").status == 404
    assert client.get(f"{job}/scans/0/mask.png").status == 200


def test_delete_needs_the_csrf_token(client, server):
    _url, data = server
    job = upload_and_wait(client, [("glioma_718.png", GLIOMA.read_bytes())])
    job_id = job.rsplit("/", 1)[1]
    refused = client.post_form(f"{job}/delete", {})
    assert refused.status == 403 and (data / "jobs" / job_id).is_dir()
    done = client.post_form(f"{job}/delete", {"csrf": client.csrf()})
    assert done.status == 303 and done.getheader("location") == "/results"
    assert not (data / "jobs" / job_id).exists()
    assert client.get(job).status == 404
    assert client.post_form("/jobs/..%2f..%2fx/delete", {"csrf": client.csrf()}).status == 404


def test_results_older_than_keep_days_are_deleted(client, server):
    _url, data = server
    job = upload_and_wait(client, [("glioma_718.png", GLIOMA.read_bytes())])
    record_path = data / "jobs" / job.rsplit("/", 1)[1] / "job.json"
    record = json.loads(record_path.read_text())
    record["created"] -= 31 * 86400
    record_path.write_text(json.dumps(record))
    assert client.get("/results").status == 200
    assert not record_path.parent.exists()


# -- signing in when not on loopback ---------------------------------------------------------

@pytest.fixture(scope="module")
def locked_server(segmenter, tmp_path_factory):
    """auth_required as on a non-local bind (the tests themselves stay on 127.0.0.1)."""
    data = tmp_path_factory.mktemp("locked") / "data"
    data.mkdir(parents=True)
    token = ensure_token(data)
    config = ServeConfig(data, auth_required=True)
    app = create_app(config, segmenter, model_name="shipped")
    with ServerThread(app) as url:
        yield url, data, token


def test_non_local_server_needs_the_token(locked_server):
    url, data, token = locked_server
    c = Client(url)
    home = c.get("/")
    assert home.status == 303 and home.getheader("location") == "/login"
    assert c.get("/results").status == 303
    assert c.get("/jobs/" + "0" * 32 + "/status").status == 303
    login = c.get("/login")
    assert login.status == 200 and 'type="password"' in login.text
    assert c.get("/static/style.css").status == 200                  # the sign-in page's style
    refused = c.upload([("glioma_718.png", GLIOMA.read_bytes())])
    assert refused.status == 401 and "sign in first" in refused.text
    assert job_ids(data) == []
    wrong = c.post_form("/login", {"csrf": c.csrf(), "token": "guess"})
    assert wrong.status == 401 and "wrong access token" in wrong.text
    no_csrf = c.post_form("/login", {"token": token})
    assert no_csrf.status == 403
    ok = c.post_form("/login", {"csrf": c.csrf(), "token": token})
    assert ok.status == 303 and "edge_seg_session" in c.cookies
    assert c.get("/").status == 200 and "Sign out" in c.get("/").text
    job = upload_and_wait(c, [("glioma_718.png", GLIOMA.read_bytes())])
    assert "Tumour found" in c.get(job).text
    assert Client(url).get(job).status == 303                        # another browser: no
    out = c.post_form("/logout", {"csrf": c.csrf()})
    assert out.status == 303 and c.get("/").status == 303


def test_token_is_stored_hashed_and_printed_only_once(tmp_path):
    token = ensure_token(tmp_path)
    text = (tmp_path / AUTH_FILE).read_text()
    assert token and token not in text and "pbkdf2_sha256" in text
    assert os.stat(tmp_path / AUTH_FILE).st_mode & 0o077 == 0
    assert ensure_token(tmp_path) is None
    again = ensure_token(tmp_path, reset=True)
    assert again and again != token


def test_only_loopback_binds_go_without_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("[::1]") and is_loopback("127.0.1.1")
    for host in ("0.0.0.0", "::", "192.168.1.20", "pi.local", ""):
        assert not is_loopback(host), host
        assert ServeConfig("/tmp/x", host=host).auth_required
    assert not ServeConfig("/tmp/x").auth_required
    assert host_name("[::1]:8000") == "::1" and host_name("localhost:80") == "localhost"
    assert origin_ok(None, "h:1") and origin_ok("http://h:1", "h:1")
    assert not origin_ok("null", "h:1") and not origin_ok("http://x:1", "h:1")


def test_job_ids_are_checked_before_any_path_is_made(tmp_path):
    store = Store(tmp_path)
    for bad in ["..", "../x", "0" * 31, "0" * 33, "g" * 32, "0" * 31 + "/", None, 5]:
        with pytest.raises(JobNotFound):
            check_job_id(bad)
        with pytest.raises(JobNotFound):
            store.job_dir(bad)


def test_store_purge_keeps_unfinished_and_recent_jobs(tmp_path):
    store = Store(tmp_path, keep_days=2)
    store.prepare()
    old, recent, running = store.create_job(), store.create_job(), store.create_job()
    for job, state, age in ((old, "done", 3), (recent, "done", 1), (running, "running", 9)):
        job.update(state=state, created=time.time() - age * 86400)
        store.write_job(job)
    assert store.purge() == [old["id"]]
    assert {j["id"] for j in store.list_jobs()} == {recent["id"], running["id"]}
    assert Store(tmp_path, keep_days=0).purge(now=time.time() + 1e9) == []
    # a restart marks what was left unfinished as interrupted and drops its uploads
    (store.uploads_dir(running["id"]) / "scan_000.dcm").write_bytes(b"DICM")
    assert store.prepare() == [running["id"]]
    assert store.read_job(running["id"])["state"] == "interrupted"
    assert list(store.uploads_dir(running["id"]).iterdir()) == []


def test_cli_serve_help_and_address_in_use(tmp_path):
    import socket

    from click.testing import CliRunner

    from edge_runtime.cli import main
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "--keep-days" in result.output and "127.0.0.1" in result.output
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    try:
        busy = CliRunner().invoke(main, ["serve", "--port", str(port), "--data",
                                         str(tmp_path / "d"), "--threads", "1"])
    finally:
        sock.close()
    assert busy.exit_code == 2
    assert f"edge-seg serve: cannot listen on 127.0.0.1:{port} (Address already in use)" \
        in busy.output
    bad_bundle = CliRunner().invoke(main, ["serve", "--bundle", str(tmp_path / "none.zip"),
                                           "--data", str(tmp_path / "d")])
    assert bad_bundle.exit_code == 3 and "bundle not found" in bad_bundle.output


def test_dicom_files_one_by_one_are_read_as_a_series_with_their_names(client, tmp_path):
    """Uploaded DICOM files go through the series reader, whatever their names: three copies
    of one instance are one series of one slice (read once, said with the uploaded names)."""
    pytest.importorskip("highdicom", reason="needs the 'dicom' extra")
    from test_imageio import write_dicom

    from edge_runtime.imageio import load_scan
    gray = load_scan(GLIOMA).pixels.astype(np.uint16) * 16
    dcm = write_dicom(tmp_path / "IM0001.dcm", gray, spacing=(0.5, 0.5)).read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("SERIES/IM0001", dcm)                 # DICOM without a suffix
        zf.writestr("SERIES/IM0002", dcm)
    job = upload_and_wait(client, [("IM0001.dcm", dcm), ("series.zip", buf.getvalue())])
    page = client.get(job).text
    assert page.count('<section class="series"') == 1 and "Tumour found on 1 of 1 slices" in page
    assert "note: duplicate instance" in page and "in IM0001 (also in IM0001.dcm): read once" \
        in page
    assert "/uploads/" not in page                     # server paths never reach the page
    assert "0.5 × 0.5 mm" in page
    f = json.loads(client.get(f"{job}/series/0/slices/1/findings.json").text)
    assert f["spacing_mm"] == [0.5, 0.5]
    assert f["area_mm2"] == pytest.approx(f["area_px"] * 0.25, rel=1e-3)
    assert f"{f['area_mm2']:,.1f} mm²" in page


def test_a_dicom_series_over_max_pixels_is_refused_in_one_line_before_decoding(client,
                                                                              tmp_path):
    pytest.importorskip("highdicom", reason="needs the 'dicom' extra")
    from test_imageio import write_dicom
    dcm = write_dicom(tmp_path / "BIG.dcm", np.zeros((600, 600), np.uint16)).read_bytes()
    job = upload_and_wait(client, [("BIG.dcm", dcm)])
    page = client.get(job).text
    assert re.findall(r'<p class="error" role="alert">([^<]*)</p>', page) == [
        "image too large: 600x600 px = 360000 pixels; the limit is 300000"]
    assert "Series not segmented" in page and "Nothing to show" in page


# -- DICOM series ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dicom_server(segmenter, tmp_path_factory):
    data = tmp_path_factory.mktemp("serve_dicom") / "data"
    config = ServeConfig(data, max_upload_bytes=32 * 1024 * 1024, max_files=20, keep_days=30)
    app = create_app(config, segmenter, model_name="shipped")
    with ServerThread(app) as url:
        yield url, data


def synthetic_study(folder):
    """Two MR series of one study (series 3: 4 slices; series 4: 4 slices 4 mm apart with
    the third left out) and a one-file CT series -> {series number: paths}."""
    pytest.importorskip("highdicom", reason="needs the 'dicom' extra")
    from pydicom.uid import generate_uid

    from edge_runtime.dicom.synthetic import example_stack, write_series
    study = generate_uid()
    examples = ROOT / "examples"
    t1 = write_series(folder / "T1", example_stack(examples, 4, which=0), study_uid=study,
                      series_number=3, description="T1 post-contrast (synthetic)", name="t1")
    flair = write_series(folder / "FLAIR", example_stack(examples, 4, which=0, seed=1),
                         study_uid=study, series_number=4, description="FLAIR (synthetic)",
                         slice_spacing=4.0, name="flair")
    flair.pop(2).unlink()                            # a missing slice: no volume
    ct = write_series(folder / "CT", example_stack(examples, 1, which=0, dark_ends=0),
                      study_uid=study, series_number=5, modality="CT", name="ct")
    return {3: t1, 4: flair, 5: ct}


def test_a_zipped_dicom_study_is_segmented_series_by_series(dicom_server, segmenter, tmp_path):
    import highdicom
    import pydicom

    from edge_runtime.dicom.process import process_series
    from edge_runtime.dicom.series import scan_tree
    url, data = dicom_server
    client = Client(url)
    files = synthetic_study(tmp_path / "study")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for paths in files.values():
            for path in paths:
                zf.write(path, f"STUDY/{path.parent.name}/{path.name}")
        zf.writestr("STUDY/README.txt", b"exported by a scanner\n")
        zf.writestr("glioma_718.png", GLIOMA.read_bytes())     # a plain scan beside it
    job = upload_and_wait(client, [("study.zip", buf.getvalue())])
    job_dir = data / "jobs" / job.rsplit("/", 1)[1]
    assert list((job_dir / "uploads").iterdir()) == []        # the DICOM headers are gone

    # the same library call as edge-seg run STUDY/
    direct = {}
    for series in scan_tree(tmp_path / "study")[0]:
        direct[series.series_number] = process_series(series, segmenter, tmp_path / "out")
    assert direct[3]["volume_ml"] is not None and direct[4]["volume_ml"] is None

    page = client.get(job).text
    assert page.count('<section class="series"') == 2
    rows = re.findall(r'<section class="series" id="series-(\d)" aria-label="([^"]*)">', page)
    assert rows == [("0", "Series 3 · T1 post-contrast (synthetic)"),
                    ("1", "Series 4 · FLAIR (synthetic)")]
    t1, flair = page.split('id="series-1"')
    assert "4 slices, ordered by position" in t1 and "3 slices, ordered by position" in flair
    volume = re.search(r'data-key="volume">([^<]*)<', t1).group(1)
    assert volume == (f"{direct[3]['volume_ml']:.2f} mL (slice spacing 5.00 mm from "
                      "position differences)")
    assert re.search(r'data-key="volume">([^<]*)<', flair).group(1) == \
        f"not given: {direct[4]['volume_refused']}"
    assert "1 slice(s) missing" in direct[4]["volume_refused"]
    assert (f"{direct[3]['largest_cross_section_mm2']:,.1f} mm² (slice "
            f"{direct[3]['largest_cross_section_slice']})") in t1
    assert f"{direct[3]['longest_diameter_mm']:,.1f} mm in-plane" in t1
    # the scroller over the series' slices, in slice order, named by the uploaded files
    assert 'id="slice-0"' in t1 and 'max="4"' in t1 and "Slice 1 of 4" in t1
    assert re.findall(r'<p class="file">(Slice \d of 4 · [^<]*)</p>', t1) == [
        f"Slice {k} of 4 · t1_{k:03d}.dcm" for k in (1, 2, 3, 4)]
    assert f'src="{job}/series/0/montage.png"' in t1
    # left out with the reason; the plain scan and the README keep today's behaviour
    skipped = re.search(r'<div class="skipped" id="skipped">(.*?)</div>', page, re.S).group(1)
    assert "<li>ct_001.dcm: not MR (modality CT): series of 1 file(s) skipped</li>" in skipped
    assert re.findall(r'<li class="error" role="alert">([^<]*)</li>', page) == [
        "README.txt: not an image file (or an unsupported format)"]
    assert "Scan" in page and "glioma_718.png" in page
    assert "/uploads/" not in page and str(data) not in page

    # the series JSON is process_series' report: the same numbers
    report = json.loads(client.get(f"{job}/series/0/series.json").text)
    for key in ("volume_ml", "largest_cross_section_mm2", "longest_diameter_mm",
                "slices_with_tumour"):
        assert report[key] == direct[3][key], key
    # the DICOM SEG download: a Segmentation of series 3, one frame per slice with tumour
    resp = client.get(f"{job}/series/0/seg.dcm")
    assert resp.status == 200 and resp.getheader("content-type") == "application/dicom"
    assert 'download="S3_T1_post_contrast_synthetic_seg.dcm"' in t1
    ds = pydicom.dcmread(io.BytesIO(resp.body))
    seg = highdicom.seg.Segmentation.from_dataset(ds)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    t1_series = pydicom.dcmread(files[3][0], stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == t1_series.SeriesInstanceUID
    assert int(seg.NumberOfFrames) == len(direct[3]["slices_with_tumour"]) > 0
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files[3]}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID in sources
    # per-slice files by fixed names only
    assert client.get(f"{job}/series/0/slices/2/view.png").status == 200
    assert client.get(f"{job}/series/0/slices/2/mask.png").getheader("content-type") == \
        "image/png"
    for bad in ("/series/0/slices/5/mask.png", "/series/0/slices/0/mask.png",
                "/series/2/seg.dcm", "/series/0/job.json", "/series/0/slices/1/seg.dcm",
                "/series/-1/seg.dcm"):
        assert client.get(job + bad).status == 404, bad
    assert "series 3: tumour, " in client.get("/results").text


def test_without_the_dicom_extra_dicom_files_get_a_one_line_error_and_pngs_still_work(
        dicom_server, monkeypatch, tmp_path):
    import sys
    pytest.importorskip("pydicom")
    from test_imageio import write_dicom
    dcm = write_dicom(tmp_path / "IM1.dcm", np.zeros((64, 64), np.uint16)).read_bytes()
    monkeypatch.setitem(sys.modules, "pydicom", None)        # as if it were not installed
    url, data = dicom_server
    client = Client(url)
    job = upload_and_wait(client, [("IM1.dcm", dcm), ("glioma_718.png", GLIOMA.read_bytes())])
    page = client.get(job).text
    assert re.findall(r'<li class="error" role="alert">([^<]*)</li>', page) == [
        "IM1.dcm: DICOM series need pydicom, which is not installed; install the extra with: "
        "pip install &#x27;edge-seg[dicom]&#x27;"]
    assert "Tumour found" in page and '<section class="series"' not in page
    assert list((data / "jobs" / job.rsplit("/", 1)[1] / "uploads").iterdir()) == []


def test_without_the_serve_extra_the_command_says_how_to_install_it(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import edge_runtime.serve.app as serve_app
    from edge_runtime.cli import main
    from edge_runtime.errors import EXIT_MISSING_EXTRA
    monkeypatch.setattr(serve_app, "WEB_STACK", (("edge_seg_not_installed", "starlette"),))
    result = CliRunner().invoke(main, ["serve", "--data", str(tmp_path / "d")])
    assert result.exit_code == EXIT_MISSING_EXTRA
    assert result.output.strip() == ("edge-seg serve: needs starlette (not installed); install "
                                     "the 'serve' extra with: pip install 'edge-seg[serve]'")
    assert not (tmp_path / "d").exists()


def test_cli_on_a_network_address_prints_the_token_once_and_keeps_only_its_hash(monkeypatch,
                                                                                tmp_path):
    """--host 0.0.0.0 through the command, without listening on the network: the socket is
    bound to 127.0.0.1 and the serving loop is replaced by a recorder."""
    import socket

    from click.testing import CliRunner

    import edge_runtime.serve.app as serve_app
    from edge_runtime.cli import main
    served = []

    def bind_loopback(host, port):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        return sock

    def record(app, sock):
        served.append(app.state.serve.config)
        sock.close()

    monkeypatch.setattr(serve_app, "bind_socket", bind_loopback)
    monkeypatch.setattr(serve_app, "run_server", record)
    data = tmp_path / "data"
    args = ["serve", "--host", "0.0.0.0", "--data", str(data), "--threads", "1"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    token = re.search(r"Access token \(shown once; only its hash is kept in [^)]*\): (\S+)",
                      first.output).group(1)
    assert served[0].auth_required and served[0].host == "0.0.0.0"
    assert token not in (data / AUTH_FILE).read_text()
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and token not in second.output
    assert "Access token: set at an earlier start" in second.output
    local = CliRunner().invoke(main, ["serve", "--data", str(data), "--threads", "1"])
    assert local.exit_code == 0 and "Access token" not in local.output
    assert not served[2].auth_required
    (data / AUTH_FILE).write_text("{not json")
    broken = CliRunner().invoke(main, args)
    assert broken.exit_code == 2 and "not a valid token record" in broken.output
    assert "--reset-token" in broken.output


def test_cli_data_folder_that_cannot_be_made_is_a_usage_error(tmp_path):
    from click.testing import CliRunner

    from edge_runtime.cli import main
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["serve", "--data", str(tmp_path / "file" / "d")])
    assert result.exit_code == 2
    assert result.output.startswith(f"edge-seg serve: --data {tmp_path / 'file' / 'd'}: ")
    assert len(result.output.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    import shutil
    import subprocess
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_https_with_a_certificate_and_secure_cookies(segmenter, tmp_path, self_signed):
    import ssl
    cert, key = self_signed
    config = ServeConfig(tmp_path / "data", auth_required=True, tls_cert=cert, tls_key=key)
    (tmp_path / "data").mkdir()
    ensure_token(tmp_path / "data")
    app = create_app(config, segmenter)
    with ServerThread(app) as url:
        assert url.startswith("https://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        conn.request("GET", "/login")
        resp = conn.getresponse()
        assert resp.status == 200 and b'type="password"' in resp.read()
        cookie = resp.getheader("set-cookie").lower()
        assert "secure" in cookie and "httponly" in cookie
        conn.close()
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/login")
            plain.getresponse()
        plain.close()


def test_cli_refuses_half_a_tls_pair_and_a_key_that_does_not_fit(tmp_path, self_signed):
    from click.testing import CliRunner

    from edge_runtime.cli import main
    cert, key = self_signed
    half = CliRunner().invoke(main, ["serve", "--data", str(tmp_path / "d"),
                                     "--tls-cert", str(cert)])
    assert half.exit_code == 2
    assert "give both a TLS certificate and its key, or neither" in half.output
    wrong = CliRunner().invoke(main, ["serve", "--data", str(tmp_path / "d"),
                                      "--tls-cert", str(cert), "--tls-key", str(cert)])
    assert wrong.exit_code == 2
    assert wrong.output.startswith(f"edge-seg serve: cannot use --tls-cert {cert} with "
                                   f"--tls-key {cert} (")
    assert len(wrong.output.strip().splitlines()) == 1


def test_a_full_disk_is_a_one_line_refusal_and_leaves_no_job(client, server, monkeypatch):
    import edge_runtime.serve.uploads as uploads
    _url, data = server
    before = job_ids(data)

    def disk_full(path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(uploads, "_open_new", disk_full)
    resp = client.upload([("glioma_718.png", GLIOMA.read_bytes())])
    assert resp.status == 507
    assert re.search(r'id="error">the server cannot store the upload \(No space left on '
                     r"device\)<", resp.text)
    assert job_ids(data) == before
    monkeypatch.undo()
    assert client.get("/").status == 200
