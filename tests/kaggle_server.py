"""A loopback Kaggle API server, so tests drive the *real* ``kaggle`` client without the network.

How the client gets here (kaggle 2.2.5 / kagglesdk): ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` makes
``KaggleApi`` build its SDK client with ``KaggleEnv.LOCAL``, which sends every call as
``POST http://localhost/api/v1/<service>/<method>`` with a JSON body. ``HTTP_PROXY`` pointing at
this server (and ``NO_PROXY`` cleared) makes ``requests`` send those requests here as a proxy, with
the absolute URL in the request line, so no privileged port is needed. ``HTTPS_PROXY`` points here
too: anything that tries https gets a refused ``CONNECT`` instead of reaching the internet.

What it speaks (all JSON bodies camelCase, errors as ``{"code": N, "message": ...}`` with that
HTTP status, as Kaggle does):

* ``security.OAuthService/IntrospectToken`` ``{"token"}`` -> ``{"active", "username"}``
  (``KaggleApi.authenticate()`` validates access tokens with it);
* ``datasets.DatasetApiService/GetDataset`` ``{"ownerSlug", "datasetSlug"}`` -> an ``ApiDataset``
  with ``currentVersionNumber`` (what ``KaggleApi.dataset_status(..., format="json(...)")`` reads);
* ``datasets.DatasetApiService/GetDatasetMetadata`` -> ``{"info": {...}}``;
* ``datasets.DatasetApiService/DownloadDataset`` ``{"ownerSlug", "datasetSlug",
  "datasetVersionNumber"?}`` -> ``302`` to ``http://kaggle-blobs.test/blobs/...zip`` (a different
  host, like Kaggle's storage redirect, so ``requests`` drops the ``Authorization`` header);
* ``GET http://kaggle-blobs.test/blobs/...`` -> the zip with ``Content-Length``, ``ETag``,
  ``Last-Modified``, ``Accept-Ranges: bytes`` and ``Content-Disposition``; honours
  ``Range: bytes=N-`` / ``If-Range`` with ``206`` (the client resumes a dropped transfer that way).

Auth: username/key arrive as HTTP Basic, tokens as ``Bearer``; anything else gets 401.

Failure modes (``server.fail``): ``"401"`` (every API call), ``"403"`` (dataset calls: terms not
accepted), ``"404"`` (the dataset is unknown), ``"500"``, ``"drop"`` (the archive's headers carry
the full ``Content-Length``, then part of the bytes, then the socket is closed; ``server.drops``
limits how many transfers are cut, ``None`` = all), ``"corrupt"`` (bytes flipped inside a member,
so its CRC fails). ``server.payload`` can be replaced with any bytes (e.g. not a zip at all).

Use in-process: the ``kaggle_server`` fixture (import it into a test module) starts a server,
applies its environment with ``monkeypatch`` (HOME and KAGGLE_CONFIG_DIR in a temp folder, dummy
credentials) and yields it. For a subprocess: ``subprocess.run(..., env=server.child_env())``.
Standalone: ``python tests/kaggle_server.py [--fail drop] [--creds key]`` prints the environment
as one JSON line (``{"set": {...}, "unset": [...]}``) and serves until interrupted.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import socket
import threading
import zipfile
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

API_HOST = "localhost"
BLOB_HOST = "kaggle-blobs.test"
DATASET = "test-owner/deepfake-and-real-images"
USERNAME = "test-user"
# Distinctive, so tests can assert they never show up in messages or output.
KEY = "k3y-5ecret-0123456789abcdef0123456789ab"
TOKEN = "KGAT_t0ken-5ecret-fedcba9876543210fedcba98"
LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)

# Variables that could point the client elsewhere or at the developer's real credentials.
CLEARED = (
    "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "KAGGLE_PROXY",
    "KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_DATA_PROXY_URL", "KAGGLE_API_V1_TOKEN", "KAGGLE_IAP_TOKEN",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "VERBOSE", "VERBOSE_OUTPUT",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
)
CREDENTIAL_KINDS = ("key", "json", "token", "token_file", "none")


# --------------------------------------------------------------------------- the test dataset


def tiny_jpeg(seed: int, size: int = 24) -> bytes:
    """A small valid JPEG (noise plus a tint, so files differ)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    image[..., seed % 3] //= 2
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def make_dataset_zip(per_class: int = 2, root: str = "Dataset") -> bytes:
    """A small zip in the real layout: ``Dataset/{Train,Validation,Test}/{Real,Fake}/*.jpg``.

    Deterministic (fixed timestamps), so its sha256 is stable.
    """
    buffer = io.BytesIO()
    seed = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for split in ("Train", "Validation", "Test"):
            for label in ("Real", "Fake"):
                for i in range(per_class):
                    info = zipfile.ZipInfo(f"{root}/{split}/{label}/{label.lower()}_{i}.jpg",
                                           date_time=(2024, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, tiny_jpeg(seed))
                    seed += 1
    return buffer.getvalue()


def corrupt_zip(payload: bytes) -> bytes:
    """The same zip with bytes flipped in the middle of its first member's data (CRC fails)."""
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        first = archive.infolist()[0]
    data = bytearray(payload)
    name_len = int.from_bytes(data[first.header_offset + 26:first.header_offset + 28], "little")
    extra_len = int.from_bytes(data[first.header_offset + 28:first.header_offset + 30], "little")
    start = first.header_offset + 30 + name_len + extra_len
    middle = start + first.compress_size // 2
    for i in range(middle, middle + 8):
        data[i] ^= 0xA5
    return bytes(data)


# --------------------------------------------------------------------------- the server


@dataclasses.dataclass
class Seen:
    """One request the server received."""

    method: str
    host: str
    path: str  # without the query
    auth: str | None  # "basic" | "bearer" | None
    user: str | None  # the Basic-auth username (never the key)
    auth_ok: bool  # the credentials matched the server's
    body: dict | None
    headers: dict

    @property
    def call(self) -> str:
        """``Service/Method`` for API calls, the path otherwise."""
        prefix = "/api/v1/"
        return self.path[len(prefix):] if self.path.startswith(prefix) else self.path


class KaggleTestServer:
    def __init__(self, dataset: str = DATASET, payload: bytes | None = None, version: int = 3,
                 username: str = USERNAME, key: str = KEY, token: str = TOKEN):
        self.dataset = dataset
        self.payload = make_dataset_zip() if payload is None else payload
        self.version = version
        self.username, self.key, self.token = username, key, token
        self.fail: str | None = None
        self.drops: int | None = None  # fail="drop": transfers to cut (None = every one)
        self.drop_after: int | None = None  # bytes sent before the cut (None = half)
        self.dropped = 0
        self.hide_version = False  # GetDataset leaves out currentVersionNumber
        self.requests: list[Seen] = []
        # Requests it could not answer: API calls it does not implement, CONNECT (https) attempts.
        self.unexpected: list[str] = []
        self.environ: dict[str, str | None] = {}
        self.home: Path | None = None
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> "KaggleTestServer":
        handler = type("Handler", (_Handler,), {"kaggle": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="kaggle-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "KaggleTestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- what the tests look at

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    @property
    def member_count(self) -> int:
        with zipfile.ZipFile(io.BytesIO(self.payload)) as archive:
            return len(archive.infolist())

    def calls(self) -> list[str]:
        with self._lock:
            return [seen.call for seen in self.requests]

    def seen(self, call: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.requests if s.call == call or s.path.endswith(call)]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.unexpected.clear()
        self.fail, self.drops, self.drop_after, self.dropped = None, None, None, 0
        self.hide_version = False

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def _unexpected(self, what: str) -> None:
        with self._lock:
            self.unexpected.append(what)

    # ---- environment

    def env(self, home: str | os.PathLike, creds: str = "key") -> dict[str, str | None]:
        """Variables to set (``None`` = unset) so the kaggle client talks only to this server.

        ``creds``: ``key`` (KAGGLE_USERNAME/KAGGLE_KEY), ``json`` (kaggle.json in the config
        folder), ``token`` (KAGGLE_API_TOKEN), ``token_file`` (~/.kaggle/access_token), ``none``.
        Files are written under ``home``; the developer's real ~/.kaggle is never read.
        """
        if creds not in CREDENTIAL_KINDS:
            raise ValueError(f"creds must be one of {CREDENTIAL_KINDS}, got {creds!r}")
        home = Path(home)
        kaggle_dir = home / ".kaggle"
        kaggle_dir.mkdir(parents=True, exist_ok=True)
        for name in ("kaggle.json", "access_token", "access_token.txt", "credentials.json"):
            with contextlib.suppress(FileNotFoundError):
                (kaggle_dir / name).unlink()
        env: dict[str, str | None] = {name: None for name in CLEARED}
        env.update({name: None for name in os.environ if name.startswith("KAGGLE_")})
        proxy = self.proxy_url
        env.update({
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": proxy, "http_proxy": proxy,
            "HTTPS_PROXY": proxy, "https_proxy": proxy,
            "HOME": str(home),
            "KAGGLE_CONFIG_DIR": str(kaggle_dir),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "DEEPFAKE_DETECTOR_KAGGLE_RETRIES": "0",
            # For `dvc repro` in a child process: no analytics or Studio calls.
            "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "true",
        })
        if creds == "key":
            env.update({"KAGGLE_USERNAME": self.username, "KAGGLE_KEY": self.key})
        elif creds == "token":
            env["KAGGLE_API_TOKEN"] = self.token
        elif creds == "json":
            path = kaggle_dir / "kaggle.json"
            path.write_text(json.dumps({"username": self.username, "key": self.key}), encoding="utf-8")
            path.chmod(0o600)
        elif creds == "token_file":
            path = kaggle_dir / "access_token"
            path.write_text(self.token + "\n", encoding="utf-8")
            path.chmod(0o600)
        self.home = home
        self.environ = env
        return env

    def child_env(self, base: dict | None = None) -> dict[str, str]:
        """A full environment for ``subprocess`` (``base`` or ``os.environ`` plus ``self.environ``)."""
        result = dict(os.environ if base is None else base)
        for name, value in self.environ.items():
            if value is None:
                result.pop(name, None)
            else:
                result[name] = value
        return result


def apply_env(monkeypatch, env: dict[str, str | None]) -> None:
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    kaggle: KaggleTestServer  # set on the subclass made by start()

    def log_message(self, format, *args) -> None:  # quiet
        pass

    # ---- plumbing

    def _target(self) -> tuple[str, str]:
        if self.path.startswith(("http://", "https://")):
            parts = urlsplit(self.path)
            return parts.hostname or "", parts.path
        host = (self.headers.get("Host") or "").split(":")[0]
        return host, urlsplit(self.path).path

    def _auth(self) -> tuple[str | None, str | None, bool]:
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, key = base64.b64decode(value).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return "basic", None, False
            return "basic", user, (user == self.kaggle.username and key == self.kaggle.key)
        if scheme.lower() == "bearer":
            return "bearer", None, value == self.kaggle.token
        return None, None, False

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"code": status, "message": message})

    def _handle(self) -> None:
        host, path = self._target()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        scheme, user, auth_ok = self._auth()
        keep = ("Range", "If-Range", "User-Agent", "Content-Type")
        self.kaggle._record(Seen(self.command, host, path, scheme, user, auth_ok,
                                 body if isinstance(body, dict) else None,
                                 {h: self.headers[h] for h in keep if h in self.headers}))
        if host == BLOB_HOST and self.command in ("GET", "HEAD") and path.startswith("/blobs/"):
            return self._blob(path)
        if host not in (API_HOST, "127.0.0.1") or self.command != "POST" or not path.startswith("/api/v1/"):
            self.kaggle._unexpected(f"{self.command} {host}{path}")
            return self._error(404, f"no such endpoint in the test server: {self.command} {host}{path}")
        call = path[len("/api/v1/"):]
        body = body if isinstance(body, dict) else {}
        server = self.kaggle
        if server.fail == "401":
            return self._error(401, "Unauthenticated")
        if server.fail == "500":
            return self._error(500, "Internal error")
        if call == "security.OAuthService/IntrospectToken":
            if body.get("token") == server.token:
                return self._json(200, {"active": True, "username": server.username,
                                        "scope": "resources.admin:*"})
            return self._json(200, {})  # inactive: every field at its default
        if not call.startswith("datasets.DatasetApiService/"):
            self.kaggle._unexpected(call)
            return self._error(404, f"the test server does not implement {call}")
        if not auth_ok:
            return self._error(401, "Unauthenticated")
        if server.fail == "403":
            return self._error(403, "Permission 'datasets.get' was denied")
        ref = f"{body.get('ownerSlug', '')}/{body.get('datasetSlug', '')}"
        if server.fail == "404" or ref != server.dataset:
            return self._error(404, "Not found")
        method = call.split("/", 1)[1]
        owner, slug = server.dataset.split("/")
        if method == "GetDataset":
            info = {
                "id": 4242, "ref": server.dataset, "title": "Deepfake and real images (test)",
                "ownerRef": owner, "url": f"https://www.kaggle.com/datasets/{server.dataset}",
                "totalBytes": len(server.payload), "currentVersionNumber": server.version,
                "licenseName": "Unknown", "lastUpdated": "2024-01-01T00:00:00Z",
            }
            if server.hide_version:
                del info["currentVersionNumber"]
            return self._json(200, info)
        if method == "GetDatasetMetadata":
            return self._json(200, {"info": {"datasetId": 4242, "datasetSlug": slug, "ownerUser": owner,
                                             "title": "Deepfake and real images (test)"}})
        if method == "DownloadDataset":
            number = body.get("datasetVersionNumber")
            number = server.version if number is None else int(number)
            if not 1 <= number <= server.version:
                return self._error(404, "Not found")
            location = f"http://{BLOB_HOST}/blobs/{owner}/{slug}/{number}/{slug}.zip?sig=test"
            return self._send(302, b"", {"Location": location})
        self.kaggle._unexpected(call)
        return self._error(404, f"the test server does not implement {call}")

    def _blob(self, path: str) -> None:
        server = self.kaggle
        payload = corrupt_zip(server.payload) if server.fail == "corrupt" else server.payload
        total = len(payload)
        etag = '"' + hashlib.sha256(payload).hexdigest()[:32] + '"'
        start = 0
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes=") and wanted.endswith("-"):
            if_range = self.headers.get("If-Range")
            if if_range in (None, etag, LAST_MODIFIED):
                with contextlib.suppress(ValueError):
                    start = int(wanted[len("bytes="):-1])
            if start >= total and total:
                return self._send(416, b"", {"Content-Range": f"bytes */{total}"})
        headers = {
            "Content-Type": "application/zip",
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": LAST_MODIFIED,
            "Content-Disposition": f'attachment; filename="{path.rsplit("/", 1)[-1]}"',
        }
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
        body = payload[start:]
        with server._lock:
            drop = server.fail == "drop" and (server.drops is None or server.dropped < server.drops)
            if drop:
                server.dropped += 1
        if not drop:
            return self._send(status, body, headers)
        # Full headers, part of the body, then the connection goes away.
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = server.drop_after if server.drop_after is not None else len(body) // 2
        self.wfile.write(body[:max(0, min(cut, len(body) - 1))])
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_CONNECT(self) -> None:
        self.kaggle._record(Seen("CONNECT", self.path, "", None, None, False, None, {}))
        self.kaggle._unexpected(f"CONNECT {self.path}")
        self._error(403, "the test server refuses to tunnel (no internet in tests)")


# --------------------------------------------------------------------------- pytest helpers

try:
    import pytest
except ImportError:  # the standalone server needs no pytest
    pytest = None

if pytest is not None:

    @pytest.fixture
    def kaggle_server(tmp_path, monkeypatch):
        """A running ``KaggleTestServer`` with its environment applied (dummy key credentials).

        Switch credentials with ``apply_env(monkeypatch, kaggle_server.env(kaggle_server.home,
        "token"))``; pass ``kaggle_server.child_env()`` to a subprocess.
        """
        with KaggleTestServer() as server:
            apply_env(monkeypatch, server.env(tmp_path / "home", "key"))
            yield server
            api_misses = [u for u in server.unexpected if not u.startswith("CONNECT")]
            assert not api_misses, f"the kaggle client called endpoints the test server lacks: {api_misses}"


def main(argv=None) -> int:
    import argparse
    import tempfile
    import time

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=DATASET)
    parser.add_argument("--version", type=int, default=3)
    parser.add_argument("--fail", choices=("401", "403", "404", "500", "drop", "corrupt"))
    parser.add_argument("--creds", choices=CREDENTIAL_KINDS, default="key")
    parser.add_argument("--home", help="fake HOME (default: a new temp folder)")
    args = parser.parse_args(argv)
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="kaggle-test-home."))
    with KaggleTestServer(dataset=args.dataset, version=args.version) as server:
        server.fail = args.fail
        env = server.env(home, args.creds)
        print(json.dumps({"set": {k: v for k, v in env.items() if v is not None},
                          "unset": sorted(k for k, v in env.items() if v is None)}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
