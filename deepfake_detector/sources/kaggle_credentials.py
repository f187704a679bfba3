"""Where the Kaggle client will find credentials, looked up the way kaggle 2.2.5 / kagglesdk do.

Checked before any work, so a missing set stops the download stage with one line that says where to
put them. Secrets are only held to mask them in the client's output; they never reach a message.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

TOKEN_PAGE = "https://www.kaggle.com/settings/api"


@dataclass(frozen=True)
class Credentials:
    """Where the Kaggle client will find credentials; ``secrets`` are only used for masking."""

    where: str
    kind: str  # "token" | "key" | "oauth"
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never show the secrets, even in a debugger or a traceback
        return f"Credentials(where={self.where!r}, kind={self.kind!r})"


def config_dir() -> Path:
    """The folder kaggle 2.2.5 reads ``kaggle.json`` from (``KaggleApi.config_dir``)."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured)
    legacy = Path(os.path.expanduser("~")) / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return Path(xdg) / "kaggle"
    return legacy


def _read_token_file(path) -> str | None:
    if not path:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def _find_credentials() -> tuple[Credentials | None, str]:
    """The credentials kaggle would use, in its own order, and a note on anything unusable.

    kaggle 2.2.5 ``KaggleApi.authenticate()`` tries: an access token (kagglesdk
    ``get_access_token_from_env``: the notebook token, ``KAGGLE_API_TOKEN`` as a value or as the
    path of a file, ``~/.kaggle/access_token[.txt]``), then a legacy username + key
    (``kaggle.json`` in the config folder, each key overridden by ``KAGGLE_USERNAME`` /
    ``KAGGLE_KEY``), then OAuth credentials from ``kaggle auth login``
    (``~/.kaggle/credentials.json``).
    """
    note = ""
    # 1. access tokens
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") and os.environ.get("KAGGLE_DATA_PROXY_URL"):
        token = _read_token_file(os.environ.get("KAGGLE_API_V1_TOKEN"))
        if token:
            return Credentials("the Kaggle notebook token (KAGGLE_API_V1_TOKEN)", "token", (token,)), note
    env_token = os.environ.get("KAGGLE_API_TOKEN")
    if env_token:
        if Path(env_token).exists():
            token = _read_token_file(env_token)
            if token:
                return Credentials(f"the file named by KAGGLE_API_TOKEN ({env_token})", "token",
                                   (token,)), note
            note = f" (KAGGLE_API_TOKEN names {env_token}, which is empty or unreadable)"
        else:
            return Credentials("environment KAGGLE_API_TOKEN", "token", (env_token,)), note
    kaggle_home = Path(os.path.expanduser("~")) / ".kaggle"
    for name in ("access_token", "access_token.txt"):
        token = _read_token_file(kaggle_home / name)
        if token:
            return Credentials(str(kaggle_home / name), "token", (token,)), note

    # 2. legacy username + key
    config = config_dir() / "kaggle.json"
    values: dict = {}
    if config.exists():
        try:
            loaded = json.loads(config.read_text(encoding="utf-8") or "{}")
            values = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            values = {}
        if not (isinstance(values.get("username"), str) and isinstance(values.get("key"), str)):
            note = note or f' ({config} exists but is not JSON with "username" and "key")'
    sources = []
    for field, variable in (("username", "KAGGLE_USERNAME"), ("key", "KAGGLE_KEY")):
        if variable in os.environ:  # kaggle lets the environment override the file, key by key
            values[field] = os.environ[variable]
            sources.append("environment")
        else:
            sources.append("file")
    username, key = values.get("username"), values.get("key")
    if isinstance(username, str) and username and isinstance(key, str) and key:
        if sources == ["environment", "environment"]:
            where = "environment KAGGLE_USERNAME/KAGGLE_KEY"
        elif sources == ["file", "file"]:
            where = str(config)
        else:
            where = f"KAGGLE_USERNAME/KAGGLE_KEY together with {config}"
        return Credentials(where, "key", (key,)), note
    if "KAGGLE_USERNAME" in os.environ or "KAGGLE_KEY" in os.environ:
        note = note or " (KAGGLE_USERNAME and KAGGLE_KEY must both be set and non-empty)"

    # 3. OAuth credentials cached by `kaggle auth login`
    oauth = kaggle_home / "credentials.json"
    try:
        data = json.loads(oauth.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and data.get("refresh_token"):
        secrets = tuple(str(data[k]) for k in ("refresh_token", "access_token") if data.get(k))
        return Credentials(f"{oauth} (from `kaggle auth login`)", "oauth", secrets), note
    return None, note


def find_credentials() -> Credentials:
    """The credentials kaggle will use; ``UserError`` (one line) if there are none."""
    found, note = _find_credentials()
    if found is None:
        raise UserError(
            "no Kaggle credentials found" + note + ": data.source=kaggle needs them. Create a token "
            f"at {TOKEN_PAGE} and set KAGGLE_API_TOKEN (or save it to ~/.kaggle/access_token), or "
            "set KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json with \"username\" and \"key\" in "
            f"{config_dir()} (chmod 600); never inside the project")
    return found


def check_credentials() -> str:
    """Where the Kaggle credentials were found (never the key); ``UserError`` if there are none."""
    return find_credentials().where
