"""Settings for the WebChat service.

Everything comes from environment variables with safe development defaults: SQLite, the
in-memory notifier and the process-local channel layer. See README.md for the variables.
"""

import os
from pathlib import Path

import dj_database_url

from webchat.middleware_list import MiddlewareList

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name, default=()):
    value = os.environ.get(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)

# Development-only fallback; production (DEBUG=0) must set DJANGO_SECRET_KEY.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-insecure-secret-key-change-me")
# Signs Direct Line tokens (webchat/tokens.py). Production must set it (webchat.E102). In
# development without it: a random key made once per install, outside the repo, mode 0600
# (webchat/dev_key.py), never SECRET_KEY's public default.
WEBCHAT_TOKEN_SIGNING_KEY = os.environ.get("WEBCHAT_TOKEN_SIGNING_KEY") or None
WEBCHAT_DEV_KEY_FILE = None
if DEBUG and not WEBCHAT_TOKEN_SIGNING_KEY:
    from webchat.dev_key import default_path as _dev_key_path

    WEBCHAT_DEV_KEY_FILE = os.environ.get("WEBCHAT_DEV_KEY_FILE") or str(_dev_key_path())

# Token lifetimes (WEBCHAT_TOKENS in webchat/conf.py, README "Token lifecycle"). The seed's
# variable, read as the seed does: whole seconds clamped to 60-604,800 (but a value that is
# not a number is an error, not the default). WEBCHAT_TOKEN_MAX_SESSION_SECS bounds renewal.
WEBCHAT_TOKENS = {}
if os.environ.get("GREENTIC_DIRECTLINE_TOKEN_TTL_SECS"):
    _ttl = os.environ["GREENTIC_DIRECTLINE_TOKEN_TTL_SECS"].strip()
    if not _ttl.isdigit():
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"GREENTIC_DIRECTLINE_TOKEN_TTL_SECS={_ttl!r} is not a whole number of seconds."
        )
    WEBCHAT_TOKENS["TTL"] = min(max(int(_ttl), 60), 604_800)
if os.environ.get("WEBCHAT_TOKEN_MAX_SESSION_SECS"):
    WEBCHAT_TOKENS["MAX_SESSION"] = int(os.environ["WEBCHAT_TOKEN_MAX_SESSION_SECS"])

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "channels",
    "notifier",
    "webchat",
]

# Django's default middleware, as subclasses that spare the Direct Line API a thread hop per
# hook (webchat/middleware.py): same behaviour, same response headers.
# A MiddlewareList: Django's security checks recognise the subclasses (webchat/middleware_list.py).
MIDDLEWARE = MiddlewareList([
    # First, so it sees every response's final status (webchat/http_metrics.py).
    "webchat.http_metrics.request_metrics",
    "webchat.middleware.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "webchat.middleware.SessionMiddleware",
    "webchat.middleware.CommonMiddleware",
    "webchat.middleware.CsrfViewMiddleware",
    "webchat.middleware.AuthenticationMiddleware",
    "webchat.middleware.MessageMiddleware",
    "webchat.middleware.XFrameOptionsMiddleware",
])

# HTTPS behind the front proxy, reported by `manage.py check --deploy` (security.W004, W008,
# W012, W016) while off. Off by default: the local cluster and the tests speak plain HTTP.
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# Where the admin is served (webchat/conf.py): "" turns it off; check --deploy warns about the
# default "admin/", the first path scanners try (webchat.W106).
WEBCHAT_ADMIN_PATH = os.environ.get("WEBCHAT_ADMIN_PATH", "admin/") or None

ROOT_URLCONF = "webchat.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "webchat.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Two replicas share one SQLite file in development: wait for the write lock instead of
    # failing, and take it at BEGIN so read-then-write transactions cannot deadlock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("SQLITE_TEST_NAME") or None}
    # SQLITE_SYNCHRONOUS=NORMAL: in WAL mode a commit skips its fsync (still safe from
    # corruption; the newest commits may be lost if the machine, not the process, crashes).
    # Unset: SQLite's default, FULL. bench/load.py measures both.
    if os.environ.get("SQLITE_SYNCHRONOUS"):
        _synchronous = os.environ["SQLITE_SYNCHRONOUS"].strip().upper()
        if _synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"SQLITE_SYNCHRONOUS={_synchronous!r}: use OFF, NORMAL, FULL or EXTRA."
            )
        DATABASES["default"]["OPTIONS"]["init_command"] += f"PRAGMA synchronous={_synchronous};"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))

# Direct Line URLs have no trailing slash; never redirect a POST to add one.
APPEND_SLASH = False

