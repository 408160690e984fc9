"""Keep Redis passwords out of Django's error reports (technical 500 page, mails to ADMINS).

Django's ``SafeExceptionReporterFilter`` hides a setting by its name (API, KEY, PASS,
SECRET, TOKEN, ...): ``REDIS_URL`` or ``BACKPLANE["URL"]`` would be shown with the password
inside the URL. :class:`ExceptionReporterFilter` also masks the password of every URL in
settings, ``request.META`` and the traceback's local variables::

    DEFAULT_EXCEPTION_REPORTER_FILTER = "notifier.reporting.ExceptionReporterFilter"

System check ``notifier.W010`` (:func:`exposed_settings`) asks the filter in force whether it
would show a configured Redis password, so a project with its own filter finds out too.
"""

import re
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django.views.debug import SafeExceptionReporterFilter

from .conf import URL_SCHEMES, get_settings

MASK = "***"

# scheme://user:password@ -> scheme://user:***@ (also inside longer text).
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://[^:@/\s'\"]*):([^@\s'\"]+)@", re.IGNORECASE)
# ?password=, &sentinel_password=, &ssl_password= ...
_QUERY = re.compile(r"([?&][a-z_]*password=)([^&\s'\"#]+)", re.IGNORECASE)


def mask_text(text):
    """``text`` with the password of every URL in it replaced by ``***``."""
    if "://" not in text and "password=" not in text.lower():
        return text
    return _QUERY.sub(rf"\1{MASK}", _USERINFO.sub(rf"\1:{MASK}@", text))


class _Masked:
    # A local variable whose repr named a password: shown as its masked repr.
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


class ExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus: passwords inside URLs are masked wherever it cleanses."""

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return mask_text(cleansed)
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [(name, self._cleanse_variable(name, value)) for name, value in variables]

    def _cleanse_variable(self, name, value):
        if isinstance(value, (str, dict, list, tuple)):
            return self.cleanse_setting(name, value)
        try:
            text = repr(value)
        except Exception:
            return value
        masked = mask_text(text)
        return value if masked == text else _Masked(masked)


def _url_secrets(url):
    # The password as it appears in the URL's text (still percent-encoded).
    if not isinstance(url, str) or url.partition("://")[0].lower() not in URL_SCHEMES:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    secrets = []
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo:
        secrets.append(userinfo.partition(":")[2])
    secrets += [value for key, value in parse_qsl(parts.query, keep_blank_values=True)
                if key.lower().endswith("password")]
    return [secret for secret in secrets if secret]


def configured_secrets():
    """The passwords of the backplane's URL and of every top-level setting that is a Redis
    URL (``REDIS_URL``), and the TLS key's passphrase."""
    secrets = set()
    try:
        backplane = get_settings()
        secrets.update(_url_secrets(backplane.url_and_source[0]))
        tls = backplane.tls
        if tls is not None and tls.key_password:
            secrets.add(tls.key_password)
    except ImproperlyConfigured:
        pass  # check_settings reports it
    for name in dir(django_settings):
        if name.isupper():
            secrets.update(_url_secrets(getattr(django_settings, name, None)))
    return secrets


def _shows(text, secret):
    if f":{secret}@" in text or f"password={secret}" in text:
        return True
    return len(secret) >= 8 and secret in text  # short ones would match by chance


def exposed_settings():
    """Names of the settings whose configured Redis password the active exception reporter
    filter (``DEFAULT_EXCEPTION_REPORTER_FILTER``) would show; empty when none."""
    secrets = configured_secrets()
    if not secrets:
        return []
    # Not Django's get_default_exception_reporter_filter(): it caches the first filter for
    # good, and a test that overrides the setting must see its own.
    reporter_filter = import_string(django_settings.DEFAULT_EXCEPTION_REPORTER_FILTER)()
    safe = reporter_filter.get_safe_settings()
    return sorted(name for name, value in safe.items()
                  if any(_shows(repr(value), secret) for secret in secrets))
