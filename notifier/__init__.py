"""django-channels-backplane: tell every Channels consumer, in every server process, that a
topic changed. A Redis pub/sub backplane (wire v1); the database stays the truth.

The public API, in one place (imported lazily: importing ``notifier`` loads no Django code)::

    # settings.py
    INSTALLED_APPS = [..., "channels", "notifier"]
    CHANNEL_LAYERS = {"default": {"BACKEND": "notifier.layers.LocalChannelLayer"}}
    BACKPLANE = {"BACKEND": "redis", "URL": "redis://127.0.0.1:6379/0"}

    # asgi.py
    application = notifier.with_backplane(ProtocolTypeRouter({...}))

    # publishing, after the change is committed
    notifier.changed.send(sender=Counter, namespace="counter", key="a", version=7)  # on commit
    notifier.publish("counter", "a", 7)             # sync code, now
    await notifier.apublish("counter", "a", 7)      # async code, now

    # consuming
    class CounterConsumer(notifier.BackplaneConsumerMixin, AsyncJsonWebsocketConsumer):
        async def connect(self): await self.subscribe("counter", "a"); await self.accept()
        async def topic_changed(self, namespace, key, version): ...

Tests: :mod:`notifier.testing`. Guide: docs/notifier.md.
"""

import importlib

__version__ = "1.0.0"

# Public name -> (module, attribute).
_EXPORTS = {
    "publish": ("notifier.publishing", "publish"),
    "apublish": ("notifier.publishing", "apublish"),
    "publish_on_commit": ("notifier.publishing", "publish_on_commit"),
    "Change": ("notifier.events", "Change"),
    "group_name": ("notifier.events", "group_name"),
    "changed": ("notifier.signals", "changed"),
    "BackplaneConsumerMixin": ("notifier.consumers", "BackplaneConsumerMixin"),
    "with_backplane": ("notifier.asgi", "with_backplane"),
    "LocalChannelLayer": ("notifier.layers", "LocalChannelLayer"),
    "get_notifier": ("notifier.runtime", "get_notifier"),
    "BackplaneUnavailable": ("notifier.exceptions", "BackplaneUnavailable"),
    "InvalidNotifierConfiguration": ("notifier.exceptions", "InvalidNotifierConfiguration"),
    # webchat's names for the same things
    "NotifyEvent": ("notifier.events", "NotifyEvent"),
    "watermark_bumped": ("notifier.signals", "watermark_bumped"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'notifier' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
