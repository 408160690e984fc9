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


class BackplaneRefused(BackplaneUnavailable):
    """Redis answers but refuses this client (see :mod:`notifier.failures`): retrying the
    same way will not help until someone changes the password, certificates or ACL.

    ``problem`` says what failed, ``detail`` is Redis's (or the TLS library's) own words,
    ``hint`` what to change; ``url`` (masked) where. ``check_id``: the system check that
    reports it at startup.
    """

    check_id = "notifier.E010"

    def __init__(self, problem, *, hint, detail=None, url=None):
        self.problem = problem
        self.hint = hint
        self.detail = detail
        self.url = url
        where = f" at {url}" if url else ""
        why = f" ({detail})" if detail else ""
        super().__init__(f"{problem}{where}{why}: {hint}")


class BackplaneAuthenticationFailed(BackplaneRefused):
    """Redis refused the user or password (``WRONGPASS``, ``NOAUTH``)."""

    check_id = "notifier.E011"


class BackplaneTLSFailed(BackplaneRefused):
    """The TLS handshake failed (certificate verification, client certificate, key)."""

    check_id = "notifier.E012"


class BackplanePermissionDenied(BackplaneRefused):
    """The ACL denies a command or channel the backplane needs (``NOPERM``)."""

    check_id = "notifier.E013"


class MalformedPayload(ValueError):
    """The payload is not a wire v1 message the reference would accept; the message says why."""
