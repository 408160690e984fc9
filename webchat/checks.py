"""webchat's system checks: its ``WEBCHAT_*`` settings, and production settings.

``check_settings`` reports every mistake :mod:`webchat.conf` finds (``webchat.E001``-``E008``,
``E020``-``E024``, ``E040``-``E041``, ``E150``); ``webchat/asgi.py`` refuses to serve while
there is one.

Production settings must be real before the service starts.

With ``DEBUG=0`` the service refuses to start (``ImproperlyConfigured`` from
``WebchatConfig.ready()``, so daphne and every management command exit before serving)
unless it has a real ``DJANGO_SECRET_KEY``, a separate ``WEBCHAT_TOKEN_SIGNING_KEY``, explicit
``ALLOWED_HOSTS`` and explicit CORS origins. The same rules are a deploy check
(``manage.py check --deploy``), with stable ids ``webchat.E101``-``E105``.

They are not an ordinary check because Django's test runner sets ``DEBUG = False`` before it
runs the checks: an ordinary check keyed on DEBUG would fail every development test run.
"""

import logging

from django.conf import settings
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured

from .conf import get_settings

logger = logging.getLogger(__name__)

# Django's own bar for a secret key (django/core/checks/security/base.py).
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5
# HS256 wants a key at least as long as its 256-bit output (RFC 7518 section 3.2).
SIGNING_KEY_MIN_LENGTH = 32
# What the real clients send cross-origin (botframework-directlinejs and Web Chat).
REQUIRED_CORS_HEADERS = ("authorization", "content-type", "x-ms-bot-agent", "x-requested-with")
# A host only the development default of ALLOWED_HOSTS has (Django's test client uses it).
DEVELOPMENT_ONLY_HOST = "testserver"


def _weak(key, min_length):
    return not isinstance(key, str) or len(key) < min_length or len(set(key)) < 5


def production_errors() -> list[Error]:
    """Return what stops these settings from serving production, as check errors.

    Called by the deploy check and, when DEBUG is off, once at startup.
    """
    errors = []
    if _weak(settings.SECRET_KEY, SECRET_KEY_MIN_LENGTH) or settings.SECRET_KEY.startswith(
        ("dev-", "django-insecure")
    ):
        errors.append(
            Error(
                "SECRET_KEY is the development default or too weak.",
                hint=f"Set DJANGO_SECRET_KEY to a random value of at least "
                f"{SECRET_KEY_MIN_LENGTH} characters, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`.",
                id="webchat.E101",
            )
        )
    try:
        signing_key = get_settings().token_signing_key
    except ImproperlyConfigured:
        signing_key = None  # check_settings reports it (webchat.E007)
    if not signing_key or _weak(signing_key, SIGNING_KEY_MIN_LENGTH):
        errors.append(
            Error(
                "WEBCHAT_TOKEN_SIGNING_KEY is missing or shorter than "
                f"{SIGNING_KEY_MIN_LENGTH} characters: Direct Line tokens would be signed "
                "with a guessable key.",
                hint="Set WEBCHAT_TOKEN_SIGNING_KEY to a random value of at least "
                f"{SIGNING_KEY_MIN_LENGTH} characters, the same on every replica.",
                id="webchat.E102",
            )
        )
    elif signing_key == settings.SECRET_KEY:
        errors.append(
            Error(
                "WEBCHAT_TOKEN_SIGNING_KEY is the same value as SECRET_KEY.",
                hint="Use a separate random value, so that either can be rotated alone.",
                id="webchat.E102",
            )
        )
    hosts = list(settings.ALLOWED_HOSTS)
    if not hosts or "*" in hosts or DEVELOPMENT_ONLY_HOST in hosts:
        errors.append(
            Error(
                f"ALLOWED_HOSTS is {hosts!r}: empty, '*' or the development default.",
                hint="Set ALLOWED_HOSTS to the public host names, comma-separated, "
                "e.g. ALLOWED_HOSTS=chat.example.com.",
                id="webchat.E103",
            )
        )
    allow_all = getattr(settings, "CORS_ALLOW_ALL_ORIGINS", False)
    origins = list(getattr(settings, "CORS_ALLOWED_ORIGINS", []) or [])
    regexes = list(getattr(settings, "CORS_ALLOWED_ORIGIN_REGEXES", []) or [])
    if allow_all or not (origins or regexes):
        errors.append(
            Error(
                "CORS origins are not set: "
                + ("every origin is allowed." if allow_all else "no origin is allowed."),
                hint="Set CORS_ALLOWED_ORIGINS to the origins of the pages that embed Web "
                "Chat, comma-separated, e.g. CORS_ALLOWED_ORIGINS=https://www.example.com.",
                id="webchat.E104",
            )
        )
    allowed_headers = {h.lower() for h in getattr(settings, "CORS_ALLOW_HEADERS", ())}
    missing = [h for h in REQUIRED_CORS_HEADERS if h not in allowed_headers]
    if missing:
        errors.append(
            Error(
                f"CORS_ALLOW_HEADERS lacks {missing}: browsers would refuse the Direct Line "
                "client's requests.",
                hint=f"Allow at least {list(REQUIRED_CORS_HEADERS)}.",
                id="webchat.E105",
            )
        )
    return errors


def check_settings(app_configs=None, **kwargs):
    """The ``WEBCHAT_*`` settings' check (ids in :mod:`webchat.conf`): every property of the
    snapshot is read, and each distinct mistake is an error."""
    return [
        Error(str(exc), hint=exc.hint, obj=exc.setting, id=exc.check_id)
        for exc in get_settings().errors()
    ]


def refuse_broken_settings():
    """Called by ``webchat/asgi.py`` before serving: a broken ``WEBCHAT_*`` setting stops
    the server at startup rather than failing each request that reads it."""
    errors = check_settings()
    if errors:
        lines = "\n".join(f"  {e.id}: {e.msg} {e.hint}" for e in errors)
        raise ImproperlyConfigured(f"Refusing to serve with broken settings:\n{lines}")


def check_production_settings(app_configs=None, **kwargs):
    """The deploy check: called by ``manage.py check --deploy``."""
    return production_errors()


#: The admin prefix scanners try first.
DEFAULT_ADMIN_PATH = "admin/"


def check_admin_exposure(app_configs=None, **kwargs):
    """``webchat.W106`` when the admin is served at ``/admin/``: the login page and its
    password guessing are one well-known URL away from anyone (HSTS, SSL redirect and
    secure cookies are Django's own deploy checks, security.W004/W008/W012/W016)."""
    try:
        path = get_settings().admin_path
    except ImproperlyConfigured:
        return []  # check_settings reports it (webchat.E008)
    if path != DEFAULT_ADMIN_PATH:
        return []
    return [Warning(
        "The admin is served at /admin/, the first path scanners try.",
        hint="Set WEBCHAT_ADMIN_PATH to an unguessable prefix (e.g. 'ops-<random>/'), or to "
        "'' to serve no admin, and allow it only from the operators' network at the proxy.",
        id="webchat.W106",
    )]


def refuse_unsafe_production():
    """Called from ``WebchatConfig.ready()``: with DEBUG off, raise unless settings are real."""
    if settings.DEBUG:
        return
    errors = production_errors()
    if errors:
        lines = "\n".join(f"  {e.id}: {e.msg} {e.hint}" for e in errors)
        raise ImproperlyConfigured(
            f"Refusing to start with DEBUG=0: production settings are not real.\n{lines}"
        )
