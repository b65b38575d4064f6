"""The web app of ``edge-seg serve`` (Starlette, served by uvicorn): routes, the request
guard, and starting the server. It parses requests and renders ``pages``; storage, uploads,
segmentation and security checks are the library functions of this package.

Routes (every other path is 404):

    GET  /                               upload page (and the latest results)
    POST /upload                         multipart form: csrf, files -> 303 to the job
    GET  /jobs/<id>                      progress while running, then the result view
    GET  /jobs/<id>/status               progress as JSON {state, done, total}
    GET  /jobs/<id>/scans/<n>/<file>     <file>: mask.png overlay.png findings.json
                                         view.png layer.png (fixed names only)
    GET  /jobs/<id>/series/<k>/<file>    a DICOM series: seg.dcm series.json montage.png
    GET  /jobs/<id>/series/<k>/slices/<n>/<file>   its slice n (from 1): as for a scan
    POST /jobs/<id>/delete               form: csrf -> 303 to /results
    GET  /results                        past results (kept --keep-days)
    GET  /login, POST /login, POST /logout   only used when a token is required
    GET  /static/style.css, /static/app.js, /static/favicon.svg
"""

import asyncio
import importlib
import json
import threading
import time
from contextlib import asynccontextmanager
from importlib import resources
from urllib.parse import parse_qs

from edge_runtime.errors import MissingExtraError
from edge_runtime.serve import pages
from edge_runtime.serve.security import (CSRF_COOKIE, CSRF_FIELD, SECURITY_HEADERS,
                                         SESSION_COOKIE, Sessions, csrf_ok, host_ok,
                                         load_token_record, new_csrf_token, origin_ok,
                                         verify_token)
from edge_runtime.serve.store import JobNotFound, Store, check_job_id
from edge_runtime.serve.uploads import UploadRefused, prepare_scans, receive_upload
from edge_runtime.serve.worker import Worker

WEB_STACK = (("starlette", "starlette"), ("uvicorn", "uvicorn"),
             ("python_multipart", "python-multipart"))
