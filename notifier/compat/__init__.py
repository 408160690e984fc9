"""Dependencies' private internals, one module per dependency, and the switch for all of them.

Each module here checks, at import, that the installed version is one its fast paths were
written and tested for; on any other version (or with ``DEPENDENCY_FAST_PATHS = False``) the
callers take the dependency's public API instead. Nothing outside this package imports a
private name of redis-py, hiredis, asgiref, Django or Twisted.

* :mod:`notifier.compat.redis_py`: redis-py and hiredis (the sender's batch PUBLISH, the
  listener's batch reads);
* :mod:`notifier.compat.asgiref`: asgiref (``webchat.db_threads``);
* :mod:`notifier.compat.django`: Django (``webchat.handler``, ``webchat.middleware``).
"""

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..exceptions import InvalidNotifierConfiguration

SETTING_NAME = "DEPENDENCY_FAST_PATHS"

_enabled = None

# The modules' own caches of "fast path on?", dropped with ours when the setting changes.
_on_reset = []


def parse_version(text):
    """``"8.1.0"`` -> ``(8, 1, 0)``; pre-release and local suffixes are ignored."""
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def fast_paths_setting():
    """``settings.DEPENDENCY_FAST_PATHS`` (default True); raises
    :class:`~notifier.exceptions.InvalidNotifierConfiguration` (``notifier.E021``) unless a
    bool."""
    value = getattr(django_settings, SETTING_NAME, True)
    if not isinstance(value, bool):
        raise InvalidNotifierConfiguration(
            f"{SETTING_NAME} must be True or False, not {value!r}.",
            hint="False runs every dependency through its public API only.",
            check_id="notifier.E021",
        )
    return value


def fast_paths_enabled():
    """Whether fast paths may run at all (read once, again after a settings change)."""
    global _enabled
    value = _enabled
    if value is None:
        value = _enabled = fast_paths_setting()
    return value


class FastPath:
    """Whether one dependency's fast paths run: ``supported`` (its installed version and
    internals, checked at import) and the setting on. Called like a function; read once,
    again after a settings change."""

    def __init__(self, supported: bool):
        self.supported = supported
        self._on = None
        _on_reset.append(self.reset)

    def __call__(self) -> bool:
        on = self._on
        if on is None:
            on = self._on = self.supported and fast_paths_enabled()
        return on

    def reset(self):
        self._on = None


@receiver(setting_changed)
def _reset(*, setting, **kwargs):
    global _enabled
    if setting == SETTING_NAME:
        _enabled = None
        for reset in _on_reset:
            reset()

