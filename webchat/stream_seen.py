"""What an open stream does for sliding token renewal: it records its client in the
conversation's ``last_seen`` (README "Token lifecycle"), so the conversation stays alive and
the client's expired token is still accepted by its next refresh or post.
"""

import asyncio
import contextlib
import logging

from . import queries, tokens
from .stream_reads import stream_db

logger = logging.getLogger(__name__)


class LastSeen:
    """Owned by one stream socket: :meth:`note` is called when the socket opens and on each
    client frame, :meth:`aclose` when it is gone."""

    def __init__(self, conversation_id: str, last_seen: int):
        self.conversation_id = conversation_id
        self.last_seen = last_seen  # as the database had it, or as this socket last wrote it
        self._writer: asyncio.Task | None = None

    def note(self) -> None:
        """Write ``last_seen`` when it is due (at most every tenth of the TTL, one write in
        flight; a failed write is retried on the next call)."""
        if self._writer is not None and not self._writer.done():
            return
        if tokens.needs_touch(self.last_seen):
            self.last_seen = tokens.now()
            self._writer = asyncio.create_task(self._write(self.last_seen))

    async def _write(self, seen_at: int):
        try:
            await stream_db(queries.touch_conversation, self.conversation_id, seen_at)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Stream could not record the client's last_seen")
            self.last_seen = 0

    async def aclose(self) -> None:
        """Cancel a write in flight and wait for it."""
        task, self._writer = self._writer, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
