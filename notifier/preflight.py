"""Strict startup's proof: this process may do on Redis what its backplane will do.

A PING only proves that Redis answers. The listener also needs SUBSCRIBE on the global,
resync and probe channels, and the sender and probe need PUBLISH; an ACL can deny any of
them. :func:`prove` subscribes to each channel on its own (so a denial names the channel),
then PUBLISHes one message on a fresh probe channel and reads it back. It PUBLISHes nothing
on the global or resync channel, where other replicas (and the reference) would see it.
Redis ACL channel patterns (``&``) apply to PUBLISH and SUBSCRIBE alike, so the two proofs
together cover PUBLISH on every channel, except for ACL selectors that grant PUBLISH on some
channels only (see README, "ACL user").
"""

import time
import uuid

from redis.sentinel import MasterNotFoundError

from .conf import mask_url
from .failures import explain
from .probe import probe_channel
from .resync import control_channel

#: The name strict startup's connection gives itself (``CLIENT SETNAME``, as the others).
CLIENT_NAME = "webchat-notifier-startup"


def channels_for(channel):
    """The channels :func:`prove` subscribes to for the global ``channel``; the last one, a
    probe channel of a random id, is the one it PUBLISHes on."""
    return [channel, control_channel(channel), probe_channel(channel, f"startup-{uuid.uuid4()}")]


def prove(transport, channel, timeout):
    """Synchronously PING, SUBSCRIBE and PUBLISH a round trip through ``transport`` (a
    :class:`~notifier.transport.RedisTransport`) for the global ``channel``.

    Raises the error of the first step that fails, through
    :func:`~notifier.failures.explain` (a :class:`~notifier.exceptions.BackplaneRefused`
    for authentication, TLS and ACL failures); ``TimeoutError`` when the message does not
    come back within ``timeout`` seconds.
    """
    url = transport.url
    channels = channels_for(channel)
    step = ("PING", ())
    client = transport.client(CLIENT_NAME, asynchronous=False, connect_timeout=timeout,
                              socket_timeout=timeout)
    pubsub = None
    try:
        client.ping()
        pubsub = client.pubsub()
        for name in channels:
            step = ("SUBSCRIBE", (name,))
            pubsub.subscribe(name)
            _wait_for(pubsub, "subscribe", name, timeout)
        probe = channels[-1]
        step = ("PUBLISH", (probe,))
        payload = f"startup:{uuid.uuid4()}"
        client.publish(probe, payload)
        step = ("SUBSCRIBE", (probe,))
        _wait_for(pubsub, "message", probe, timeout, data=payload)
    except Exception as exc:
        explained = explain(exc, url, command=step[0], channels=step[1])
        if explained is exc and isinstance(exc, MasterNotFoundError):
            explained = _sentinels_refusal(client, url) or exc
        if explained is exc:
            raise
        raise explained from exc
    finally:
        if pubsub is not None:
            pubsub.close()
        client.close()


def _sentinels_refusal(client, url):
    # redis-py's "No master found" keeps only the type of each sentinel's error: ask them
    # again, one PING each, for a refusal (password, TLS) to name.
    from .sentinel import parse_url

    sentinels = getattr(client.connection_pool, "sentinel_manager", None)
    user = parse_url(url).sentinel_username or "default"
    for sentinel in getattr(sentinels, "sentinels", ()):
        try:
            sentinel.ping()
        except Exception as exc:
            kwargs = sentinel.connection_pool.connection_kwargs
            where = f"the sentinel {kwargs.get('host')}:{kwargs.get('port')} of {mask_url(url)}"
            explained = explain(exc, url, user=user, where=where)
            if explained is not exc:
                return explained
    return None


def _wait_for(pubsub, kind, channel, timeout, data=None):
    # NOPERM for a SUBSCRIBE arrives as its reply: get_message raises it.
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message is None:
            continue
        name = message["channel"]
        name = name.decode() if isinstance(name, bytes) else name
        value = message["data"]
        value = value.decode() if isinstance(value, bytes) else value
        if message["type"] == kind and name == channel and (data is None or value == data):
            return
    what = "confirmation of SUBSCRIBE" if kind == "subscribe" else "PUBLISHed message"
    raise TimeoutError(f"no {what} on {channel!r} within {timeout:g} s")
