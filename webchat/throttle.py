"""The service's rate limits: which limits a request or a socket meets, and the limiter.

Each action (posting an activity, uploading, creating a conversation, opening a stream
socket) is limited per token, per client IP and per tenant: ``WEBCHAT_LIMITS`` in
:mod:`webchat.conf` lists the limits and their defaults. A token's limit follows its scope,
the tenant, conversation and user, not its text: refreshing a token does not reset it. A
caller with the secret has no token limit. The client IP is the connection's (``REMOTE_ADDR``, the
ASGI scope's ``client``): behind a proxy in ``WEBCHAT_TRUSTED_PROXIES``,
:mod:`webchat.forwarded` has made it the forwarded one (never daphne's ``--proxy-headers``).

Where the limits live: with the Redis notifier (or ``BACKEND: "redis"``) in Redis, shared
by every replica; otherwise in this process. When Redis fails, each replica enforces the
limits on its own (so across N replicas up to N times each limit) until Redis answers
again, retried every ``REDIS_RETRY`` seconds, with a warning and
``webchat_rate_limit_redis_errors_total``: refusing everyone during a Redis outage would
turn it into a full outage, and admitting everyone would drop every limit when an attacker
most needs them.
"""

import asyncio
import hashlib
import logging
import threading
import time

import redis
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from prometheus_client import Counter
from redis.backoff import NoBackoff
from redis.retry import Retry

from notifier.cluster import is_cluster_url
from notifier.conf import get_settings as notifier_settings
from notifier.conf import mask_url
from notifier.sentinel import is_sentinel_url
from notifier.transport import transport_for_url

from .conf import settings
from .metrics import REGISTRY
from .ratelimit import ALLOWED, BaseLimiter, Decision, MemoryLimiter, RedisLimiter

logger = logging.getLogger(__name__)

#: The rate-limited actions and the scopes each is limited by (the setting of a limit is
#: ``<ACTION>_PER_<SCOPE>``, e.g. ``POSTS_PER_TOKEN``).
ACTIONS = {
    "posts": ("token", "ip", "tenant"),
    "uploads": ("token", "ip", "tenant"),
    "conversations": ("ip", "tenant"),
    "sockets": ("token", "ip", "tenant"),
}
#: Settings whose change drops the limiter (the Redis URL may be the notifier's).
WATCHED_SETTINGS = frozenset({"WEBCHAT_LIMITS", "WEBCHAT_NOTIFIER", "CHANNEL_LAYERS", "CACHES"})
REDIS_NOTIFIER = "notifier.backends.redis.RedisNotifier"

REFUSED = Counter(
    "webchat_rate_limited",
    "Requests and sockets refused by a rate limit, by action and scope.",
    ["action", "scope"],
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "webchat_rate_limit_redis_errors",
    "Rate-limit hits that fell back to this replica's limits because Redis failed.",
    registry=REGISTRY,
)


class FallbackLimiter(BaseLimiter):
    """Hits Redis; on a Redis error, this process's limits until ``retry_after`` passes."""

    def __init__(self, shared: BaseLimiter, local: BaseLimiter, url: str, retry_after: float):
        self.shared = shared
        self.local = local
        self._url = url
        self._retry_after = retry_after
        self._down_until = 0.0

    def hit(self, limits) -> Decision:
        if self._down_until and time.monotonic() < self._down_until:
            REDIS_ERRORS.inc()
            return self.local.hit(limits)
        try:
            decision = self.shared.hit(limits)
        except (redis.RedisError, OSError) as exc:
            REDIS_ERRORS.inc()
            if not self._down_until:
                logger.warning(
                    "Rate limits: Redis at %s failed (%s: %s); each replica limits on its "
                    "own until it answers",
                    mask_url(self._url),
                    type(exc).__name__,
                    exc,
                )
            self._down_until = time.monotonic() + self._retry_after
            return self.local.hit(limits)
        if self._down_until:
            self._down_until = 0.0
            logger.warning("Rate limits: Redis at %s answers again", mask_url(self._url))
        return decision

    def close(self) -> None:
        self.shared.close()


_lock = threading.Lock()
_limiter: BaseLimiter | None = None


def get_limiter() -> BaseLimiter:
    """The process's limiter, built on first use from the settings (see the module doc)."""
    global _limiter
    with _lock:
        if _limiter is None:
            _limiter = _build()
        return _limiter


