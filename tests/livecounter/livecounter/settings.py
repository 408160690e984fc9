import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("SECRET_KEY", "livecounter-development-only")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "channels",
    "notifier",
    "counters",
]
ROOT_URLCONF = "livecounter.urls"
ASGI_APPLICATION = "livecounter.asgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("LIVECOUNTER_DB", BASE_DIR / "db.sqlite3"),
        "OPTIONS": {"timeout": 20},
    }
}

# Each server process delivers to its own consumers on the process-local layer; the
# backplane carries every change to the other processes.
CHANNEL_LAYERS = {"default": {"BACKEND": "notifier.layers.LocalChannelLayer"}}
BACKPLANE = {
    "BACKEND": "redis",
    "URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    "CHANNEL": os.environ.get("BACKPLANE_CHANNEL", "livecounter"),
}

LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"notifier": {"handlers": ["console"], "level": "INFO"}},
}
