"""The notifier's exceptions: configuration mistakes and an unreachable backplane."""

from django.core.exceptions import ImproperlyConfigured


class NotifierError(Exception):
    """Base class of every error the notifier raises."""


class InvalidNotifierConfiguration(NotifierError, ImproperlyConfigured):
    """``settings.WEBCHAT_NOTIFIER`` holds a value the notifier cannot use.

    ``check_id`` is the system check that reports the same mistake (``notifier.E001``...),
    ``hint`` says what to set instead.
    """

    def __init__(self, message, *, check_id, hint=None):
        super().__init__(message)
        self.check_id = check_id
        self.hint = hint


class BackplaneUnavailable(NotifierError, ImproperlyConfigured):
    """Redis did not answer at startup (strict startup): the process must not start.

    The message names the URL with its password masked.
    """


class MalformedPayload(ValueError):
    """The payload is not a wire v1 message the reference would accept; the message says why."""
