"""What an open stream does for the token lifecycle (README "Token lifecycle"): it records
its client in the conversation's ``last_seen``, so the conversation stays alive and the
client's expired token is still accepted by its next refresh or post; and, on the same
schedule, it checks that the token's session goes on (not revoked, not past its maximum
lifetime), so that an open socket does not outlive its session by more than that.
"""

import asyncio
import contextlib
import logging

from . import queries, tokens
from .stream_reads import stream_db
from .tokens import TokenClaims, TokenError

logger = logging.getLogger(__name__)


def _record(conversation_id: str, seen_at: int):
    """Write ``last_seen`` and read the conversation back (on the stream's database thread)."""
    queries.touch_conversation(conversation_id, seen_at)
    return queries.conversation(conversation_id)


class LastSeen:
    """Owned by one stream socket: :meth:`note` is called when the socket opens and on each
    client frame, :meth:`aclose` when it is gone."""

    def __init__(self, claims: TokenClaims, last_seen: int):
        self.claims = claims
        self.last_seen = last_seen  # as the database had it, or as this socket last wrote it
        self._writer: asyncio.Task | None = None

    def note(self) -> bool:
        """Record the client when it is due (at most every tenth of the TTL, one write in
        flight; a failed write is retried on the next call). Return False once a write
        found the session over: the socket should close."""
        task = self._writer
        if task is not None:
            if not task.done():
                return True
            if not task.cancelled() and task.result() is False:
                return False
        if tokens.needs_touch(self.last_seen):
            self.last_seen = tokens.now()
            self._writer = asyncio.create_task(self._write(self.last_seen))
        return True

    async def _write(self, seen_at: int) -> bool:
        try:
            conversation = await stream_db(_record, self.claims.conversation_id, seen_at)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Stream could not record the client's last_seen")
            self.last_seen = 0
            return True
        if conversation is None:
            return False
        try:
            tokens.check_session(self.claims, conversation.tenant_token_epoch, seen_at)
        except TokenError:
            return False
        return True

    async def aclose(self) -> None:
        """Cancel a write in flight and wait for it."""
        task, self._writer = self._writer, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