def shared_url() -> str | None:
    """The Redis URL the limits are shared through, or None: this process only."""
    backend = settings.limits_backend
    if backend == "memory":
        return None
    notifier = notifier_settings()
    if backend == "auto" and notifier.backend != REDIS_NOTIFIER:
        return None
    url = settings.limits_redis_url or notifier.url_and_source[0]
    if url is None:
        raise ImproperlyConfigured(
            "WEBCHAT_LIMITS['BACKEND'] is 'redis' but no Redis URL is set: set "
            "WEBCHAT_LIMITS['REDIS_URL'] or the notifier's URL (REDIS_URL)."
        )
    return url


def _notifier_tls(url):
    # The notifier's TLS settings (CA, client certificate) go with the notifier's URL.
    notifier = notifier_settings()
    try:
        return notifier.tls if url == notifier.url_and_source[0] else None
    except ImproperlyConfigured:
        return None  # notifier.E050-E052 report it


def _build() -> BaseLimiter:
    url = shared_url()
    if url is None:
        return MemoryLimiter()
    transport = transport_for_url(url, tls=_notifier_tls(url))
    prefix = settings.limits_key_prefix
    if is_cluster_url(url):
        # Keys go to their slot's master, and one script's keys must share a slot: one hash
        # tag puts every limit in one slot.
        client = transport.keyed_client(settings.limits_redis_timeout)
        prefix = f"{{{prefix}}}"
    elif is_sentinel_url(url):
        # The notifier's transport finds the current master (notifier.sentinel).
        timeout = settings.limits_redis_timeout
        client = transport.client(asynchronous=False, retries=1, connect_timeout=timeout,
                                  socket_timeout=timeout)
    else:
        client = redis.Redis.from_url(
            url,
            socket_timeout=settings.limits_redis_timeout,
            socket_connect_timeout=settings.limits_redis_timeout,
            retry=Retry(NoBackoff(), 1),  # once: a pooled connection Redis dropped
            **transport.tls_kwargs(),
        )
    shared = RedisLimiter(client, prefix)
    return FallbackLimiter(shared, MemoryLimiter(), url, settings.limits_redis_retry)


@receiver(setting_changed)
def _reset(setting, **kwargs):
    global _limiter
    if setting in WATCHED_SETTINGS:
        with _lock:
            limiter, _limiter = _limiter, None
        if limiter is not None:
            limiter.close()


def _scoped_key(*parts) -> str:
    # User ids are the tenant's strings: hashed, so a key's length and bytes stay bounded.
    joined = "\x00".join(map(str, parts)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).hexdigest()[:32]


def limits_for(action: str, tenant_id, ip: str | None, claims=None) -> list:
    """The ``(key, Rate, scope)`` triples that ``action`` by this caller meets."""
    if action not in ACTIONS:
        raise ValueError(f"unknown rate-limited action {action!r}; known: {sorted(ACTIONS)}")
    rates = {scope: settings.rates[f"{action}_PER_{scope}".upper()] for scope in ACTIONS[action]}
    found = []
    if claims is not None and rates.get("token"):
        key = _scoped_key(claims.tenant_id, claims.conversation_id, claims.user_id)
        found.append((f"{action}:token:{key}", rates["token"], "token"))
    if ip and rates.get("ip"):
        found.append((f"{action}:ip:{_scoped_key(ip)}", rates["ip"], "ip"))
    if tenant_id is not None and rates.get("tenant"):
        found.append((f"{action}:tenant:{tenant_id}", rates["tenant"], "tenant"))
    return found


def hit(action: str, tenant_id, ip: str | None, claims=None) -> Decision:
    """Count one ``action`` against its limits; the decision says whether it may proceed."""
    found = limits_for(action, tenant_id, ip, claims)
    if not found:
        return ALLOWED
    decision = get_limiter().hit([(key, rate) for key, rate, _ in found])
    if not decision.allowed:
        scope = found[decision.refused_by][2]
        REFUSED.labels(action, scope).inc()
        decision = Decision(False, decision.retry_after, decision.refused_by, scope)
    return decision


async def ahit(action: str, tenant_id, ip: str | None, claims=None) -> Decision:
    """:func:`hit` from the event loop: a Redis round trip goes to a thread, never the loop."""
    if isinstance(get_limiter(), MemoryLimiter):
        return hit(action, tenant_id, ip, claims)
    return await asyncio.to_thread(hit, action, tenant_id, ip, claims)
