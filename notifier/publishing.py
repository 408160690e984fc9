"""Publishing a change of a topic ``(namespace, key)`` to every consumer in every process.

A change carries a ``version``: an integer that grows with each change of the topic (a
counter's value, a row's revision, a transcript's watermark). It is a hint: consumers re-read
the database, which stays the truth.
"""

from .events import Change
from .wire import U64_MAX


def change(namespace, key, version):
    """Return the :class:`~notifier.events.Change`, or raise ``TypeError``/``ValueError``
    naming the bad argument (what the wire cannot carry)."""
    for name, value in (("namespace", namespace), ("key", key)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"version must be an int, not {type(version).__name__}")
    if not 0 <= version <= U64_MAX:
        raise ValueError(f"version {version} is outside 0..2**64-1")
    return Change(namespace, key, version)


def publish(namespace, key, version):
    """From sync code: publish now (outside a transaction, or when it does not matter).

    Returns at once; a failure to reach Redis is counted and logged, never raised.
    """
    from .runtime import get_notifier

    get_notifier().publish(change(namespace, key, version))


async def apublish(namespace, key, version):
    """From async code: deliver to this process's consumers, then hand over to Redis."""
    from .runtime import get_notifier

    await get_notifier().apublish(change(namespace, key, version))


def publish_on_commit(namespace, key, version, *, using=None):
    """Publish once the transaction open on ``using`` commits (now if none is open): no
    process re-reads before the change is visible. What the ``changed`` signal does."""
    from .receivers import publish_after_commit

    event = change(namespace, key, version)
    publish_after_commit(None, tenant_id=event.tenant_id, conversation_id=event.conversation_id,
                         new_watermark=event.new_watermark, using=using)
