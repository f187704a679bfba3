"""The HTTP side of ``deepfake-detector serve`` (FastAPI on uvicorn): the page, and the API over
``serve.Service``.

* ``GET /``: the page (``web/``: plain HTML, CSS and JS, nothing from another site).
* ``POST /api/predict``: multipart ``file`` (+ ``detect``, ``explain``) → predict's JSON.
* ``GET /api/health``: model, input size, threshold. ``GET /api/model``: the model's facts and limits.
* ``GET /openapi.json``: the API's schema. FastAPI's /docs page is off: it loads Swagger UI from a CDN.

The page's files are read once at start and served from memory under fixed routes: no URL ever
names a file on disk. A request's body is counted as it arrives and refused past the cap, and cut
(408) when it stalls or takes too long. An upload from another site's page (an Origin that is not
this server's) is refused: the page itself is same-origin.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.middleware.trustedhost import TrustedHostMiddleware

from deepfake_detector.core.errors import UserError
from deepfake_detector.apps.serve import Limits, Rejected, Service, display_name, stored_name

WEB = Path(__file__).with_name("web")  # the page, shipped as package data
PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
         "/style.css": ("style.css", "text/css")}
# Real (green) | Fake (red); inline, so the package data stays the page's three files
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="15" '
           b'fill="#2e7d32"/><path d="M16 1a15 15 0 0 1 0 30z" fill="#c62828"/><circle cx="16" cy="16" r="6" '
           b'fill="#fff"/></svg>')
LOOPBACK = ("127.0.0.1", "localhost", "::1")
FORM_OVERHEAD = 64 * 2**10  # multipart boundaries, headers and the small fields around the file
CHUNK = 2**20
FLAGS = {"1": True, "true": True, "on": True, "yes": True,
         "0": False, "false": False, "off": False, "no": False}
# The page needs nothing from elsewhere, so the browser is told to load nothing from elsewhere.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                                 b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                 b"form-action 'self'"),
    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "an image or a video"},
        "detect": {"type": "boolean", "default": True,
                   "description": "find faces (false: the file is already a face crop, like --no-detect)"},
        "explain": {"type": "boolean", "default": False,
                    "description": "add a Grad-CAM overlay (PNG data URL) for each face row"}}}}}}}
log = logging.getLogger("serve")


class TooLarge(Exception):
    pass


class TimedOut(Exception):
    pass


class SecurityHeaders:
    """ASGI middleware adding ``SECURITY_HEADERS`` to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def _bounded(receive, limit: int, idle: float, total: float):
    """``receive`` that raises ``TooLarge`` once the body passes ``limit`` bytes (chunked uploads too),
    and ``TimedOut`` when no data comes for ``idle`` seconds or the body is not in after ``total``."""
    seen, deadline = 0, time.monotonic() + total

    async def wrapped():
        nonlocal seen
        left = deadline - time.monotonic()
        try:
            message = await asyncio.wait_for(receive(), max(0.0, min(idle, left)))
        except TimeoutError:
            raise TimedOut(f"the upload sent nothing for {idle:g} s; send it again" if left > idle else
                           f"the upload took longer than {total:g} s; send a smaller file or use a faster "
                           "link") from None
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise TooLarge
        return message

    return wrapped


def _flag(form, key: str, default: str) -> bool:
    value = form.get(key, default)
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in FLAGS:
        shown = repr(value[:40]) if isinstance(value, str) else "a file"
        raise Rejected(422, f"{key}: must be true or false (also 1/0, yes/no, on/off), got {shown}")
    return FLAGS[text]


def _foreign(request: Request) -> str | None:
    """The request's Origin when a browser sent it from another site's page (netloc != Host)."""
    origin = request.headers.get("origin")
    if origin is None or urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower():
        return None
    return origin