# The process-local layer: group_send costs O(members of the group), not O(all channels).
# Cross-replica delivery is the notifier's job, not the channel layer's.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "notifier.layers.LocalChannelLayer",
        "CONFIG": {"capacity": int(os.environ.get("CHANNEL_CAPACITY", "100"))},
    }
}

REDIS_URL = os.environ.get("REDIS_URL")
# Django's error reports hide settings by name, not passwords inside URLs (REDIS_URL, the
# notifier's URL, CACHES): this filter masks those too (notifier.W010 without it).
DEFAULT_EXCEPTION_REPORTER_FILTER = "notifier.reporting.ExceptionReporterFilter"

# CHANNEL_LAYER picks the layer the consumers listen on: "local" (the default above) or, to
# compare designs (bench/load.py), a channels_redis layer on REDIS_URL: "redis-core"
# (RedisChannelLayer, capacity CHANNEL_CAPACITY) or "redis-pubsub" (RedisPubSubChannelLayer).
# A cross-process layer goes with the memory notifier, whose group send then reaches every
# replica; with the Redis notifier each consumer would hear every bump twice (notifier.W001).
_CHANNEL_LAYER_BACKENDS = {
    "redis-core": "channels_redis.core.RedisChannelLayer",
    "redis-pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
_CHANNEL_LAYER = os.environ.get("CHANNEL_LAYER", "local")
if _CHANNEL_LAYER in _CHANNEL_LAYER_BACKENDS:
    CHANNEL_LAYERS["default"] = {
        "BACKEND": _CHANNEL_LAYER_BACKENDS[_CHANNEL_LAYER],
        "CONFIG": {"hosts": [REDIS_URL or "redis://127.0.0.1:6379/0"]},
    }
    if _CHANNEL_LAYER == "redis-core":
        CHANNEL_LAYERS["default"]["CONFIG"]["capacity"] = int(
            os.environ.get("CHANNEL_CAPACITY", "100")
        )
elif _CHANNEL_LAYER != "local":
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"CHANNEL_LAYER={_CHANNEL_LAYER!r}: use local, redis-core or redis-pubsub."
    )

WEBCHAT_NOTIFIER = {
    "BACKEND": os.environ.get("WEBCHAT_NOTIFIER_BACKEND", "memory"),
    "URL": REDIS_URL,
    "CHANNEL": os.environ.get("WEBCHAT_NOTIFIER_CHANNEL", "greentic:webchat:notify"),
    "CAPACITY": int(os.environ.get("WEBCHAT_NOTIFIER_CAPACITY", "1000")),
}
if os.environ.get("WEBCHAT_NOTIFIER_INSTANCE_ID"):
    WEBCHAT_NOTIFIER["INSTANCE_ID"] = os.environ["WEBCHAT_NOTIFIER_INSTANCE_ID"]
# Signed wire (notifier/signing.py), off unless keys are given: "k1:<secret>,k0:<old secret>"
# (32+ bytes each) and the id that signs (optional with one key). Checked by notifier.E030-E032.
if os.environ.get("WEBCHAT_NOTIFIER_SIGNING_KEYS"):
    WEBCHAT_NOTIFIER["SIGNING_KEYS"] = os.environ["WEBCHAT_NOTIFIER_SIGNING_KEYS"]
if os.environ.get("WEBCHAT_NOTIFIER_SIGNING_KEY_ID"):
    WEBCHAT_NOTIFIER["SIGNING_KEY_ID"] = os.environ["WEBCHAT_NOTIFIER_SIGNING_KEY_ID"]

# The stream's per-replica limits (webchat/conf.py): the idle timeout (seconds without a
# frame either way; default 300) can be tuned per deployment.
WEBCHAT_STREAM = {}
if os.environ.get("WEBCHAT_STREAM_IDLE_TIMEOUT"):
    WEBCHAT_STREAM["IDLE_TIMEOUT"] = float(os.environ["WEBCHAT_STREAM_IDLE_TIMEOUT"])
# ... and the activities one connection replays before 4413 (default 1000).
if os.environ.get("WEBCHAT_STREAM_MAX_REPLAY"):
    WEBCHAT_STREAM["MAX_REPLAY"] = int(os.environ["WEBCHAT_STREAM_MAX_REPLAY"])
# Seconds between the stream's watermark sweeps (webchat/catch_up.py; default 1.5).
if os.environ.get("WEBCHAT_STREAM_CATCH_UP_INTERVAL"):
    WEBCHAT_STREAM["CATCH_UP_INTERVAL"] = float(os.environ["WEBCHAT_STREAM_CATCH_UP_INTERVAL"])

