"""``data.source: kaggle``: the dataset archive, downloaded with the official ``kaggle`` client.

The client's public API does the work: ``KaggleApi.authenticate()`` finds and checks the credentials,
``dataset_status(..., format="json(current_version_number)")`` names the latest version, and
``dataset_download_files("owner/slug/N", folder, force=True)`` fetches that version (streamed, resumed
on a dropped connection). What the client does not do stays here, each piece for a reason:

* a local credentials check before any work (``kaggle_credentials.py``), as ``authenticate()`` goes to
  the network for tokens and ends in ``exit(1)`` after a page of help;
* atomic placement: the client writes straight to its target and keeps partial files to resume from
  later, so it downloads into a temp folder next to the destination, and the archive is verified (every
  CRC, the archive-bomb caps, non-empty) and only then renamed into place. A failed or interrupted
  download leaves no file at the destination and no temp files;
* quiet output: the client prints to stdout (the dataset URL, "Downloading ... to <temp folder>",
  "partial file saved, resume by running the same command", which is untrue here, and, in verbose mode,
  request headers with the ``Authorization`` header). Its stdout is discarded; its progress bar
  (stderr) stays, and our own line says what is being downloaded;
* clear errors: whatever the client raises becomes one ``UserError``/``DataError`` line naming what
  happened and the fix; no key or token is ever put into a message, printed or written anywhere.

``DEEPFAKE_DETECTOR_KAGGLE_RETRIES`` (default 3) is how many times a dropped transfer is resumed
before giving up; the test server's environment sets it to 0 so failure tests stay fast.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import io
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from deepfake_detector.core.errors import DataError, ParamError, UserError
from deepfake_detector.core.files import sha256_file
from deepfake_detector.data.sources import archive
from deepfake_detector.data.sources.kaggle_credentials import TOKEN_PAGE, Credentials, config_dir, find_credentials
from deepfake_detector.data.sources.kaggle_credentials import check_credentials  # noqa: F401  (part of this module's API)

RETRIES_ENV = "DEEPFAKE_DETECTOR_KAGGLE_RETRIES"
DEFAULT_RETRIES = 3
TEMP_SUFFIX = ".download"
RERUN = "re-run `dvc repro` to retry"

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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


def _mask(text: str, secrets) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


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

    def http(self, exc, transferring: bool) -> UserError:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if transferring and status not in (401, 403, 404):
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

    def interrupted(self, exc) -> DataError:
        return DataError(f"download of Kaggle dataset '{self.dataset}' interrupted ({self._detail(exc)}); "
                         f"{RERUN}")

    def convert(self, exc: BaseException, transferring: bool, folder: Path) -> UserError:
        import requests
        import urllib3.exceptions

        if isinstance(exc, SystemExit):  # KaggleApi.authenticate() calls exit(1) when nothing works
            return self.rejected(None)
        if isinstance(exc, requests.HTTPError):
            return self.http(exc, transferring)
        if isinstance(exc, (requests.RequestException, urllib3.exceptions.HTTPError)):
            if transferring:
                return self.interrupted(exc)
            return DataError(f"could not reach the Kaggle API ({self._detail(exc)}): check the internet "
                             f"connection and any proxy settings, then {RERUN}")
        if isinstance(exc, ImportError):
            return UserError(f"the kaggle client cannot be loaded ({self._detail(exc)}): install the "
                             "project's requirements (pip install -r requirements.txt)")
        if transferring and getattr(exc, "errno", None) == errno.ENOSPC:
            return DataError(f"no space left in {folder} for the Kaggle download: free some space, then "
                             "re-run `dvc repro`")
        if transferring and isinstance(exc, OSError):
            return DataError(f"could not write the Kaggle download into {folder} ({self._detail(exc)}); "
                             "fix the folder's permissions, then re-run `dvc repro`")
        if transferring and isinstance(exc, ValueError):  # the client's size check: a short transfer
            return self.interrupted(exc)
        return DataError(f"the kaggle client failed for dataset '{self.dataset}' ({self._detail(exc)}); "
                         f"{RERUN}, or check `kaggle datasets download {self.dataset}` by hand")


@functools.cache
def _api_class():
    """``KaggleApi`` with a set number of transfer retries.

    ``dataset_download_files`` calls ``download_file`` with its default of 5 retries, each after a
    back-off of up to 60 s; the count is made ours here. It also marks when the transfer has begun,
    so that an error from then on reads as an interrupted download, not as an answer of the API.
    """
    from kaggle.api.kaggle_api_extended import KaggleApi  # importing `kaggle` authenticates and prints

    class Api(KaggleApi):
        retries = DEFAULT_RETRIES
        transferring = False

        def download_file(self, *args, **kwargs):
            self.transferring = True
            return super().download_file(*args, **{**kwargs, "max_retries": self.retries})

    return Api


def _authenticated_api(creds: Credentials, retries: int):
    """An authenticated client; returns ``(api, where the credentials it uses came from)``."""
    api = _api_class()()
    api.retries = retries
    # KaggleApi reads its config folder once, at first import: this process's environment may have
    # changed since (a test, a notebook), and kaggle.json must be looked for where find_credentials did.
    api.config_dir = str(config_dir())
    api.config = os.path.join(api.config_dir, api.config_file)
    api.authenticate()
    # authenticate() skips a token that fails validation and tries the next kind: name what it used.
    method = str(api.config_values.get(api.CONFIG_NAME_AUTH_METHOD, ""))
    used = {"LEGACY_API_KEY": "key", "ACCESS_TOKEN": "token", "OAUTH": "oauth"}.get(method, creds.kind)
    if used == creds.kind:
        return api, creds.where
    elsewhere = {"key": "KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json", "oauth": "~/.kaggle/credentials.json"}
    return api, f"{elsewhere.get(used, used)} (the {creds.kind} from {creds.where} was not accepted)"


def _current_version(api, dataset: str) -> int | None:
    payload = api.dataset_status(dataset, format="json(current_version_number)")
    number = json.loads(payload).get("current_version_number")
    return int(number) if number else None


def _remove_stale_downloads(dest_zip: Path) -> None:
    """Temp folders a killed run left next to ``dest_zip``."""
    pattern = os.path.join(glob.escape(str(dest_zip.parent)), f".{glob.escape(dest_zip.name)}.*{TEMP_SUFFIX}")
    for leftover in glob.glob(pattern):
        shutil.rmtree(leftover, ignore_errors=True)


def _verified(part: Path, dataset: str, limits: archive.Limits) -> int:
    """The member count of the downloaded archive; one ``DataError`` line if it is not usable."""
    if not part.exists() or part.stat().st_size == 0:
        raise DataError(f"Kaggle sent an empty file for dataset '{dataset}'; {RERUN}, and check the "
                        f"dataset page https://www.kaggle.com/datasets/{dataset} if it persists")
    try:
        members = archive.verify_zip(part, limits)
    except DataError as exc:
        detail = str(exc).replace(f"{part}: ", "").replace(str(part), "the archive")
        if "data.max_" in detail:  # a bomb cap: the fix is in the message, not in a retry
            raise DataError(f"the archive Kaggle sent for '{dataset}' was refused: {detail}") from None
        detail = detail.replace("; download it again", "")
        raise DataError(f"the archive Kaggle sent for '{dataset}' is corrupt ({detail}); {RERUN}") from None
    if members == 0:
        raise DataError(f"the archive Kaggle sent for '{dataset}' is empty (no files); check "
                        "data.kaggle.dataset and data.kaggle.version in params.yaml")
    return members


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
    api = None
    try:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the client's prints: see the docstring
                api, failure.where = _authenticated_api(creds, retries)
                if version is None:
                    version = _current_version(api, dataset)  # then pinned: the info names what came
                if progress:
                    shown = f" version {version}" if version is not None else ""
                    print(f"Downloading Kaggle dataset {dataset}{shown} ...", file=sys.stderr)
                pinned = dataset if version is None else f"{dataset}/{version}"
                api.dataset_download_files(pinned, path=str(tmp_dir), force=True, quiet=not progress)
        except (Exception, SystemExit) as exc:
            raise failure.convert(exc, bool(api and api.transferring), dest_zip.parent) from None
        part = tmp_dir / f"{slug}.zip"  # where dataset_download_files puts it
        members = _verified(part, dataset, limits)
        size, digest = part.stat().st_size, sha256_file(part)
        with open(part, "rb") as handle:
            os.fsync(handle.fileno())  # on disk before the rename makes it the archive
        os.replace(part, dest_zip)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return {"dataset": dataset, "version": version, "bytes": size, "sha256": digest, "members": members}
