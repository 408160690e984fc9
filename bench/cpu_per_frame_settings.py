"""Settings for ``bench/cpu_per_frame.py``'s webchat servers: webchat's, with the stream's
per-replica socket caps raised so one client address may hold every socket of the run (the
defaults allow 100 per IP and 5 per conversation; the benchmark opens 100 per conversation
from 127.0.0.1). Nothing else differs."""

from webchat.settings import *  # noqa: F403
from webchat.settings import WEBCHAT_STREAM

WEBCHAT_STREAM = {
    **WEBCHAT_STREAM,
    "MAX_SOCKETS_PER_TENANT": 100_000,
    "MAX_SOCKETS_PER_CONVERSATION": 1_000,
    "MAX_SOCKETS_PER_USER": 1_000,
    "MAX_SOCKETS_PER_IP": 100_000,
}
