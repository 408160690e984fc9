"""Settings of the seed's layout (``webchat.tenant_paths``), one optional dict read lazily::

    WEBCHAT_SEED = {
        # Tenants (names or slugs) whose ``.../webchat/<tenant>/token`` answers without the
        # secret, as the seed's does for every tenant: anyone who can reach it starts
        # conversations. Empty: the endpoint wants ``Authorization: Bearer <secret>``.
        "PUBLIC_TOKEN_TENANTS": [],
        # POST /conversations with the secret and the same user.id within this many seconds
        # gets the same conversation (webchat.conversation_dedup). 0 turns it off.
        "CONVERSATION_DEDUP_SECONDS": 30,
    }

:func:`seed_settings` builds one snapshot on first use and drops it when a test changes the
setting. A bad value raises ``ImproperlyConfigured`` naming check ``webchat.E150``, which
``manage.py check`` reports first.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "WEBCHAT_SEED"
CHECK_ID = "webchat.E150"


@dataclass(frozen=True, slots=True)
class SeedSettings:
    PUBLIC_TOKEN_TENANTS: frozenset = frozenset()
    CONVERSATION_DEDUP_SECONDS: float = 30.0


def _problems(configured) -> list[str]:
    if not isinstance(configured, dict):
        return [f"{SETTING_NAME} must be a dict, e.g. {{'CONVERSATION_DEDUP_SECONDS': 30}}."]
    problems = []
    unknown = sorted(set(configured) - set(SeedSettings.__slots__))
    if unknown:
        problems.append(f"{SETTING_NAME} has unknown key(s) {unknown}.")
    tenants = configured.get("PUBLIC_TOKEN_TENANTS", [])
    listed = isinstance(tenants, list | tuple | set | frozenset)
    if not listed or not all(isinstance(name, str) and name for name in tenants):
        problems.append(
            f"{SETTING_NAME}['PUBLIC_TOKEN_TENANTS'] must be a list of tenant names or slugs, "
            f"not {tenants!r}."
        )
    window = configured.get("CONVERSATION_DEDUP_SECONDS", 30)
    if isinstance(window, bool) or not isinstance(window, int | float) or not 0 <= window <= 3600:
        problems.append(
            f"{SETTING_NAME}['CONVERSATION_DEDUP_SECONDS'] must be a number of seconds from 0 "
            f"(off) to 3600, not {window!r}."
        )
    return problems


_snapshot: SeedSettings | None = None


def seed_settings() -> SeedSettings:
    """The settings (called per request on the seed's token endpoint and on each start)."""
    global _snapshot
    if _snapshot is None:
        configured = getattr(settings, SETTING_NAME, None) or {}
        problems = _problems(configured)
        if problems:
            raise ImproperlyConfigured(f"{problems[0]} (check {CHECK_ID})")
        _snapshot = SeedSettings(
            PUBLIC_TOKEN_TENANTS=frozenset(configured.get("PUBLIC_TOKEN_TENANTS", ())),
            CONVERSATION_DEDUP_SECONDS=float(configured.get("CONVERSATION_DEDUP_SECONDS", 30)),
        )
    return _snapshot


@receiver(setting_changed)
def _reset(*, setting, **kwargs):
    global _snapshot
    if setting == SETTING_NAME:
        _snapshot = None


def check_seed_settings(app_configs=None, **kwargs):
    """System check ``webchat.E150``: WEBCHAT_SEED holds known keys with sane values."""
    configured = getattr(settings, SETTING_NAME, None) or {}
    return [
        Error(problem, hint="See webchat/seed_conf.py for the keys.", id=CHECK_ID)
        for problem in _problems(configured)
    ]
