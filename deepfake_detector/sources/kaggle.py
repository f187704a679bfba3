"""``data.source: kaggle``: the dataset archive, downloaded with the official ``kaggle`` client.

The download goes through the ``kaggle`` package's Python API (``KaggleApi``: ``authenticate()``,
``dataset_status()`` for the current version number, the SDK's ``DownloadDataset`` call and
``KaggleApi.download_file`` for the streamed transfer with its resume-on-retry logic). Nothing
here scrapes a URL or runs the CLI in a subprocess.

Guarantees:

* credentials are looked up the way kaggle 2.2.5 / kagglesdk do, *before* any work, and a missing
  set stops with one line that says where to put them (``check_credentials``);
* the archive is written to a temp folder next to the destination, verified (every CRC, the
  archive-bomb caps, non-empty, the size the server announced) and only then renamed into place:
  a failed or interrupted download leaves no file at the destination, and no temp files;
* no key or token is ever put into a message, printed or written anywhere (the client's own
  chatter is relayed to stderr with any secret masked, and its verbose mode, which dumps request
  headers, is switched off);
* every failure is a one-line ``UserError``/``DataError`` naming what happened and the fix.

``DEEPFAKE_DETECTOR_KAGGLE_RETRIES`` (default 3) is how many times a dropped transfer is resumed
before giving up; the test server's environment sets it to 0 so failure tests stay fast.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import DataError, ParamError, UserError
from ..files import sha256_file
from . import archive
from .kaggle_credentials import TOKEN_PAGE, Credentials, config_dir, find_credentials
from .kaggle_credentials import check_credentials  # noqa: F401  (part of this module's API)

RETRIES_ENV = "DEEPFAKE_DETECTOR_KAGGLE_RETRIES"
DEFAULT_RETRIES = 3
TEMP_SUFFIX = ".download"
RERUN = "re-run `dvc repro` to retry"

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Lines of the kaggle client's own output that would mislead here (we delete partial files).
# (Its own "Downloading <temp file>" line and the copy of the error that we report anyway, too.)
_DROPPED_LINES = ("Partial file saved at", "You can resume by running", "Download failed after",
                  "Error: ", "Downloading ")


# --------------------------------------------------------------------------- output hygiene


class _Relay(io.TextIOBase):
    """A stdout stand-in: the kaggle client's prints go to stderr, line by line, secrets masked."""

    def __init__(self, target, secrets):
        self._target = target
        self._secrets = [s for s in secrets if s]
        self._pending = ""
        self._muted = False

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        self._pending += str(text)
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            self._emit(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = ""
        with contextlib.suppress(Exception):
            self._target.flush()

    def _emit(self, line: str) -> None:
        if line.startswith("Authentication required"):
            self._muted = True  # kaggle's multi-line login help; our own error replaces it
        if self._muted:
            if "Save the token to" in line:  # the help's last line
                self._muted = False
            return
        if line.startswith(_DROPPED_LINES):
            return
        self._target.write(_mask(line, self._secrets))


def _mask(text: str, secrets) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


@contextlib.contextmanager
def _client_output(secrets):
    relay = _Relay(sys.stderr, secrets)
    try:
        with contextlib.redirect_stdout(relay):
            yield relay
    finally:
        relay.flush()


# --------------------------------------------------------------------------- the download


def _split_dataset(dataset: str) -> tuple[str, str]:
    parts = dataset.strip().split("/") if isinstance(dataset, str) else []
    if len(parts) != 2 or not all(_SLUG.match(p) for p in parts):
        raise ParamError(f"params.yaml: data.kaggle.dataset must be 'owner/dataset-slug' as in the "
                         f"dataset's URL on kaggle.com, got {dataset!r}")
    return parts[0], parts[1]


def _retries(retries: int | None) -> int:
    if retries is not None:
        return max(0, int(retries))
    raw = os.environ.get(RETRIES_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_RETRIES
    try:
        return max(0, int(raw))
    except ValueError:
        raise UserError(f"{RETRIES_ENV} must be a whole number, got {raw!r}; unset it to use "
                        f"{DEFAULT_RETRIES}") from None


def _remove_stale_downloads(dest_zip: Path) -> None:
    """Temp folders a killed run left next to ``dest_zip``."""
    pattern = os.path.join(glob.escape(str(dest_zip.parent)), f".{glob.escape(dest_zip.name)}.*{TEMP_SUFFIX}")
    for leftover in glob.glob(pattern):
        shutil.rmtree(leftover, ignore_errors=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _describe(exc: BaseException) -> str:
    """The useful part of a requests/urllib3 error, which nest (MaxRetryError -> reason)."""
    head = exc.args[0] if getattr(exc, "args", None) else None
    reason = getattr(head, "reason", None)
    if isinstance(reason, BaseException):
        text = ": ".join(str(a) for a in reason.args) or str(reason)
        return f"{type(reason).__name__}: {text}"
    if isinstance(head, BaseException) and head.args and isinstance(head.args[0], str):
        head = head.args[0]  # ChunkedEncodingError(ProtocolError("Connection broken: ...", ...))
    if isinstance(head, str):
        return f"{type(exc).__name__}: {head}"
    return f"{type(exc).__name__}: {exc}"


class _Failure:
    """Turns whatever the kaggle client raised into one ``UserError``/``DataError`` line."""

    def __init__(self, dataset: str, version: int | None, creds: Credentials):
        self.dataset = dataset
        self.version = version
        self.creds = creds
        self.where = creds.where

    def _detail(self, exc: BaseException) -> str:
        return _mask(_one_line(_describe(exc)), self.creds.secrets)

    def rejected(self, status: int | None) -> UserError:
        code = f" (HTTP {status})" if status else ""
        fix = {"key": "check the username and key",
               "token": "check the token (tokens can expire or be revoked)",
               "oauth": "run `kaggle auth login` again"}.get(self.creds.kind, "check them")
        return UserError(f"Kaggle rejected the credentials from {self.where}{code}: {fix}, or create a new "
                         f"API token at {TOKEN_PAGE}")

    def http(self, exc, phase: str) -> UserError:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if phase == "transfer" and status not in (401, 403, 404):
            return self.interrupted(exc)
        if status == 401:
            return self.rejected(401)
        if status == 403:
            return UserError(
                f"Kaggle rejected the credentials from {self.where} for dataset '{self.dataset}' "
                f"(HTTP 403): check they are current, and accept the dataset's terms at "
                f"https://www.kaggle.com/datasets/{self.dataset} (logged in as that user)")
        if status == 404:
            if self.version is not None:
                return UserError(
                    f"Kaggle has no dataset '{self.dataset}' version {self.version} (HTTP 404): check "
                    "data.kaggle.dataset (owner/dataset-slug, as in the dataset's URL) and "
                    "data.kaggle.version (null = latest) in params.yaml")
            return UserError(
                f"Kaggle has no dataset '{self.dataset}' (HTTP 404): check data.kaggle.dataset in "
                "params.yaml (owner/dataset-slug, as in the dataset's URL on kaggle.com)")
        if status == 429:
            return DataError("Kaggle is rate-limiting this account (HTTP 429): wait a few minutes, then "
                             "re-run `dvc repro`")
        return DataError(f"Kaggle answered HTTP {status} for dataset '{self.dataset}' "
                         f"({self._detail(exc)}); {RERUN} later")

    def unreachable(self, exc) -> DataError:
        return DataError(f"could not reach the Kaggle API ({self._detail(exc)}): check the internet "
                         f"connection and any proxy settings, then {RERUN}")

    def interrupted(self, exc) -> DataError:
        return DataError(f"download of Kaggle dataset '{self.dataset}' interrupted ({self._detail(exc)}); "
                         f"{RERUN}")

    def disk(self, exc, folder: Path) -> DataError:
        if getattr(exc, "errno", None) == errno.ENOSPC:
            return DataError(f"no space left in {folder} for the Kaggle download: free some space, then "
                             "re-run `dvc repro`")
        return DataError(f"could not write the Kaggle download into {folder} ({self._detail(exc)}); "
                         "fix the folder's permissions, then re-run `dvc repro`")

    def other(self, exc) -> DataError:
        return DataError(f"the kaggle client failed for dataset '{self.dataset}' ({self._detail(exc)}); "
                         f"{RERUN}, or check `kaggle datasets download {self.dataset}` by hand")

    def convert(self, exc: BaseException, phase: str, folder: Path) -> UserError:
        import requests
        import urllib3.exceptions

        if isinstance(exc, SystemExit):  # KaggleApi.authenticate() calls exit(1) when nothing works
            return self.rejected(None)
        if isinstance(exc, requests.HTTPError):
            return self.http(exc, phase)
        if isinstance(exc, (requests.RequestException, urllib3.exceptions.HTTPError)):
            if phase == "transfer":
                return self.interrupted(exc)
            return self.unreachable(exc)
        if isinstance(exc, ImportError):
            return UserError(f"the kaggle client cannot be loaded ({self._detail(exc)}): install the "
                             "project's requirements (pip install -r requirements.txt)")
        if isinstance(exc, OSError) and phase == "transfer":
            return self.disk(exc, folder)
        if phase == "transfer" and isinstance(exc, ValueError):  # kaggle's size-mismatch check
            return self.interrupted(exc)
        return self.other(exc)


def _client_args(api_class) -> list[str]:
    """``KaggleApi.args`` for *this* environment, never verbose.

    kaggle computes ``args`` once, when it is first imported: ``--local`` from
    ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` and ``--verbose`` from ``VERBOSE``; verbose mode prints
    request headers, ``Authorization`` included, so it is dropped.
    """
    args = [a for a in api_class.args if a not in ("--local", "--verbose", "-v")]
    if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST":
        args.append("--local")
    return args


def _authenticated_api(creds: Credentials):
    """A ``KaggleApi`` set up for the current environment, authenticated; returns ``(api, where)``."""
    # Lazy: importing `kaggle` authenticates at import time (and prints help when that fails).
    from kaggle.api.kaggle_api_extended import AuthMethod, KaggleApi

    api = KaggleApi()
    # Class attributes computed at first import; pin them to this process's current environment.
    api.config_dir = str(config_dir())
    api.config = os.path.join(api.config_dir, api.config_file)
    api.args = _client_args(KaggleApi)
    api.authenticate()
    method = str(api.config_values.get(api.CONFIG_NAME_AUTH_METHOD, ""))
    where = creds.where
    if method == str(AuthMethod.LEGACY_API_KEY) and creds.kind != "key":
        where = "KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json (the token was not accepted)"
    elif method == str(AuthMethod.OAUTH) and creds.kind != "oauth":
        where = "~/.kaggle/credentials.json (the token was not accepted)"
    return api, where


def _current_version(api, owner: str, slug: str) -> int | None:
    payload = api.dataset_status(f"{owner}/{slug}", format="json(current_version_number)")
    number = json.loads(payload).get("current_version_number")
    return int(number) if number else None


def download(dataset: str, version: int | None, dest_zip: str | os.PathLike, limits: archive.Limits,
             progress: bool = True, *, retries: int | None = None) -> dict:
    """Download ``dataset`` (``owner/slug``; ``version`` None = latest, else an int >= 1 as
    params.py validates it) to ``dest_zip``, verified.

    Returns ``{"dataset", "version" (int, or None if Kaggle does not say), "bytes", "sha256",
    "members"}``. Raises ``UserError``/``DataError`` with one line; leaves no file at ``dest_zip``
    and no temp files unless it succeeds.
    """
    creds = find_credentials()
    owner, slug = _split_dataset(dataset)
    dataset = f"{owner}/{slug}"
    retries = _retries(retries)
    dest_zip = Path(dest_zip)
    dest_zip.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_downloads(dest_zip)
    with contextlib.suppress(FileNotFoundError):
        dest_zip.unlink()  # a stale archive must not outlive a failed download

    failure = _Failure(dataset, version, creds)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{dest_zip.name}.", suffix=TEMP_SUFFIX, dir=dest_zip.parent))
    part = tmp_dir / f"{slug}.zip"
    try:
        phase = "setup"
        try:
            with _client_output(creds.secrets):
                phase = "auth"
                api, failure.where = _authenticated_api(creds)
                phase = "api"
                if version is None:
                    version = _current_version(api, owner, slug)  # then pinned: info names what came
                if progress:
                    shown = f" version {version}" if version is not None else ""
                    print(f"Downloading Kaggle dataset {dataset}{shown} ...", file=sys.stderr)
                from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

                with api.build_kaggle_client() as client:
                    request = ApiDownloadDatasetRequest()
                    request.owner_slug = owner
                    request.dataset_slug = slug
                    request.dataset_version_number = version
                    # Kaggle answers with a redirect to the archive; requests follows it, streamed.
                    response = client.datasets.dataset_api_client.download_dataset(request)
                    announced = response.headers.get("Content-Length")
                    phase = "transfer"
                    api.download_file(response, str(part), client.http_client(), quiet=not progress,
                                      resume=False, max_retries=retries)
        except (Exception, SystemExit) as exc:
            raise failure.convert(exc, phase, dest_zip.parent) from None

        size = part.stat().st_size if part.exists() else 0
        if announced is not None and announced.isdigit() and int(announced) != size:
            raise DataError(f"download of Kaggle dataset '{dataset}' interrupted: got {size} of "
                            f"{announced} bytes; {RERUN}")
        if size == 0:
            raise DataError(f"Kaggle sent an empty file for dataset '{dataset}'; {RERUN}, and check the "
                            f"dataset page https://www.kaggle.com/datasets/{dataset} if it persists")
        try:
            members = archive.verify_zip(part, limits)
        except DataError as exc:
            detail = str(exc).replace(f"{part}: ", "").replace(str(part), "the archive")
            if "data.max_" in detail:  # a bomb cap: the fix is in the message, not in a retry
                raise DataError(f"the archive Kaggle sent for '{dataset}' was refused: {detail}") from None
            detail = detail.replace("; download it again", "")
            raise DataError(f"the archive Kaggle sent for '{dataset}' is corrupt ({detail}); "
                            f"{RERUN}") from None
        if members == 0:
            raise DataError(f"the archive Kaggle sent for '{dataset}' is empty (no files); check "
                            "data.kaggle.dataset and data.kaggle.version in params.yaml")
        digest = sha256_file(part)
        _fsync(part)
        os.replace(part, dest_zip)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return {"dataset": dataset, "version": version, "bytes": size, "sha256": digest, "members": members}