# The proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (webchat/forwarded.py):
# by default a proxy on this host; "WEBCHAT_TRUSTED_PROXIES=" (empty) trusts none.
WEBCHAT_TRUSTED_PROXIES = env_list("WEBCHAT_TRUSTED_PROXIES", ["127.0.0.0/8", "::1"])

# Who may read /metrics (webchat/metrics_access.py): with DEBUG off only with its token
# (WEBCHAT_METRICS_TOKEN), and from ALLOWED_IPS when set; with DEBUG on, everyone by default.
WEBCHAT_METRICS = {
    "ENABLED": env_bool("WEBCHAT_METRICS_ENABLED", True),
    "ALLOWED_IPS": env_list("WEBCHAT_METRICS_ALLOWED_IPS") or None,
    "TOKEN": os.environ.get("WEBCHAT_METRICS_TOKEN") or None,
}

# Freeze what survives full GC collections, so they stop walking every socket's objects
# (webchat/gc_freeze.py): WEBCHAT_GC_FREEZE=0 leaves Python's collector as it is.
WEBCHAT_GC_FREEZE = env_bool("WEBCHAT_GC_FREEZE", True)
# Fast paths through dependencies' private internals (notifier.compat), each only on the
# versions it was written for; False runs the public API everywhere (CI runs both).
DEPENDENCY_FAST_PATHS = env_bool("DEPENDENCY_FAST_PATHS", True)

# The demo page links to the same conversation on these replicas (scripts/cluster sets it).
WEBCHAT_DEMO_PEERS = env_list("WEBCHAT_DEMO_PEERS")

# The in-process bot (webchat/bot.py): a dotted path to a callable; WEBCHAT_BOT="" turns it off.
WEBCHAT_BOT = os.environ.get("WEBCHAT_BOT", "webchat.bot.echo_bot") or None
# Rate limits and the upload quota (webchat/conf.py, README "Limits and quotas"):
# WEBCHAT_LIMITS_ENABLED=0 turns the rate limits off (the test suite's replicas do).
WEBCHAT_LIMITS = {"ENABLED": env_bool("WEBCHAT_LIMITS_ENABLED", True)}
if os.environ.get("WEBCHAT_UPLOAD_QUOTA_BYTES"):
    WEBCHAT_LIMITS["UPLOAD_QUOTA_BYTES"] = int(os.environ["WEBCHAT_UPLOAD_QUOTA_BYTES"])
# manage.py apply_retention deletes what is older (webchat/retention.py); unset: keep all.
if os.environ.get("WEBCHAT_RETENTION_DAYS"):
    WEBCHAT_RETENTION_DAYS = float(os.environ["WEBCHAT_RETENTION_DAYS"])
# Any other key as JSON, e.g. WEBCHAT_LIMITS_JSON='{"POSTS_PER_TOKEN": [20, 10]}'.
if os.environ.get("WEBCHAT_LIMITS_JSON"):
    import json

    WEBCHAT_LIMITS.update(json.loads(os.environ["WEBCHAT_LIMITS_JSON"]))
# Direct Line REST size limits (webchat/conf.py): the defaults are the reference's.
WEBCHAT_DIRECTLINE = {
    "MAX_ACTIVITY_BYTES": 256 * 1024,
    "MAX_FILE_BYTES": 4 * 1024 * 1024,
    "MAX_UPLOAD_FILES": 10,
}

# The seed's URL layout (webchat/conf.py, WEBCHAT_SEED): tenants whose token endpoint needs no
# secret, and the POST /conversations dedup window (seconds, default 30, 0: off).
WEBCHAT_SEED = {"PUBLIC_TOKEN_TENANTS": env_list("WEBCHAT_PUBLIC_TOKEN_TENANTS")}
if os.environ.get("WEBCHAT_CONVERSATION_DEDUP_SECONDS"):
    WEBCHAT_SEED["CONVERSATION_DEDUP_SECONDS"] = float(
        os.environ["WEBCHAT_CONVERSATION_DEDUP_SECONDS"]
    )

CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "x-ms-bot-agent",
    "x-requested-with",
]
# A page's script may read how long a 429 asks it to wait (webchat/views/throttling.py).
CORS_EXPOSE_HEADERS = ["retry-after"]
if DEBUG and not CORS_ALLOWED_ORIGINS:
    CORS_ALLOW_ALL_ORIGINS = True

TEST_RUNNER = "webchat.test_runner.CountingTestRunner"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "daphne": {"level": "WARNING"},
    },
}
