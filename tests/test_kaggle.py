"""data.source=kaggle: the real ``kaggle`` client against the loopback server in kaggle_server.py.

Nothing here touches the network: the client is pointed at ``http://localhost`` and every request
goes through the test server as its HTTP(S) proxy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from deepfake_detector.core.errors import DataError, ParamError, UserError
from deepfake_detector.data.sources import archive
from deepfake_detector.data.sources import kaggle as kaggle_source

from kaggle_server import KEY, TOKEN, USERNAME, apply_env

ROOT = Path(__file__).resolve().parents[1]
LIMITS = archive.Limits(max_member_bytes=2**20, max_total_bytes=2**26)
SECRETS = (KEY, TOKEN, base64.b64encode(f"{USERNAME}:{KEY}".encode()).decode())


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "data" / "raw" / "dataset.zip"


def use_creds(server, monkeypatch, kind: str) -> None:
    apply_env(monkeypatch, server.env(server.home, kind))


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir()) if dest.parent.exists() else []


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def assert_failed_cleanly(dest: Path, exc_info, capfd) -> None:
    """One line, no output file, no temp files, no secret anywhere."""
    message = str(exc_info.value)
    assert "\n" not in message
    assert not dest.exists()
    assert leftovers(dest) == []
    out, err = capfd.readouterr()
    assert_no_secrets(message, out, err)
    assert "Traceback" not in out + err


# --------------------------------------------------------------------------- success


def test_download_latest_with_env_key(kaggle_server, dest, capfd):
    assert kaggle_source.check_credentials() == "environment KAGGLE_USERNAME/KAGGLE_KEY"
    info = kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS, progress=True)

    assert dest.read_bytes() == kaggle_server.payload
    assert info == {
        "dataset": kaggle_server.dataset,
        "version": kaggle_server.version,
        "bytes": len(kaggle_server.payload),
        "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
        "members": 12,
    }
    with zipfile.ZipFile(dest) as archive_file:
        names = archive_file.namelist()
    assert {n.split("/")[1] for n in names} == {"Train", "Validation", "Test"}
    assert {n.split("/")[2] for n in names} == {"Real", "Fake"}
    assert all(n.startswith("Dataset/") and n.endswith(".jpg") for n in names)
    assert leftovers(dest) == ["dataset.zip"]  # no temp files

    owner, slug = kaggle_server.dataset.split("/")
    assert kaggle_server.calls() == [
        "datasets.DatasetApiService/GetDataset",
        "datasets.DatasetApiService/DownloadDataset",
        f"/blobs/{owner}/{slug}/{kaggle_server.version}/{slug}.zip",
    ]
    get, download, blob = kaggle_server.requests
    for seen in (get, download):
        assert (seen.auth, seen.user, seen.auth_ok) == ("basic", USERNAME, True)
    # The latest version is looked up, then pinned, so the info names what was downloaded.
    assert download.body == {"ownerSlug": owner, "datasetSlug": slug,
                             "datasetVersionNumber": kaggle_server.version}
    assert blob.method == "GET" and blob.auth is None  # the redirect to storage drops the auth
    out, err = capfd.readouterr()
    assert f"Downloading Kaggle dataset {kaggle_server.dataset} version 3" in err
    assert_no_secrets(out, err, json.dumps(info))


def test_pinned_version_and_quiet(kaggle_server, dest, capfd):
    info = kaggle_source.download(kaggle_server.dataset, 2, dest, LIMITS, progress=False)
    assert info["version"] == 2 and info["sha256"] == kaggle_server.sha256
    assert kaggle_server.calls()[0] == "datasets.DatasetApiService/DownloadDataset"  # no lookup
    assert kaggle_server.requests[0].body["datasetVersionNumber"] == 2
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_version_null_when_kaggle_does_not_say(kaggle_server, dest):
    kaggle_server.hide_version = True
    info = kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS, progress=False)
    assert info["version"] is None
    assert "datasetVersionNumber" not in kaggle_server.seen("DownloadDataset")[0].body
    assert dest.read_bytes() == kaggle_server.payload


def test_rerun_replaces_leftovers_of_a_killed_run(kaggle_server, dest):
    dest.parent.mkdir(parents=True)
    stale = dest.parent / ".dataset.zip.abc123.download"
    stale.mkdir()
    (stale / "deepfake-and-real-images.zip").write_bytes(b"half")
    kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS, progress=False)
    assert leftovers(dest) == ["dataset.zip"]


# --------------------------------------------------------------------------- credentials


def test_no_credentials_fails_before_any_request(kaggle_server, monkeypatch, dest, capfd):
    use_creds(kaggle_server, monkeypatch, "none")
    with pytest.raises(UserError) as exc_info:
        kaggle_source.check_credentials()
    message = str(exc_info.value)
    for hint in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "kaggle.json",
                 "~/.kaggle/access_token", "https://www.kaggle.com/settings/api"):
        assert hint in message
    with pytest.raises(UserError):
        kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS)
    assert kaggle_server.requests == []
    assert not dest.exists() and leftovers(dest) == []
    capfd.readouterr()


def test_unusable_kaggle_json_is_named(kaggle_server, monkeypatch):
    use_creds(kaggle_server, monkeypatch, "none")
    bad = kaggle_server.home / ".kaggle" / "kaggle.json"
    bad.write_text('{"username": "someone"}')
    with pytest.raises(UserError, match="kaggle.json exists but"):
        kaggle_source.check_credentials()


@pytest.mark.parametrize("kind, where, scheme", [
    ("json", "{home}/.kaggle/kaggle.json", "basic"),
    ("token", "environment KAGGLE_API_TOKEN", "bearer"),
    ("token_file", "{home}/.kaggle/access_token", "bearer"),
])
def test_credentials_found_and_used(kaggle_server, monkeypatch, dest, capfd, kind, where, scheme):
    use_creds(kaggle_server, monkeypatch, kind)
    assert kaggle_source.check_credentials() == where.format(home=kaggle_server.home)
    assert kaggle_server.requests == []  # finding them is local

    info = kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS)
    assert info["sha256"] == kaggle_server.sha256
    download = kaggle_server.seen("DownloadDataset")[0]
    assert (download.auth, download.auth_ok) == (scheme, True)
    if scheme == "bearer":  # kaggle validates access tokens before using them
        assert kaggle_server.seen("IntrospectToken")
    out, err = capfd.readouterr()
    assert_no_secrets(out, err, json.dumps(info))


def test_token_env_may_name_a_file(kaggle_server, monkeypatch, tmp_path):
    use_creds(kaggle_server, monkeypatch, "none")
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(token_file))
    assert kaggle_source.check_credentials() == f"the file named by KAGGLE_API_TOKEN ({token_file})"


def test_credentials_repr_hides_secrets(kaggle_server):
    assert KEY not in repr(kaggle_source.find_credentials())


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("fail, kind", [("401", "key"), ("401", "token"), ("wrong-key", "key"),
                                        ("wrong-token", "token")])
def test_rejected_credentials(kaggle_server, monkeypatch, dest, capfd, fail, kind):
    use_creds(kaggle_server, monkeypatch, kind)
    if fail == "wrong-key":
        monkeypatch.setenv("KAGGLE_KEY", "not-the-key-0000")
    elif fail == "wrong-token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", "not-the-token-0000")
    else:
        kaggle_server.fail = fail
    with pytest.raises(UserError) as exc_info:
        kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS)
    where = "KAGGLE_API_TOKEN" if kind == "token" else "KAGGLE_USERNAME/KAGGLE_KEY"
    assert str(exc_info.value).startswith(f"Kaggle rejected the credentials from environment {where}")
    assert "https://www.kaggle.com/settings/api" in str(exc_info.value)
    assert kaggle_server.requests  # the client really asked
    assert_failed_cleanly(dest, exc_info, capfd)


def test_forbidden_dataset_says_accept_terms(kaggle_server, dest, capfd):
    kaggle_server.fail = "403"
    with pytest.raises(UserError) as exc_info:
        kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS)
    message = str(exc_info.value)
    assert "Kaggle rejected the credentials from environment KAGGLE_USERNAME/KAGGLE_KEY" in message
    assert "HTTP 403" in message and "accept the dataset's terms" in message
    assert_failed_cleanly(dest, exc_info, capfd)


def test_unknown_dataset_names_the_param(kaggle_server, dest, capfd):
    with pytest.raises(UserError) as exc_info:
        kaggle_source.download("someone/no-such-dataset", None, dest, LIMITS)
    assert "'someone/no-such-dataset'" in str(exc_info.value)
    assert "data.kaggle.dataset" in str(exc_info.value)
    assert kaggle_server.calls() == ["datasets.DatasetApiService/GetDataset"]
    assert_failed_cleanly(dest, exc_info, capfd)


def test_unknown_version_names_the_param(kaggle_server, dest, capfd):
    with pytest.raises(UserError) as exc_info:
        kaggle_source.download(kaggle_server.dataset, 99, dest, LIMITS)
    assert "version 99" in str(exc_info.value) and "data.kaggle.version" in str(exc_info.value)
    assert_failed_cleanly(dest, exc_info, capfd)


def test_malformed_dataset_is_a_param_error(kaggle_server, dest):
    with pytest.raises(ParamError, match="data.kaggle.dataset"):
        kaggle_source.download("just-a-slug", None, dest, LIMITS)
    assert kaggle_server.requests == []


def test_server_error_says_retry(kaggle_server, dest, capfd):
    kaggle_server.fail = "500"
    with pytest.raises(DataError, match="HTTP 500.*re-run `dvc repro`") as exc_info:
        kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS)
    assert_failed_cleanly(dest, exc_info, capfd)


def test_unreachable_api(kaggle_server, dest, capfd):
    kaggle_server.stop()
    with pytest.raises(DataError, match="could not reach the Kaggle API") as exc_info:
        kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS)
    assert_failed_cleanly(dest, exc_info, capfd)


def test_dropped_connection_then_rerun_recovers(kaggle_server, dest, capfd):
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"an archive from an earlier run")  # must not survive a failed download
    kaggle_server.fail = "drop"
    with pytest.raises(DataError) as exc_info:
        kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS, progress=True)
    message = str(exc_info.value)
    assert "download of Kaggle dataset" in message and "interrupted" in message
    assert "re-run `dvc repro` to retry" in message
    assert kaggle_server.dropped == 1  # the server really cut the transfer
    assert_failed_cleanly(dest, exc_info, capfd)
    err = capfd.readouterr().err
    assert "Partial file saved" not in err

    kaggle_server.fail = None  # the re-run
    info = kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS, progress=False)
    assert info["sha256"] == kaggle_server.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert leftovers(dest) == ["dataset.zip"]


def test_dropped_connection_is_retried_within_a_run(kaggle_server, dest, monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # kaggle backs off 2-3 s first
    kaggle_server.fail, kaggle_server.drops = "drop", 1
    info = kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS, progress=False, retries=2)
    assert info["sha256"] == kaggle_server.sha256
    blobs = kaggle_server.seen(".zip")
    assert len(blobs) == 2 and "Range" in blobs[1].headers  # the client asked to resume
    assert leftovers(dest) == ["dataset.zip"]


@pytest.mark.parametrize("payload", ["corrupt", "not-a-zip", "truncated"])
def test_corrupt_archive(kaggle_server, dest, capfd, payload):
    if payload == "corrupt":
        kaggle_server.fail = "corrupt"
    elif payload == "not-a-zip":
        kaggle_server.payload = b"<html>Please log in</html>"
    else:
        kaggle_server.payload = kaggle_server.payload[:-200]
    with pytest.raises(DataError) as exc_info:
        kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS)
    assert "is corrupt" in str(exc_info.value)
    assert "re-run `dvc repro`" in str(exc_info.value)
    assert_failed_cleanly(dest, exc_info, capfd)


def test_empty_download(kaggle_server, dest, capfd):
    kaggle_server.payload = b""
    with pytest.raises(DataError, match="empty") as exc_info:
        kaggle_source.download(kaggle_server.dataset, None, dest, LIMITS)
    assert_failed_cleanly(dest, exc_info, capfd)


def test_archive_bomb_caps_apply(kaggle_server, dest, capfd):
    tiny = archive.Limits(max_member_bytes=100, max_total_bytes=2**20)
    with pytest.raises(DataError, match="data.max_member_mb") as exc_info:
        kaggle_source.download(kaggle_server.dataset, None, dest, tiny)
    assert_failed_cleanly(dest, exc_info, capfd)


# --------------------------------------------------------------------------- subprocess


def test_server_env_works_in_a_subprocess(kaggle_server, tmp_path):
    out = tmp_path / "child" / "dataset.zip"
    code = (
        "import json, sys\n"
        "from deepfake_detector.data.sources import archive, kaggle\n"
        "info = kaggle.download(sys.argv[1], None, sys.argv[2], archive.Limits(2**20, 2**26), "
        "progress=False)\n"
        "print(json.dumps({'where': kaggle.check_credentials(), **info}))\n"
    )
    env = kaggle_server.child_env()
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", code, kaggle_server.dataset, str(out)], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["where"] == "environment KAGGLE_USERNAME/KAGGLE_KEY"
    assert info["sha256"] == kaggle_server.sha256 and info["version"] == kaggle_server.version
    assert [s.call for s in kaggle_server.requests][:2] == [
        "datasets.DatasetApiService/GetDataset", "datasets.DatasetApiService/DownloadDataset"]
    assert_no_secrets(result.stdout, result.stderr)
    assert not (kaggle_server.home / ".kaggle" / "kaggle.json").exists()  # nothing was written
    assert os.environ["HOME"] == str(kaggle_server.home)  # in-process env is the fixture's too