def build(service: Service, allowed_hosts: list[str] | None = None) -> FastAPI:
    app = FastAPI(title="deepfake-detector", summary="P(fake) of the faces in an image or a video",
                  docs_url=None, redoc_url=None)
    app.add_middleware(SecurityHeaders)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    limits: Limits = service.limits
    too_big = (f"the upload is larger than the limit of {limits.upload_bytes / 2**20:g} MiB; "
               "send a smaller file")

    for route, (name, media_type) in PAGES.items():
        content = (WEB / name).read_bytes()
        app.add_api_route(route, lambda content=content, media_type=media_type:
                          Response(content, media_type=media_type),
                          methods=["GET"], include_in_schema=False)
    app.add_api_route("/favicon.ico", lambda: Response(FAVICON, media_type="image/svg+xml"), methods=["GET"],
                      include_in_schema=False)

    @app.get("/api/health")
    def health() -> dict:
        """Model name, input size and decision threshold."""
        return {"status": "ok", "model": service.facts["model"], "image_size": service.scorer.image_size,
                "threshold": service.threshold}

    @app.get("/api/model")
    def model() -> dict:
        """The model's facts (kind, file, when written, threshold, Validation and test AUC) and the limits."""
        return {**service.facts, "limits": {"upload_bytes": limits.upload_bytes, "pixels": limits.pixels,
                                            "video_seconds": limits.video_seconds, "queue": limits.queue,
                                            "read_seconds": limits.read_seconds,
                                            "upload_seconds": limits.upload_seconds}}

    @app.post("/api/predict", openapi_extra=UPLOAD_SCHEMA)
    async def predict_upload(request: Request):
        """The rows ``predict --format json`` gives for the uploaded file (4xx with a one-line reason
        for a bad or oversized file; 503 when the queue is full)."""
        if origin := _foreign(request):  # another site's page must not use this server's CPU or model
            return JSONResponse({"detail": f"cross-origin upload refused: Origin {origin[:100]!r} "
                                           "is not this server; use its own page, "
                                           "or a client that sends no Origin"}, 403)
        if not service.admit():
            return JSONResponse({"detail": f"busy: {limits.queue} requests are queued; retry shortly"},
                                503, headers={"Retry-After": "1"})
        form, folder = None, None
        try:
            if int(request.headers.get("content-length") or 0) > limits.upload_bytes + FORM_OVERHEAD:
                raise Rejected(413, too_big)
            body = Request(request.scope, _bounded(request.receive, limits.upload_bytes + FORM_OVERHEAD,
                                                   limits.read_seconds, limits.upload_seconds))
            try:
                form = await body.form(max_files=1, max_fields=4)
            except TooLarge:
                raise Rejected(413, too_big) from None
            except TimedOut as exc:
                raise Rejected(408, str(exc)) from None
            except HTTPException as exc:
                raise Rejected(400, f"the request is not a readable multipart form ({exc.detail})") from None
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise Rejected(400, "no file: send it as multipart/form-data in a field named 'file'")
            name = display_name(upload.filename)
            detect, explain = _flag(form, "detect", "true"), _flag(form, "explain", "false")
            folder = Path(tempfile.mkdtemp(dir=service.scratch))
            head = await upload.read(16)
            path = folder / stored_name(head)
            with path.open("wb") as out:
                out.write(head)
                while chunk := await upload.read(CHUNK):
                    out.write(chunk)
            result = await asyncio.wrap_future(service.submit(path, name, detect, explain))
            return JSONResponse(result)
        except Rejected as exc:  # a body cut short leaves the connection mid-request: close it
            unread = exc.status in (408, 413)
            return JSONResponse({"detail": exc.detail}, exc.status,
                                headers={"Connection": "close"} if unread else None)
        except ClientDisconnect:  # a closed tab or a lost link: routine, so one line, no traceback
            log.info("serve: a client hung up during its upload")
            return Response(status_code=400)  # nobody reads it
        except UserError as exc:  # a request this model can't serve (e.g. explain=true, no gradient passes)
            return JSONResponse({"detail": str(exc)}, 422)
        except Exception as exc:
            log.exception("serve: /api/predict failed")
            return JSONResponse(
                {"detail": f"internal error ({type(exc).__name__}); see the server's log"}, 500)
        finally:
            if form is not None:
                await form.close()
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            service.release()

    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port``, so that a port in use is one line before anything starts."""
    if not 0 < port < 2**16:
        raise UserError(f"--port {port}: must be 1 to 65535")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a port in TIME_WAIT is free
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"cannot listen on {host}: port {port} is in use; pass --port") from None
        raise UserError(f"cannot listen on {host} port {port} ({exc.strerror or exc}); "
                        "pass another --host") from None
    return sock


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def run(service: Service, host: str, sock: socket.socket) -> None:
    """Serve on ``sock`` until Ctrl-C or SIGTERM; then the worker stops and the scratch folder goes."""
    import uvicorn

    # DNS rebinding: loopback answers its own names only
    allowed = list(LOOPBACK) if host in LOOPBACK else None
    config = uvicorn.Config(build(service, allowed), host=host, port=sock.getsockname()[1],
                            log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    # uvicorn shuts down gracefully on SIGTERM (systemd, docker), then restores the handler it found
    # and raises the signal again: the default one would kill us before `finally` deletes the scratch.
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM is how serve stops; uvicorn re-raises it after its graceful shutdown
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
        service.close()
