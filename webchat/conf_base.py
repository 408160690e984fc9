"""The machinery of :mod:`webchat.conf`: a snapshot of settings whose properties validate.

A subclass lists ``defaults`` (``{setting: default}``; a dict setting: ``{key: default}``)
and ``check_ids`` (the check id of each dict setting), and reads each value in a
``cached_property`` with the validators below, which name the setting and raise
:class:`InvalidWebchatConfiguration` carrying the check id. ``errors()`` reads every
property, so the system check needs no list of its own.
"""

import functools

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import cached_property


class InvalidWebchatConfiguration(ImproperlyConfigured):
    """A ``WEBCHAT_*`` setting holds a value webchat cannot use.

    ``check_id`` is the system check reporting the same mistake; ``hint`` says the fix.
    """

    def __init__(self, message, *, hint, check_id, setting):
        super().__init__(message)
        self.hint = hint
        self.check_id = check_id
        self.setting = setting


class SettingsSnapshot:
    """One snapshot of the settings named in ``defaults``; see the module docstring."""

    defaults: dict = {}
    check_ids: dict = {}

    def __init__(self, raw):
        self.raw = raw  # {setting name: configured value}, absent when not configured

    @classmethod
    def from_django(cls):
        """Read Django's settings now (called lazily by :func:`get_settings`)."""
        return cls({
            name: getattr(django_settings, name)
            for name in cls.defaults
            if hasattr(django_settings, name)
        })

    # Validators: each names the setting (and key) and raises with the check id.

    def _error(self, setting, message, hint, check_id=None):
        return InvalidWebchatConfiguration(
            message, hint=hint, check_id=check_id or self.check_ids[setting], setting=setting
        )

    def _dict(self, setting):
        """The dict setting over its defaults (its check id when it is not a dict)."""
        configured = self.raw.get(setting)
        if configured is None:
            return self.defaults[setting]
        known = self.defaults[setting]
        if not isinstance(configured, dict):
            raise self._error(
                setting,
                f"{setting} must be a dict, not {type(configured).__name__}.",
                f"E.g. {setting} = {{{next(iter(known))!r}: {next(iter(known.values()))!r}}}.",
            )
        return {**known, **configured}

    def _unknown_keys(self, setting):
        """Raise when the dict setting has keys nobody reads: a typo would otherwise leave
        the default silently in force (checked by ``errors()``, at startup)."""
        configured = self.raw.get(setting)
        if not isinstance(configured, dict):
            return
        unknown = sorted(str(key) for key in configured if key not in self.defaults[setting])
        if unknown:
            raise self._error(
                setting,
                f"{setting} has unknown key(s) {unknown}; known: {sorted(self.defaults[setting])}.",
                "Fix the spelling; the README lists each key.",
            )

    def _value(self, setting, key=None):
        if key is None:
            return self.raw.get(setting, self.defaults[setting])
        return self._dict(setting)[key]

    @staticmethod
    def _name(setting, key):
        return setting if key is None else f"{setting}[{key!r}]"

    def _positive_int(self, setting, key=None, check_id=None):
        value = self._value(setting, key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            default = self.defaults[setting][key] if key else self.defaults[setting]
            raise self._error(
                setting,
                f"{self._name(setting, key)} must be a positive integer, not {value!r}.",
                f"Remove it to use {default!r}.",
                check_id,
            )
        return value

    def _positive_number(self, setting, key=None, check_id=None):
        value = self._value(setting, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
            raise self._error(
                setting,
                f"{self._name(setting, key)} must be a positive number, not {value!r}.",
                "Use a number of seconds, e.g. 300.",
                check_id,
            )
        return value

    def _bool(self, setting, key=None, check_id=None):
        value = self._value(setting, key)
        if not isinstance(value, bool):
            raise self._error(
                setting,
                f"{self._name(setting, key)} must be True or False, not {value!r}.",
                "In the environment, use 1 or 0.",
                check_id,
            )
        return value

    # For the system check.

    @classmethod
    def property_names(cls):
        """Every validated value, in definition order (read by ``check_settings``)."""
        return [
            name
            for klass in reversed(cls.__mro__)
            for name, attr in vars(klass).items()
            if isinstance(attr, cached_property)
        ]

    def errors(self):
        """Every distinct :class:`InvalidWebchatConfiguration` the properties raise."""
        found = {}
        reads = [functools.partial(getattr, self, name) for name in self.property_names()]
        reads += [functools.partial(self._unknown_keys, setting) for setting in self.check_ids]
        for read in reads:
            try:
                read()
            except InvalidWebchatConfiguration as exc:
                found.setdefault((exc.check_id, str(exc)), exc)
        return list(found.values())
