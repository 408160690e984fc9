"""Owning background tasks: the one way this app stops a task it started.

On Python 3.11 ``asyncio.wait_for`` returns its result instead of raising when a
cancellation meets the completion of what it waits for (CPython gh-86296, fixed in 3.12).
redis-py sends every command through it when a socket timeout is set, so a task cancelled
while it sends a command (a probe's PUBLISH, the listener's SUBSCRIBE or PING) can lose the
cancellation and go on to its next sleep or read: the owner would wait forever. The tasks
call :func:`raise_if_cancelled` after those commands; :func:`cancel_and_wait` cancels again
whatever still runs a while later.
"""

import asyncio
import logging

logger = logging.getLogger(__name__)

#: Seconds a cancelled task may go on (its cleanup included) before it is cancelled again.
RECANCEL_AFTER = 1.0


def raise_if_cancelled():
    """Called by a task after awaiting a library that may swallow a cancellation: raise the
    ``CancelledError`` it should have seen (``asyncio.timeout`` takes back its own, so any
    cancellation still counted here came from outside)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(task, recancel_after=RECANCEL_AFTER):
    """Cancel ``task`` and wait until it has finished.

    The task's own ``CancelledError`` is swallowed; a cancellation of the caller while it
    waits still propagates (``channels/utils.py`` 49-59 does the same), leaving the task
    cancelled. A task still running ``recancel_after`` seconds after a cancellation is
    cancelled again (logged: a cancellation was lost, or its cleanup takes that long).
    """
    if task is None or task.done():
        return
    task.cancel()
    # wait() does not cancel ``task`` when the caller is cancelled; it just raises.
    while not (await asyncio.wait({task}, timeout=recancel_after))[0]:
        logger.warning("task %r still runs %.1f s after it was cancelled; cancelling again",
                       task.get_name(), recancel_after)
        task.cancel()
    if not task.cancelled():
        task.result()  # its own exception, as awaiting it would raise
