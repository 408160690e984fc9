"""Owning background tasks: the one way this app stops a task it started."""

import asyncio


async def cancel_and_wait(task):
    """Cancel ``task`` and wait until it has finished.

    The task's own ``CancelledError`` is swallowed; a cancellation of the caller while it
    waits still propagates (``channels/utils.py`` 49-59 does the same).
    """
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if asyncio.current_task().cancelling():
            raise
