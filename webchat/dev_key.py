"""The development token signing key: random, made once per install, kept outside the repo.

With ``DEBUG`` on and no ``WEBCHAT_TOKEN_SIGNING_KEY``, tokens are signed with the key in
``WEBCHAT_DEV_KEY_FILE`` (by default ``$XDG_DATA_HOME/webchat/dev-token-signing-key``, i.e.
``~/.local/share/webchat/...``), created on first use with mode 0600. A public string would
let anyone forge a token for any tenant of a development instance.
"""

import functools
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

FILE_NAME = "dev-token-signing-key"
#: HS256 wants at least 32 bytes of key (RFC 7518 section 3.2); this is 48 random bytes.
KEY_BYTES = 48


def default_path() -> Path:
    """Where the key lives unless ``WEBCHAT_DEV_KEY_FILE`` says otherwise."""
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "webchat" / FILE_NAME


@functools.lru_cache(maxsize=4)
def read_or_create(path: str) -> str:
    """Return the key stored at ``path``, creating it first if there is none.

    Replicas starting together race to create it: each writes its own candidate to a private
    temporary file and links it into place, and ``link`` fails for all but the first, who
    then read the winner's key. No reader ever sees a half-written file.
    """
    target = Path(path)
    try:
        return _read(target)
    except FileNotFoundError:
        pass
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    candidate = target.with_name(f".{target.name}.{secrets.token_hex(8)}")
    descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(KEY_BYTES) + "\n")
        os.link(candidate, target)
    except FileExistsError:
        pass
    finally:
        candidate.unlink(missing_ok=True)
    return _read(target)


def _read(target: Path) -> str:
    mode = target.stat().st_mode & 0o777
    if mode & 0o077:
        raise ImproperlyConfigured(
            f"{target} (the development token signing key) is readable by others "
            f"(mode {mode:o}): run `chmod 600 {target}`."
        )
    key = target.read_text().strip()
    if len(key) < 32:
        raise ImproperlyConfigured(
            f"{target} holds no usable key (under 32 characters): delete it to make a new one."
        )
    return key
