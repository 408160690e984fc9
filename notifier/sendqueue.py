"""The bounded FIFO of wire payloads that both of the notifier's senders drain
(:mod:`notifier.outbound`), with the payloads of failed round trips kept for the next one."""

import collections

#: Most PUBLISH commands sent in one pipeline.
BATCH_SIZE = 256


class SendQueue:
    """The bounded FIFO both senders share, and the payloads of failed round trips.

    Items are ``(key, payload)``: the key names the conversation (``(tenant_id,
    conversation_id)``), or is None for a resync request. ``push`` returns whether it dropped
    the oldest item.
    """

    def __init__(self, capacity, resync_request=None):
        self.capacity = capacity
        self.items = collections.deque()
        #: key -> payload of failed round trips, oldest first; sent before ``items``.
        self.retry = collections.OrderedDict()
        #: Notifications were given up: publish ``resync_request`` with the next batch.
        self.lost = False
        self.resync_request = resync_request

    def __len__(self):
        return len(self.items) + len(self.retry)

    def pending(self):
        """Whether :meth:`take` has anything to send: notifications, or a resync request
        owed to the peers (alone after a failed round trip that held only it)."""
        return bool(self.items or self.retry
                    or (self.lost and self.resync_request is not None))

    def push(self, item):
        dropped = len(self.items) >= self.capacity
        if dropped:
            self.items.popleft()
            self.lost = True
        self.items.append(item)
        return dropped

    def take(self):
        """The next batch: retries first (they are older), then queued items, then a resync
        request when notifications were lost."""
        batch = []
        retry = self.retry
        while retry and len(batch) < BATCH_SIZE:
            batch.append(retry.popitem(last=False))
        items = self.items
        while items and len(batch) < BATCH_SIZE:
            batch.append(items.popleft())
        if self.lost and self.resync_request is not None and len(batch) < BATCH_SIZE:
            self.lost = False
            batch.append((None, self.resync_request))
        return batch

    def failed(self, batch):
        """Keep a failed batch for the next one; return ``(superseded, dropped)`` counts."""
        superseded = dropped = 0
        retry = self.retry
        for key, payload in batch:
            if key is None:
                self.lost = True  # the resync request goes out again with the next batch
                continue
            if key in retry:
                superseded += 1  # later in the batch means newer
                retry.move_to_end(key)
            retry[key] = payload
        while len(retry) > self.capacity:
            retry.popitem(last=False)
            dropped += 1
            self.lost = True
        return superseded, dropped

    def discard(self):
        """Empty everything (shutdown); return how many notifications were given up."""
        count = len(self.items) + len(self.retry)
        self.items.clear()
        self.retry.clear()
        return count


def count_sent(counters, batch):
    """Count a batch that Redis took."""
    notifications = sum(1 for key, _ in batch if key is not None)
    counters.incr("mirrored", notifications)
    if notifications != len(batch):
        counters.incr("resync_requests")


def count_failed(counters, queue, batch):
    """Count a failed batch and keep its payloads in ``queue`` for the next one; return
    how many notifications were given up."""
    counters.incr("mirror_failures", sum(1 for key, _ in batch if key is not None))
    superseded, dropped = queue.failed(batch)
    if superseded:
        counters.incr("mirror_superseded", superseded)
    if dropped:
        counters.incr("mirror_dropped", dropped)
    return dropped
