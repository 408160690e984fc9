"""The state of one channel of :class:`~notifier.layers.LocalChannelLayer`, and the checks
and copies every message sent through that layer gets."""

from copy import deepcopy

# Values that a shallow copy of a message may share between receivers.
_IMMUTABLE = frozenset({str, int, float, bool, bytes, type(None)})


def check_message(message):
    """Refuse what no channel layer may carry; called once per send, members or not."""
    if not isinstance(message, dict):
        raise TypeError(f"message must be a dict, not {type(message).__name__}")
    if "__asgi_channel__" in message:
        raise ValueError("message must not carry the reserved key '__asgi_channel__'")


def copier(message):
    """Return a function that gives each receiver its own copy of ``message`` (checked).

    Called once per send that has receivers. Flat messages of immutable values (all a
    watermark hint holds) are copied shallowly, anything else deeply, so no receiver sees
    another's mutations.
    """
    for value in message.values():
        if type(value) not in _IMMUTABLE:
            return deepcopy
    return dict.copy


class ChannelState:
    """One channel's undelivered messages and waiting receivers (never both at once)."""

    __slots__ = ("capacity", "queue", "waiters", "member")

    def __init__(self, capacity, member):
        self.capacity = capacity
        # Entries are [expires_at, channel name, message]; message None once taken. A deque,
        # made when first needed: a consumer that keeps up never queues, and an empty deque
        # is 760 bytes, which thousands of idle members would hold for nothing.
        self.queue = None
        # Receivers' futures, oldest first: a list, as there is rarely more than one.
        self.waiters = []
        # In at least one group: kept while idle, as a consumer comes back to receive()
        # after every message.
        self.member = member


def hand_over(waiters, message):
    """Give ``message`` to the oldest receiver in ``waiters`` still waiting; return False
    when there is none (then the message must be queued)."""
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(message)
            return True
    return False
