"""The Direct Line stream: the WebSocket behind a conversation's ``streamUrl``.

``/v3/directline/conversations/{id}/stream?watermark=W&t=<token>`` (the token may come in
``Sec-WebSocket-Protocol`` instead: ``webchat.stream_auth``; the seed's layout
``/v1/{messaging,web}/webchat/<tenant>/v3/directline/...`` is the same stream, its tenant
checked against the token's: ``webchat.tenant_paths``) replays the activities
after ``W`` (empty or absent: from the start), then sends each new one once, in order, as
ActivitySets ``{"activities": [...], "watermark": "N"}``. Notifications only say "re-read":
the database is the truth, so a socket cannot miss or repeat what it reads from its cursor.

Close codes. daphne drops close reasons, so every refusal has a code of its own (the reason
is sent too, for servers that pass it on). Refusals are decided before the handshake is
accepted; the handshake then completes only to carry the code (a close before accepting
becomes a bare HTTP 403): no group is joined, nothing is read or sent.

====  ================================================================================
4400  ``watermark`` is not a non-negative integer below 2**63, or is ahead of the conversation
4401  token missing or not valid (malformed, bad signature, wrong issuer)
4403  token for another conversation or another tenant (the path's tenant included)
4404  no such conversation, no such tenant in the path (or no such stream path)
4408  idle: no client frame and nothing sent for ``IDLE_TIMEOUT`` seconds
4413  replay cut: more than ``MAX_REPLAY`` activities missed. The first ``MAX_REPLAY``
      are sent, then the socket closes; reconnecting with the last watermark received
      (directlinejs does) gets the next ones.
4419  token expired (refresh it: ``POST /v3/directline/tokens/refresh``), revoked, or its
      session past its maximum lifetime (README "Token lifecycle")
4429  too many sockets on this replica for the conversation, the user, the client IP or the
      tenant, or sockets opened too fast (``webchat.throttle``: per token, IP, tenant)
4500  the stream failed on the server (e.g. the database); reconnect with the last watermark
1009  a client frame over ``MAX_FRAME_BYTES``; under daphne its own
      ``--websocket-max-message-size`` (1 MiB by default) closes with 1009 first
====  ================================================================================

Idle: only what this consumer sees counts as activity, i.e. client frames (Direct Line
clients send an empty frame every 20 s) and frames sent to the client. daphne's protocol
pings are invisible here; they detect dead peers on their own (``--ping-timeout``).

An open stream keeps its conversation alive for sliding token renewal, and closes with 4419
once its token's session is revoked or over (:mod:`webchat.stream_seen`).
"""

import asyncio
import contextlib
import logging
import re
from enum import IntEnum
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from notifier.events import group_name
from notifier.tasks import cancel_and_wait

from . import queries, tokens
from .catch_up import catch_up
from .conf import settings
from .limits import socket_slots
from .metrics import stream_stats
from .pages import stream_page
from .stream_auth import offered_token, stream_token
from .stream_reads import shared_reads, stream_db
from .stream_seen import LastSeen
from .tenant_paths import path_tenant_refusal
from .throttle import ahit
from .tokens import TokenError, read_token

logger = logging.getLogger(__name__)

_WATERMARK = re.compile(r"[0-9]{1,19}")
_MAX_WATERMARK = 2**63 - 1


class CloseCode(IntEnum):
    BAD_WATERMARK = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    IDLE_TIMEOUT = 4408
    REPLAY_TOO_LARGE = 4413
    TOKEN_EXPIRED = 4419
    TOO_MANY_SOCKETS = 4429
    SERVER_ERROR = 4500
    MESSAGE_TOO_BIG = 1009


def parse_watermark(raw: str | None) -> int | None:
    """Return the watermark a client sent (absent or empty: 0), or None if it is not valid."""
    if raw is None or raw == "":
        return 0
    if not _WATERMARK.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= _MAX_WATERMARK else None


def _conversation_state(conversation_id: str):
    """Return ``(tenant_id, watermark, last_seen, tenant token epoch)`` of a conversation,
    or None."""
    conversation = queries.conversation(conversation_id)
    if conversation is None:
        return None
    return (
        conversation.tenant_id,
        conversation.watermark,
        conversation.last_seen,
        conversation.tenant_token_epoch,
    )


