"""The HTTP side of ``deepfake-detector serve`` (FastAPI on uvicorn): the page, and the API over
``serve.Service``.

* ``GET /``: the page (``web/``: plain HTML, CSS and JS, nothing from another site).
* ``POST /api/predict``: multipart ``file`` (+ ``detect``, ``explain``) → predict's JSON.
* ``GET /api/health``: model, input size, threshold. ``GET /api/model``: the model's facts and limits.
* ``GET /openapi.json``: the API's schema. FastAPI's /docs page is off: it loads Swagger UI from a CDN.

The page's three files are read once at start and served from memory under fixed routes: no URL
ever names a file on disk. A request's body is counted as it arrives and refused past the cap.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .errors import UserError
from .serve import Limits, Rejected, Service, display_name, stored_name

WEB = Path(__file__).with_name("web")  # the page, shipped as package data
PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
         "/style.css": ("style.css", "text/css")}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
FORM_OVERHEAD = 64 * 2**10  # multipart boundaries, headers and the small fields around the file
CHUNK = 2**20
TRUE = ("1", "true", "on", "yes")
# The page needs nothing from elsewhere, so the browser is told to load nothing from elsewhere.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                                 b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
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


def _capped(receive, limit: int):
    """``receive`` that raises ``TooLarge`` once the body passes ``limit`` bytes (chunked uploads too)."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise TooLarge
        return message

    return wrapped


def build(service: Service, allowed_hosts: list[str] | None = None) -> FastAPI:
    app = FastAPI(title="deepfake-detector", summary="P(fake) of the faces in an image or a video",
                  docs_url=None, redoc_url=None)
    app.add_middleware(SecurityHeaders)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    limits: Limits = service.limits
    too_big = f"the upload is larger than the limit of {limits.upload_bytes / 2**20:g} MiB; send a smaller file"

    for route, (name, media_type) in PAGES.items():
        content = (WEB / name).read_bytes()
        app.add_api_route(route, lambda content=content, media_type=media_type: Response(content, media_type=media_type),
                          methods=["GET"], include_in_schema=False)

    @app.get("/api/health")
    def health() -> dict:
        """Model name, input size and decision threshold."""
        return {"status": "ok", "model": service.facts["model"], "image_size": service.scorer.image_size,
                "threshold": service.threshold}

    @app.get("/api/model")
    def model() -> dict:
        """The model's facts (kind, file, when written, threshold, Validation and test AUC) and the limits."""
        return {**service.facts, "limits": {"upload_bytes": limits.upload_bytes, "pixels": limits.pixels,
                                            "video_seconds": limits.video_seconds, "queue": limits.queue}}

    @app.post("/api/predict", openapi_extra=UPLOAD_SCHEMA)
    async def predict_upload(request: Request):
        """The rows ``predict --format json`` gives for the uploaded file (4xx with a one-line reason
        for a bad or oversized file; 503 when the queue is full)."""
        if not service.admit():
            return JSONResponse({"detail": f"busy: {limits.queue} requests are queued; retry shortly"},
                                503, headers={"Retry-After": "1"})
        form, folder = None, None
        try:
            if int(request.headers.get("content-length") or 0) > limits.upload_bytes + FORM_OVERHEAD:
                raise Rejected(413, too_big)
            body = Request(request.scope, _capped(request.receive, limits.upload_bytes + FORM_OVERHEAD))
            try:
                form = await body.form(max_files=1, max_fields=4)
            except TooLarge:
                raise Rejected(413, too_big) from None
            except HTTPException as exc:
                raise Rejected(400, f"the request is not a readable multipart form ({exc.detail})") from None
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise Rejected(400, "no file: send it as multipart/form-data in a field named 'file'")
            name = display_name(upload.filename)
            folder = Path(tempfile.mkdtemp(dir=service.scratch))
            head = await upload.read(16)
            path = folder / stored_name(head)
            with path.open("wb") as out:
                out.write(head)
                while chunk := await upload.read(CHUNK):
                    out.write(chunk)
            flags = {key: str(form.get(key, default)).lower() in TRUE
                     for key, default in (("detect", "true"), ("explain", "false"))}
            result = await asyncio.wrap_future(service.submit(path, name, flags["detect"], flags["explain"]))
            return JSONResponse(result)
        except Rejected as exc:
            return JSONResponse({"detail": exc.detail}, exc.status)
        except UserError as exc:  # a request this model can't serve (e.g. explain=true where no gradient passes)
            return JSONResponse({"detail": str(exc)}, 422)
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down; it is logged
            log.exception("serve: /api/predict failed")
            return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server's log"}, 500)
        finally:
            if form is not None:
                await form.close()
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            service.release()

    return app


def run(service: Service, host: str, port: int) -> None:
    """Serve until Ctrl-C; then the worker stops and the scratch folder goes."""
    import uvicorn

    allowed = list(LOOPBACK) if host in LOOPBACK else None  # DNS rebinding: loopback answers its own names only
    config = uvicorn.Config(build(service, allowed), host=host, port=port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how serve stops; uvicorn re-raises it after its graceful shutdown
    finally:
        service.close()
