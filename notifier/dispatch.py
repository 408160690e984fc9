"""Dispatch: what happens to each message the listener's subscription brings.

A message on the global channel goes through one ordered drop pipeline (:func:`classify`),
then to the local groups; a message on the probe channel goes to the probe; a resync request
on the control channel goes to the resyncer. Every outcome is counted.
"""

import logging
import time

from . import lag, oplog, wire
from .control import decode_resync_request
from .resync import PEER

# The listener's logger: what it drops and ignores is logged where operators look for it.
logger = logging.getLogger("notifier.listener")

MALFORMED = "malformed"
BAD_SIGNATURE = "bad_signature"
SELF_ECHO = "self_echo"
UNKNOWN_VERSION = "unknown_version"
#: Drop reasons, as counted (:func:`classify` checks them in the order of its docstring).
DROP_REASONS = (MALFORMED, SELF_ECHO, UNKNOWN_VERSION, BAD_SIGNATURE)

#: The only wire version a listener delivers.
SUPPORTED_VERSION = wire.VERSION

#: The largest payload the listener decodes (bytes). Ours are a few hundred bytes; a bigger
#: one is dropped as ``malformed`` undecoded, so a flood of huge messages costs no JSON
#: parsing. The reference has no limit: this is the one place we drop what it would deliver,
#: set high enough that the wire corner cases (1 MiB ids, tests/support/wire_fuzz.py) still
#: agree. (Redis drops a subscriber whose output buffer outgrows ``client-output-buffer-limit
#: pubsub``: README "Health, readiness and metrics".)
MAX_PAYLOAD = 4 * 1024 * 1024

#: The counters a :class:`Dispatcher` increments.
COUNTERS = ("received", "delivered", *DROP_REASONS, "peer_resyncs", "control_bad_signature")

_MESSAGE = b"message"


def classify(payload, instance_id, signing=None):
    """Decide what to do with one payload from the global channel, in the reference's order.

    Returns ``(message, None, None)`` to deliver the :class:`~notifier.wire.WireMessage`, or
    ``(None, reason, detail)`` to drop it: ``malformed`` (not wire v1; ``detail`` is the
    decode error), then ``bad_signature`` (with ``signing``, a
    :class:`~notifier.signing.Keyring`: unsigned or forged, even when it claims our id;
    ``detail`` says why), then ``self_echo`` (published by ``instance_id``, in any UUID
    spelling, whatever its version), then ``unknown_version`` (not 1). A payload over
    :data:`MAX_PAYLOAD` bytes is ``malformed`` before anything else.
    """
    if len(payload) > MAX_PAYLOAD:
        return None, MALFORMED, wire.MalformedPayload(
            f"{len(payload)} bytes, over the {MAX_PAYLOAD}-byte limit")
    try:
        message = wire.decode(payload)
    except wire.MalformedPayload as exc:
        return None, MALFORMED, exc
    if signing is not None:
        forged = signing.verify(message, payload)
        if forged is not None:
            return None, BAD_SIGNATURE, forged
    if message.instance_id == instance_id:
        return None, SELF_ECHO, None
    if message.version != SUPPORTED_VERSION:
        return None, UNKNOWN_VERSION, None
    return message, None, None


class Dispatcher:
    """Routes the replies of one listener's subscription; built and owned by that listener.

    ``deliver(event)``: awaited for each event to deliver; ``deliver_nowait(event)``, when
    given, is tried first and returns False when ``deliver`` must run after all.
    ``counters``: a :class:`~notifier.stats.LoopCounters` with :data:`COUNTERS`.
    ``observer`` hooks get ``listener`` as their first argument.
    """

    def __init__(self, listener, *, deliver, deliver_nowait=None, counters, observer, lag):
        self.listener = listener
        self.instance_id = listener.instance_id
        self.signing = listener.signing
        self.probe = listener.probe
        self.resyncer = listener.resyncer
        self.counters = counters
        self.observer = observer
        self.lag = lag
        self._deliver = deliver
        self._deliver_nowait = deliver_nowait
        self._channel = listener.channel.encode()
        self._control = listener.control_channel.encode()
        self._probe = None if self.probe is None else self.probe.channel.encode()

    async def dispatch(self, batch):
        """Called by the listener with each batch it reads: handle every reply, in order."""
        channel, control, probe = self._channel, self._control, self._probe
        deliver, nowait = self._deliver, self._deliver_nowait
        instance_id, signing, incr = self.instance_id, self.signing, self.counters.incr
        for reply in batch:
            if reply[0] != _MESSAGE:
                continue  # subscription confirmations, PONGs
            source = reply[1]
            if source == channel:
                payload = reply[2]
                incr("received")
                message, reason, detail = classify(payload, instance_id, signing)
                if reason is None:
                    event = message.event
                    if nowait is None or not nowait(event):
                        await deliver(event)
                    self._delivered(payload, message)
                else:
                    self._dropped(reason, payload, detail)
            elif source == probe:
                self.probe.received(reply[2])
            elif source == control:
                self.control(reply[2])

    def _dropped(self, reason, payload, detail):
        self.counters.incr(reason)
        oplog.limited(logger, ("dropped", reason), logging.DEBUG,
                      "backplane listener dropped a %d-byte payload: %s%s", len(payload),
                      reason, f" ({detail})" if detail else "")
        oplog.payload_dropped(reason, payload, detail)
        self.observer.dropped(self.listener, reason, payload, detail)

    def _delivered(self, payload, message):
        self.counters.incr("delivered")
        stamped = lag.read(payload)
        if stamped is not None:
            self.lag.observe(time.time() - stamped / 1000.0)
        self.observer.delivered(self.listener, message)

    def control(self, payload):
        """A message on the control channel: a peer lost notifications, so resync (unless it
        is our own request, forged, or not a request)."""
        if self.signing is not None and self.signing.verify_control(payload) is not None:
            self.counters.incr("control_bad_signature")
            oplog.emit(oplog.BAD_SIGNATURE, channel="control", bytes=len(payload))
            return
        try:
            origin = decode_resync_request(payload)
        except ValueError:
            oplog.limited(logger, "control_malformed", logging.DEBUG,
                          "ignoring a malformed resync request of %d bytes", len(payload))
            return
        if origin == self.instance_id or self.resyncer is None:
            return
        self.counters.incr("peer_resyncs")
        oplog.limited(logger, "peer_resync", logging.INFO,
                      "backplane peer %s lost notifications: resyncing local consumers", origin)
        self.resyncer.request(PEER)
