"""The in-process bot: a callable named by ``settings.WEBCHAT_BOT`` answers user activities.

The callable is called with each stored user activity (a dict, with its transcript ``id``)
and returns None, one activity dict or a list of them; it may also be ``async``. Each reply
is written as its own activity, after the user's one, with ``from.role`` ``"bot"`` and
``replyToId`` the user's activity id unless the bot set them. ``WEBCHAT_BOT = None``
turns the bot off (a bot elsewhere can use the bot API instead).

The request that posted the user's activity never waits for the bot: ``bot_runner`` runs
it on a small thread pool owned by this module, one conversation at a time so replies
keep the order of the messages they answer.
"""

import asyncio
import inspect
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections

from .conf import InvalidWebchatConfiguration
from .conf import settings as webchat_settings
from .models import Conversation
from .transcript import append_activity

logger = logging.getLogger(__name__)

#: ``from`` of bot activities that do not name their sender.
BOT_ACCOUNT = {"id": "bot", "name": "Bot"}


def echo_bot(activity: dict):
    """The default bot: answers each user message with ``You said: <text>``."""
    if activity.get("type") != "message":
        return None
    text = activity.get("text") or ""
    names = [a.get("name") or "a file" for a in activity.get("attachments") or []]
    if not text and names:
        return {"type": "message", "text": f"You sent: {', '.join(names)}"}
    return {"type": "message", "text": f"You said: {text}"}


def resolve_bot():
    """Return the bot callable, or None (``WEBCHAT_BOT``; raises ``webchat.E001``'s error
    when it does not import). Read on each use so settings changes apply."""
    return webchat_settings.bot


def bot_reply(user_activity: dict, reply) -> dict:
    """Complete a bot's reply to ``user_activity`` with the fields clients rely on."""
    if not isinstance(reply, dict):
        raise TypeError(f"a bot reply must be a dict, not {type(reply).__name__}")
    reply = dict(reply)
    reply.setdefault("type", "message")
    sender = dict(reply.get("from") or BOT_ACCOUNT)
    sender["role"] = "bot"
    reply["from"] = sender
    reply.setdefault("replyToId", user_activity["id"])
    if isinstance(user_activity.get("from"), dict):
        reply.setdefault("recipient", user_activity["from"])
    return reply


def _replies(result) -> list:
    if result is None:
        return []
    if isinstance(result, dict):
        return [result]
    return list(result)


async def _awaited(awaitable):
    return await awaitable


class BotRunner:
    """Runs the bot for user activities on an owned thread pool.

    ``submit`` is called once the user's activity is committed and returns at once. At
    most ``max_pending`` activities wait; more are dropped with a warning rather than
    queued without bound. ``close`` (tests, an owner shutting down) waits for the work in
    hand and drops what has not started; at interpreter exit the pool's worker threads
    are joined, so replies already queued are still written.
    """

    def __init__(self, max_workers: int | None = None, max_pending: int | None = None):
        self._max_workers = max_workers
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._executor = None
        self._queues: dict[str, deque] = {}
        self._pending = 0

    def _limits(self) -> tuple[int, int]:
        workers = self._max_workers or webchat_settings.bot_workers
        pending = self._max_pending or webchat_settings.bot_max_pending
        return workers, pending

    def submit(self, conversation_id: str, activity: dict) -> bool:
        """Queue ``activity`` for the bot; return False when it was dropped (logged)."""
        if resolve_bot_safely() is None:
            return False
        workers, max_pending = self._limits()
        with self._lock:
            if self._pending >= max_pending:
                logger.warning(
                    "Bot queue full (%d activities waiting): not answering %s",
                    self._pending,
                    activity.get("id"),
                )
                return False
            self._pending += 1
            queue = self._queues.get(conversation_id)
            if queue is not None:
                # A worker is draining this conversation; it will take this one next.
                queue.append(activity)
                return True
            self._queues[conversation_id] = deque([activity])
            if self._executor is None:
                self._executor = ThreadPoolExecutor(workers, thread_name_prefix="webchat-bot")
            self._executor.submit(self._drain, conversation_id)
        return True

    def _drain(self, conversation_id: str) -> None:
        """Called on a worker thread: answer the conversation's activities in order."""
        while True:
            with self._lock:
                queue = self._queues[conversation_id]
                if not queue:
                    del self._queues[conversation_id]
                    return
                # The head stays queued while it runs, so new activities join this drain.
                activity = queue[0]
            try:
                self._answer(conversation_id, activity)
            except Exception:
                logger.exception("The bot failed to answer activity %s", activity.get("id"))
            finally:
                with self._lock:
                    queue.popleft()
                    self._pending -= 1
                    self._idle.notify_all()

    def _answer(self, conversation_id: str, activity: dict) -> None:
        bot = resolve_bot()
        if bot is None:
            return
        close_old_connections()
        try:
            result = bot(activity)
            if inspect.isawaitable(result):
                # A worker thread has no event loop: give the async bot one of its own.
                result = asyncio.run(_awaited(result))
            for reply in _replies(result):
                append_activity(Conversation(pk=conversation_id), bot_reply(activity, reply))
        finally:
            close_old_connections()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no activity is waiting or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Drop activities not yet started, wait for running ones, stop the threads."""
        with self._lock:
            dropped = 0
            for queue in self._queues.values():
                while len(queue) > 1:
                    queue.pop()
                    dropped += 1
            self._pending -= dropped
            executor, self._executor = self._executor, None
        if dropped:
            logger.warning("Bot runner closing: %d activities left unanswered", dropped)
        if not self.wait_idle(timeout):
            logger.warning("Bot runner closing: a bot is still running after %ss", timeout)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def resolve_bot_safely():
    """Like resolve_bot, but logs (check ``webchat.E001`` reports it) instead of raising."""
    try:
        return resolve_bot()
    except InvalidWebchatConfiguration:
        logger.exception("WEBCHAT_BOT cannot be imported; the bot does not answer")
        return None


#: The process's bot runner.
bot_runner = BotRunner()
