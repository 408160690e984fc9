"""Resync requests: the control messages our replicas send each other on ``<channel>:resync``.

See :mod:`notifier.resync` for what a request makes a replica do.
"""

import json
import uuid


def encode_resync_request(instance_id, reason="lost", signing=None):
    """Return the payload that asks the other replicas to resync, from ``instance_id``.

    ``signing``: a :class:`~notifier.signing.Keyring` to sign it with, or None.
    """
    if signing is not None:
        return signing.sign_control(str(instance_id), reason)
    return json.dumps({"resync": True, "instance_id": str(instance_id),
                       "reason": reason}).encode()


def decode_resync_request(payload):
    """Return the :class:`uuid.UUID` of the replica that sent the request ``payload``.

    Raises ``ValueError`` for anything that is not a resync request (never with the payload in
    the message: it could be arbitrarily long).
    """
    try:
        request = json.loads(payload)
        # Any UUID spelling names the same peer.
        return uuid.UUID(request["instance_id"][:45])
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        # RecursionError: deeply nested JSON must not take the subscription down.
        raise ValueError("not a resync request") from None
