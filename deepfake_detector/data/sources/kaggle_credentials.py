"""Where the Kaggle client will find credentials: checked before any work, with no network call.

``KaggleApi.authenticate()`` is the real lookup, but it cannot be this check: it validates access
tokens over the network, prints a page of help and calls ``exit(1)`` when nothing works, and it does
not say where it looked. So the stage first asks the client's own pieces, in the client's order
(kaggle 2.2.5): kagglesdk's ``get_access_token_from_env`` (a notebook token, ``KAGGLE_API_TOKEN`` as a
value or as a file name, ``~/.kaggle/access_token[.txt]``), then a username and key (``kaggle.json`` in
the client's config folder, ``KAGGLE_USERNAME``/``KAGGLE_KEY`` overriding it key by key), then
kagglesdk's ``KaggleCredentials.load`` (the OAuth file ``kaggle auth login`` writes). A missing set
stops the stage with one line saying where to put one; a set the server rejects is named in the error.
Secrets are held only to mask them in messages; they never reach one.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from deepfake_detector.core.errors import UserError

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
    """The folder the client reads ``kaggle.json`` from. ``KaggleApi`` computes it once, when first
    imported (``KaggleApi.config_dir``); this is the same rule, applied to the environment of now."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured)
    legacy = Path(os.path.expanduser("~")) / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return Path(xdg) / "kaggle"
    return legacy


def _access_token() -> tuple[Credentials | None, str]:
    from kagglesdk.kaggle_env import get_access_token_from_env

    try:
        token, source = get_access_token_from_env()
    except (OSError, UnicodeDecodeError):
        return None, " (a Kaggle access token file could not be read)"
    named = os.environ.get("KAGGLE_API_TOKEN", "")
    if not token:
        note = f" (KAGGLE_API_TOKEN names {named}, which is empty)" if source == "KAGGLE_API_TOKEN" else ""
        return None, note
    if source == "KAGGLE_API_TOKEN":
        where = f"the file named by KAGGLE_API_TOKEN ({named})" if Path(named).exists() else \
            "environment KAGGLE_API_TOKEN"
    elif source == "access_token":  # kagglesdk tries the file without, then with, the .txt suffix
        folder = Path(os.path.expanduser("~/.kaggle"))
        files = [folder / "access_token", folder / "access_token.txt"]
        where = str(next((f for f in files if f.is_file() and f.read_text().strip()), files[0]))
    else:
        where = f"the Kaggle notebook token ({source})"
    return Credentials(where, "token", (token,)), ""


def _username_and_key() -> tuple[Credentials | None, str]:
    config = config_dir() / "kaggle.json"
    values, note = {}, ""
    if config.exists():
        try:
            loaded = json.loads(config.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            loaded = None
        values = loaded if isinstance(loaded, dict) else {}
        if not (isinstance(values.get("username"), str) and isinstance(values.get("key"), str)):
            note = f' ({config} exists but is not JSON with "username" and "key")'
    from_env = [variable in os.environ for variable in ("KAGGLE_USERNAME", "KAGGLE_KEY")]
    for field, variable in (("username", "KAGGLE_USERNAME"), ("key", "KAGGLE_KEY")):
        values[field] = os.environ.get(variable, values.get(field))
    username, key = values.get("username"), values.get("key")
    if not (isinstance(username, str) and username and isinstance(key, str) and key):
        if any(from_env):
            note = note or " (KAGGLE_USERNAME and KAGGLE_KEY must both be set and non-empty)"
        return None, note
    where = {(True, True): "environment KAGGLE_USERNAME/KAGGLE_KEY", (False, False): str(config)}.get(
        tuple(from_env), f"KAGGLE_USERNAME/KAGGLE_KEY together with {config}")
    return Credentials(where, "key", (key,)), note


def _oauth() -> Credentials | None:
    from kagglesdk.kaggle_creds import KaggleCredentials

    try:
        found = KaggleCredentials.load(client=None)  # reads the file only; the client is for refreshing
    except (OSError, ValueError):
        found = None
    if found is None:
        return None
    return Credentials(f"{os.path.expanduser(KaggleCredentials.DEFAULT_CREDENTIALS_FILE)} "
                       "(from `kaggle auth login`)", "oauth")


def find_credentials() -> Credentials:
    """The credentials kaggle will use; ``UserError`` (one line) if there are none."""
    token, token_note = _access_token()
    if token:
        return token
    key, key_note = _username_and_key()
    found = key or _oauth()
    if found:
        return found
    raise UserError(
        "no Kaggle credentials found" + (token_note or key_note) + ": data.source=kaggle needs them. Create "
        f"a token at {TOKEN_PAGE} and set KAGGLE_API_TOKEN (or save it to ~/.kaggle/access_token), or "
        "set KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json with \"username\" and \"key\" in "
        f"{config_dir()} (chmod 600); never inside the project")


def check_credentials() -> str:
    """Where the Kaggle credentials were found (never the key); ``UserError`` if there are none."""
    return find_credentials().where