STATIC = {"style.css": "text/css; charset=utf-8",
          "app.js": "text/javascript; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
PUBLIC_PATHS = ("/login",) + tuple(f"/static/{name}" for name in STATIC)
MAX_SMALL_FORM = 8192
LOGIN_FAILURE_DELAY_S = 1.0
POLL_RESULT_STATES = ("done", "interrupted")


def require_web_stack():
    """Import check for the ``serve`` extra; ``MissingExtraError`` says how to install it."""
    missing = []
    for module, package in WEB_STACK:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise MissingExtraError(f"needs {', '.join(missing)} (not installed); install the "
                                "'serve' extra with: pip install 'edge-seg[serve]'")


def limits_text(config):
    mb = config.max_upload_bytes / (1024 * 1024)
    return (f"Up to {mb:g} MB and {config.max_files} files per upload, "
            f"{config.max_pixels / 1e6:g} million pixels per scan.")


def _load_static():
    folder = resources.files("edge_runtime.serve") / "static"
    return {name: (folder.joinpath(name).read_bytes(), media) for name, media in STATIC.items()}


class Guard:
    """ASGI middleware: Host check, sign-in check, cross-site POST check, security headers."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.datastructures import MutableHeaders
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse, RedirectResponse

        async def send_secured(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    if key not in headers:
                        headers[key] = value
            await send(message)

        request = Request(scope)
        config = self.state.config
        refusal = None
        if not host_ok(request.headers.get("host"), loopback_only=not config.auth_required):
            refusal = PlainTextResponse("Host not allowed: this server answers on "
                                        "127.0.0.1 / localhost only", 400)
        elif request.method == "POST" and not origin_ok(request.headers.get("origin"),
                                                        request.headers.get("host")):
            refusal = PlainTextResponse("cross-site form refused", 403)
        elif (config.auth_required and request.url.path not in PUBLIC_PATHS
              and not self.state.sessions.valid(request.cookies.get(SESSION_COOKIE))):
            if request.method in ("GET", "HEAD"):
                refusal = RedirectResponse("/login", 303)
            else:
                refusal = PlainTextResponse("sign in first: this server needs its access "
                                            "token", 401)
        if refusal is not None:
            return await refusal(scope, receive, send_secured)
        await self.app(scope, receive, send_secured)


class ServeState:
    """What the routes share: settings, the store, the worker, sessions, static files."""

    def __init__(self, config, segmenter, model_name=""):
        self.config = config
        self.store = Store(config.data_dir, config.keep_days)
        self.worker = Worker(self.store, segmenter, config.max_pixels)
        self.sessions = Sessions()
        self.model_name = model_name
        self.static = _load_static()
        self.token_record = load_token_record(config.data_dir) if config.auth_required else None

    def ctx(self, request):
        """(page context, new CSRF cookie value or None)."""
        token = request.cookies.get(CSRF_COOKIE)
        new = None
        if not csrf_ok(token, token):
            token = new = new_csrf_token()
        return {"model": self.model_name, "csrf": token, "auth": self.config.auth_required,
                "limits": limits_text(self.config)}, new


def create_app(config, segmenter, model_name=""):
    """The ASGI app for ``config`` (a ``ServeConfig``) running ``segmenter`` (a
    ``Segmenter``). The lifespan prepares the data folder, purges old results and runs the
    worker thread."""
    require_web_stack()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.responses import (FileResponse, HTMLResponse, JSONResponse,
                                     RedirectResponse, Response)
    from starlette.routing import Route

    state = ServeState(config, segmenter, model_name)
    store = state.store

    def page(request, build, status=200):
        ctx, new_token = state.ctx(request)
        response = HTMLResponse(build(ctx), status)
        if new_token:
            response.set_cookie(CSRF_COOKIE, new_token, httponly=True, samesite="strict",
                                path="/", secure=config.tls)
        return response

    def not_found(request, message="No such result (it may have been deleted)."):
        return page(request, lambda ctx: pages.message_page(ctx, "Not found", message), 404)

    async def small_form(request):
        """A url-encoded form of a few fields (read with a size limit) -> dict, or None."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_SMALL_FORM:
                return None
        try:
            return {k: v[0] for k, v in parse_qs(body.decode("utf-8"), max_num_fields=8).items()}
        except ValueError:
            return None

    def recent_jobs():
        return [j for j in store.list_jobs() if j["state"] != "uploading"]

    async def home(request):
        jobs = await run_in_threadpool(recent_jobs)
        return page(request, lambda ctx: pages.upload_page(ctx, jobs))

    async def refuse_upload(request, exc):
        jobs = await run_in_threadpool(recent_jobs)
        return page(request, lambda ctx: pages.upload_page(ctx, jobs, error=exc.message),
                    exc.status)

    async def upload(request):
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > config.max_upload_bytes:
            return await refuse_upload(request, UploadRefused(
                413, f"upload too large: {int(length) / 2**20:.0f} MB; the limit is "
                     f"{config.max_upload_bytes / 2**20:.0f} MB (send fewer files at once)"))
        cookie = request.cookies.get(CSRF_COOKIE)

        def before_files(fields):
            if not csrf_ok(cookie, fields.get(CSRF_FIELD)):
                raise UploadRefused(403, "the form has expired or did not come from this "
                                         "page; reload the page and try again")

        def cannot_store(exc):    # disk full, permissions
            return UploadRefused(507, f"the server cannot store the upload "
                                      f"({exc.strerror or exc})")

        try:
            job = await run_in_threadpool(store.create_job)
        except OSError as exc:
            return await refuse_upload(request, cannot_store(exc))
        try:
            _fields, received = await receive_upload(
                request.stream(), request.headers.get("content-type"),
                store.uploads_dir(job["id"]), config.max_upload_bytes, config.max_files,
                before_files)
            if not received:
                raise UploadRefused(400, "no file was chosen: drop a scan on the page or "
                                         "choose one")
            scans = await run_in_threadpool(prepare_scans, received, store.uploads_dir(job["id"]),
                                            config.max_files, config.max_unpacked_bytes)
            job.update(state="queued", total=len(scans), done=0,
                       scans=[dict(s, state="pending", error=None) for s in scans])
            await run_in_threadpool(store.write_job, job)
        except (OSError, UploadRefused) as exc:
            try:
                await run_in_threadpool(store.delete_job, job["id"])
            except (OSError, JobNotFound):
                pass              # an abandoned upload is purged after a day
            refusal = exc if isinstance(exc, UploadRefused) else cannot_store(exc)
            return await refuse_upload(request, refusal)
        state.worker.submit(job["id"])
        await run_in_threadpool(store.purge)
        return RedirectResponse(f"/jobs/{job['id']}", 303)

    def load_findings(job_id, job):
        found = {}
        for index, scan in enumerate(job["scans"]):
            if scan.get("state") != "ok":
                continue
            try:
                path, _media = store.result_file(job_id, index, "findings.json")
                found[index] = json.loads(path.read_text(encoding="utf-8"))
            except (JobNotFound, OSError, ValueError):
                continue
        return found

    def load_slice_findings(job_id, job):
        found = {}
        for k, record in enumerate(job.get("series") or []):
            if record.get("state") != "ok":
                continue
            for number in record.get("shown") or []:
                try:
                    path, _media = store.slice_file(job_id, k, number, "findings.json")
                    found[(k, number)] = json.loads(path.read_text(encoding="utf-8"))
                except (JobNotFound, OSError, ValueError):
                    continue
        return found

    async def job_view(request):
        try:
            job_id = check_job_id(request.path_params["job_id"])
            job = await run_in_threadpool(store.read_job, job_id)
        except JobNotFound:
            return not_found(request)
        finished = job["state"] in POLL_RESULT_STATES
        findings = await run_in_threadpool(load_findings, job_id, job) if finished else {}
        slices = await run_in_threadpool(load_slice_findings, job_id, job) if finished else {}
        return page(request, lambda ctx: pages.job_page(ctx, job_id, job, findings, slices))

    async def job_status(request):
        try:
            job = await run_in_threadpool(store.read_job,
                                          check_job_id(request.path_params["job_id"]))
        except JobNotFound:
            return JSONResponse({"error": "no such job"}, 404)
        return JSONResponse({"state": job["state"], "done": job["done"],
                             "total": job["total"]})

    async def job_file(request):
        try:
            path, media = await run_in_threadpool(
                store.result_file, check_job_id(request.path_params["job_id"]),
                request.path_params["index"], request.path_params["kind"])
        except JobNotFound:
            return Response("no such file", 404, media_type="text/plain")
        return FileResponse(path, media_type=media)

    async def series_file(request):
        params = request.path_params
        try:
            job_id = check_job_id(params["job_id"])
            if "number" in params:
                path, media = await run_in_threadpool(store.slice_file, job_id, params["index"],
                                                      params["number"], params["kind"])
            else:
                path, media = await run_in_threadpool(store.series_file, job_id,
                                                      params["index"], params["kind"])
        except JobNotFound:
            return Response("no such file", 404, media_type="text/plain")
        return FileResponse(path, media_type=media)

    async def job_delete(request):
        form = await small_form(request)
        if form is None or not csrf_ok(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
            return page(request, lambda ctx: pages.message_page(
                ctx, "Not deleted", "the form has expired or did not come from this page; "
                                    "reload the page and try again"), 403)
        try:
            job_id = check_job_id(request.path_params["job_id"])
            job = await run_in_threadpool(store.read_job, job_id)
            if job["state"] not in POLL_RESULT_STATES:
                return page(request, lambda ctx: pages.message_page(
                    ctx, "Not deleted", "this job is still running; delete it when it is "
                                        "done"), 409)
            await run_in_threadpool(store.delete_job, job_id)
        except JobNotFound:
            return not_found(request)
        return RedirectResponse("/results", 303)

    async def results(request):
        await run_in_threadpool(store.purge)
        jobs = await run_in_threadpool(recent_jobs)
        return page(request, lambda ctx: pages.results_page(ctx, jobs, config.keep_days))

    async def login(request):
        if not config.auth_required:
            return RedirectResponse("/", 303)
        if request.method == "GET":
            return page(request, lambda ctx: pages.login_page(ctx["csrf"]))
        form = await small_form(request)
        if form is None or not csrf_ok(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
            return page(request, lambda ctx: pages.login_page(
                ctx["csrf"], "the form has expired; try again"), 403)
        ok = await run_in_threadpool(verify_token, state.token_record, form.get("token"))
        if not ok:
            await asyncio.sleep(LOGIN_FAILURE_DELAY_S)
            return page(request, lambda ctx: pages.login_page(
                ctx["csrf"], "wrong access token"), 401)
        response = RedirectResponse("/", 303)
        response.set_cookie(SESSION_COOKIE, state.sessions.create(), httponly=True,
                            samesite="strict", path="/", max_age=state.sessions.seconds,
                            secure=config.tls)
        return response

    async def logout(request):
        form = await small_form(request)
        if form is None or not csrf_ok(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
            return Response("the form has expired; reload the page", 403,
                            media_type="text/plain")
        state.sessions.drop(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login" if config.auth_required else "/", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def static(request):
        name = request.path_params["name"]
        if name not in state.static:
            return Response("no such file", 404, media_type="text/plain")
        data, media = state.static[name]
        return Response(data, media_type=media, headers={"cache-control": "max-age=3600"})

    @asynccontextmanager
    async def lifespan(_app):
        await run_in_threadpool(store.prepare)
        await run_in_threadpool(store.purge)
        state.worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(state.worker.stop)

    routes = [
        Route("/", home),
        Route("/upload", upload, methods=["POST"]),
        Route("/jobs/{job_id}", job_view),
        Route("/jobs/{job_id}/status", job_status),
        Route("/jobs/{job_id}/scans/{index:int}/{kind}", job_file),
        Route("/jobs/{job_id}/series/{index:int}/{kind}", series_file),
        Route("/jobs/{job_id}/series/{index:int}/slices/{number:int}/{kind}", series_file),
        Route("/jobs/{job_id}/delete", job_delete, methods=["POST"]),
        Route("/results", results),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/static/{name}", static),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(Guard, state=state)],
                    lifespan=lifespan)
    app.state.serve = state
    return app


def bind_socket(host, port):
    """A listening-ready TCP socket on ``host``:``port`` (port 0: a free one); ``OSError``
    when the address cannot be used (in use, not this machine's, ...)."""
    import socket
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_config(app, host, port):
    """uvicorn's settings for ``app`` (from ``create_app``): quiet, no Server header, HTTPS
    when the app's ``ServeConfig`` has a certificate."""
    import uvicorn
    config = app.state.serve.config
    tls = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)} \
        if config.tls else {}
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          server_header=False, proxy_headers=False, timeout_keep_alive=5,
                          limit_concurrency=64, lifespan="on", **tls)


def run_server(app, sock):
    """Serve ``app`` on the bound ``sock`` until interrupted (Ctrl-C)."""
    import uvicorn
    host, port = sock.getsockname()[:2]
    uvicorn.Server(uvicorn_config(app, host, port)).run(sockets=[sock])


class ServerThread:
    """A real uvicorn server for ``app`` in a thread on 127.0.0.1 and a free port (tests,
    benchmarks): ``with ServerThread(app) as url: ...``."""

    def __init__(self, app, host="127.0.0.1"):
        import uvicorn
        self.sock = bind_socket(host, 0)
        self.port = self.sock.getsockname()[1]
        scheme = "https" if app.state.serve.config.tls else "http"
        self.url = f"{scheme}://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn_config(app, host, self.port))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="edge-seg-serve", daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
