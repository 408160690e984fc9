"""Size limits of the Direct Line REST API, read lazily from one optional settings dict::

    WEBCHAT_DIRECTLINE = {
        "MAX_ACTIVITY_BYTES": 256 * 1024,    # a posted activity's JSON (and an upload's)
        "MAX_FILE_BYTES": 4 * 1024 * 1024,   # each uploaded file
        "MAX_UPLOAD_FILES": 10,              # files in one upload
        "MAX_POLL_ACTIVITIES": 1000,         # activities in one polling answer
        "DB_THREADS": 4,                     # threads (and connections) serving the API
    }

``DB_THREADS`` is read once, when the first request starts the threads
(``webchat.db_threads``): at most that many Direct Line requests touch the database at once
per process, each on a connection its thread keeps.

Read on each request, so ``override_settings`` works and nothing is read at import time.
Unknown keys and non-positive values are reported by the ``webchat.E002`` system check.
"""

from dataclasses import dataclass, fields

from django.conf import settings
from django.core.checks import Error


@dataclass(frozen=True, slots=True)
class DirectLineLimits:
    MAX_ACTIVITY_BYTES: int = 256 * 1024
    MAX_FILE_BYTES: int = 4 * 1024 * 1024
    MAX_UPLOAD_FILES: int = 10
    MAX_POLL_ACTIVITIES: int = 1000
    DB_THREADS: int = 4

    @property
    def max_upload_body(self) -> int:
        """The largest multipart body worth parsing: every file, the activity, and headers."""
        return self.MAX_UPLOAD_FILES * self.MAX_FILE_BYTES + self.MAX_ACTIVITY_BYTES + 64 * 1024


_NAMES = {field.name for field in fields(DirectLineLimits)}


def _problems(configured) -> list[str]:
    if not isinstance(configured, dict):
        return ["WEBCHAT_DIRECTLINE must be a dict, e.g. {'MAX_FILE_BYTES': 4194304}."]
    problems = []
    unknown = sorted(set(configured) - _NAMES)
    if unknown:
        problems.append(
            f"WEBCHAT_DIRECTLINE has unknown key(s) {unknown}; known: {sorted(_NAMES)}."
        )
    for key in sorted(set(configured) & _NAMES):
        value = configured[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.append(
                f"WEBCHAT_DIRECTLINE[{key!r}] must be a positive integer, not {value!r}."
            )
    return problems


def directline_limits() -> DirectLineLimits:
    """Return the configured limits over the defaults (called once per request).

    A broken setting (already reported by ``check``) falls back to the defaults rather
    than failing every request.
    """
    configured = getattr(settings, "WEBCHAT_DIRECTLINE", None) or {}
    if _problems(configured):
        return DirectLineLimits()
    return DirectLineLimits(**configured)


def check_directline_limits(app_configs=None, **kwargs):
    """System check ``webchat.E002``: WEBCHAT_DIRECTLINE is a dict of positive integers."""
    configured = getattr(settings, "WEBCHAT_DIRECTLINE", None) or {}
    return [
        Error(problem, hint="See webchat/views/conf.py for the keys.", id="webchat.E002")
        for problem in _problems(configured)
    ]
