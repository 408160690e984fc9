"""Token lifetimes, read lazily from one optional settings dict::

    WEBCHAT_TOKENS = {
        "TTL": 1800,            # seconds a token lives after it is issued or renewed
        "MAX_SESSION": 86400,   # seconds after a session's first token: nothing renews past it
    }

``webchat/settings.py`` fills ``TTL`` from ``GREENTIC_DIRECTLINE_TOKEN_TTL_SECS`` (the seed's
variable, clamped to 60-604,800 s as the seed does) and ``MAX_SESSION`` from
``WEBCHAT_TOKEN_MAX_SESSION_SECS``. A settings module of your own that sets the dict decides.
A ``TTL`` under 60 s is accepted only so that tests can run many lifetimes in a minute; the
``webchat.W050`` check says so.

One snapshot, dropped when a test changes the setting. Bad values are reported by the
``webchat.E050`` check; at runtime they raise the same message.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "WEBCHAT_TOKENS"
#: The seed's clamp for GREENTIC_DIRECTLINE_TOKEN_TTL_SECS (directline_session.rs).
SEED_MIN_TTL = 60
MAX_TTL = 604_800
#: A year: sessions are bounded, and the bound keeps the arithmetic in plain integers.
MAX_MAX_SESSION = 366 * 86_400


@dataclass(frozen=True, slots=True)
class TokenSettings:
    TTL: int = 1800
    MAX_SESSION: int = 86_400

    @property
    def touch_every(self) -> int:
        """Seconds between two writes of a conversation's ``last_seen``: a tenth of the TTL,
        so the sliding window is never short by more than that, at one write per interval."""
        return max(1, self.TTL // 10)


_NAMES = frozenset(TokenSettings.__dataclass_fields__)


def clamp_seed_ttl(raw: str) -> int:
    """``GREENTIC_DIRECTLINE_TOKEN_TTL_SECS`` as the seed reads it: whole seconds, clamped to
    60-604,800. Unlike the seed, a value that is not a number is an error, not the default."""
    try:
        seconds = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(
            f"GREENTIC_DIRECTLINE_TOKEN_TTL_SECS={raw!r} is not a whole number of seconds."
        ) from None
    return min(max(seconds, SEED_MIN_TTL), MAX_TTL)


def _problems(configured) -> list[str]:
    if not isinstance(configured, dict):
        return [f"{SETTING_NAME} must be a dict, e.g. {{'TTL': 1800}}."]
    problems = []
    unknown = sorted(set(configured) - _NAMES)
    if unknown:
        problems.append(f"{SETTING_NAME} has unknown key(s) {unknown}; known: {sorted(_NAMES)}.")
    for key in sorted(set(configured) & _NAMES):
        value = configured[key]
        limit = MAX_TTL if key == "TTL" else MAX_MAX_SESSION
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
            problems.append(
                f"{SETTING_NAME}[{key!r}] must be a whole number of seconds from 1 to {limit}, "
                f"not {value!r}."
            )
    if not problems:
        merged = TokenSettings(**configured)
        if merged.MAX_SESSION < merged.TTL:
            problems.append(
                f"{SETTING_NAME}['MAX_SESSION'] ({merged.MAX_SESSION} s) is shorter than "
                f"'TTL' ({merged.TTL} s): a session must outlive its first token."
            )
    return problems


_snapshot: TokenSettings | None = None


def token_settings() -> TokenSettings:
    """The configured lifetimes over the defaults (read on first use, then kept)."""
    global _snapshot
    if _snapshot is None:
        configured = getattr(settings, SETTING_NAME, None) or {}
        problems = _problems(configured)
        if problems:
            raise ImproperlyConfigured(f"webchat.E050: {problems[0]}")
        _snapshot = TokenSettings(**configured)
    return _snapshot


@receiver(setting_changed)
def _reset_on_setting_changed(*, setting, **kwargs):
    global _snapshot
    if setting == SETTING_NAME:
        _snapshot = None


def check_token_settings(app_configs=None, **kwargs):
    """``webchat.E050``: WEBCHAT_TOKENS is well formed; ``webchat.W050``: a test-only TTL."""
    configured = getattr(settings, SETTING_NAME, None) or {}
    problems = _problems(configured)
    errors = [
        Error(problem, hint="See webchat/token_conf.py for the keys.", id="webchat.E050")
        for problem in problems
    ]
    if not problems and TokenSettings(**configured).TTL < SEED_MIN_TTL:
        errors.append(
            Warning(
                f"{SETTING_NAME}['TTL'] is under {SEED_MIN_TTL} s: meant for tests only.",
                hint="Clients refresh every 15 minutes; sliding renewal keeps active "
                "conversations alive, but every idle pause longer than the TTL ends one.",
                id="webchat.W050",
            )
        )
    return errors