class StreamConsumer(AsyncWebsocketConsumer):
    """One Direct Line stream socket. See the module docstring for the protocol."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tenant_id = None
        self.conversation_id = None
        self.group = None
        self.cursor = 0  # the newest watermark sent to this client
        self.wanted = 0  # the newest watermark announced (or sent)
        self._dirty = False  # a bump above the cursor arrived since the last read began
        self.reads = 0  # database reads after the handshake (tests count them)
        self._slot = None
        self._replay_end = None  # a long backlog: the last watermark this socket replays
        self._closing = False
        self._shut = False
        self._reader: asyncio.Task | None = None
        self._closer: asyncio.Task | None = None
        self._rejoiner: asyncio.Task | None = None
        self._joined_at = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._seen: LastSeen | None = None

    async def __call__(self, scope, receive, send):
        # Whatever ends the consumer (disconnect, cancellation by the server), the socket's
        # tasks, group membership and slot are given back exactly once.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._shutdown()

    async def dispatch(self, message):
        """Called for each message from the client or the channel layer.

        Channels' own dispatch runs ``close_old_connections`` in a worker thread before every
        handler: a thread hop per ping and per watermark bump. This consumer touches the
        database only through :mod:`webchat.stream_reads`, which looks after its connection.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            logger.warning("Stream ignored a message of unknown type %r", message.get("type"))
            return
        await handler(message)

    # Connection

    async def accept(self, subprotocol=None, headers=None):
        """Every accept (refusals too) echoes the subprotocol that carried the token."""
        await super().accept(subprotocol or offered_token(self.scope), headers)

    async def websocket_connect(self, message):
        """Called when the client opens the socket: authenticate, then join and replay."""
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"), True)

        token = stream_token(self.scope, query)
        if not token:
            return await self._refuse(
                CloseCode.UNAUTHORIZED, "token missing (query t= or Sec-WebSocket-Protocol)"
            )
        try:
            claims = read_token(token)
        except TokenError as exc:
            if exc.code == "TokenExpired":
                return await self._refuse(CloseCode.TOKEN_EXPIRED, "token expired")
            return await self._refuse(CloseCode.UNAUTHORIZED, "token not valid")
        if claims.conversation_id != conversation_id:
            return await self._refuse(CloseCode.FORBIDDEN, "token for another conversation")

        watermark = parse_watermark((query.get("watermark") or [""])[0])
        if watermark is None:
            return await self._refuse(CloseCode.BAD_WATERMARK, "watermark not valid")

        try:
            state = await stream_db(_conversation_state, conversation_id)
        except Exception:
            logger.exception("Stream could not read the conversation; refusing with 4500")
            return await self._refuse(CloseCode.SERVER_ERROR, "server error, reconnect")
        if state is None:
            return await self._refuse(CloseCode.NOT_FOUND, "conversation not found")
        tenant_id, current = str(state[0]), state[1]
        if tenant_id != claims.tenant_id:
            return await self._refuse(CloseCode.FORBIDDEN, "token for another tenant")
        path_tenant = self.scope["url_route"]["kwargs"].get("tenant")
        if path_tenant is not None:
            refusal = await stream_db(path_tenant_refusal, path_tenant, tenant_id)
            if refusal is not None:
                return await self._refuse(CloseCode(refusal[0]), refusal[1])
        try:
            tokens.check_session(claims, state[3], state[2])
        except TokenError:
            return await self._refuse(CloseCode.TOKEN_EXPIRED, "token revoked or session over")
        if watermark > current:
            return await self._refuse(CloseCode.BAD_WATERMARK, "watermark ahead of conversation")
        if current - watermark > settings.max_replay:
            # Send the first MAX_REPLAY, then close with 4413: the client reconnects from
            # there, so each try moves on (a bare refusal would repeat forever).
            logger.info("Stream replay too large: %d activities", current - watermark)
            self._replay_end = watermark + settings.max_replay

        ip = (self.scope.get("client") or [None])[0]
        decision = await ahit("sockets", tenant_id, ip, claims)
        if not decision.allowed:
            reason = f"too many sockets for this {decision.scope}, retry after"
            return await self._refuse(
                CloseCode.TOO_MANY_SOCKETS, f"{reason} {decision.retry_after_seconds} s"
            )
        refused_by = socket_slots.acquire(
            tenant_id, conversation_id, user_id=claims.user_id, ip=ip
        )
        if refused_by:
            return await self._refuse(CloseCode.TOO_MANY_SOCKETS, f"{refused_by} reached")
        self._slot = (tenant_id, conversation_id, claims.user_id, ip)
        self.tenant_id, self.conversation_id = tenant_id, conversation_id

        if self._replay_end is None:
            # Join BEFORE reading: anything committed from here on is either in the first
            # read or announced to this socket afterwards. The layer is process-local.
            self.group = group_name(tenant_id, conversation_id)
            await self.channel_layer.group_add(self.group, self.channel_name)
            self._joined_at = asyncio.get_running_loop().time()
            catch_up.add(self)
        await self.accept()
        # The first read covers at least ``current``: a sweep (webchat.catch_up) that finds
        # the conversation there while that read runs has nothing to add.
        self.cursor, self.wanted = watermark, current
        self._touch()
        self._arm_idle_timer()
        self._seen = LastSeen(claims, state[2])
        self._seen.note()
        # The first read always runs, even with nothing announced yet: an activity committed
        # between reading the conversation above and joining the group was announced to no one.
        self._reader = asyncio.create_task(self._drain(first=True))

    async def websocket_receive(self, message):
        """Called for each client frame: empty pings and anything else are only liveness."""
        self._touch()
        if self._seen is not None and not self._closing and not self._seen.note():
            logger.info("Stream's token revoked or session over: closing")
            return await self._close_with(CloseCode.TOKEN_EXPIRED, "token revoked or session over")
        text = message.get("text")
        if text is not None:
            if not text:
                return
            # n characters are n to 4n UTF-8 bytes: encode only when the bound is not enough.
            size = len(text)
            if size * 4 > settings.max_frame_bytes:
                size = len(text.encode("utf-8", "surrogatepass"))
        else:
            size = len(message.get("bytes") or b"")
        if size > settings.max_frame_bytes:
            logger.info("Stream frame of %d bytes over the limit: closing", size)
            await self._close_with(CloseCode.MESSAGE_TOO_BIG, "frame too big")

    async def websocket_disconnect(self, message):
        """Called when the socket is gone: leave the group, stop the tasks, free the slot."""
        await self._shutdown()
        raise StopConsumer()

    # Live updates

    async def webchat_watermark(self, event):
        """Called for each ``webchat.watermark`` sent to the conversation's group."""
        watermark = event.get("watermark")
        if (
            self._closing
            or event.get("conversation_id") != self.conversation_id
            or event.get("tenant_id") != self.tenant_id
            or isinstance(watermark, bool)
            or not isinstance(watermark, int)
            or watermark <= self.cursor
        ):
            return
        self.wanted = max(self.wanted, watermark)
        self._dirty = True
        # Coalesce: at most one read in flight. A running reader reads once more if any
        # bump arrived during its read, however many did.
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._drain())

    async def webchat_resync(self, event):
        """Called for each ``webchat.resync`` sent to the group: the backplane may have missed
        notifications (its listener reconnected). One batched watermark check of every local
        socket (``webchat.catch_up``) wakes this one if its conversation moved; a pass over
        every group costs one such check, not a read per socket."""
        if self._closing or self.conversation_id is None:
            return
        stream_stats.resyncs += 1
        catch_up.request(event.get("requested_at"))

    def behind(self, watermark):
        """Whether this socket must be told of ``watermark`` (the catch-up's sweep asks): its
        cursor is below it and no read in flight was already announced that far."""
        if self._closing or watermark <= self.cursor:
            return False
        return self._reader is None or self._reader.done() or self.wanted < watermark

    async def _drain(self, first=False):
        """Read from the cursor and send, until no bump above the cursor is pending.

        ``_dirty`` says a bump above the cursor arrived since the last read started;
        ``wanted`` (the highest announced) skips the extra read when the last read already
        covered every bump. The filter on bumps is the cursor, not ``wanted``: a bogus
        watermark costs one empty read and never hides a later real one.
        """
        limit, more = settings.max_replay, first
        budget = (settings.max_poll_bytes, settings.max_frame_bytes)
        try:
            while not self._closing and (more or (self._dirty and self.wanted > self.cursor)):
                self._dirty = False
                self.reads += 1
                # Shared with the other sockets of this conversation at the same cursor; the
                # page is cut by count and bytes and encoded on the database thread.
                page = await shared_reads.read(
                    stream_page, self.conversation_id, self.cursor, limit, *budget,
                    self._replay_end,
                )
                if self._closing:
                    return
                if first:
                    first = False
                    stream_stats.replayed(len(page.parts))
                # A cut page may hide more than was announced: read on.
                more = page.more
                for frame in page.frames:
                    await self.send(text_data=frame)
                if page.parts:
                    stream_stats.sent(len(page.parts))
                    self._touch()
                    self.cursor = page.newest
                    self.wanted = max(self.wanted, page.newest)
                if self._replay_end is not None and (
                    self.cursor >= self._replay_end or not page.parts
                ):
                    # No {"error": ...} frame: a frame that is not an ActivitySet ends a
                    # directlinejs client's stream for good (../shared/directline.md).
                    return await self._close_with(CloseCode.REPLAY_TOO_LARGE, "replay cut")
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Stream read failed for a conversation; closing the socket")
            await self._close_with(CloseCode.SERVER_ERROR, "server error, reconnect")

    # Idle timeout and group membership

    def _touch(self):
        self._last_activity = asyncio.get_running_loop().time()

    def _arm_idle_timer(self):
        loop = asyncio.get_running_loop()
        deadline = self._last_activity + settings.idle_timeout
        self._idle_timer = loop.call_at(deadline, self._idle_check)

    def _idle_check(self):
        """Called by the loop at the idle deadline: close, or wait for the new deadline.

        It runs at least once per ``IDLE_TIMEOUT`` while the socket lives, so it also renews
        the group membership before the layer's ``group_expiry`` (a day by default) ends it:
        daphne may keep a socket longer (``--websocket_timeout -1``) and a socket that
        silently left its group would hear nothing more.
        """
        self._idle_timer = None
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._last_activity + settings.idle_timeout:
            self._arm_idle_timer()
            renew_after = getattr(self.channel_layer, "group_expiry", 86400) / 2
            renewing = self._rejoiner is not None and not self._rejoiner.done()
            joined = self.group is not None  # a replay-cut socket joins no group
            if joined and loop.time() - self._joined_at >= renew_after and not renewing:
                self._rejoiner = loop.create_task(self._renew_membership())
            return
        logger.info("Stream idle for %s s: closing", settings.idle_timeout)
        self._closer = loop.create_task(self._close_with(CloseCode.IDLE_TIMEOUT, "idle timeout"))

    async def _renew_membership(self):
        """Join the group again: layers restart a member's ``group_expiry`` on each add."""
        self._joined_at = asyncio.get_running_loop().time()
        await self.channel_layer.group_add(self.group, self.channel_name)

    # Closing

    async def _refuse(self, code: CloseCode, reason: str):
        logger.info("Stream refused with %d: %s", code, reason)
        await self.accept()
        await self._close_with(code, reason)

    async def _close_with(self, code: CloseCode, reason: str):
        if self._closing:
            return
        self._closing = True
        await self.close(code=int(code), reason=reason)

    async def _shutdown(self):
        """Called once the socket is gone (or the consumer ends): give everything back."""
        if self._shut:
            return
        self._shut = True
        self._closing = True
        # The synchronous parts first: they must happen even if an await below is cancelled.
        if self._slot is not None:
            socket_slots.release(*self._slot)
            self._slot = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        sweeper = catch_up.discard(self) if self.group is not None else None
        current = asyncio.current_task()
        for task in (self._reader, self._closer, self._rejoiner):
            if task is not None and task is not current and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._seen is not None:
            await self._seen.aclose()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None
        # The last socket of the process owns the catch-up's task: nothing is left to sweep.
        await cancel_and_wait(sweeper)


class UnknownStreamConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: accept only to close with 4404."""

    async def connect(self):
        """Called when the client opens the socket."""
        logger.info("WebSocket to an unknown path refused with 4404")
        await self.accept(offered_token(self.scope))
        await self.close(code=int(CloseCode.NOT_FOUND), reason="no such stream")
