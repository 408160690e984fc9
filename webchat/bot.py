"""The in-process bot: a callable named by ``settings.WEBCHAT_BOT`` answers user activities.

The callable is called with each stored user activity (a dict, with its transcript ``id``)
and returns None, one activity dict or a list of them; it may also be ``async``. Each reply
is written as its own activity, after the user's one, with ``from.role`` ``"bot"`` and
``replyToId`` the user's activity id unless the bot set them. ``WEBCHAT_BOT = None``
turns the bot off (a bot elsewhere can use the bot API instead).

The request that posted the user's activity never waits for the bot: ``bot_runner`` runs
it on a small thread pool owned by this module, one activity of a conversation at a time
so replies keep the order of the messages they answer, tenants and conversations taking
turns (``webchat.bot_queue``) so one cannot starve the others.
"""

import asyncio
import inspect
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections

from .bot_queue import FairQueue, QueueBounds
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
    """Runs the bot for user activities on an owned thread pool, fairly between tenants.

    ``submit`` is called once the user's activity is committed and returns at once. The
    activities wait in a :class:`~webchat.bot_queue.FairQueue`: tenants and, within a
    tenant, conversations take turns; a conversation's activities are answered in order,
    one at a time. The queue is bounded per conversation, per tenant and in all
    (``WEBCHAT_BOT_MAX_PENDING_PER_CONVERSATION``, ``..._PER_TENANT``,
    ``WEBCHAT_BOT_MAX_PENDING``); what does not fit is dropped with a warning rather than
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
        self._queue = FairQueue()
        self._workers = 0  # worker loops started on the current executor and not yet ended
        self._generation = 0  # bumped by close: older loops no longer count as workers

    def _limits(self) -> tuple[int, QueueBounds]:
        workers = self._max_workers or webchat_settings.bot_workers
        bounds = QueueBounds(
            total=self._max_pending or webchat_settings.bot_max_pending,
            per_tenant=webchat_settings.bot_max_pending_per_tenant,
            per_conversation=webchat_settings.bot_max_pending_per_conversation,
        )
        return workers, bounds

    def submit(self, conversation_id: str, activity: dict, tenant_id=None) -> bool:
        """Queue ``activity`` for the bot; return False when it was dropped (logged)."""
        if resolve_bot_safely() is None:
            return False
        workers, bounds = self._limits()
        tenant_id = "" if tenant_id is None else str(tenant_id)
        with self._lock:
            pushed = self._queue.push(tenant_id, conversation_id, activity, bounds)
            if pushed.refused:
                logger.warning(
                    "Bot queue full (%s bound; %d activities of the tenant, %d in all "
                    "waiting): not answering %s",
                    pushed.refused,
                    self._queue.tenant_pending(tenant_id),
                    self._queue.pending,
                    activity.get("id"),
                )
                return False
            if pushed.evicted is not None:
                logger.warning(
                    "Bot queue full: not answering %s, to make room for another tenant's %s",
                    pushed.evicted.get("id"),
                    activity.get("id"),
                )
            if self._executor is None:
                self._executor = ThreadPoolExecutor(workers, thread_name_prefix="webchat-bot")
            if self._workers < workers:
                self._workers += 1
                self._executor.submit(self._work, self._generation)
        return True

    def _work(self, generation: int) -> None:
        """Called on a worker thread: answer activities while any is ready for answering."""
        while True:
            with self._lock:
                job = self._queue.take()
                if job is None:
                    if generation == self._generation:
                        self._workers -= 1
                    return
            tenant_id, conversation_id, activity = job
            try:
                self._answer(conversation_id, activity)
            except Exception:
                logger.exception("The bot failed to answer activity %s", activity.get("id"))
            finally:
                with self._lock:
                    self._queue.done(tenant_id, conversation_id)
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
            return self._idle.wait_for(lambda: self._queue.pending == 0, timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Drop activities not yet started, wait for running ones, stop the threads."""
        with self._lock:
            dropped = self._queue.drop_waiting()
            executor, self._executor = self._executor, None
            self._workers = 0
            self._generation += 1
            self._idle.notify_all()
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
